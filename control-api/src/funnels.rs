//! The funnel endpoints: install, list, read, replace, remove, and the report as of the time
//! the request is sequenced. Changes go through the catalog ([`crate::changes`]); the report
//! adds up every worker's cells ([`crate::funnel_report`]) off the async runtime.

use crate::catalog::Change;
use crate::changes::{prepare, submit};
use crate::funnel_report::{report, FunnelQuery};
use crate::handle::{Answer, Request};
use crate::problem::Problem;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use journeyflow_types::funnel::{validate_funnel, FunnelDefinition};
use journeyflow_types::Limits;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A funnel as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FunnelView {
    /// Id.
    pub id: String,
    /// The definition as written.
    pub definition: Value,
}

fn view(def: &FunnelDefinition) -> FunnelView {
    FunnelView { id: def.id.clone(), definition: def.source.clone() }
}

/// Validates a definition (422 with every error's JSON path).
fn checked(body: Value, limits: &Limits) -> Result<Value, Problem> {
    validate_funnel(&body, limits).map_err(Problem::invalid)?;
    Ok(body)
}

/// `POST /v1/funnels`: validates and installs one funnel; it is computed over the retained
/// history at once and kept current.
#[utoipa::path(post, path = "/v1/funnels", tag = "funnels",
    request_body(content = serde_json::Value, description = "a funnel definition", example = json!({"id": "checkout", "steps": [{"event": "Product Viewed"}, {"event": "Product Added"}, {"event": "Order Completed"}], "within": "7d", "order": "strict", "breakdown": {"trait": "country"}})),
    responses((status = 201, body = serde_json::Value), crate::problem::ChangeAnswers, crate::problem::ChangeRefusals, crate::problem::ControlAnswers))]
