//! The HTTP surface of `journeyflow run`: Segment-compatible ingest into the durable log and
//! the control API under `/v1`, over a handle to the timely workers. Handlers never block a
//! worker or the async runtime: they validate off the runtime, append, or send a request and
//! await its answers. Every route but `/healthz` runs under a global concurrency limit (more
//! requests get 503 at once) and a request timeout (408); every error is a problem document.

pub mod answers;
pub mod auth;
pub mod catalog;
pub mod changes;
pub mod config;
pub mod handle;
pub mod ingest;
pub mod journeys;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod segments;
pub mod users;

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
}

/// The ingest routes every process serves.
fn ingest_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/track", post(ingest::track))
        .route("/v1/identify", post(ingest::identify))
        .route("/v1/page", post(ingest::page))
        .route("/v1/screen", post(ingest::screen))
        .route("/v1/batch", post(ingest::batch))
        .route("/readyz", get(metrics::ready))
        .route("/v1/openapi.json", get(openapi::document))
}

/// `/metrics`, behind the API token when the config says so.
fn metrics_route(state: &AppState) -> Router<AppState> {
    let route = Router::new().route("/metrics", get(metrics::render));
    match state.config.metrics_need_token {
        true => route.layer(axum::middleware::from_fn_with_state(state.clone(), auth::control)),
        false => route,
    }
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

/// The limits every route but `/healthz` runs under, the body size limit (413), and state.
fn finish(routes: Router<AppState>, state: AppState) -> Router {
    let config = state.config.clone();
    let limits = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(overloaded))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(config.concurrency.max(1)))
        .timeout(config.request_timeout);
    routes
        .layer(axum::extract::DefaultBodyLimit::max(config.max_body_bytes))
        .layer(limits)
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::middleware::map_response(problem::as_problem))
        .with_state(state)
}

/// The routes of a process that sequences changes (a single process, or a cluster's process 0).
pub fn router(state: AppState) -> Router {
    let control = Router::new()
        .route("/v1/segments", post(segments::create).get(segments::list))
        .route("/v1/segments/{id}", get(segments::get).put(segments::replace).delete(segments::delete))
        .route("/v1/segments/{id}/members", get(segments::members))
        .route("/v1/users/{user_id}/segments", get(users::segments))
        .route("/v1/journeys", post(journeys::create).get(journeys::list))
        .route("/v1/journeys/{id}", get(journeys::get).put(journeys::replace))
        .route("/v1/journeys/{id}/stats", get(journeys::stats))
        .route("/v1/journeys/{id}/users/{user_id}", get(journeys::user))
        .route("/v1/journeys/{id}/{action}", post(journeys::lifecycle))
        .route("/v1/requests/{id}", get(changes::outcome))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::control));
    finish(ingest_routes().merge(metrics_route(&state)).merge(control), state)
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
    let routes = ingest_routes()
        .merge(metrics_route(&state))
        .route("/v1/segments", axum::routing::any(elsewhere))
        .route("/v1/segments/{*rest}", axum::routing::any(elsewhere))
        .route("/v1/users/{*rest}", axum::routing::any(elsewhere))
        .route("/v1/journeys", axum::routing::any(elsewhere))
        .route("/v1/journeys/{*rest}", axum::routing::any(elsewhere))
        .route("/v1/requests/{*rest}", axum::routing::any(elsewhere));
    finish(routes, state)
}
