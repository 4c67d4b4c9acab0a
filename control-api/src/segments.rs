//! The segment endpoints: install, list, read, replace, remove, and members as of a stated
//! time. Changes go through the catalog ([`crate::changes`]); reads answer from its latest
//! snapshot.

use crate::catalog::{relative, Catalog, Change};
use crate::changes::{id_from_path, prepare, submit};
use crate::handle::{Answer, Request};
use crate::problem::Problem;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use journeyflow_types::{validate_segments_with, Limits, SegmentDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

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

/// The definition as validation normalises it, with the catalog's segments but `except` as
/// the ones it may refer to.
pub(crate) fn normalised(
    body: Value,
    catalog: &Catalog,
    except: Option<&str>,
    limits: &Limits,
) -> Result<Value, Problem> {
    let known = catalog.segments.keys().filter(|k| Some(k.as_str()) != except).cloned().collect();
    let defs = validate_segments_with(&Value::Array(vec![body]), &known, limits)
        .map_err(|e| Problem::invalid(e.0.into_iter().map(relative).collect()))?;
    defs.into_iter().next().map(|d| d.to_json()).ok_or_else(|| Problem::bad_request("expected one definition"))
}

/// `POST /v1/segments`: validates and installs one definition; its members are computed over
/// the retained history at once.
#[utoipa::path(post, path = "/v1/segments", tag = "segments",
    request_body(content = serde_json::Value, description = "a segment definition", example = json!({"id": "recent_buyer", "condition": {"performed": {"event": "Order Completed", "within": "30d"}}})),
    responses((status = 201, body = serde_json::Value), crate::problem::ChangeAnswers, crate::problem::ChangeRefusals, crate::problem::ControlAnswers))]
pub async fn create(State(state): State<AppState>, body: Bytes) -> Result<Response, Problem> {
    let (change, _) = prepare(&state, body, |body, catalog, limits| {
        let definition = normalised(body, catalog, None, limits)?;
        Ok(Change::InstallSegment { definition })
    })
    .await?;
    let definition = change.definition().cloned().unwrap_or_default();
    Ok(match submit(&state, change).await? {
        Ok(at) => {
            let id = definition["id"].clone();
            (StatusCode::CREATED, Json(json!({"id": id, "installed_at": at, "definition": definition}))).into_response()
        }
        Err(accepted) => accepted,
    })
}

