//! Segment-compatible HTTP ingest: `POST /v1/track`, `/v1/identify`, `/v1/page`,
//! `/v1/screen` and `/v1/batch` take the bodies of Segment's HTTP tracking API. Each event is
//! completed (its `type` from the endpoint, a receive-time `timestamp` and a generated
//! `messageId` when missing), checked with the same decoder the pipeline uses, and appended
//! to its user's partition of the durable ingest log; the answer comes after the log is on
//! disk. A bad event in a batch is reported by index and the others are accepted.

use crate::auth;
use crate::problem::{parse_json, Problem};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use journeyflow_types::decode_line;
use journeyflow_types::time::now_ms;
use serde::Serialize;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One rejected event of a request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Rejected {
    /// Position in the batch (0 for single calls).
    pub index: usize,
    /// Why.
    pub error: String,
}

/// The answer to an ingest call.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// As Segment answers.
    pub success: bool,
    /// Events appended to the log.
    pub accepted: usize,
    /// Events refused, with reasons.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejected>,
}

static GENERATED: AtomicU64 = AtomicU64::new(0);

/// Completes one event and returns its log line and partition, or why it is refused.
fn complete(mut event: Value, kind: Option<&str>, partitions: usize, now_ms: u64) -> Result<(usize, Vec<u8>), String> {
    let Some(o) = event.as_object_mut() else { return Err("an event must be a JSON object".into()) };
    if let Some(kind) = kind {
        o.insert("type".into(), Value::String(kind.into()));
    }
    if !o.contains_key("timestamp") {
        o.insert("timestamp".into(), Value::from(now_ms));
    }
    if !o.contains_key("messageId") {
        let n = GENERATED.fetch_add(1, Ordering::Relaxed);
        let seed = format!("{now_ms}:{n}:{}", std::process::id());
        o.insert("messageId".into(), Value::String(format!("jf-{}", journeyflow_types::Key::of(&seed))));
    }
    let line = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
    let decoded = decode_line(&line).map_err(|e| e.to_string())?;
    Ok(((decoded.user.0 % partitions as u128) as usize, line))
}

/// Completes, checks and logs events; answers once they are on disk.
async fn accept(state: &AppState, events: Vec<Value>, kind: Option<&'static str>) -> Result<Accepted, Problem> {
    let partitions = state.wal.partitions();
    let now = now_ms();
    let mut parts: Vec<Vec<Vec<u8>>> = vec![Vec::new(); partitions];
    let mut rejected = Vec::new();
    for (index, event) in events.into_iter().enumerate() {
        match complete(event, kind, partitions, now) {
            Ok((part, line)) => parts[part].push(line),
            Err(error) => rejected.push(Rejected { index, error }),
        }
    }
    let accepted: usize = parts.iter().map(Vec::len).sum();
    let wal = Arc::clone(&state.wal);
    tokio::task::spawn_blocking(move || {
        for (part, lines) in parts.iter().enumerate() {
            wal.append(part, lines)?;
        }
        Ok::<_, std::io::Error>(())
    })
    .await
    .map_err(|e| Problem::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()))??;
    metrics::counter!("journeyflow_events_in_total").increment(accepted as u64);
    metrics::counter!("journeyflow_events_refused_total").increment(rejected.len() as u64);
    Ok(Accepted { success: rejected.is_empty(), accepted, rejected })
}

async fn single(state: &AppState, headers: &HeaderMap, body: &[u8], kind: &'static str) -> Result<Response, Problem> {
    let event = parse_json(body)?;
    if let Some(denied) = auth::ingest(state, headers, &event) {
        return Ok(denied);
    }
    let answer = accept(state, vec![event], Some(kind)).await?;
    if let Some(r) = answer.rejected.first() {
        return Err(Problem::bad_request(r.error.clone()));
    }
    Ok(Json(answer).into_response())
}

/// `POST /v1/track`.
#[utoipa::path(post, path = "/v1/track", tag = "ingest", request_body = serde_json::Value,
    responses((status = 200, body = Accepted), (status = 400, body = crate::problem::ProblemDoc),
               (status = 401, body = crate::problem::ProblemDoc), (status = 413)))]
pub async fn track(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    single(&state, &headers, &body, "track").await
}

/// `POST /v1/identify`.
#[utoipa::path(post, path = "/v1/identify", tag = "ingest", request_body = serde_json::Value,
    responses((status = 200, body = Accepted), (status = 400, body = crate::problem::ProblemDoc),
               (status = 401, body = crate::problem::ProblemDoc), (status = 413)))]
pub async fn identify(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    single(&state, &headers, &body, "identify").await
}

/// `POST /v1/page`.
#[utoipa::path(post, path = "/v1/page", tag = "ingest", request_body = serde_json::Value,
    responses((status = 200, body = Accepted), (status = 400, body = crate::problem::ProblemDoc),
               (status = 401, body = crate::problem::ProblemDoc), (status = 413)))]
pub async fn page(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    single(&state, &headers, &body, "page").await
}

/// `POST /v1/screen`.
#[utoipa::path(post, path = "/v1/screen", tag = "ingest", request_body = serde_json::Value,
    responses((status = 200, body = Accepted), (status = 400, body = crate::problem::ProblemDoc),
               (status = 401, body = crate::problem::ProblemDoc), (status = 413)))]
pub async fn screen(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    single(&state, &headers, &body, "screen").await
}

/// `POST /v1/batch`: `{"batch": [event, ...]}`, each event with its `type`; fields of the
/// envelope other than `batch` (such as `context` or `writeKey`) are ignored.
#[utoipa::path(post, path = "/v1/batch", tag = "ingest", request_body = serde_json::Value,
    responses((status = 200, body = Accepted), (status = 400, body = crate::problem::ProblemDoc),
               (status = 401, body = crate::problem::ProblemDoc), (status = 413)))]
pub async fn batch(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    let mut body = parse_json(&body)?;
    if let Some(denied) = auth::ingest(&state, &headers, &body) {
        return Ok(denied);
    }
    let Some(Value::Array(events)) = body.get_mut("batch").map(Value::take) else {
        return Err(Problem::bad_request("expected an object with an array \"batch\""));
    };
    Ok(Json(accept(&state, events, None).await?).into_response())
}