pub async fn create(State(state): State<AppState>, body: Bytes) -> Result<Response, Problem> {
    let (change, _) =
        prepare(&state, body, |body, _, limits| Ok(Change::InstallFunnel { definition: checked(body, limits)? }))
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

/// `PUT /v1/funnels/{id}`: replaces the definition; the funnel is computed afresh over the
/// retained history.
#[utoipa::path(put, path = "/v1/funnels/{id}", tag = "funnels",
    request_body(content = serde_json::Value, description = "the funnel's new definition (its id may be left out)"),
    params(("id" = String, Path, description = "funnel id")),
    responses((status = 200, body = serde_json::Value), crate::problem::ChangeAnswers, crate::problem::ChangeRefusals, crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn replace(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> Result<Response, Problem> {
    let path_id = id.clone();
    let (change, _) = prepare(&state, body, move |mut body, catalog, limits| {
        if !catalog.funnels.contains_key(&path_id) {
            return Err(Problem::not_found(format!("no funnel {path_id:?}")));
        }
        match body.get("id") {
            None => {
                if let Some(o) = body.as_object_mut() {
                    o.insert("id".into(), Value::String(path_id.clone()));
                }
            }
            Some(Value::String(given)) if *given == path_id => {}
            Some(other) => {
                return Err(Problem::bad_request(format!("the body's id {other} is not the path's {path_id:?}")))
            }
        }
        Ok(Change::ReplaceFunnel { definition: checked(body, limits)? })
    })
    .await?;
    let definition = change.definition().cloned().unwrap_or_default();
    Ok(match submit(&state, change).await? {
        Ok(at) => Json(json!({"id": id, "installed_at": at, "definition": definition})).into_response(),
        Err(accepted) => accepted,
    })
}

/// `GET /v1/funnels`.
#[utoipa::path(get, path = "/v1/funnels", tag = "funnels",
    responses((status = 200, body = Vec<FunnelView>), crate::problem::ControlAnswers))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<FunnelView>> {
    Json(state.engine.catalog.get().funnels.values().map(view).collect())
}

/// `GET /v1/funnels/{id}`.
#[utoipa::path(get, path = "/v1/funnels/{id}", tag = "funnels", params(("id" = String, Path, description = "funnel id")),
    responses((status = 200, body = FunnelView), crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<FunnelView>, Problem> {
    let catalog = state.engine.catalog.get();
    catalog.funnels.get(&id).map(|d| Json(view(d))).ok_or_else(|| Problem::not_found(format!("no funnel {id:?}")))
}

/// `DELETE /v1/funnels/{id}`: the funnel's dataflow goes.
#[utoipa::path(delete, path = "/v1/funnels/{id}", tag = "funnels", params(("id" = String, Path, description = "funnel id")),
    responses((status = 204), crate::problem::ChangeAnswers, crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, Problem> {
    let (change, _) = prepare(&state, Bytes::new(), move |_, _, _| Ok(Change::RemoveFunnel { id })).await?;
    Ok(match submit(&state, change).await? {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(accepted) => accepted,
    })
}

/// The range of a report.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Range {
    /// The first entry time counted: epoch ms or RFC 3339 (default: `to` less 7 days).
    pub from: Option<String>,
    /// The end of the range, exclusive (default: now).
    pub to: Option<String>,
    /// The buckets' length (`1h`, `1d`, `7d`, ...); one bucket without it.
    pub step: Option<String>,
}

const DAY: u64 = 86_400_000;

/// `GET /v1/funnels/{id}/report?from=&to=&step=`: per bucket of entry time (the first step's
/// time), the users who reached each step (each user once per bucket, by their first attempt
/// in it), the conversion from the previous and the first step, and the time between steps
/// (nearest-rank p50 and p90); broken down by the funnel's trait when it has one (the value
/// each user holds as of the answer; the 50 largest values, the others added up as `other`).
/// Answered as of the time the request is sequenced (`as_of`), from every worker's users; 409
/// when the funnel was replaced or removed meanwhile, or when the answer would be too large (a
/// breakdown with a value per user over many buckets: a shorter range or a wider step).
#[utoipa::path(get, path = "/v1/funnels/{id}/report", tag = "funnels",
    params(("id" = String, Path, description = "funnel id"), Range),
    responses((status = 200, body = serde_json::Value), (status = 400, body = crate::problem::ProblemDoc, content_type = "application/problem+json"), (status = 409, body = crate::problem::ProblemDoc, content_type = "application/problem+json"), crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn report_of(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(range): Query<Range>,
) -> Result<Json<Value>, Problem> {
    if !state.engine.catalog.get().funnels.contains_key(&id) {
        return Err(Problem::not_found(format!("no funnel {id:?}")));
    }
    let instant = |name: &str, v: &str| {
        journeyflow_types::time::parse_instant_str(v).map_err(|e| Problem::bad_request(format!("{name}: {e}")))
    };
    let to = match &range.to {
        Some(t) => instant("to", t)?,
        None => journeyflow_types::time::now_ms(),
    };
    let from = match &range.from {
        Some(f) => instant("from", f)?,
        None => to.saturating_sub(7 * DAY),
    };
    let step = match &range.step {
        Some(text) => {
            Some(journeyflow_types::Duration::parse(text).map_err(|e| Problem::bad_request(format!("step: {e}")))?.0)
        }
        None => None,
    };
    let query = FunnelQuery::new(from, to, step).map_err(Problem::bad_request)?;
    let answers = state.engine.call(Request::FunnelReport { id: id.clone(), query }, state.config.query_wait).await?;
    let mut as_of = 0;
    let mut shape = None;
    let mut cells = Vec::new();
    for answer in answers {
        match answer {
            Answer::Funnel(t, share) => {
                as_of = t;
                let this = (share.names, share.breakdown);
                if shape.as_ref().is_some_and(|s| *s != this) {
                    return Err(Problem::conflict("the funnel was replaced while the report was made; ask again"));
                }
                shape = Some(this);
                cells.extend(share.cells);
            }
            Answer::Failed(why) => return Err(Problem::conflict(why)),
            other => return Err(Problem::unavailable(format!("unexpected answer {other:?}"))),
        }
    }
    let (names, breakdown) = shape.unwrap_or_default();
    let made = tokio::task::spawn_blocking(move || report(&id, &names, breakdown, &query, as_of, cells))
        .await
        .map_err(|e| Problem::unavailable(format!("the report could not be made: {e}")))?;
    Ok(Json(made))
}