/// `PUT /v1/segments/{id}`: replaces the definition; the membership is recomputed from the
/// retained history and only the resulting differences are emitted as changes. Refused (409)
/// while another segment or a published journey uses it.
#[utoipa::path(put, path = "/v1/segments/{id}", tag = "segments",
    request_body(content = serde_json::Value, description = "the segment's new definition (its id may be left out)", example = json!({"condition": {"performed": {"event": "Order Completed", "within": "7d"}}})),
    params(("id" = String, Path, description = "segment id")),
    responses((status = 200, body = serde_json::Value), crate::problem::ChangeAnswers, crate::problem::ChangeRefusals, crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn replace(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> Result<Response, Problem> {
    let path_id = id.clone();
    let (change, _) = prepare(&state, body, move |mut body, catalog, limits| {
        if !catalog.segments.contains_key(&path_id) {
            return Err(Problem::not_found(format!("no segment {path_id:?}")));
        }
        id_from_path(&mut body, &path_id)?;
        let definition = normalised(body, catalog, Some(&path_id), limits)?;
        Ok(Change::ReplaceSegment { definition })
    })
    .await?;
    let definition = change.definition().cloned().unwrap_or_default();
    Ok(match submit(&state, change).await? {
        Ok(at) => Json(json!({"id": id, "installed_at": at, "definition": definition})).into_response(),
        Err(accepted) => accepted,
    })
}

/// `GET /v1/segments`.
#[utoipa::path(get, path = "/v1/segments", tag = "segments",
    responses((status = 200, body = Vec<SegmentView>), crate::problem::ControlAnswers))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<SegmentView>> {
    Json(state.engine.catalog.get().segments.values().map(view).collect())
}

/// `GET /v1/segments/{id}`.
#[utoipa::path(get, path = "/v1/segments/{id}", tag = "segments", params(("id" = String, Path, description = "segment id")),
    responses((status = 200, body = SegmentView), crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<SegmentView>, Problem> {
    let catalog = state.engine.catalog.get();
    catalog.segments.get(&id).map(|d| Json(view(d))).ok_or_else(|| Problem::not_found(format!("no segment {id:?}")))
}

/// `DELETE /v1/segments/{id}`: refused while another segment or a published journey uses it.
#[utoipa::path(delete, path = "/v1/segments/{id}", tag = "segments", params(("id" = String, Path, description = "segment id")),
    responses((status = 204), crate::problem::ChangeAnswers, crate::problem::ChangeRefusals, crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, Problem> {
    let (change, _) = prepare(&state, Bytes::new(), move |_, _, _| Ok(Change::RemoveSegment { id })).await?;
    Ok(match submit(&state, change).await? {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(accepted) => accepted,
    })
}

/// Paging of member listings.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Page {
    /// The last user id of the previous page.
    pub cursor: Option<String>,
    /// Page size (default 1000, at most 10000).
    pub limit: Option<usize>,
    /// Only members whose user id starts with this (at most 256 bytes).
    pub prefix: Option<String>,
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
    /// How many members the listing has (those with the prefix, if one is given).
    pub total: usize,
}

/// `GET /v1/segments/{id}/members?cursor=&limit=&prefix=`. A first page is answered as of the time
/// the request is sequenced; its cursor (`<as_of>.<last user id>`) pages through that same
/// answer while it is cached, so every page of a listing shows one moment.
#[utoipa::path(get, path = "/v1/segments/{id}/members", tag = "segments",
    params(("id" = String, Path, description = "segment id"), Page),
    responses((status = 200, body = Members), (status = 400, body = crate::problem::ProblemDoc, content_type = "application/problem+json"), crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn members(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Members>, Problem> {
    if !state.engine.catalog.get().segments.contains_key(&id) {
        return Err(Problem::not_found(format!("no segment {id:?}")));
    }
    let limit = page.limit.unwrap_or(1000);
    if limit == 0 || limit > 10_000 {
        return Err(Problem::bad_request("limit must be between 1 and 10000"));
    }
    if page.prefix.as_ref().is_some_and(|p| p.len() > 256) {
        return Err(Problem::bad_request("prefix must be at most 256 bytes"));
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
    // The ids are sorted: those with the prefix are one run of them.
    let prefix = page.prefix.as_deref().unwrap_or_default();
    let first = ids.partition_point(|u| u.as_str() < prefix);
    let past = ids.partition_point(|u| u.as_str() < prefix || u.starts_with(prefix));
    let start = cursor.as_ref().map_or(first, |(_, last)| ids.partition_point(|u| u <= last).max(first));
    let end = (start + limit).min(past).max(start);
    let next_cursor = (end < past).then(|| format!("{as_of}.{}", ids[end - 1]));
    Ok(Json(Members {
        as_of,
        members: ids[start..end].iter().map(|u| Member { user_id: u.clone() }).collect(),
        next_cursor,
        total: past - first,
    }))
}

/// Every worker's share of a segment's members, as of one agreed time, sorted by user id.
async fn ask_members(state: &AppState, id: &str) -> Result<(u64, Vec<String>), Problem> {
    let answers = state.engine.call(Request::Members { id: id.to_string() }, state.config.query_wait).await?;
    let mut as_of = 0;
    let mut keys = Vec::new();
    for answer in answers {
        match answer {
            Answer::Members(t, share) => {
                as_of = t;
                keys.extend(share);
            }
            Answer::Failed(why) => return Err(Problem::not_found(why)),
            other => return Err(Problem::unavailable(format!("unexpected answer {other:?}"))),
        }
    }
    // Named and sorted off the async runtime; the names are read under their lock only as
    // long as the lookups take.
    let names = state.engine.names.clone();
    let ids = tokio::task::spawn_blocking(move || {
        let mut ids: Vec<String> = {
            let names = names.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            keys.iter().map(|k| names.get(k).map_or_else(|| k.to_string(), |n| n.to_string())).collect()
        };
        ids.sort_unstable();
        ids
    })
    .await
    .map_err(|e| Problem::unavailable(format!("listing members failed: {e}")))?;
    Ok((as_of, ids))
}
