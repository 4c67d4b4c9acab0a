//! Segment-compatible HTTP ingest: `POST /v1/track`, `/v1/identify`, `/v1/page`,
//! `/v1/screen` and `/v1/batch` take the bodies of Segment's HTTP tracking API.
//!
//! A call is checked in this order: the write key (from the `Authorization` header before the
//! body is looked at; a `writeKey` in the body is read without building the events), how far
//! the workers are behind the ingest log (429 with `Retry-After` past the configured lag), then,
//! off the async runtime, the events themselves. Each event is completed (its `type` from the
//! endpoint, a generated UUID `messageId` when missing, `receivedAt`), its clock corrected as
//! Segment does (with `sentAt`: `timestamp = receivedAt - (sentAt - timestamp)`, the client's
//! value kept as `originalTimestamp`), stripped of any `writeKey`, and checked with the decoder
//! the pipeline uses; one timed more than the allowed skew after its receipt is refused. The
//! accepted events of one call are appended together to one partition of the durable ingest
//! log, so a call is stored whole or not at all, and the answer comes once they are on disk. A
//! bad event in a batch is reported by index and the others are accepted.

use crate::auth;
use crate::problem::{parse_json, Problem};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use journeyflow_connectors::wal::AppendError;
use journeyflow_types::decode_record;
use journeyflow_types::time::{format_instant, now_ms, parse_instant};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

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

/// What completing an event needs to know.
#[derive(Clone, Copy)]
struct Receipt<'a> {
    /// The endpoint's type, for single calls.
    kind: Option<&'a str>,
    /// When the call arrived (epoch ms).
    received: u64,
    /// The batch's `sentAt`, for events without their own.
    sent_at: Option<&'a Value>,
    /// The latest timestamp accepted: `received` plus the allowed skew.
    latest: u64,
    /// The largest event accepted, in bytes.
    max_bytes: usize,
}

/// Completes one event and returns its log line and its user's partition, or why it is refused.
fn complete(event: Value, receipt: Receipt<'_>, partitions: usize) -> Result<(usize, Vec<u8>), String> {
    let Value::Object(mut o) = event else { return Err("an event must be a JSON object".into()) };
    if let Some(kind) = receipt.kind {
        o.insert("type".into(), Value::String(kind.into()));
    }
    // A credential is not data: it is never stored.
    o.remove("writeKey");
    let received = receipt.received;
    o.insert("receivedAt".into(), Value::String(format_instant(received)));
    match o.get("timestamp").filter(|t| !t.is_null()) {
        None => {
            o.insert("timestamp".into(), Value::String(format_instant(received)));
        }
        Some(t) => {
            let sent_at = o.get("sentAt").filter(|s| !s.is_null()).or(receipt.sent_at);
            if let Some(sent_at) = sent_at {
                let sent = parse_instant(sent_at).map_err(|e| format!("field `sentAt`: {e}"))?;
                let original = parse_instant(t).map_err(|e| format!("field `timestamp`: {e}"))?;
                // The device's clock is off by `sent - received`: take it off the event's time.
                let corrected = i128::from(received) - (i128::from(sent) - i128::from(original));
                let corrected = u64::try_from(corrected.clamp(0, i128::from(u64::MAX))).unwrap_or(u64::MAX);
                let original = o.insert("timestamp".into(), Value::String(format_instant(corrected)));
                if let Some(original) = original {
                    o.entry("originalTimestamp").or_insert(original);
                }
            }
        }
    }
    if o.get("messageId").is_none_or(|m| m.is_null()) {
        o.insert("messageId".into(), Value::String(uuid::Uuid::new_v4().to_string()));
    }
    let line = serde_json::to_vec(&o).map_err(|e| e.to_string())?;
    if line.len() > receipt.max_bytes {
        return Err(format!("an event of {} bytes exceeds the limit of {} bytes", line.len(), receipt.max_bytes));
    }
    let (decoded, _) = decode_record(&line).map_err(|e| e.to_string())?;
    if decoded.ts() > receipt.latest {
        return Err(format!(
            "timestamp {} is more than {} ms after the event was received ({}): a device clock is wrong",
            format_instant(decoded.ts()),
            receipt.latest - received,
            format_instant(received)
        ));
    }
    Ok(((decoded.user().0 % partitions as u128) as usize, line))
}

/// The events of a call, completed and checked: the lines to log (all to one partition), and
/// the refused ones.
struct Checked {
    part: usize,
    lines: Vec<Vec<u8>>,
    rejected: Vec<Rejected>,
}

