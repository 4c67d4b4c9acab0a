//! The segment endpoints: install, list, read, remove, and members as of a stated time.

use crate::handle::{Answer, Request};
use crate::problem::{applied, parse_json, Problem};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use journeyflow_types::{validate_segments, SegmentDefinition, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// A segment as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SegmentView {
    /// Id.
    pub id: String,
    /// The definition.
    pub definition: Value,
}

fn view(def: &SegmentDefinition) -> SegmentView {
    SegmentView { id: def.id.clone(), definition: def.to_json() }
}

/// `POST /v1/segments`: validates and installs one definition; its members are computed over
/// the retained history at once.
#[utoipa::path(post, path = "/v1/segments", tag = "segments", request_body = serde_json::Value,
    responses((status = 201, body = serde_json::Value), (status = 400, body = crate::problem::ProblemDoc), (status = 409, body = crate::problem::ProblemDoc),
              (status = 422, body = crate::problem::ProblemDoc)))]
pub async fn create(State(state): State<AppState>, body: Bytes) -> Result<(StatusCode, Json<Value>), Problem> {
    let body = parse_json(&body)?;
    let known: BTreeSet<String> = state.engine.segments.lock().expect("lock").keys().cloned().collect();
    let def = validate_segments(&Value::Array(vec![body]), &known)
        .map_err(|e| Problem::invalid(e.0.into_iter().map(relative).collect()))?
        .pop()
        .expect("one definition");
    if known.contains(&def.id) {
        return Err(Problem::conflict(format!("segment {:?} exists; replace it with PUT", def.id)));
    }
    let at = applied(&state.engine.call(Request::InstallSegment { definition: def.to_json() }, state.timeout).await?)?;
    {
        let mut segments = state.engine.segments.lock().expect("lock");
        segments.insert(def.id.clone(), def.clone());
        state.store.save(&segments)?;
    }
    Ok((StatusCode::CREATED, Json(json!({"id": def.id, "installed_at": at, "definition": def.to_json()}))))
}

/// `PUT /v1/segments/{id}`: replaces the definition; the membership is recomputed from the
/// retained history and only the resulting differences are emitted as changes. Refused (409)
/// while another segment uses it.
#[utoipa::path(put, path = "/v1/segments/{id}", tag = "segments", request_body = serde_json::Value,
    params(("id" = String, Path, description = "segment id")),
    responses((status = 200, body = serde_json::Value), (status = 404, body = crate::problem::ProblemDoc), (status = 409, body = crate::problem::ProblemDoc),
              (status = 422, body = crate::problem::ProblemDoc)))]
pub async fn replace(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let mut body = parse_json(&body)?;
    match body.get("id") {
        None => {
            if let Some(o) = body.as_object_mut() {
                o.insert("id".into(), Value::String(id.clone()));
            }
        }
        Some(Value::String(given)) if *given == id => {}
        Some(other) => return Err(Problem::bad_request(format!("the body's id {other} is not the path's {id:?}"))),
    }
    let known: BTreeSet<String> = {
        let segments = state.engine.segments.lock().expect("lock");
        if !segments.contains_key(&id) {
            return Err(Problem::not_found(format!("no segment {id:?}")));
        }
        let users: Vec<&str> = segments.values().filter(|d| uses(d, &id)).map(|d| d.id.as_str()).collect();
        if !users.is_empty() {
            return Err(Problem::conflict(format!("segment {id:?} is used by {users:?}; replace those first")));
        }
        segments.keys().filter(|k| **k != id).cloned().collect()
    };
    let def = validate_segments(&Value::Array(vec![body]), &known)
        .map_err(|e| Problem::invalid(e.0.into_iter().map(relative).collect()))?
        .pop()
        .expect("one definition");
    let at = applied(&state.engine.call(Request::ReplaceSegment { definition: def.to_json() }, state.timeout).await?)?;
    let mut segments = state.engine.segments.lock().expect("lock");
    segments.insert(def.id.clone(), def.clone());
    state.store.save(&segments)?;
    Ok(Json(json!({"id": def.id, "installed_at": at, "definition": def.to_json()})))
}

/// Whether `def` refers to segment `id`.
fn uses(def: &SegmentDefinition, id: &str) -> bool {
    let mut refs = Vec::new();
    def.condition.references(&mut refs);
    refs.iter().any(|r| r == id)
}

/// Paths of a one-element array validation made relative to the single definition.
fn relative(mut e: ValidationError) -> ValidationError {
    e.path = e.path.replacen("$[0]", "$", 1);
    e
}

/// `GET /v1/segments`.
#[utoipa::path(get, path = "/v1/segments", tag = "segments", responses((status = 200, body = Vec<SegmentView>)))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<SegmentView>> {
    Json(state.engine.segments.lock().expect("lock").values().map(view).collect())
}

