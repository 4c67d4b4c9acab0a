//! The HTTP surface of `journeyflow run`: Segment-compatible ingest into the durable log and
//! the control API under `/v1`, over a handle to the timely workers. Handlers never block a
//! worker or the async runtime: they validate off the runtime, append, or send a request and
//! await its answers. Ingest and control routes each run under a concurrency limit of their
//! own (more requests get 503 at once) and a request timeout (408); `/healthz` and `/readyz`
//! under none; every error is a problem document.

pub mod analyses;
pub mod answers;
pub mod auth;
pub mod buckets;
pub mod catalog;
pub mod changes;
pub mod cohort_report;
pub mod cohorts;
pub mod config;
pub mod console;
pub mod funnel_report;
pub mod funnels;
pub mod handle;
pub mod history;
pub mod ingest;
pub mod journeys;
pub mod metrics;
pub mod openapi;
pub mod path_report;
pub mod paths;
pub mod privacy;
pub mod problem;
pub mod profile;
pub mod pulse;
pub mod segments;
pub mod serve;
pub mod streams;
pub mod tail;
pub mod tally;
pub mod user_names;
pub mod users;
pub mod validate;

use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use config::HttpConfig;
use handle::EngineHandle;
use journeyflow_connectors::wal::Wal;
use problem::Problem;
use std::sync::Arc;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{BoxError, ServiceBuilder};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The workers.
    pub engine: EngineHandle,
    /// The durable ingest log.
    pub wal: Arc<Wal>,
    /// How requests are taken.
    pub config: Arc<HttpConfig>,
    /// Recent member listings, for paging.
    pub answers: Arc<answers::Answers>,
    /// Accepted credentials.
    pub auth: Arc<auth::Auth>,
    /// Renders `/metrics`.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The live streams' permits.
    pub streams: Arc<streams::Streams>,
}

/// The ingest routes every process serves, behind the write key check on headers.
fn ingest_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/track", post(ingest::track))
        .route("/v1/identify", post(ingest::identify))
        .route("/v1/page", post(ingest::page))
        .route("/v1/screen", post(ingest::screen))
        .route("/v1/batch", post(ingest::batch))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::ingest_header))
}

/// The document and `/metrics` (behind the API token when the config says so).
fn reading_routes(state: &AppState) -> Router<AppState> {
    let metrics = Router::new().route("/metrics", get(metrics::render));
    let metrics = match state.config.metrics_need_token {
        true => metrics.layer(axum::middleware::from_fn_with_state(state.clone(), auth::control)),
        false => metrics,
    };
    Router::new().route("/v1/openapi.json", get(openapi::document)).merge(metrics)
}

/// Turns the limits' errors into answers: 408 past the request timeout, 503 over the
/// concurrency limit.
async fn overloaded(e: BoxError) -> Problem {
    if e.is::<tower::timeout::error::Elapsed>() {
        Problem::new(StatusCode::REQUEST_TIMEOUT, "the request took longer than the server's request timeout")
    } else if e.is::<tower::load_shed::error::Overloaded>() {
        Problem::unavailable("too many requests at once: try again shortly")
    } else {
        Problem::unavailable(format!("the request could not be handled: {e}"))
    }
}

/// `routes` under a concurrency limit of their own (more requests get 503 at once), the
/// request timeout (408) and the body size limit (413).
fn limited(routes: Router<AppState>, config: &HttpConfig, concurrency: usize) -> Router<AppState> {
    let limits = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(overloaded))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(concurrency.max(1)))
        .timeout(config.request_timeout);
    routes.layer(axum::extract::DefaultBodyLimit::max(config.max_body_bytes)).layer(limits)
}

/// Ingest under its limits, `others` under the control limits, `/healthz` and `/readyz`
/// under none; every error a problem document.
fn finish(others: Router<AppState>, state: AppState) -> Router {
    let config = state.config.clone();
    limited(ingest_routes(&state), &config, config.concurrency)
        .merge(limited(others.merge(reading_routes(&state)), &config, config.control_concurrency))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(metrics::ready))
        .route("/", get(console::page))
        .route("/console/{*path}", get(console::file))
        .layer(axum::middleware::map_response(problem::as_problem))
        .with_state(state)
}

