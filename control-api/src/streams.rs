//! Server-Sent Events: live views of the engine for the console and for API users, each a
//! JSON document sent when it changes (looked at every second; a comment every 15 s keeps a
//! quiet connection open): the overview (events in and processed, the watermark and its lag,
//! each source's lag, dead letters, what memory holds), a segment's size, a journey's report.
//! Each stream holds one of `max_streams` permits for its life (more get 503 at once) and
//! ends when the server stops or what it follows is removed (a last `removed` event).

use crate::problem::Problem;
use crate::AppState;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use futures_util::stream::{self, Stream};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How often a stream looks at what it follows.
const EVERY: Duration = Duration::from_secs(1);

/// The live streams' permits.
pub struct Streams {
    permits: Arc<Semaphore>,
}

impl Streams {
    /// At most `max` streams at once.
    pub fn new(max: usize) -> Streams {
        Streams { permits: Arc::new(Semaphore::new(max)) }
    }

    fn permit(&self) -> Result<OwnedSemaphorePermit, Problem> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            Problem::unavailable("too many live streams are open: close one, or try again later").retry_after(5)
        })
    }
}

/// What a stream sends next: a document under an event name, or the end (what it followed is
/// gone).
enum Next {
    Send(&'static str, Value),
    Removed,
}

type Events = Sse<KeepAliveStream<std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>>>;

/// A stream that looks at `look` every second and sends what it finds whenever it differs
/// from what was sent last.
fn follow(state: &AppState, look: impl FnMut(&AppState) -> Next + Send + 'static) -> Result<Events, Problem> {
    let permit = state.streams.permit()?;
    let mut interval = tokio::time::interval(EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = (state.clone(), look, interval, None::<String>, false, permit);
    let events = stream::unfold(start, |(state, mut look, mut interval, mut last, done, permit)| async move {
        if done {
            return None;
        }
        loop {
            interval.tick().await;
            if state.engine.progress.stopping.load(Ordering::Relaxed) {
                return None;
            }
            let (event, done) = match look(&state) {
                Next::Send(name, document) => {
                    let text = document.to_string();
                    if last.as_ref() == Some(&text) {
                        continue;
                    }
                    last = Some(text.clone());
                    (Event::default().event(name).data(text), false)
                }
                Next::Removed => (Event::default().event("removed").data("{}"), true),
            };
            return Some((Ok(event), (state, look, interval, last, done, permit)));
        }
    });
    Ok(Sse::new(Box::pin(events) as _).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The overview document.
fn overview_now(state: &AppState) -> Value {
    let progress = &state.engine.progress;
    let watermark = state.engine.watermark();
    let sources: Vec<Value> = progress
        .log_lags(&state.wal)
        .into_iter()
        .enumerate()
        .map(|(partition, lag)| json!({"source": "http", "partition": partition, "lag_bytes": lag}))
        .chain(
            progress
                .kafka_lag
                .lock()
                .map(|lags| {
                    lags.iter()
                        .map(|((topic, partition), lag)| {
                            json!({"source": "kafka", "topic": topic, "partition": partition, "lag_messages": lag})
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        )
        .collect();
    let load = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
    json!({
        "time": journeyflow_types::time::now_ms(),
        "events_in": load(&progress.events_in),
        "events_processed": load(&progress.events_processed),
        "rejected": load(&progress.rejected),
        "late": load(&progress.late),
        "duplicates": load(&progress.duplicates),
        "suppressed": load(&progress.suppressed),
        "dead_letters": load(&progress.dead_letters),
        "watermark": watermark,
        "watermark_lag_ms": journeyflow_types::time::now_ms().saturating_sub(watermark),
        "durable": load(&progress.durable),
        "sources": sources,
        "arranged_records": progress.arranged_records.load(Ordering::Relaxed),
        "user_ids": state.engine.names.read().map_or_else(|e| e.into_inner().len(), |n| n.len()),
    })
}

/// `GET /v1/streams/overview`: the overview, every second (its `time` moves).
#[utoipa::path(get, path = "/v1/streams/overview", tag = "streams",
    responses((status = 200, description = "Server-Sent Events: `overview` events, each a JSON document: `time`, `events_in` (accepted by this process's ingest), `events_processed`, `rejected`, `late`, `duplicates`, `suppressed`, `dead_letters`, `watermark`, `watermark_lag_ms`, `durable`, `sources` (`{source: http, partition, lag_bytes}` or `{source: kafka, topic, partition, lag_messages}`), `arranged_records`, `user_ids`", content_type = "text/event-stream", body = String),
        crate::problem::ControlAnswers))]
pub async fn overview(State(state): State<AppState>) -> Result<Events, Problem> {
    follow(&state, |state| Next::Send("overview", overview_now(state)))
}

/// `GET /v1/segments/{id}/stream`: the segment's size whenever it changes.
#[utoipa::path(get, path = "/v1/segments/{id}/stream", tag = "streams", params(("id" = String, Path, description = "segment id")),
    responses((status = 200, description = "Server-Sent Events: `size` events (`{\"segment\", \"size\", \"watermark\"}`) whenever the size changes; `removed` once the segment is, and the stream ends", content_type = "text/event-stream", body = String),
        crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn segment(State(state): State<AppState>, Path(id): Path<String>) -> Result<Events, Problem> {
    if !state.engine.catalog.get().segments.contains_key(&id) {
        return Err(Problem::not_found(format!("no segment {id:?}")));
    }
    follow(&state, move |state| {
        if !state.engine.catalog.get().segments.contains_key(&id) {
            return Next::Removed;
        }
        let sizes = state.engine.progress.segment_sizes.lock();
        let size = sizes.map(|s| s.get(&id).copied().unwrap_or(0)).unwrap_or(0);
        Next::Send("size", json!({"segment": id, "size": size, "watermark": state.engine.watermark()}))
    })
}

/// `GET /v1/journeys/{id}/stream`: the journey's report (as `/stats` answers it) whenever it
/// changes.
#[utoipa::path(get, path = "/v1/journeys/{id}/stream", tag = "streams", params(("id" = String, Path, description = "journey id")),
    responses((status = 200, description = "Server-Sent Events: `stats` events (the document `GET /v1/journeys/{id}/stats` answers) whenever it changes; `removed` once the journey is, and the stream ends", content_type = "text/event-stream", body = String),
        crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn journey(State(state): State<AppState>, Path(id): Path<String>) -> Result<Events, Problem> {
    if !state.engine.catalog.get().journeys.contains_key(&id) {
        return Err(Problem::not_found(format!("no journey {id:?}")));
    }
    follow(&state, move |state| match state.engine.catalog.get().journeys.contains_key(&id) {
        true => Next::Send("stats", crate::journeys::report(state, &id)),
        false => Next::Removed,
    })
}
