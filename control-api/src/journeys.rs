//! The journey endpoints: create drafts, read them, write new versions, publish (a new
//! dataflow over the retained history, ongoing from then; for a new version of a running
//! journey, taking its users over), pause, resume, end, and per-node and per-journey reports.
//! Changes go through the catalog ([`crate::changes`]), which refuses the second of two
//! conflicting ones (409); reads answer from its latest snapshot.

use crate::catalog::{status, Catalog, Change, JourneyEntry, Lifecycle};
use crate::changes::{prepare, submit};
use crate::handle::{Answer, Request};
use crate::problem::Problem;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use journeyflow_types::entries::parse_entry;
use journeyflow_types::Key;
use journeyflow_types::{
    validate_journey_with, validate_migration, JourneyDefinition, Limits, Migration, Node, Placement, ValidationError,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn view(id: &str, entry: &JourneyEntry) -> Value {
    let mut v = json!({"id": id, "status": entry.status, "version": entry.version,
                       "published_at": entry.published_at, "definition": entry.definition});
    if let Some(next) = &entry.next {
        v["next_version"] = json!({"version": entry.version + 1, "definition": next});
    }
    v
}

/// The journey `id` as the catalog holds it now (after a change was applied).
fn current(state: &AppState, id: &str) -> Result<Value, Problem> {
    let catalog = state.engine.catalog.get();
    catalog.journeys.get(id).map(|e| view(id, e)).ok_or_else(|| Problem::not_found(format!("no journey {id:?}")))
}

/// Validates a definition against the catalog's segments (422 with every error).
pub(crate) fn validated(catalog: &Catalog, body: &Value, limits: &Limits) -> Result<JourneyDefinition, Problem> {
    let known: BTreeSet<String> = catalog.segments.keys().cloned().collect();
    validate_journey_with(body, &known, limits).map_err(|e| Problem::invalid(e.0))
}

/// `POST /v1/journeys`: validates a journey and keeps it as a draft.
#[utoipa::path(post, path = "/v1/journeys", tag = "journeys",
    request_body(content = serde_json::Value, description = "a journey definition, kept as a draft: `id`, `entry`, `start`, `nodes` and the optional rules of the README's Journeys section. Strings of an action's `payload` may hold minijinja placeholders over `traits`, `event`, `journey` and `node`, rendered when the action is sent (`failed_missing_data` when a value is missing); `wait_until_time` waits until a local time (`at`, `tz`, `tz_trait`) or a trait's time (`trait`, `offset`, with `if_missing`); `quota` (`max_actions`, `per`?, `channel`?) bounds the sent actions over all users; a `goal` with `value` names the property a conversion is worth", example = json!({"id": "welcome", "entry": {"event": "Signup"}, "start": "nine", "nodes": {"nine": {"wait_until_time": {"at": "09:00", "tz_trait": "timezone"}, "next": "mail"}, "mail": {"action": {"channel": "email", "template": "welcome", "payload": {"to": "{{ traits.email }}", "name": "{{ traits.first_name | default('there') }}", "plan": "{{ event.properties.plan }}"}}, "next": "done"}, "done": {"exit": {}}}})),
    responses((status = 201, body = serde_json::Value), crate::problem::ChangeAnswers, crate::problem::ChangeRefusals, crate::problem::ControlAnswers))]
pub async fn create(State(state): State<AppState>, body: Bytes) -> Result<Response, Problem> {
    let (change, _) = prepare(&state, body, |body, _, _| Ok(Change::DraftJourney { definition: body })).await?;
    let id = change.definition().and_then(|d| d["id"].as_str()).unwrap_or_default().to_string();
    Ok(match submit(&state, change).await? {
        Ok(_) => (StatusCode::CREATED, Json(current(&state, &id)?)).into_response(),
        Err(accepted) => accepted,
    })
}

/// `GET /v1/journeys`.
#[utoipa::path(get, path = "/v1/journeys", tag = "journeys",
    responses((status = 200, body = serde_json::Value), crate::problem::ControlAnswers))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<Value>> {
    Json(state.engine.catalog.get().journeys.iter().map(|(id, e)| view(id, e)).collect())
}

