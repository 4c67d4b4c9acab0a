//! The funnel endpoints: install, list, read, replace, remove, and the report as of the time
//! the request is sequenced. Changes go through the catalog ([`crate::changes`]); the report
//! adds up every worker's cells ([`crate::funnel_report`]) off the async runtime.

use crate::analyses::{self, Kind, Range, View};
use crate::catalog::Change;
use crate::funnel_report::report;
use crate::handle::{Answer, Request};
use crate::problem::Problem;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use journeyflow_types::funnel::{validate_funnel, FunnelDefinition};
use serde_json::Value;

fn view(def: &FunnelDefinition) -> View {
    View { id: def.id.clone(), definition: def.source.clone() }
}

const DAY: u64 = 86_400_000;

/// How funnels are checked and changed.
const FUNNEL: Kind = Kind {
    name: "funnel",
    validate: |v, limits| validate_funnel(v, limits).map(|_| ()),
    exists: |catalog, id| catalog.funnels.contains_key(id),
    install: |definition| Change::InstallFunnel { definition },
    replace: |definition| Change::ReplaceFunnel { definition },
    remove: |id| Change::RemoveFunnel { id },
    span: 7 * DAY,
    bucketed: true,
};

/// `POST /v1/funnels`: validates and installs one funnel; it is computed over the retained
/// history at once and kept current.
#[utoipa::path(post, path = "/v1/funnels", tag = "funnels",
    request_body(content = serde_json::Value, description = "a funnel definition", example = json!({"id": "checkout", "steps": [{"event": "Product Viewed"}, {"event": "Product Added"}, {"event": "Order Completed"}], "within": "7d", "order": "strict", "breakdown": {"trait": "country"}})),
    responses((status = 201, body = serde_json::Value), crate::problem::ChangeAnswers, crate::problem::ChangeRefusals, crate::problem::ControlAnswers))]
pub async fn create(State(state): State<AppState>, body: Bytes) -> Result<Response, Problem> {
    analyses::create(&state, FUNNEL, body).await
}

/// `PUT /v1/funnels/{id}`: replaces the definition; the funnel is computed afresh over the
/// retained history.
#[utoipa::path(put, path = "/v1/funnels/{id}", tag = "funnels",
    request_body(content = serde_json::Value, description = "the funnel's new definition (its id may be left out)"),
    params(("id" = String, Path, description = "funnel id")),
    responses((status = 200, body = serde_json::Value), crate::problem::ChangeAnswers, crate::problem::ChangeRefusals, crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn replace(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> Result<Response, Problem> {
    analyses::replace(&state, FUNNEL, id, body).await
}

/// `GET /v1/funnels`.
#[utoipa::path(get, path = "/v1/funnels", tag = "funnels",
    responses((status = 200, body = Vec<View>), crate::problem::ControlAnswers))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<View>> {
    Json(state.engine.catalog.get().funnels.values().map(view).collect())
}

/// `GET /v1/funnels/{id}`.
#[utoipa::path(get, path = "/v1/funnels/{id}", tag = "funnels", params(("id" = String, Path, description = "funnel id")),
    responses((status = 200, body = View), crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<View>, Problem> {
    let catalog = state.engine.catalog.get();
    catalog.funnels.get(&id).map(|d| Json(view(d))).ok_or_else(|| Problem::not_found(format!("no funnel {id:?}")))
}

/// `DELETE /v1/funnels/{id}`: the funnel's dataflow goes.
#[utoipa::path(delete, path = "/v1/funnels/{id}", tag = "funnels", params(("id" = String, Path, description = "funnel id")),
    responses((status = 204), crate::problem::ChangeAnswers, crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, Problem> {
    analyses::delete(&state, FUNNEL, id).await
}

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
    analyses::report(&state, FUNNEL, id, range, made).await
}

/// The report of `id` over `query`, as of the time the request is sequenced.
async fn made(state: AppState, id: String, query: crate::buckets::Buckets) -> Result<Value, Problem> {
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
    Ok(made)
}

/// `GET /v1/funnels/{id}/report/stream?from=&to=&step=`: the report (as `/report` answers
/// it) whenever it changes, made again at each heartbeat; without `to`, each one's range ends
/// when it is made.
#[utoipa::path(get, path = "/v1/funnels/{id}/report/stream", tag = "streams",
    params(("id" = String, Path, description = "funnel id"), Range),
    responses((status = 200, description = "Server-Sent Events: `report` events (the document `/report` answers) whenever it changes but for `as_of`; `removed` once the funnel is, and the stream ends", content_type = "text/event-stream", body = String),
        (status = 400, body = crate::problem::ProblemDoc, content_type = "application/problem+json"), crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn report_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(range): Query<Range>,
) -> Result<crate::streams::Events, Problem> {
    analyses::stream(&state, FUNNEL, id, range, made)
}
