//! The HTTP surface of `journeyflow run`: Segment-compatible ingest into the durable log and
//! the control API under `/v1`, over a handle to the timely workers. Handlers never block a
//! worker: they validate, append, or send a request and await its answers.

pub mod answers;
pub mod auth;
pub mod handle;
pub mod ingest;
pub mod journeys;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod segments;
pub mod store;
pub mod users;

use axum::routing::{get, post};
use axum::Router;
use handle::EngineHandle;
use journeyflow_connectors::wal::Wal;
use std::sync::Arc;
use std::time::Duration;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The workers.
    pub engine: EngineHandle,
    /// The durable ingest log.
    pub wal: Arc<Wal>,
    /// How long a handler waits for the workers.
    pub timeout: Duration,
    /// Recent member listings, for paging.
    pub answers: Arc<answers::Answers>,
    /// Where definitions persist.
    pub store: Arc<store::Store>,
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
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(metrics::ready))
        .route("/metrics", get(metrics::render))
        .route("/v1/openapi.json", get(openapi::document))
}

/// The routes, with a body size limit in bytes (larger bodies get 413).
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
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
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::control));
    ingest_routes().merge(control).layer(axum::extract::DefaultBodyLimit::max(max_body_bytes)).with_state(state)
}

/// The routes of a process other than a cluster's process 0: ingest (events go to the workers
/// owning their users through the dataflow), health and metrics; a control call gets 421 and
/// is to be sent to process 0, which sequences every change.
pub fn peer_router(state: AppState, max_body_bytes: usize) -> Router {
    let elsewhere = || async {
        problem::Problem::new(
            axum::http::StatusCode::MISDIRECTED_REQUEST,
            "this process of the cluster takes events only: send control calls to process 0",
        )
    };
    ingest_routes()
        .route("/v1/segments", axum::routing::any(elsewhere))
        .route("/v1/segments/{*rest}", axum::routing::any(elsewhere))
        .route("/v1/users/{*rest}", axum::routing::any(elsewhere))
        .route("/v1/journeys", axum::routing::any(elsewhere))
        .route("/v1/journeys/{*rest}", axum::routing::any(elsewhere))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}