/// `GET /v1/segments/{id}`.
#[utoipa::path(get, path = "/v1/segments/{id}", tag = "segments", params(("id" = String, Path, description = "segment id")),
    responses((status = 200, body = SegmentView), (status = 404, body = crate::problem::ProblemDoc)))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<SegmentView>, Problem> {
    let segments = state.engine.segments.lock().expect("lock");
    segments.get(&id).map(|d| Json(view(d))).ok_or_else(|| Problem::not_found(format!("no segment {id:?}")))
}

/// `DELETE /v1/segments/{id}`: refused while another segment refers to it.
#[utoipa::path(delete, path = "/v1/segments/{id}", tag = "segments", params(("id" = String, Path, description = "segment id")),
    responses((status = 204), (status = 404, body = crate::problem::ProblemDoc), (status = 409, body = crate::problem::ProblemDoc)))]
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, Problem> {
    {
        let segments = state.engine.segments.lock().expect("lock");
        if !segments.contains_key(&id) {
            return Err(Problem::not_found(format!("no segment {id:?}")));
        }
        let users: Vec<&str> = segments.values().filter(|d| uses(d, &id)).map(|d| d.id.as_str()).collect();
        if !users.is_empty() {
            return Err(Problem::conflict(format!("segment {id:?} is used by {users:?}")));
        }
    }
    applied(&state.engine.call(Request::RemoveSegment { id: id.clone() }, state.timeout).await?)?;
    let mut segments = state.engine.segments.lock().expect("lock");
    segments.remove(&id);
    state.store.save(&segments)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Paging of member listings.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Page {
    /// The last user id of the previous page.
    pub cursor: Option<String>,
    /// Page size (default 1000, at most 10000).
    pub limit: Option<usize>,
}

/// One member.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Member {
    /// The user id.
    pub user_id: String,
}

/// A page of members.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Members {
    /// The event time the answer is complete up to (inclusive).
    pub as_of: u64,
    /// Members, by user id.
    pub members: Vec<Member>,
    /// The cursor of the next page, if any.
    pub next_cursor: Option<String>,
}

/// `GET /v1/segments/{id}/members?cursor=&limit=`. A first page is answered as of the time
/// the request is sequenced; its cursor (`<as_of>.<last user id>`) pages through that same
/// answer while it is cached, so every page of a listing shows one moment.
#[utoipa::path(get, path = "/v1/segments/{id}/members", tag = "segments",
    params(("id" = String, Path, description = "segment id"), Page),
    responses((status = 200, body = Members), (status = 400, body = crate::problem::ProblemDoc), (status = 404, body = crate::problem::ProblemDoc)))]
pub async fn members(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Members>, Problem> {
    if !state.engine.segments.lock().expect("lock").contains_key(&id) {
        return Err(Problem::not_found(format!("no segment {id:?}")));
    }
    let limit = page.limit.unwrap_or(1000);
    if limit == 0 || limit > 10_000 {
        return Err(Problem::bad_request("limit must be between 1 and 10000"));
    }
    let cursor = match &page.cursor {
        None => None,
        Some(c) => {
            let parsed = c.split_once('.').and_then(|(t, u)| Some((t.parse::<u64>().ok()?, u.to_string())));
            Some(parsed.ok_or_else(|| Problem::bad_request(format!("malformed cursor {c:?}")))?)
        }
    };
    let cached = cursor.as_ref().and_then(|(t, _)| state.answers.get(&id, *t));
    let (as_of, ids) = match cached {
        Some(hit) => hit,
        None => {
            let (as_of, ids) = ask_members(&state, &id).await?;
            let ids = std::sync::Arc::new(ids);
            state.answers.put(&id, as_of, ids.clone());
            (as_of, ids)
        }
    };
    let start = cursor.as_ref().map_or(0, |(_, last)| ids.partition_point(|u| u <= last));
    let end = (start + limit).min(ids.len());
    let next_cursor = (end < ids.len()).then(|| format!("{as_of}.{}", ids[end - 1]));
    Ok(Json(Members {
        as_of,
        members: ids[start..end].iter().map(|u| Member { user_id: u.clone() }).collect(),
        next_cursor,
    }))
}

/// Every worker's share of a segment's members, as of one agreed time, sorted by user id.
async fn ask_members(state: &AppState, id: &str) -> Result<(u64, Vec<String>), Problem> {
    let answers = state.engine.call(Request::Members { id: id.to_string() }, state.timeout).await?;
    let mut as_of = 0;
    let mut ids: Vec<String> = Vec::new();
    let names = state.engine.names.read().expect("lock");
    for answer in answers {
        match answer {
            Answer::Members(t, keys) => {
                as_of = t;
                ids.extend(keys.iter().map(|k| names.get(k).map_or_else(|| k.to_string(), |n| n.to_string())));
            }
            Answer::Failed(why) => return Err(Problem::not_found(why)),
            other => return Err(Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("unexpected answer {other:?}"))),
        }
    }
    ids.sort();
    Ok((as_of, ids))
}
