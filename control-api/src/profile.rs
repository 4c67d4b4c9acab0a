//! `GET /v1/users/{user_id}`: everything held about a user, the document a data-access request
//! returns: traits with when each got its value, first and last seen, event counts by name,
//! the retained events paged with a cursor, segment memberships with since when, journeys
//! with status, node and history, and the actions recorded for them.

use crate::handle::{Answer, Request};
use crate::problem::Problem;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Events per page by default, and at most.
const PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// One worker's share of a user's export (the worker holding their events has those).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfilePart {
    /// Retained events after the cursor (at most the page size), in `(timestamp, messageId)` order.
    pub events: Vec<Value>,
    /// `(timestamp, messageId)` of the last event given, when more follow.
    pub next: Option<(u64, String)>,
    /// Retained events in all.
    pub retained: u64,
    /// Retained events by name (a track's event name, else its call).
    pub counts: BTreeMap<String, u64>,
    /// The earliest and latest timestamps of the retained events.
    pub first_seen: Option<u64>,
    /// See `first_seen`.
    pub last_seen: Option<u64>,
    /// Each trait the retained identify calls leave set, with its value and the identify's time.
    pub traits_set: BTreeMap<String, (Value, u64)>,
    /// The user's current traits this worker holds.
    pub traits: Vec<(String, Value)>,
    /// The segments the user is in that this worker holds, with the time they entered (when known).
    pub segments: Vec<(String, Option<u64>)>,
}

/// Paging of the events.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EventPage {
    /// `next_cursor` of the previous page (of the same order).
    pub cursor: Option<String>,
    /// Events per page (default 100, at most 1000).
    pub limit: Option<usize>,
    /// `asc` (oldest first, the default) or `desc` (newest first).
    pub order: Option<String>,
}

/// The page of a user's events a worker is asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsWanted {
    /// The `(timestamp, messageId)` of the event before the page, in its order.
    pub after: Option<(u64, String)>,
    /// Events in the page.
    pub limit: usize,
    /// Newest first (else oldest first).
    pub newest_first: bool,
}

/// The cursor after an event: hex of `[timestamp, messageId]`.
fn cursor_of(next: &(u64, String)) -> String {
    serde_json::to_vec(next).unwrap_or_default().iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_cursor(text: &str) -> Option<(u64, String)> {
    if text.len() > 4096 || !text.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect();
    serde_json::from_slice(&bytes?).ok()
}

/// A user's export.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserExport {
    /// The user id.
    pub user_id: String,
    /// The event time the answer is complete up to (inclusive).
    pub as_of: u64,
    /// Earliest retained event's timestamp.
    pub first_seen: Option<u64>,
    /// Latest retained event's timestamp.
    pub last_seen: Option<u64>,
    /// Current traits: `{name: {"value", "set_at"}}`; `set_at` is null when the identify
    /// that set it is no longer retained.
    #[schema(value_type = Object)]
    pub traits: BTreeMap<String, Value>,
    /// Retained events by name (a track's event name, else `identify`, `page`, `screen`).
    pub event_counts: BTreeMap<String, u64>,
    /// Retained events in all.
    pub retained_events: u64,
    /// This page of the retained events, oldest first (or newest first, as asked; properties
    /// and traits as flattened, dotted keys).
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
    /// Where the next page starts, if any.
    pub next_cursor: Option<String>,
    /// Segments the user is in: `{"id", "since"}` (`since` null when it is not known: the user
    /// entered before a restart).
    #[schema(value_type = Vec<Object>)]
    pub segments: Vec<Value>,
    /// Journeys the user has been in: `{"journey", "status", "outcome", "node", "since",
    /// "history"}` (the latest 100 transitions).
    #[schema(value_type = Vec<Object>)]
    pub journeys: Vec<Value>,
    /// The latest 100 action records of the user, over every journey.
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<Value>,
}

/// `GET /v1/users/{user_id}`: everything held about a user as of now (the events a page at a
/// time); 404 when nothing is.
#[utoipa::path(get, path = "/v1/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "user id"), EventPage),
    responses((status = 200, body = UserExport), (status = 400, body = crate::problem::ProblemDoc, content_type = "application/problem+json"),
        crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn export(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    Query(page): Query<EventPage>,
) -> Result<Json<UserExport>, Problem> {
    let limit = page.limit.unwrap_or(PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Problem::bad_request(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let after = match &page.cursor {
        Some(text) => Some(parse_cursor(text).ok_or_else(|| Problem::bad_request("malformed cursor"))?),
        None => None,
    };
    let newest_first = match page.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => return Err(Problem::bad_request(format!("order must be asc or desc, not {other:?}"))),
    };
    let events = EventsWanted { after, limit, newest_first };
    let request = Request::UserProfile { user_id: user_id.clone(), events };
    let answers = state.engine.call(request, state.config.query_wait).await?;
    let mut out = UserExport {
        user_id: user_id.clone(),
        as_of: 0,
        first_seen: None,
        last_seen: None,
        traits: BTreeMap::new(),
        event_counts: BTreeMap::new(),
        retained_events: 0,
        events: Vec::new(),
        next_cursor: None,
        segments: Vec::new(),
        journeys: Vec::new(),
        actions: Vec::new(),
    };
    let (mut parts, mut traits_set) = (Vec::new(), BTreeMap::new());
    for answer in answers {
        match answer {
            Answer::Profile(t, part) => {
                out.as_of = t;
                traits_set.extend(part.traits_set.clone());
                parts.push(*part);
            }
            other => return Err(Problem::unavailable(format!("unexpected answer {other:?}"))),
        }
    }
    for part in parts {
        out.first_seen = out.first_seen.into_iter().chain(part.first_seen).min();
        out.last_seen = out.last_seen.into_iter().chain(part.last_seen).max();
        out.retained_events += part.retained;
        for (name, n) in part.counts {
            *out.event_counts.entry(name).or_default() += n;
        }
        out.events.extend(part.events);
        if let Some(next) = &part.next {
            out.next_cursor = Some(cursor_of(next));
        }
        for (name, value) in part.traits {
            let set_at = traits_set.get(&name).filter(|(v, _)| *v == value).map(|(_, t)| *t);
            out.traits.insert(name, json!({"value": value, "set_at": set_at}));
        }
        out.segments.extend(part.segments.into_iter().map(|(id, since)| json!({"id": id, "since": since})));
    }
    out.segments.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let catalog = state.engine.catalog.get();
    {
        let histories = state.engine.histories.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (id, entry) in &catalog.journeys {
            let history = histories.transitions(id, &user_id);
            if !history.is_empty() {
                out.journeys.push(crate::journeys::standing(id, &entry.definition, &history));
            }
        }
        out.actions = histories.actions(&user_id);
    }
    let nothing = out.retained_events == 0
        && out.traits.is_empty()
        && out.segments.is_empty()
        && out.journeys.is_empty()
        && out.actions.is_empty();
    if nothing {
        return Err(Problem::not_found(format!("nothing is held about user {user_id:?}")));
    }
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_and_garbage_is_refused() {
        let next = (1_700_000_000_000u64, "m\"1\u{e9}".to_string());
        assert_eq!(parse_cursor(&cursor_of(&next)), Some(next));
        for bad in ["", "zz", "abc", &"00".repeat(3000), "5b315d"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }
}