/// `GET /v1/journeys/{id}`.
#[utoipa::path(get, path = "/v1/journeys/{id}", tag = "journeys", params(("id" = String, Path, description = "journey id")),
    responses((status = 200, body = serde_json::Value), crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    current(&state, &id).map(Json)
}

/// `PUT /v1/journeys/{id}`: a new definition. A draft's definition is replaced; for a running
/// (ongoing or paused) journey it becomes the next version, published by `publish`; an ended
/// journey takes no new version (409).
#[utoipa::path(put, path = "/v1/journeys/{id}", tag = "journeys", params(("id" = String, Path, description = "journey id")),
    request_body(content = serde_json::Value, description = "the journey's new definition (a draft's, or the next version)", example = json!({"id": "welcome", "entry": {"event": "Signup"}, "start": "wait", "nodes": {"wait": {"wait": {"duration": "1h"}, "next": "mail"}, "mail": {"action": {"channel": "email", "template": "welcome"}, "next": "done"}, "done": {"exit": {}}}})),
    responses((status = 200, body = serde_json::Value), crate::problem::ChangeAnswers, crate::problem::ChangeRefusals, crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn replace(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> Result<Response, Problem> {
    let path_id = id.clone();
    let (change, _) = prepare(&state, body, move |body, catalog, limits| {
        if !catalog.journeys.contains_key(&path_id) {
            return Err(Problem::not_found(format!("no journey {path_id:?}")));
        }
        let def = validated(catalog, &body, limits)?;
        if def.id != path_id {
            return Err(Problem::invalid(vec![ValidationError {
                path: "$.id".into(),
                message: format!("the definition's id {:?} is not the journey's {path_id:?}", def.id),
            }]));
        }
        Ok(Change::ReviseJourney { definition: body })
    })
    .await?;
    Ok(match submit(&state, change).await? {
        Ok(_) => Json(current(&state, &id)?).into_response(),
        Err(accepted) => accepted,
    })
}

/// `DELETE /v1/journeys/{id}`: removes a draft, or an ended journey with its dataflow and
/// reports (409 for one still running: end it first); its id may then be used again.
#[utoipa::path(delete, path = "/v1/journeys/{id}", tag = "journeys", params(("id" = String, Path, description = "journey id")),
    responses((status = 204), crate::problem::ChangeAnswers, crate::problem::ChangeRefusals, crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, Problem> {
    let (change, _) = prepare(&state, Bytes::new(), move |_, _, _| Ok(Change::RemoveJourney { id })).await?;
    Ok(match submit(&state, change).await? {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(accepted) => accepted,
    })
}

/// The `migrate` object of a publish request body (`Null`: every default).
fn migration(body: &Value, old: &JourneyDefinition, new: &JourneyDefinition) -> Result<Migration, Problem> {
    let empty = serde_json::Map::new();
    let obj = match body {
        Value::Null => &empty,
        Value::Object(o) => o,
        _ => {
            return Err(Problem::invalid(vec![ValidationError {
                path: "$".into(),
                message: "expected an object such as {\"migrate\": {\"node_map\": {}, \"default\": \"exit\"}}".into(),
            }]))
        }
    };
    let mut errors: Vec<ValidationError> = obj
        .keys()
        .filter(|k| *k != "migrate")
        .map(|k| ValidationError { path: format!("$.{k}"), message: "unknown field (expected migrate)".into() })
        .collect();
    match validate_migration(obj.get("migrate"), old, new) {
        Ok(m) if errors.is_empty() => Ok(m),
        Ok(_) => Err(Problem::invalid(errors)),
        Err(e) => {
            errors.extend(e.0);
            Err(Problem::invalid(errors))
        }
    }
}

/// The change a lifecycle call asks for, given the journey as the catalog holds it.
fn lifecycle_change(
    catalog: &Catalog,
    id: &str,
    action: &str,
    body: &Value,
    limits: &Limits,
) -> Result<Change, Problem> {
    let Some(entry) = catalog.journeys.get(id) else { return Err(Problem::not_found(format!("no journey {id:?}"))) };
    let command = |command| Ok(Change::JourneyCommand { id: id.to_string(), command });
    match (entry.status.as_str(), action) {
        (status::DRAFT, "publish") => {
            Ok(Change::InstallJourney { definition: entry.definition.clone(), version: entry.version })
        }
        (status::ONGOING | status::PAUSED, "publish") => match &entry.next {
            Some(next) => {
                // The running version is read as it was accepted; the next one under the limits.
                let old = validated(catalog, &entry.definition, &Limits::ceiling())?;
                let new = validated(catalog, next, limits)?;
                let migrate = migration(body, &old, &new)?;
                Ok(Change::PublishVersion { definition: next.clone(), version: entry.version + 1, migrate })
            }
            None => Err(Problem::conflict(format!(
                "journey {id:?} is {} at version {} and has no next version: write one with PUT first",
                entry.status, entry.version
            ))),
        },
        // The catalog's check says whether the status allows it.
        (_, "pause") => command(Lifecycle::Pause),
        (_, "resume") => command(Lifecycle::Resume),
        (_, "end") => command(Lifecycle::End),
        (_, "publish") => Err(Problem::conflict(format!("journey {id:?} is {}: cannot publish it", entry.status))),
        _ => Err(Problem::not_found(format!("no action {action:?} (publish, pause, resume, end)"))),
    }
}

/// `POST /v1/journeys/{id}/{action}` for `publish`, `pause`, `resume`, `end`: 409 when the
/// journey's status does not allow it, or when another call changed it first. Publishing a
/// running journey publishes its next version (written with `PUT`); the body may say where its
/// users go: `{"migrate": {"node_map": {"old": "new"}, "default": "exit"}}`.
#[utoipa::path(post, path = "/v1/journeys/{id}/{action}", tag = "journeys",
    params(("id" = String, Path, description = "journey id"), ("action" = String, Path, description = "publish, pause, resume or end")),
    request_body(content = serde_json::Value, description = "optional, for publishing a next version: where users in flight go", example = json!({"migrate": {"node_map": {}, "default": "exit"}})),
    responses((status = 200, body = serde_json::Value), crate::problem::ChangeAnswers, crate::problem::ChangeRefusals, crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn lifecycle(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Problem> {
    let (journey, verb) = (id.clone(), action.clone());
    let (change, _) =
        prepare(&state, body, move |body, catalog, limits| lifecycle_change(catalog, &journey, &verb, &body, limits))
            .await?;
    Ok(match submit(&state, change).await? {
        Ok(at) => {
            let now = current(&state, &id)?;
            Json(json!({"id": id, "status": now["status"], "version": now["version"], "at": at})).into_response()
        }
        Err(accepted) => accepted,
    })
}

/// `POST /v1/journeys/{id}/entries`: `{"users": [...], "context"?: {...}}` lets the users into
/// the ongoing journey as of the request's sequenced time (each tries as an entry does,
/// re-entry rules and the exit rule applying; transitions with reason `api`). The context is
/// what the journey's action templates read as `context`. `202` with the time once decided:
/// the transitions follow as the engine reaches it. 409 when the journey is not ongoing, 422
/// for an empty or oversized request (at most 1,000 users, a 16 KiB context).
#[utoipa::path(post, path = "/v1/journeys/{id}/entries", tag = "journeys", params(("id" = String, Path, description = "journey id")),
    request_body(content = serde_json::Value, description = "`{\"users\": [user id, ...], \"context\"?: object}`", example = json!({"users": ["u1", "u2"], "context": {"coupon": "SPRING24"}})),
    responses((status = 202, description = "`{\"journey\", \"time\", \"users\"}`: the users enter as of `time`; or, when not decided within the change wait, `{\"request\", \"status\": \"pending\", \"location\"}`", body = serde_json::Value),
        crate::problem::ChangeRefusals, crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn enter(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> Result<Response, Problem> {
    let journey = id.clone();
    let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let given = ids.clone();
    let (change, _) = prepare(&state, body, move |value, _, limits| {
        let request = parse_entry(&value, "$", &[], limits).map_err(Problem::invalid)?;
        let keys = request.users.iter().map(|u| Key::of(u).to_string()).collect();
        *given.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = request.users;
        Ok(Change::EnterJourney { id: journey, users: keys, context: request.context })
    })
    .await?;
    let ids = std::mem::take(&mut *ids.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let users = ids.len();
    // The log holds their keys only; this process names them for its outputs.
    {
        let mut names = state.engine.names.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for user in ids {
            names.note(Key::of(&user), &std::sync::Arc::from(user.as_str()));
        }
    }
    Ok(match submit(&state, change).await? {
        Ok(at) => (StatusCode::ACCEPTED, Json(json!({"journey": id, "time": at, "users": users}))).into_response(),
        Err(accepted) => accepted,
    })
}

/// The query of `GET /v1/journeys/{id}/stats` for per-hour counts.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct StatsQuery {
    /// The first hour (RFC 3339 or epoch ms; rounded down to its hour). With `to` or `step`,
    /// the answer is per bucket; default: a day before `to`.
    pub from: Option<String>,
    /// The end, exclusive (rounded up to an hour); default: now.
    pub to: Option<String>,
    /// Bucket width: whole hours (`1h`, `6h`, `1d`, `1w`); default `1h`.
    pub step: Option<String>,
}

/// Buckets one answer may hold.
const MAX_BUCKETS: u64 = 10_000;

const HOUR: u64 = 3_600_000;

/// `GET /v1/journeys/{id}/stats`: per journey entered, in progress, converted, exited,
/// completed, canceled (and `converted_value` with a goal `value`); per node entered, current,
/// exited, converted, actions by status; per split node its branches side by side (`splits`:
/// entered, converted, `conversion_rate`, `interval_95` (95% Wilson), `converted_value`).
/// With `from`, `to` or `step`: the counts per bucket of the running version instead, kept per
/// hour by the engine (`{"journey", "as_of", "from", "to", "step", "buckets": [{"start",
/// "entered", "converted", "exited", "completed", "canceled", "converted_value", "nodes": {id:
/// {"entered", "exited", "converted", "actions": {status: n}}}}]}`, every bucket and node
/// present).
#[utoipa::path(get, path = "/v1/journeys/{id}/stats", tag = "journeys", params(("id" = String, Path, description = "journey id"), StatsQuery),
    responses((status = 200, body = serde_json::Value), (status = 400, body = crate::problem::ProblemDoc, content_type = "application/problem+json"),
        crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn stats(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<StatsQuery>,
) -> Result<Json<Value>, Problem> {
    let Some(entry) = state.engine.catalog.get().journeys.get(&id).cloned() else {
        return Err(Problem::not_found(format!("no journey {id:?}")));
    };
    if query.from.is_none() && query.to.is_none() && query.step.is_none() {
        return Ok(Json(report(&state, &id)));
    }
    let instant = |name: &str, v: &str| {
        journeyflow_types::time::parse_instant_str(v).map_err(|e| Problem::bad_request(format!("{name}: {e}")))
    };
    let to = match &query.to {
        Some(t) => instant("to", t)?,
        None => journeyflow_types::time::now_ms(),
    };
    let to = to.div_ceil(HOUR).saturating_mul(HOUR);
    let from = match &query.from {
        Some(f) => instant("from", f)?,
        None => to.saturating_sub(24 * HOUR),
    };
    let from = from - from % HOUR;
    let step = match &query.step {
        Some(text) => {
            journeyflow_types::Duration::parse(text).map_err(|e| Problem::bad_request(format!("step: {e}")))?.0
        }
        None => HOUR,
    };
    if step == 0 || step % HOUR != 0 {
        return Err(Problem::bad_request("step must be whole hours (1h, 6h, 1d, ...)"));
    }
    if from >= to {
        return Err(Problem::bad_request("from must be before to"));
    }
    let buckets = (to - from).div_ceil(step);
    if buckets > MAX_BUCKETS {
        return Err(Problem::bad_request(format!(
            "{buckets} buckets, more than {MAX_BUCKETS}: a wider step or a shorter range"
        )));
    }
    let request = Request::JourneyHours { id: id.clone(), from, to };
    let answers = state.engine.call(request, state.config.query_wait).await?;
    let mut as_of = 0;
    let mut counts = Vec::new();
    for answer in answers {
        match answer {
            Answer::Hours(t, share) => {
                as_of = t;
                counts.extend(share);
            }
            Answer::Failed(why) => return Err(Problem::conflict(why)),
            other => return Err(Problem::unavailable(format!("unexpected answer {other:?}"))),
        }
    }
    let nodes: Vec<String> =
        entry.definition["nodes"].as_object().map(|n| n.keys().cloned().collect()).unwrap_or_default();
    let valued = entry.definition["goal"].get("value").is_some();
    let mut out: Vec<Value> = (0..buckets)
        .map(|b| {
            let mut bucket = json!({"start": from + b * step, "entered": 0, "converted": 0, "exited": 0,
                "completed": 0, "canceled": 0,
                "nodes": nodes.iter().map(|n| (n.clone(), json!({"entered": 0, "exited": 0, "converted": 0, "actions": {}})))
                    .collect::<serde_json::Map<String, Value>>()});
            if valued {
                bucket["converted_value"] = json!(0.0);
            }
            bucket
        })
        .collect();
    let mut values = vec![0i64; out.len()];
    for c in counts {
        let b = ((c.hour.saturating_sub(from)) / step) as usize;
        let Some(bucket) = out.get_mut(b) else { continue };
        match (&c.node, c.field.as_str()) {
            (None, "converted_value") => values[b] += c.value,
            (None, field) => bucket[field] = json!(bucket[field].as_i64().unwrap_or(0) + c.value),
            (Some(node), field) => {
                let Some(n) = bucket["nodes"].get_mut(node) else { continue };
                let slot = match field {
                    "entered" | "exited" | "converted" => &mut n[field],
                    status => &mut n["actions"][status],
                };
                *slot = json!(slot.as_i64().unwrap_or(0) + c.value);
            }
        }
    }
    if valued {
        for (bucket, micros) in out.iter_mut().zip(values) {
            bucket["converted_value"] = json!(micros as f64 / 1e6);
        }
    }
    let step_text = journeyflow_types::Duration(step).to_string();
    Ok(Json(json!({"journey": id, "as_of": as_of, "from": from, "to": to, "step": step_text, "buckets": out})))
}

/// Journey `id`'s report as the workers last published it (zeros before their first).
pub fn report(state: &AppState, id: &str) -> Value {
    let report =
        state.engine.journey_reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned();
    report.unwrap_or_else(|| {
        json!({"journey": id, "entered": 0, "in_progress": 0, "converted": 0,
        "exited": 0, "completed": 0, "canceled": 0, "nodes": {}})
    })
}

/// `GET /v1/journeys/{id}/users/{user_id}`: where a user stands (`waiting`, `running` = an
/// action held by quiet hours, `ended`, `canceled`), since when, and their latest transitions.
#[utoipa::path(get, path = "/v1/journeys/{id}/users/{user_id}", tag = "journeys",
    params(("id" = String, Path, description = "journey id"), ("user_id" = String, Path, description = "user id")),
    responses((status = 200, body = serde_json::Value), crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn user(
    State(state): State<AppState>,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let definition = match state.engine.catalog.get().journeys.get(&id) {
        Some(entry) => entry.definition.clone(),
        None => return Err(Problem::not_found(format!("no journey {id:?}"))),
    };
    let history =
        state.engine.histories.lock().unwrap_or_else(std::sync::PoisonError::into_inner).transitions(&id, &user_id);
    if history.is_empty() {
        return Err(Problem::not_found(format!("user {user_id:?} has not entered journey {id:?}")));
    }
    let mut standing = standing(&id, &definition, &history);
    standing["user_id"] = json!(user_id);
    Ok(Json(standing))
}

/// Where a user stands in journey `id` after `history` (their latest transitions, not empty):
/// `{"journey", "status", "outcome", "node", "since", "history"}`.
pub fn standing(id: &str, definition: &Value, history: &[Value]) -> Value {
    let Some(last) = history.last() else { return json!({"journey": id, "history": []}) };
    let (status, outcome, node) = status(definition, last);
    json!({"journey": id, "status": status, "outcome": outcome, "node": node, "since": last["time"], "history": history})
}

/// Where a user stands in a journey defined as `definition` after their transition `last`:
/// `(status, outcome, node)`.
pub fn status<'a>(definition: &Value, last: &'a Value) -> (&'static str, Option<&'static str>, &'a str) {
    match last["to"].as_str() {
        Some(to) => {
            let kind = definition["nodes"][to]
                .as_object()
                .and_then(|n| n.keys().find(|k| *k != "next" && *k != "if_missing").cloned());
            match kind.as_deref() {
                Some("exit") => ("ended", Some("completed"), to),
                Some("action") => ("running", None, to),
                _ => ("waiting", None, to),
            }
        }
        None => {
            let from = last["from"].as_str().unwrap_or_default();
            match last["reason"].as_str() {
                Some("goal") => ("ended", Some("converted"), from),
                Some("exit_when") => ("ended", Some("exited"), from),
                Some("migrated") => ("ended", Some("migrated_out"), from),
                _ => ("canceled", Some("canceled"), from),
            }
        }
    }
}

/// `POST /v1/journeys/{id}/migration`: what publishing the journey's next version with the
/// body's `migrate` object (as `publish` takes it) would do to the users in flight: for each
/// node of the running version with users now, where they would go and how many they are
/// (409 when it has no next version or its status forbids the publish; 422 for a `migrate`
/// object or a next version the publish would refuse; 503 while the report is still of the
/// version before).
#[utoipa::path(post, path = "/v1/journeys/{id}/migration", tag = "journeys", params(("id" = String, Path, description = "journey id")),
    request_body(content = serde_json::Value, description = "optional: the `migrate` object the publish would carry", example = json!({"migrate": {"node_map": {"wait": "mail"}, "default": "exit"}})),
    responses((status = 200, description = "`{\"journey\", \"from_version\", \"to_version\", \"moves\": [{\"from\", \"users\", \"placement\": stay | move | exit, \"to\"}]}` (users: as the latest report counts them)", body = serde_json::Value),
        crate::problem::ChangeRefusals, crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn migration_preview(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let catalog = state.engine.catalog.get();
    let Some(entry) = catalog.journeys.get(&id) else { return Err(Problem::not_found(format!("no journey {id:?}"))) };
    let Some(next) = entry.next.clone() else {
        return Err(Problem::conflict(format!("journey {id:?} has no next version to publish")));
    };
    // The users counted must be the running version's (the report lags a publish a moment).
    let report = report(&state, &id);
    let version = entry.version;
    if report["version"].as_u64() != Some(u64::from(version)) {
        return Err(Problem::unavailable(format!("journey {id:?}'s report is not of version {version} yet")));
    }
    let (current, limits, journey) = (entry.definition.clone(), state.config.limits, id.clone());
    let moves = tokio::task::spawn_blocking(move || {
        let body =
            if body.iter().all(u8::is_ascii_whitespace) { Value::Null } else { crate::problem::parse_json(&body)? };
        // The checks the publish makes (status, limits, the migrate object), and its migration.
        let Change::PublishVersion { migrate: plan, .. } =
            lifecycle_change(&catalog, &journey, "publish", &body, &limits)?
        else {
            return Err(Problem::conflict(format!("journey {journey:?} has no users in flight to migrate")));
        };
        let old = validated(&catalog, &current, &Limits::ceiling())?;
        let new = validated(&catalog, &next, &limits)?;
        let nodes = report["nodes"].as_object().cloned().unwrap_or_default();
        // Users at an exit node have finished: they are not in flight.
        let moves: Vec<Value> = old
            .nodes
            .iter()
            .filter(|(_, kind)| !matches!(kind, Node::Exit))
            .filter_map(|(node, _)| {
                let users = nodes.get(node).and_then(|n| n["current"].as_i64()).filter(|n| *n > 0)?;
                let (placement, to) = match plan.place(&old, node, &new) {
                    Placement::Stay(to) => ("stay", Some(to)),
                    Placement::Move(to) => ("move", Some(to)),
                    Placement::Exit => ("exit", None),
                };
                Some(json!({"from": node, "users": users, "placement": placement, "to": to}))
            })
            .collect();
        Ok::<_, Problem>(moves)
    })
    .await
    .map_err(|e| Problem::unavailable(format!("the request could not be handled: {e}")))??;
    Ok(Json(json!({"journey": id, "from_version": version, "to_version": version + 1, "moves": moves})))
}