fn check_all(events: Vec<Value>, receipt: Receipt<'_>, partitions: usize) -> Checked {
    check_each(events.into_iter().map(Ok).collect(), receipt, partitions)
}

/// Completes and checks each event (or keeps why it could not be read).
fn check_each(events: Vec<Result<Value, String>>, receipt: Receipt<'_>, partitions: usize) -> Checked {
    let mut checked = Checked { part: 0, lines: Vec::with_capacity(events.len()), rejected: Vec::new() };
    for (index, event) in events.into_iter().enumerate() {
        match event.and_then(|event| complete(event, receipt, partitions)) {
            Ok((part, line)) => {
                // One append per call, to the first accepted event's partition: a call is
                // durable whole or not at all. (Dedup and every operator key by user or
                // message id, not by partition.)
                if checked.lines.is_empty() {
                    checked.part = part;
                }
                checked.lines.push(line);
            }
            Err(error) => checked.rejected.push(Rejected { index, error }),
        }
    }
    checked
}

/// A batch body as read before its events are: each event's text, and the batch's `sentAt`.
#[derive(Debug)]
struct Batch<'a> {
    events: Vec<&'a RawValue>,
    sent_at: Option<Value>,
}

/// Reads `{"batch": [...], "sentAt"?, ...}` keeping each event as text and nothing else of the
/// envelope; a batch over `max` events is refused (413) once counted, without keeping them.
fn read_batch(body: &[u8], max: usize) -> Result<Batch<'_>, Problem> {
    use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
    struct Events(usize);
    impl<'de> Visitor<'de> for Events {
        type Value = Result<Vec<&'de RawValue>, usize>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of events")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut events = Vec::new();
            while let Some(event) = seq.next_element::<&'de RawValue>()? {
                if events.len() == self.0 {
                    // Over the limit: counted, not kept.
                    let mut n = events.len() + 1;
                    while seq.next_element::<IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    return Ok(Err(n));
                }
                events.push(event);
            }
            Ok(Ok(events))
        }
    }
    impl<'de> DeserializeSeed<'de> for Events {
        type Value = Result<Vec<&'de RawValue>, usize>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
    }
    struct Envelope(usize);
    impl<'de> Visitor<'de> for Envelope {
        type Value = (Option<Result<Vec<&'de RawValue>, usize>>, Option<Value>);
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object with an array \"batch\"")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let (mut batch, mut sent_at) = (None, None);
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match key.as_ref() {
                    "batch" if batch.is_some() => return Err(A::Error::custom("duplicate field `batch`")),
                    "batch" => batch = Some(map.next_value_seed(Events(self.0))?),
                    "sentAt" => sent_at = Some(map.next_value::<Value>()?),
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok((batch, sent_at.filter(|s| !s.is_null())))
        }
    }
    let text = std::str::from_utf8(body).map_err(|e| Problem::bad_request(format!("malformed JSON body: {e}")))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let (batch, sent_at) = de
        .deserialize_map(Envelope(max))
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| Problem::bad_request(format!("expected an object with an array \"batch\": {e}")))?;
    match batch {
        None => Err(Problem::bad_request("expected an object with an array \"batch\"")),
        Some(Err(n)) => Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a batch of {n} events; at most {max} are allowed"),
        )),
        Some(Ok(events)) => Ok(Batch { events, sent_at }),
    }
}

/// Refuses the call while the workers are too far behind the log (429, `Retry-After`).
fn push_back(state: &AppState) -> Result<(), Problem> {
    // What the workers have not read, and what waits to be written.
    let lag = state.engine.progress.log_lag(&state.wal) + state.wal.queued_bytes();
    let max = state.config.max_ingest_lag_bytes;
    if lag > max {
        return Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("the workers are {lag} bytes behind the ingest log (at most {max}): try again shortly"),
        )
        .retry_after(1));
    }
    Ok(())
}

