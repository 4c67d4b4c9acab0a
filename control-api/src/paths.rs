//! The path analysis endpoints: install, list, read, replace, remove, and the report as of the
//! time the request is sequenced. Changes go through the catalog ([`crate::analyses`]); the
//! report adds up every worker's counts ([`crate::path_report`]).

use crate::analyses::{self, Kind, Range, View};
use crate::catalog::Change;
use crate::handle::{Answer, Request};
use crate::path_report::report;
use crate::problem::Problem;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use journeyflow_types::paths::{validate_paths, PathsDefinition};
use serde_json::Value;

fn view(def: &PathsDefinition) -> View {
    View { id: def.id.clone(), definition: def.source.clone() }
}

const DAY: u64 = 86_400_000;

/// How path analyses are checked and changed.
const PATHS: Kind = Kind {
    name: "path analysis",
    validate: |v, limits| validate_paths(v, limits).map(|_| ()),
    exists: |catalog, id| catalog.paths.contains_key(id),
    install: |definition| Change::InstallPaths { definition },
    replace: |definition| Change::ReplacePaths { definition },
    remove: |id| Change::RemovePaths { id },
    span: 7 * DAY,
    bucketed: false,
};

/// `POST /v1/paths`: validates and installs one path analysis; it is computed over the
/// retained history at once and kept current.
#[utoipa::path(post, path = "/v1/paths", tag = "paths",
    request_body(content = serde_json::Value, description = "a path analysis", example = json!({"id": "after_cart", "start": {"event": "Cart Viewed"}, "events": ["Product Viewed", "Cart Viewed", "Order Completed"], "depth": 3, "collapse": true, "top": 10})),
    responses((status = 201, body = serde_json::Value), crate::problem::ChangeAnswers, crate::problem::ChangeRefusals, crate::problem::ControlAnswers))]
pub async fn create(State(state): State<AppState>, body: Bytes) -> Result<Response, Problem> {
    analyses::create(&state, PATHS, body).await
}

/// `PUT /v1/paths/{id}`: replaces the definition; the paths are computed afresh over the
/// retained history.
#[utoipa::path(put, path = "/v1/paths/{id}", tag = "paths",
    request_body(content = serde_json::Value, description = "the analysis's new definition (its id may be left out)"),
    params(("id" = String, Path, description = "path analysis id")),
    responses((status = 200, body = serde_json::Value), crate::problem::ChangeAnswers, crate::problem::ChangeRefusals, crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn replace(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> Result<Response, Problem> {
    analyses::replace(&state, PATHS, id, body).await
}

/// `GET /v1/paths`.
#[utoipa::path(get, path = "/v1/paths", tag = "paths",
    responses((status = 200, body = Vec<View>), crate::problem::ControlAnswers))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<View>> {
    Json(state.engine.catalog.get().paths.values().map(view).collect())
}

/// `GET /v1/paths/{id}`.
#[utoipa::path(get, path = "/v1/paths/{id}", tag = "paths", params(("id" = String, Path, description = "path analysis id")),
    responses((status = 200, body = View), crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<View>, Problem> {
    let catalog = state.engine.catalog.get();
    catalog.paths.get(&id).map(|d| Json(view(d))).ok_or_else(|| Problem::not_found(format!("no path analysis {id:?}")))
}

/// `DELETE /v1/paths/{id}`: the analysis's dataflow goes.
#[utoipa::path(delete, path = "/v1/paths/{id}", tag = "paths", params(("id" = String, Path, description = "path analysis id")),
    responses((status = 204), crate::problem::ChangeAnswers, crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, Problem> {
    analyses::delete(&state, PATHS, id).await
}

/// `GET /v1/paths/{id}/report?from=&to=`: each user's path from their first anchor in
/// `[from, to)` (default: the last 7 days; `step` is not used), the most taken paths with
/// their users, the users of the others, and the Sankey diagram of the top paths (nodes per
/// step and event name, links with their users). Answered as of the time the request is
/// sequenced (`as_of`), from every worker's users; 409 when the analysis was replaced or
/// removed meanwhile, or when a worker would have too many distinct paths.
#[utoipa::path(get, path = "/v1/paths/{id}/report", tag = "paths",
    params(("id" = String, Path, description = "path analysis id"), Range),
    responses((status = 200, body = serde_json::Value), (status = 400, body = crate::problem::ProblemDoc, content_type = "application/problem+json"), (status = 409, body = crate::problem::ProblemDoc, content_type = "application/problem+json"), crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn report_of(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(range): Query<Range>,
) -> Result<Json<Value>, Problem> {
    analyses::report(&state, PATHS, id, range, made).await
}

/// The report of `id` over `query`, as of the time the request is sequenced.
async fn made(state: AppState, id: String, query: crate::buckets::Buckets) -> Result<Value, Problem> {
    let answers = state.engine.call(Request::PathsReport { id: id.clone(), query }, state.config.query_wait).await?;
    let mut as_of = 0;
    let mut shape = None;
    let mut counts = Vec::new();
    for answer in answers {
        match answer {
            Answer::Paths(t, share) => {
                as_of = t;
                let this = (share.top, share.backwards);
                if shape.is_some_and(|s| s != this) {
                    return Err(Problem::conflict(
                        "the path analysis was replaced while the report was made; ask again",
                    ));
                }
                shape = Some(this);
                counts.extend(share.paths);
            }
            Answer::Failed(why) => return Err(Problem::conflict(why)),
            other => return Err(Problem::unavailable(format!("unexpected answer {other:?}"))),
        }
    }
    let (top, backwards) = shape.unwrap_or_default();
    let made = tokio::task::spawn_blocking(move || report(&id, top, backwards, &query, as_of, counts))
        .await
        .map_err(|e| Problem::unavailable(format!("the report could not be made: {e}")))?;
    Ok(made)
}

/// `GET /v1/paths/{id}/report/stream?from=&to=&step=`: the report (as `/report` answers
/// it) whenever it changes, made again at each heartbeat; without `to`, each one's range ends
/// when it is made.
#[utoipa::path(get, path = "/v1/paths/{id}/report/stream", tag = "streams",
    params(("id" = String, Path, description = "path analysis id"), Range),
    responses((status = 200, description = "Server-Sent Events: `report` events (the document `/report` answers) whenever it changes but for `as_of`; `removed` once the path analysis is, and the stream ends", content_type = "text/event-stream", body = String),
        (status = 400, body = crate::problem::ProblemDoc, content_type = "application/problem+json"), crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn report_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(range): Query<Range>,
) -> Result<crate::streams::Events, Problem> {
    analyses::stream(&state, PATHS, id, range, made)
}
