//! `/metrics` (Prometheus text) and `/readyz`. Counters are kept by the `metrics` crate
//! (ingest counts as it appends); gauges are read from the workers' progress when scraped:
//! events processed, rejected, late (clamped to the watermark), duplicates, of suppressed
//! users (dropped), the watermark and its lag behind the wall clock, each
//! source's lag (bytes of each ingest log partition not read yet), the records the
//! arrangements hold and those waiting to be arranged, each segment's size, and each
//! journey's counts.

use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::atomic::Ordering;

/// Installs the process-wide Prometheus recorder and returns the handle that renders it.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    PrometheusBuilder::new().install_recorder().map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let Some(handle) = &state.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are not enabled").into_response();
    };
    let progress = &state.engine.progress;
    metrics::gauge!("journeyflow_events_processed").set(progress.events_processed.load(Ordering::Relaxed) as f64);
    metrics::gauge!("journeyflow_events_rejected").set(progress.rejected.load(Ordering::Relaxed) as f64);
    metrics::gauge!("journeyflow_events_late").set(progress.late.load(Ordering::Relaxed) as f64);
    metrics::gauge!("journeyflow_events_duplicate").set(progress.duplicates.load(Ordering::Relaxed) as f64);
    metrics::gauge!("journeyflow_events_suppressed").set(progress.suppressed.load(Ordering::Relaxed) as f64);
    let watermark = state.engine.watermark();
    metrics::gauge!("journeyflow_watermark_ms").set(watermark as f64);
    let lag = journeyflow_types::time::now_ms().saturating_sub(watermark);
    metrics::gauge!("journeyflow_watermark_lag_seconds").set(lag as f64 / 1000.0);
    for (part, lag) in progress.log_lags(&state.wal).into_iter().enumerate() {
        metrics::gauge!("journeyflow_source_lag_bytes", "source" => "http", "partition" => part.to_string())
            .set(lag as f64);
    }
    metrics::gauge!("journeyflow_arranged_records").set(progress.arranged_records.load(Ordering::Relaxed) as f64);
    metrics::gauge!("journeyflow_batched_records").set(progress.batched_records.load(Ordering::Relaxed) as f64);
    metrics::gauge!("journeyflow_dead_letters").set(progress.dead_letters.load(Ordering::Relaxed) as f64);
    let user_ids = state.engine.names.read().map_or_else(|e| e.into_inner().len(), |n| n.len());
    metrics::gauge!("journeyflow_user_ids").set(user_ids as f64);
    if let Ok(lags) = progress.kafka_lag.lock() {
        for ((topic, partition), lag) in lags.iter() {
            let labels =
                [("source", "kafka".to_string()), ("topic", topic.clone()), ("partition", partition.to_string())];
            metrics::gauge!("journeyflow_source_lag_messages", &labels).set(*lag as f64);
        }
    }
    if let Ok(sizes) = progress.segment_sizes.lock() {
        for (id, size) in sizes.iter() {
            metrics::gauge!("journeyflow_segment_members", "segment" => id.clone()).set(*size as f64);
        }
    }
    if let Ok(reports) = state.engine.journey_reports.lock() {
        for (id, report) in reports.iter() {
            for counter in ["entered", "in_progress", "converted", "exited", "completed", "canceled"] {
                let value = report[counter].as_f64().unwrap_or(0.0);
                metrics::gauge!(format!("journeyflow_journey_{counter}"), "journey" => id.clone()).set(value);
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
}

/// `GET /readyz`: ready once every worker has gone round its loop.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    if state.engine.watermark() > 0 {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}
