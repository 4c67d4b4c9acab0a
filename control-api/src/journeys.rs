//! The journey endpoints: create drafts, read them, write new versions, publish (a new
//! dataflow over the retained history, ongoing from then; for a new version of a running
//! journey, taking its users over), pause, resume, end, and per-node and per-journey reports.

use crate::handle::{JourneyEntry, Request};
use crate::problem::{applied, parse_json, Problem};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use journeyflow_types::{validate_journey, validate_migration, JourneyDefinition, Migration};
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

/// Validates a definition against the installed segments (422 with every error).
fn validated(state: &AppState, body: &Value) -> Result<JourneyDefinition, Problem> {
    let known: BTreeSet<String> = state.engine.segments.lock().expect("lock").keys().cloned().collect();
    validate_journey(body, &known).map_err(|e| Problem::invalid(e.0))
}

fn save(state: &AppState) -> Result<(), Problem> {
    let segments = state.engine.segments.lock().expect("lock");
    let journeys = state.engine.journeys.lock().expect("lock");
    Ok(state.store.save_all(&segments, &journeys)?)
}

/// `POST /v1/journeys`: validates a journey and keeps it as a draft.
#[utoipa::path(post, path = "/v1/journeys", tag = "journeys", request_body = serde_json::Value,
    responses((status = 201, body = serde_json::Value), (status = 400, body = crate::problem::ProblemDoc),
              (status = 409, body = crate::problem::ProblemDoc), (status = 422, body = crate::problem::ProblemDoc)))]
pub async fn create(State(state): State<AppState>, body: Bytes) -> Result<(StatusCode, Json<Value>), Problem> {
    let body = parse_json(&body)?;
    let def = validated(&state, &body)?;
    let entry = JourneyEntry { definition: body, version: 1, status: "draft".into(), published_at: None, next: None };
    {
        let mut journeys = state.engine.journeys.lock().expect("lock");
        if journeys.contains_key(&def.id) {
            return Err(Problem::conflict(format!("journey {:?} exists", def.id)));
        }
        journeys.insert(def.id.clone(), entry.clone());
    }
    save(&state)?;
    Ok((StatusCode::CREATED, Json(view(&def.id, &entry))))
}

/// `GET /v1/journeys`.
#[utoipa::path(get, path = "/v1/journeys", tag = "journeys", responses((status = 200, body = serde_json::Value)))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<Value>> {
    Json(state.engine.journeys.lock().expect("lock").iter().map(|(id, e)| view(id, e)).collect())
}

/// `GET /v1/journeys/{id}`.
#[utoipa::path(get, path = "/v1/journeys/{id}", tag = "journeys", params(("id" = String, Path, description = "journey id")),
    responses((status = 200, body = serde_json::Value), (status = 404, body = crate::problem::ProblemDoc)))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    let journeys = state.engine.journeys.lock().expect("lock");
    journeys.get(&id).map(|e| Json(view(&id, e))).ok_or_else(|| Problem::not_found(format!("no journey {id:?}")))
}

/// `PUT /v1/journeys/{id}`: a new definition. A draft's definition is replaced; for a running
/// (ongoing or paused) journey it becomes the next version, published by `publish`; an ended
/// journey takes no new version (409).
#[utoipa::path(put, path = "/v1/journeys/{id}", tag = "journeys", params(("id" = String, Path, description = "journey id")),
    request_body = serde_json::Value,
    responses((status = 200, body = serde_json::Value), (status = 400, body = crate::problem::ProblemDoc),
              (status = 404, body = crate::problem::ProblemDoc), (status = 409, body = crate::problem::ProblemDoc),
              (status = 422, body = crate::problem::ProblemDoc)))]
pub async fn replace(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    if !state.engine.journeys.lock().expect("lock").contains_key(&id) {
        return Err(Problem::not_found(format!("no journey {id:?}")));
    }
    let body = parse_json(&body)?;
    let def = validated(&state, &body)?;
    if def.id != id {
        return Err(Problem::invalid(vec![journeyflow_types::ValidationError {
            path: "$.id".into(),
            message: format!("the definition's id {:?} is not the journey's {id:?}", def.id),
        }]));
    }
    let updated = {
        let mut journeys = state.engine.journeys.lock().expect("lock");
        let Some(entry) = journeys.get_mut(&id) else { return Err(Problem::not_found(format!("no journey {id:?}"))) };
        match entry.status.as_str() {
            "draft" => entry.definition = body,
            "ended" => return Err(Problem::conflict(format!("journey {id:?} has ended: it takes no new version"))),
            _ => entry.next = Some(body),
        }
        entry.clone()
    };
    save(&state)?;
    Ok(Json(view(&id, &updated)))
}

/// The `migrate` object of a publish request body (empty body: every default).
fn migration(body: &[u8], current: &Value, next: &Value, state: &AppState) -> Result<Migration, Problem> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { json!({}) } else { parse_json(body)? };
    let Some(obj) = body.as_object() else {
        return Err(Problem::invalid(vec![journeyflow_types::ValidationError {
            path: "$".into(),
            message: "expected an object such as {\"migrate\": {\"node_map\": {}, \"default\": \"exit\"}}".into(),
        }]));
    };
    let mut errors: Vec<journeyflow_types::ValidationError> = obj
        .keys()
        .filter(|k| *k != "migrate")
        .map(|k| journeyflow_types::ValidationError {
            path: format!("$.{k}"),
            message: "unknown field (expected migrate)".into(),
        })
        .collect();
    let (old, new) = (validated(state, current)?, validated(state, next)?);
    match validate_migration(obj.get("migrate"), &old, &new) {
        Ok(m) if errors.is_empty() => Ok(m),
        Ok(_) => Err(Problem::invalid(errors)),
        Err(e) => {
            errors.extend(e.0);
            Err(Problem::invalid(errors))
        }
    }
}