/// Parses, completes and checks a call's events off the async runtime, appends the accepted
/// ones and answers once they are on disk.
async fn accept(state: &AppState, body: Bytes, single: Option<&'static str>) -> Result<Accepted, Problem> {
    push_back(state)?;
    let received = now_ms();
    let (partitions, config) = (state.wal.partitions(), state.config.clone());
    let checked = tokio::task::spawn_blocking(move || -> Result<Checked, Problem> {
        let receipt = |kind, sent_at| Receipt {
            kind,
            received,
            sent_at,
            latest: received.saturating_add(config.max_future_skew),
            max_bytes: config.max_event_bytes,
        };
        match single {
            Some(kind) => {
                // An event is stored in at most `max_event_bytes`: a body far larger is not read.
                if body.len() > 4 * config.max_event_bytes {
                    let detail =
                        format!("an event of {} bytes; at most {} are stored", body.len(), config.max_event_bytes);
                    return Err(Problem::new(StatusCode::PAYLOAD_TOO_LARGE, detail));
                }
                Ok(check_all(vec![parse_json(&body)?], receipt(Some(kind), None), partitions))
            }
            None => {
                let batch = read_batch(&body, config.max_batch_events)?;
                let events = batch
                    .events
                    .iter()
                    .map(|raw| match raw.get().len() > 4 * config.max_event_bytes {
                        true => Err(format!(
                            "an event of {} bytes exceeds the limit of {} bytes",
                            raw.get().len(),
                            config.max_event_bytes
                        )),
                        false => serde_json::from_str(raw.get()).map_err(|e| format!("malformed event: {e}")),
                    })
                    .collect();
                Ok(check_each(events, receipt(None, batch.sent_at.as_ref()), partitions))
            }
        }
    })
    .await
    .map_err(|e| Problem::unavailable(format!("ingest failed: {e}")))??;
    let accepted = checked.lines.len();
    if accepted > 0 {
        let outcome = state.wal.append(checked.part, &checked.lines).await.unwrap_or(Err(AppendError::Closed));
        outcome.map_err(|e| match e {
            AppendError::Full(_) => Problem::new(StatusCode::INSUFFICIENT_STORAGE, e.to_string()).retry_after(10),
            AppendError::Busy => Problem::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()).retry_after(1),
            AppendError::Io(_) | AppendError::Closed => Problem::unavailable(e.to_string()).retry_after(5),
        })?;
    }
    metrics::counter!("journeyflow_events_in_total").increment(accepted as u64);
    state.engine.progress.events_in.fetch_add(accepted as u64, std::sync::atomic::Ordering::Relaxed);
    metrics::counter!("journeyflow_events_refused_total").increment(checked.rejected.len() as u64);
    Ok(Accepted { success: checked.rejected.is_empty(), accepted, rejected: checked.rejected })
}

async fn single(state: &AppState, headers: &HeaderMap, body: Bytes, kind: &'static str) -> Result<Response, Problem> {
    if let Some(denied) = auth::ingest(state, headers, &body) {
        return Ok(denied);
    }
    let answer = accept(state, body, Some(kind)).await?;
    if let Some(r) = answer.rejected.first() {
        return Err(Problem::bad_request(r.error.clone()));
    }
    Ok(Json(answer).into_response())
}

/// `POST /v1/track`.
#[utoipa::path(post, path = "/v1/track", tag = "ingest",
    request_body(content = serde_json::Value, description = "a Segment track call", example = json!({"event": "Order Completed", "userId": "u1", "messageId": "m-1", "timestamp": "2026-11-29T10:00:00Z", "properties": {"revenue": 42.5}})),
    responses((status = 200, body = Accepted), crate::problem::IngestAnswers))]
pub async fn track(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    single(&state, &headers, body, "track").await
}

/// `POST /v1/identify`.
#[utoipa::path(post, path = "/v1/identify", tag = "ingest",
    request_body(content = serde_json::Value, description = "a Segment identify call", example = json!({"userId": "u1", "traits": {"plan": "pro", "country": "US"}})),
    responses((status = 200, body = Accepted), crate::problem::IngestAnswers))]
pub async fn identify(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    single(&state, &headers, body, "identify").await
}

/// `POST /v1/page`.
#[utoipa::path(post, path = "/v1/page", tag = "ingest",
    request_body(content = serde_json::Value, description = "a Segment page call", example = json!({"anonymousId": "a9", "name": "Pricing"})),
    responses((status = 200, body = Accepted), crate::problem::IngestAnswers))]
pub async fn page(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    single(&state, &headers, body, "page").await
}

/// `POST /v1/screen`.
#[utoipa::path(post, path = "/v1/screen", tag = "ingest",
    request_body(content = serde_json::Value, description = "a Segment screen call", example = json!({"userId": "u1", "name": "Home"})),
    responses((status = 200, body = Accepted), crate::problem::IngestAnswers))]
pub async fn screen(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    single(&state, &headers, body, "screen").await
}

