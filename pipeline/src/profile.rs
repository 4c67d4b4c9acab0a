//! A worker's share of a user's export (`GET /v1/users/{user_id}`): the user's retained events
//! (paged by `(timestamp, messageId)`, either way), their counts by name, first and last seen, when each
//! trait got its value, the traits and the segment memberships this worker holds.

use crate::programs::Programs;
use journeyflow_control_api::profile::{EventsWanted, ProfilePart};
use journeyflow_operators::{SharedEvent, Time, UserId};
use journeyflow_types::Kind;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// This worker's share of `user`'s export as of `time` (`None` until it is complete through
/// `time`): the page of events `wanted` asks for.
pub fn part(programs: &mut Programs, user: UserId, time: Time, wanted: &EventsWanted) -> Option<ProfilePart> {
    let segments = programs.user_memberships_at(user, time)?;
    let traits = programs.traits_at(user, time)?;
    let events: Vec<SharedEvent> = programs.retained(user).into_iter().filter(|e| e.ts() <= time).collect();
    let mut out = ProfilePart {
        traits: traits.into_iter().map(|(name, value)| (name, value.to_json())).collect(),
        segments,
        retained: events.len() as u64,
        first_seen: events.iter().map(|e| e.ts()).min(),
        last_seen: events.iter().map(|e| e.ts()).max(),
        ..ProfilePart::default()
    };
    let mut ordered: Vec<&SharedEvent> = events.iter().collect();
    ordered.sort_by(|a, b| (a.ts(), a.message_id()).cmp(&(b.ts(), b.message_id())));
    let mut set: BTreeMap<String, (Value, Time)> = BTreeMap::new();
    for e in &ordered {
        *out.counts.entry(counted_as(e).to_string()).or_default() += 1;
        if e.kind() == Kind::Identify {
            for (name, value) in e.to_event().props.0 {
                match value.to_json() {
                    Value::Null => set.remove(&name),
                    value => set.insert(name, (value, e.ts())),
                };
            }
        }
    }
    out.traits_set = set;
    // The page starts after the cursor in the order asked for.
    if wanted.newest_first {
        ordered.reverse();
    }
    let from = match &wanted.after {
        Some((ts, id)) => ordered.partition_point(|e| {
            let (key, cursor) = ((e.ts(), e.message_id()), (*ts, id.as_str()));
            if wanted.newest_first {
                key >= cursor
            } else {
                key <= cursor
            }
        }),
        None => 0,
    };
    let page = &ordered[from..ordered.len().min(from + wanted.limit)];
    out.events = page.iter().map(|e| render(e)).collect();
    if from + page.len() < ordered.len() {
        out.next = page.last().map(|e| (e.ts(), e.message_id().to_string()));
    }
    Some(out)
}

/// The name an event is counted under: its own for a track, else its call.
fn counted_as(e: &SharedEvent) -> &str {
    match e.kind() {
        Kind::Track => e.name(),
        Kind::Identify => "identify",
        Kind::Page => "page",
        Kind::Screen => "screen",
    }
}

/// An event as the export shows it: Segment's fields, properties (or traits) flattened to
/// dotted keys as the engine keeps them.
fn render(e: &SharedEvent) -> Value {
    let event = e.to_event();
    let props: Map<String, Value> = event.props.0.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
    let (kind, field) = match event.kind {
        Kind::Track => ("track", "properties"),
        Kind::Identify => ("identify", "traits"),
        Kind::Page => ("page", "properties"),
        Kind::Screen => ("screen", "properties"),
    };
    let mut out = json!({"type": kind, "messageId": event.message_id, "timestamp": event.ts, field: props});
    if event.kind == Kind::Track {
        out["event"] = json!(event.name);
    }
    out
}