/// `POST /v1/journeys/{id}/{action}` for `publish`, `pause`, `resume`, `end`: 409 when the
/// journey's status does not allow it. Publishing a running journey publishes its next version
/// (written with `PUT`); the body may say where its users go:
/// `{"migrate": {"node_map": {"old": "new"}, "default": "exit"}}`.
#[utoipa::path(post, path = "/v1/journeys/{id}/{action}", tag = "journeys",
    params(("id" = String, Path, description = "journey id"), ("action" = String, Path, description = "publish, pause, resume or end")),
    request_body(content = serde_json::Value, description = "optional, for publishing a next version: {\"migrate\": {\"node_map\": {\"old\": \"new\"}, \"default\": \"exit\"}}"),
    responses((status = 200, body = serde_json::Value), (status = 404, body = crate::problem::ProblemDoc),
              (status = 409, body = crate::problem::ProblemDoc),
              (status = 400, body = crate::problem::ProblemDoc), (status = 422, body = crate::problem::ProblemDoc)))]
pub async fn lifecycle(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let entry = state.engine.journeys.lock().expect("lock").get(&id).cloned();
    let Some(entry) = entry else { return Err(Problem::not_found(format!("no journey {id:?}"))) };
    let upgrade = entry.status != "draft" && action == "publish";
    let next = match (entry.status.as_str(), action.as_str()) {
        ("draft", "publish") => "ongoing",
        ("ongoing" | "paused", "publish") if entry.next.is_some() => entry.status.as_str(),
        ("ongoing" | "paused", "publish") => {
            return Err(Problem::conflict(format!(
                "journey {id:?} is {} at version {} and has no next version: write one with PUT first",
                entry.status, entry.version
            )))
        }
        ("ongoing", "pause") => "paused",
        ("paused", "resume") => "ongoing",
        ("ongoing" | "paused", "end") => "ended",
        (_, "publish" | "pause" | "resume" | "end") => {
            return Err(Problem::conflict(format!("journey {id:?} is {}: cannot {action} it", entry.status)))
        }
        _ => return Err(Problem::not_found(format!("no action {action:?} (publish, pause, resume, end)"))),
    };
    let request = if upgrade {
        let definition = entry.next.clone().expect("checked above");
        let migrate = migration(&body, &entry.definition, &definition, &state)?;
        Request::PublishVersion { definition, version: entry.version + 1, migrate }
    } else if action == "publish" {
        Request::InstallJourney { definition: entry.definition.clone(), version: entry.version }
    } else {
        Request::JourneyCommand { id: id.clone(), command: action.clone() }
    };
    let at = applied(&state.engine.call(request, state.timeout).await?)?;
    let updated = {
        let mut journeys = state.engine.journeys.lock().expect("lock");
        let e = journeys.get_mut(&id).expect("journeys are not removed");
        e.status = next.into();
        if action == "publish" {
            e.published_at = Some(at);
        }
        if upgrade {
            e.definition = e.next.take().expect("checked above");
            e.version += 1;
        }
        e.clone()
    };
    save(&state)?;
    Ok(Json(json!({"id": id, "status": updated.status, "version": updated.version, "at": at})))
}

/// `GET /v1/journeys/{id}/stats`: per journey entered, in progress, converted, exited,
/// completed, canceled; per node entered, current, exited, actions by status.
#[utoipa::path(get, path = "/v1/journeys/{id}/stats", tag = "journeys", params(("id" = String, Path, description = "journey id")),
    responses((status = 200, body = serde_json::Value), (status = 404, body = crate::problem::ProblemDoc)))]
pub async fn stats(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    if !state.engine.journeys.lock().expect("lock").contains_key(&id) {
        return Err(Problem::not_found(format!("no journey {id:?}")));
    }
    let report = state.engine.journey_reports.lock().expect("lock").get(&id).cloned();
    Ok(Json(report.unwrap_or_else(|| {
        json!({"journey": id, "entered": 0, "in_progress": 0, "converted": 0,
        "exited": 0, "completed": 0, "canceled": 0, "nodes": {}})
    })))
}

/// `GET /v1/journeys/{id}/users/{user_id}`: where a user stands (`waiting`, `running` = an
/// action held by quiet hours, `ended`, `canceled`), since when, and their latest transitions.
#[utoipa::path(get, path = "/v1/journeys/{id}/users/{user_id}", tag = "journeys",
    params(("id" = String, Path, description = "journey id"), ("user_id" = String, Path, description = "user id")),
    responses((status = 200, body = serde_json::Value), (status = 404, body = crate::problem::ProblemDoc)))]
pub async fn user(
    State(state): State<AppState>,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let definition = match state.engine.journeys.lock().expect("lock").get(&id) {
        Some(entry) => entry.definition.clone(),
        None => return Err(Problem::not_found(format!("no journey {id:?}"))),
    };
    let history: Vec<Value> = {
        let users = state.engine.journey_users.lock().expect("lock");
        let key = (id.clone(), std::sync::Arc::from(user_id.as_str()));
        users.get(&key).map(|h| h.iter().cloned().collect()).unwrap_or_default()
    };
    let Some(last) = history.last() else {
        return Err(Problem::not_found(format!("user {user_id:?} has not entered journey {id:?}")));
    };
    let (status, outcome, node) = match last["to"].as_str() {
        Some(to) => {
            let kind = definition["nodes"][to].as_object().and_then(|n| n.keys().find(|k| *k != "next").cloned());
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
    };
    Ok(Json(json!({"journey": id, "user_id": user_id, "status": status, "outcome": outcome, "node": node,
                   "since": last["time"], "history": history})))
}