/// `POST /v1/batch`: `{"batch": [event, ...], "sentAt"?}`, each event with its `type`; the
/// envelope's `sentAt` corrects the clock of events without their own; other fields of the
/// envelope (such as `context` or `writeKey`) are not stored.
#[utoipa::path(post, path = "/v1/batch", tag = "ingest",
    request_body(content = serde_json::Value, description = "Segment calls, each with its type", example = json!({"batch": [{"type": "track", "event": "Cart Viewed", "userId": "u1", "timestamp": "2026-11-29T09:59:00Z"}, {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}}], "sentAt": "2026-11-29T10:00:00Z"})),
    responses((status = 200, body = Accepted), crate::problem::IngestAnswers))]
pub async fn batch(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    if let Some(denied) = auth::ingest(&state, &headers, &body) {
        return Ok(denied);
    }
    Ok(Json(accept(&state, body, None).await?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn receipt(received: u64) -> Receipt<'static> {
        Receipt { kind: None, received, sent_at: None, latest: received + 3_600_000, max_bytes: 32 << 10 }
    }

    fn stored(line: &[u8]) -> Value {
        serde_json::from_slice(line).unwrap()
    }

    #[test]
    fn a_device_clock_is_corrected_with_sent_at_and_the_original_kept() {
        let received = 1_700_000_000_000;
        // The device's clock is two hours ahead: it says it sent at received + 2h.
        let event = json!({"type": "track", "event": "X", "userId": "u", "messageId": "m",
            "timestamp": format_instant(received + 7_200_000 - 5_000), "sentAt": format_instant(received + 7_200_000)});
        let (_, line) = complete(event, receipt(received), 1).unwrap();
        let v = stored(&line);
        assert_eq!(v["timestamp"], format_instant(received - 5_000));
        assert_eq!(v["originalTimestamp"], format_instant(received + 7_200_000 - 5_000));
        assert_eq!(v["receivedAt"], format_instant(received));
        // The batch's sentAt applies to events without their own.
        let event =
            json!({"type": "track", "event": "X", "userId": "u", "messageId": "m", "timestamp": received + 60_000});
        let sent_at = json!(received + 60_000);
        let (_, line) = complete(event, Receipt { sent_at: Some(&sent_at), ..receipt(received) }, 1).unwrap();
        assert_eq!(stored(&line)["timestamp"], format_instant(received));
    }

    #[test]
    fn a_far_future_event_is_refused_and_credentials_are_not_stored() {
        let received = 1_700_000_000_000;
        let event = json!({"type": "track", "event": "X", "userId": "u", "timestamp": "2999-01-01T00:00:00Z"});
        let err = complete(event, receipt(received), 1).unwrap_err();
        assert!(err.contains("more than 3600000 ms after"), "{err}");
        let event = json!({"type": "track", "event": "X", "userId": "u", "writeKey": "secret"});
        let (_, line) = complete(event, receipt(received), 1).unwrap();
        let v = stored(&line);
        assert!(v.get("writeKey").is_none());
        // A generated messageId is a UUID.
        assert!(uuid::Uuid::parse_str(v["messageId"].as_str().unwrap()).is_ok(), "{v}");
        assert_eq!(v["timestamp"], format_instant(received));
    }

    #[test]
    fn a_batch_is_read_without_building_its_events_and_counted_past_the_limit() {
        let body = br#"{"writeKey": "k", "context": {"x": [1, 2]}, "batch": [{"a": 1}, {"b": [2]}], "sentAt": 5}"#;
        let batch = read_batch(body, 2).unwrap();
        assert_eq!(batch.events.iter().map(|e| e.get()).collect::<Vec<_>>(), [r#"{"a": 1}"#, r#"{"b": [2]}"#]);
        assert_eq!(batch.sent_at, Some(json!(5)));
        let over = read_batch(br#"{"batch": [0, 0, 0, 0, 0]}"#, 2).unwrap_err();
        assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
        for bad in
            [&br#"[1]"#[..], br#"{"batch": 1}"#, br#"{"batch": [], "batch": []}"#, br#"{}"#, br#"{"batch": []} x"#]
        {
            assert_eq!(read_batch(bad, 2).map(|_| ()).unwrap_err().status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn an_oversized_event_is_refused_with_its_size() {
        let event = json!({"type": "track", "event": "X", "userId": "u", "properties": {"blob": "x".repeat(40_000)}});
        let err = complete(event, receipt(1_700_000_000_000), 1).unwrap_err();
        assert!(err.contains("exceeds the limit of 32768 bytes"), "{err}");
    }
}
