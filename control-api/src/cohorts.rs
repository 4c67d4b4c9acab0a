//! The retention cohort endpoints: install, list, read, replace, remove, and the report as of
//! the time the request is sequenced. Changes go through the catalog ([`crate::analyses`]);
//! the report adds up every worker's cells ([`crate::cohort_report`]).

use crate::analyses::{self, Kind, Range, View};
use crate::catalog::Change;
use crate::cohort_report::report;
use crate::handle::{Answer, Request};
use crate::problem::Problem;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use journeyflow_types::cohort::{validate_cohort, CohortDefinition};
use serde_json::Value;

fn view(def: &CohortDefinition) -> View {
    View { id: def.id.clone(), definition: def.source.clone() }
}

const DAY: u64 = 86_400_000;

/// How cohorts are checked and changed.
const COHORT: Kind = Kind {
    name: "cohort",
    validate: |v, limits| validate_cohort(v, limits).map(|_| ()),
    exists: |catalog, id| catalog.cohorts.contains_key(id),
    install: |definition| Change::InstallCohort { definition },
    replace: |definition| Change::ReplaceCohort { definition },
    remove: |id| Change::RemoveCohort { id },
    span: 90 * DAY,
    bucketed: true,
};

/// `POST /v1/cohorts`: validates and installs one retention cohort; it is computed over the
/// retained history at once and kept current.
#[utoipa::path(post, path = "/v1/cohorts", tag = "cohorts",
    request_body(content = serde_json::Value, description = "a cohort definition", example = json!({"id": "buyers", "first": {"event": "Signed Up"}, "return": {"event": "Order Completed"}, "period": "7d", "periods": 8})),
    responses((status = 201, body = serde_json::Value), crate::problem::ChangeAnswers, crate::problem::ChangeRefusals, crate::problem::ControlAnswers))]
pub async fn create(State(state): State<AppState>, body: Bytes) -> Result<Response, Problem> {
    analyses::create(&state, COHORT, body).await
}

/// `PUT /v1/cohorts/{id}`: replaces the definition; the cohort is computed afresh over the
/// retained history.
#[utoipa::path(put, path = "/v1/cohorts/{id}", tag = "cohorts",
    request_body(content = serde_json::Value, description = "the cohort's new definition (its id may be left out)"),
    params(("id" = String, Path, description = "cohort id")),
    responses((status = 200, body = serde_json::Value), crate::problem::ChangeAnswers, crate::problem::ChangeRefusals, crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn replace(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> Result<Response, Problem> {
    analyses::replace(&state, COHORT, id, body).await
}

/// `GET /v1/cohorts`.
#[utoipa::path(get, path = "/v1/cohorts", tag = "cohorts",
    responses((status = 200, body = Vec<View>), crate::problem::ControlAnswers))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<View>> {
    Json(state.engine.catalog.get().cohorts.values().map(view).collect())
}

/// `GET /v1/cohorts/{id}`.
#[utoipa::path(get, path = "/v1/cohorts/{id}", tag = "cohorts", params(("id" = String, Path, description = "cohort id")),
    responses((status = 200, body = View), crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<View>, Problem> {
    let catalog = state.engine.catalog.get();
    catalog.cohorts.get(&id).map(|d| Json(view(d))).ok_or_else(|| Problem::not_found(format!("no cohort {id:?}")))
}

/// `DELETE /v1/cohorts/{id}`: the cohort's dataflow goes.
#[utoipa::path(delete, path = "/v1/cohorts/{id}", tag = "cohorts", params(("id" = String, Path, description = "cohort id")),
    responses((status = 204), crate::problem::ChangeAnswers, crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, Problem> {
    analyses::delete(&state, COHORT, id).await
}

/// `GET /v1/cohorts/{id}/report?from=&to=&step=`: the users whose first event lies in each
/// bucket of `[from, to)` (a cohort; default: the last 90 days, one cohort), and per period
/// after their first event those who came back in it (`retained`) and in it or later
/// (`unbounded`), with their shares and whether the period has ended for the whole cohort.
/// Answered as of the time the request is sequenced (`as_of`), from every worker's users; 409
/// when the cohort was replaced or removed meanwhile.
#[utoipa::path(get, path = "/v1/cohorts/{id}/report", tag = "cohorts",
    params(("id" = String, Path, description = "cohort id"), Range),
    responses((status = 200, body = serde_json::Value), (status = 400, body = crate::problem::ProblemDoc, content_type = "application/problem+json"), (status = 409, body = crate::problem::ProblemDoc, content_type = "application/problem+json"), crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn report_of(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(range): Query<Range>,
) -> Result<Json<Value>, Problem> {
    analyses::report(&state, COHORT, id, range, made).await
}

/// The report of `id` over `query`, as of the time the request is sequenced.
async fn made(state: AppState, id: String, query: crate::buckets::Buckets) -> Result<Value, Problem> {
    let answers = state.engine.call(Request::CohortReport { id: id.clone(), query }, state.config.query_wait).await?;
    let mut as_of = 0;
    let mut shape = None;
    let mut cells = Vec::new();
    for answer in answers {
        match answer {
            Answer::Cohort(t, share) => {
                as_of = t;
                let this = (share.periods, share.period);
                if shape.is_some_and(|s| s != this) {
                    return Err(Problem::conflict("the cohort was replaced while the report was made; ask again"));
                }
                shape = Some(this);
                cells.extend(share.cells);
            }
            Answer::Failed(why) => return Err(Problem::conflict(why)),
            other => return Err(Problem::unavailable(format!("unexpected answer {other:?}"))),
        }
    }
    let (periods, period) = shape.unwrap_or_default();
    Ok(report(&id, periods, period, &query, as_of, cells))
}

/// `GET /v1/cohorts/{id}/report/stream?from=&to=&step=`: the report (as `/report` answers
/// it) whenever it changes, made again at each heartbeat; without `to`, each one's range ends
/// when it is made.
#[utoipa::path(get, path = "/v1/cohorts/{id}/report/stream", tag = "streams",
    params(("id" = String, Path, description = "cohort id"), Range),
    responses((status = 200, description = "Server-Sent Events: `report` events (the document `/report` answers) whenever it changes but for `as_of`; `removed` once the cohort is, and the stream ends", content_type = "text/event-stream", body = String),
        (status = 400, body = crate::problem::ProblemDoc, content_type = "application/problem+json"), crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn report_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(range): Query<Range>,
) -> Result<crate::streams::Events, Problem> {
    analyses::stream(&state, COHORT, id, range, made)
}