/// The routes of a process that sequences changes (a single process, or a cluster's process 0).
pub fn router(state: AppState) -> Router {
    let control = Router::new()
        .route("/v1/segments", post(segments::create).get(segments::list))
        .route("/v1/segments/{id}", get(segments::get).put(segments::replace).delete(segments::delete))
        .route("/v1/segments/{id}/members", get(segments::members))
        .route("/v1/funnels", post(funnels::create).get(funnels::list))
        .route("/v1/funnels/{id}", get(funnels::get).put(funnels::replace).delete(funnels::delete))
        .route("/v1/funnels/{id}/report", get(funnels::report_of))
        .route("/v1/funnels/{id}/report/stream", get(funnels::report_stream))
        .route("/v1/cohorts", post(cohorts::create).get(cohorts::list))
        .route("/v1/cohorts/{id}", get(cohorts::get).put(cohorts::replace).delete(cohorts::delete))
        .route("/v1/cohorts/{id}/report", get(cohorts::report_of))
        .route("/v1/cohorts/{id}/report/stream", get(cohorts::report_stream))
        .route("/v1/paths", post(paths::create).get(paths::list))
        .route("/v1/paths/{id}", get(paths::get).put(paths::replace).delete(paths::delete))
        .route("/v1/paths/{id}/report", get(paths::report_of))
        .route("/v1/paths/{id}/report/stream", get(paths::report_stream))
        .route("/v1/segments/{id}/stream", get(streams::segment))
        .route("/v1/segments/{id}/changes", get(streams::segment_changes))
        .route("/v1/segment-sizes", get(streams::sizes))
        .route("/v1/streams/overview", get(streams::overview))
        .route("/v1/streams/segments", get(streams::segments))
        .route("/v1/streams/dead-letters", get(streams::dead_letters))
        .route("/v1/validate/{kind}", post(validate::check))
        .route("/v1/users/{user_id}", get(profile::export).delete(privacy::delete_user))
        .route("/v1/users/{user_id}/segments", get(users::segments))
        .route("/v1/deletions/{id}", get(privacy::deletion))
        .route("/v1/suppressions", get(privacy::suppressions))
        .route("/v1/suppressions/{user_id}", axum::routing::delete(privacy::unsuppress))
        .route("/v1/journeys", post(journeys::create).get(journeys::list))
        .route("/v1/journeys/{id}", get(journeys::get).put(journeys::replace).delete(journeys::delete))
        .route("/v1/journeys/{id}/stats", get(journeys::stats))
        .route("/v1/journeys/{id}/stream", get(streams::journey))
        .route("/v1/journeys/{id}/transitions", get(streams::journey_transitions))
        .route("/v1/journeys/{id}/migration", post(journeys::migration_preview))
        .route("/v1/journeys/{id}/entries", post(journeys::enter))
        .route("/v1/journeys/{id}/users/{user_id}", get(journeys::user))
        .route("/v1/journeys/{id}/{action}", post(journeys::lifecycle))
        .route("/v1/requests/{id}", get(changes::outcome))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::control));
    finish(control, state)
}

/// The routes of a process other than a cluster's process 0: ingest (events go to the workers
/// owning their users through the dataflow), health and metrics; a control call gets 421 and
/// is to be sent to process 0, which sequences every change.
pub fn peer_router(state: AppState) -> Router {
    let elsewhere = || async {
        Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            "this process of the cluster takes events only: send control calls to process 0",
        )
    };
    let routes = Router::new()
        .route("/v1/segments", axum::routing::any(elsewhere))
        .route("/v1/segments/{*rest}", axum::routing::any(elsewhere))
        .route("/v1/users/{*rest}", axum::routing::any(elsewhere))
        .route("/v1/journeys", axum::routing::any(elsewhere))
        .route("/v1/journeys/{*rest}", axum::routing::any(elsewhere))
        .route("/v1/requests/{*rest}", axum::routing::any(elsewhere))
        .route("/v1/deletions/{*rest}", axum::routing::any(elsewhere))
        .route("/v1/suppressions", axum::routing::any(elsewhere))
        .route("/v1/suppressions/{*rest}", axum::routing::any(elsewhere))
        .route("/v1/segment-sizes", axum::routing::any(elsewhere))
        .route("/v1/validate/{*rest}", axum::routing::any(elsewhere))
        .route("/v1/streams/{*rest}", axum::routing::any(elsewhere));
    finish(routes, state)
}
