//! Server-Sent Events: live views of the engine for the console and for API users. The
//! overview, the segments' sizes, a segment's size and a journey's report come from the
//! heartbeat ([`crate::pulse`]) and are sent when they change; a segment's changes and a
//! journey's transitions and actions come from the live tail ([`crate::tail`]) as they are
//! written. A comment every 15 s keeps a quiet connection open. Each stream holds one of
//! `max_streams` permits for its life (more get 503 at once) and ends when the server stops or
//! what it follows is removed (a last `removed` event).

use crate::problem::Problem;
use crate::pulse::{Beat, Pulse};
use crate::tail::{Item, Topic};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};

/// The live streams' permits and the heartbeat they follow.
pub struct Streams {
    permits: Arc<Semaphore>,
    pulse: Pulse,
}

impl Streams {
    /// At most `max` streams at once, following `pulse`.
    pub fn new(max: usize, pulse: Pulse) -> Streams {
        Streams { permits: Arc::new(Semaphore::new(max)), pulse }
    }

    fn permit(&self) -> Result<OwnedSemaphorePermit, Problem> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            Problem::unavailable("too many live streams are open: close one, or try again later").retry_after(5)
        })
    }
}

/// What a stream sends next: a document under an event name (`key`: what must differ from the
/// last one sent for it to go), nothing, or the end (what it followed is gone).
enum Next {
    Send { name: &'static str, document: Value, key: Value },
    Nothing,
    Removed,
}

pub(crate) type Events = Sse<KeepAliveStream<std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>>>;

fn sse(events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Events {
    Sse::new(Box::pin(events) as _).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// A stream that looks at each beat and sends what `look` finds whenever its key differs from
/// the last one sent.
fn follow(state: &AppState, look: impl FnMut(&AppState, &Beat) -> Next + Send + 'static) -> Result<Events, Problem> {
    let permit = state.streams.permit()?;
    let start = (state.clone(), look, state.streams.pulse.beats(), None::<Value>, false, permit);
    let events = stream::unfold(start, |(state, mut look, mut beats, mut last, done, permit)| async move {
        if done {
            return None;
        }
        loop {
            // The heartbeat ends when the server stops: so does the stream.
            beats.changed().await.ok()?;
            let beat = beats.borrow_and_update().clone();
            let (event, done) = match look(&state, &beat) {
                Next::Send { name, document, key } => {
                    if last.as_ref() == Some(&key) {
                        continue;
                    }
                    last = Some(key);
                    (Event::default().event(name).data(document.to_string()), false)
                }
                Next::Nothing => continue,
                Next::Removed => (Event::default().event("removed").data("{}"), true),
            };
            return Some((Ok(event), (state, look, beats, last, done, permit)));
        }
    });
    Ok(sse(events))
}

/// A stream of an analysis's report: at each beat `ask` makes it anew (`None` once the
/// analysis is gone: a last `removed` event), and it is sent as a `report` event when it
/// differs from the last one sent but for its `as_of`. A report that cannot be made now (an
/// answer too slow, a replacement meanwhile) is tried again at the next beat; one the request
/// itself makes impossible (400) ends the stream with an `error` event.
pub(crate) fn reports<F, Fut>(state: &AppState, ask: F) -> Result<Events, Problem>
where
    F: FnMut(AppState) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<Result<Value, Problem>>> + Send,
{
    let permit = state.streams.permit()?;
    let start = (state.clone(), ask, state.streams.pulse.beats(), None::<Value>, false, permit);
    let events = stream::unfold(start, |(state, mut ask, mut beats, mut last, done, permit)| async move {
        if done {
            return None;
        }
        loop {
            beats.changed().await.ok()?;
            beats.borrow_and_update();
            let (event, done) = match ask(state.clone()).await {
                None => (Event::default().event("removed").data("{}"), true),
                Some(Ok(report)) => {
                    let mut key = report.clone();
                    if let Some(o) = key.as_object_mut() {
                        o.remove("as_of");
                    }
                    if last.as_ref() == Some(&key) {
                        continue;
                    }
                    last = Some(key);
                    (Event::default().event("report").data(report.to_string()), false)
                }
                Some(Err(p)) if p.status() == axum::http::StatusCode::BAD_REQUEST => {
                    (Event::default().event("error").data(json!({"detail": p.detail()}).to_string()), true)
                }
                Some(Err(_)) => continue,
            };
            return Some((Ok(event), (state, ask, beats, last, done, permit)));
        }
    });
    Ok(sse(events))
}

/// A stream of `topic`'s records from the tail; `gone` is asked at each beat whether what
/// it follows was removed.
fn tail(
    state: &AppState,
    topic: Topic,
    gone: impl Fn(&AppState) -> bool + Send + Sync + 'static,
) -> Result<Events, Problem> {
    struct Following<G> {
        state: AppState,
        reader: broadcast::Receiver<Arc<Item>>,
        beats: watch::Receiver<Arc<Beat>>,
        gone: G,
        done: bool,
        _permit: OwnedSemaphorePermit,
    }
    let start = Following {
        _permit: state.streams.permit()?,
        reader: state.engine.tail.subscribe(topic),
        beats: state.streams.pulse.beats(),
        state: state.clone(),
        gone,
        done: false,
    };
    let lagged = |missed: u64| Event::default().event("lagged").data(json!({"missed": missed}).to_string());
    let events = stream::unfold(start, move |mut f| async move {
        if f.done {
            return None;
        }
        let event = tokio::select! {
            beat = f.beats.changed() => {
                // The heartbeat ends when the server stops: so does the stream.
                beat.ok()?;
                if !(f.gone)(&f.state) {
                    return Some((None, f));
                }
                f.done = true;
                Event::default().event("removed").data("{}")
            }
            item = f.reader.recv() => match item {
                Ok(item) if item.missed > 0 => lagged(item.missed),
                Ok(item) => Event::default().event(item.kind.event()).data(item.line.clone()),
                Err(RecvError::Lagged(missed)) => lagged(missed),
                Err(RecvError::Closed) => return None,
            },
        };
        Some((Some(event), f))
    });
    Ok(sse(events.filter_map(|event| async move { event.map(Ok) })))
}

/// `GET /v1/streams/overview`: the overview, every second (its `time` moves).
#[utoipa::path(get, path = "/v1/streams/overview", tag = "streams",
    responses((status = 200, description = "Server-Sent Events: `overview` events, each a JSON document, summed over a cluster's processes: `time`, `events_in` (accepted by the ingest), `events_processed`, `rejected`, `late`, `duplicates`, `suppressed`, `dead_letters`, `watermark`, `watermark_lag_ms`, `durable`, `sources` (`{process, source: http, partition, lag_bytes}` or `{process, source: kafka, topic, partition, lag_messages}`), `arranged_records`, `user_ids`, `segments`, `journeys`, `processes`", content_type = "text/event-stream", body = String),
        crate::problem::ControlAnswers))]
pub async fn overview(State(state): State<AppState>) -> Result<Events, Problem> {
    follow(&state, |_, beat| Next::Send { name: "overview", document: beat.overview.clone(), key: json!(beat.time) })
}

/// `GET /v1/streams/segments`: every installed segment's size whenever one changes.
#[utoipa::path(get, path = "/v1/streams/segments", tag = "streams",
    responses((status = 200, description = "Server-Sent Events: `sizes` events (`{\"time\", \"sizes\": {segment id: members}, \"watermark\"}`, `time` the server's wall clock) whenever a size changes or a segment comes or goes", content_type = "text/event-stream", body = String),
        crate::problem::ControlAnswers))]
pub async fn segments(State(state): State<AppState>) -> Result<Events, Problem> {
    follow(&state, |_, beat| Next::Send {
        name: "sizes",
        document: json!({"time": beat.time, "sizes": beat.sizes, "watermark": beat.watermark}),
        key: json!(beat.sizes),
    })
}

/// `GET /v1/segments/{id}/stream`: the segment's size whenever it changes.
#[utoipa::path(get, path = "/v1/segments/{id}/stream", tag = "streams", params(("id" = String, Path, description = "segment id")),
    responses((status = 200, description = "Server-Sent Events: `size` events (`{\"time\", \"segment\", \"size\", \"watermark\"}`) whenever the size changes; `removed` once the segment is, and the stream ends", content_type = "text/event-stream", body = String),
        crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn segment(State(state): State<AppState>, Path(id): Path<String>) -> Result<Events, Problem> {
    if !state.engine.catalog.get().segments.contains_key(&id) {
        return Err(Problem::not_found(format!("no segment {id:?}")));
    }
    follow(&state, move |state, beat| {
        if !state.engine.catalog.get().segments.contains_key(&id) {
            return Next::Removed;
        }
        // The heartbeat may not have seen a segment just installed.
        let Some(size) = beat.sizes.get(&id) else { return Next::Nothing };
        Next::Send {
            name: "size",
            document: json!({"time": beat.time, "segment": id, "size": size, "watermark": beat.watermark}),
            key: json!(size),
        }
    })
}

/// `GET /v1/segments/{id}/changes`: the segment's changes as they are written.
#[utoipa::path(get, path = "/v1/segments/{id}/changes", tag = "streams", params(("id" = String, Path, description = "segment id")),
    responses((status = 200, description = "Server-Sent Events: `change` events, each a record of the `segment_changes` output (`{\"id\", \"segment\", \"user_id\", \"change\", \"time\", \"reason\"?}`) as it is written; a view for people, not a delivery (use the outputs for that): `lagged` (`{\"missed\"}`) when records were left out: a reader slower than the topic's last 1,024 records, or, in a cluster, records over the 50 a second per worker the other processes forward. `removed` once the segment is, and the stream ends", content_type = "text/event-stream", body = String),
        crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn segment_changes(State(state): State<AppState>, Path(id): Path<String>) -> Result<Events, Problem> {
    if !state.engine.catalog.get().segments.contains_key(&id) {
        return Err(Problem::not_found(format!("no segment {id:?}")));
    }
    let topic = Topic::Segment(id.clone());
    tail(&state, topic, move |state| !state.engine.catalog.get().segments.contains_key(&id))
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
    follow(&state, move |state, _| match state.engine.catalog.get().journeys.contains_key(&id) {
        true => {
            let report = crate::journeys::report(state, &id);
            Next::Send { name: "stats", key: report.clone(), document: report }
        }
        false => Next::Removed,
    })
}

/// `GET /v1/journeys/{id}/transitions`: the journey's transitions and actions as they are
/// written.
#[utoipa::path(get, path = "/v1/journeys/{id}/transitions", tag = "streams", params(("id" = String, Path, description = "journey id")),
    responses((status = 200, description = "Server-Sent Events: `transition` events (records of the `journey_transitions` output) and `action` events (of `journey_actions`) as they are written; a view for people, not a delivery: `lagged` (`{\"missed\"}`) when records were left out: a reader slower than the topic's last 1,024 records, or, in a cluster, records over the 50 a second per worker the other processes forward. `removed` once the journey is, and the stream ends", content_type = "text/event-stream", body = String),
        crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn journey_transitions(State(state): State<AppState>, Path(id): Path<String>) -> Result<Events, Problem> {
    if !state.engine.catalog.get().journeys.contains_key(&id) {
        return Err(Problem::not_found(format!("no journey {id:?}")));
    }
    let topic = Topic::Journey(id.clone());
    tail(&state, topic, move |state| !state.engine.catalog.get().journeys.contains_key(&id))
}

/// `GET /v1/streams/dead-letters`: input records that were not events, as they are written.
#[utoipa::path(get, path = "/v1/streams/dead-letters", tag = "streams",
    responses((status = 200, description = "Server-Sent Events: `dead_letter` events (`{\"source\", \"offset\", \"error\", \"bytes\", \"line\"}`, the line's first KiB) as they are written to the dead-letter output; a view, not a delivery: `lagged` (`{\"missed\"}`) when records were left out: a reader slower than the last 1,024, or, in a cluster, records over the 50 a second per worker the other processes forward", content_type = "text/event-stream", body = String),
        crate::problem::ControlAnswers))]
pub async fn dead_letters(State(state): State<AppState>) -> Result<Events, Problem> {
    tail(&state, Topic::DeadLetters, |_| false)
}

/// The query of `GET /v1/segment-sizes`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct SizesQuery {
    /// Hours back (at most 6; default 6).
    pub hours: Option<u64>,
    /// Only this segment.
    pub segment: Option<String>,
}

/// `GET /v1/segment-sizes`: each segment's size over the last hours, as this server sampled
/// it (kept in memory: a restart starts afresh).
#[utoipa::path(get, path = "/v1/segment-sizes", tag = "segments", params(SizesQuery),
    responses((status = 200, description = "`{\"from\", \"sizes\": {segment id: [[wall time ms, members], ...]}}`: a point a minute; the latest size closes each series", body = serde_json::Value),
        (status = 400, body = crate::problem::ProblemDoc, content_type = "application/problem+json"), crate::problem::ControlAnswers))]
pub async fn sizes(State(state): State<AppState>, Query(query): Query<SizesQuery>) -> Result<Json<Value>, Problem> {
    let hours = query.hours.unwrap_or(6);
    if hours == 0 || hours > 6 {
        return Err(Problem::bad_request("hours must be between 1 and 6"));
    }
    let from = journeyflow_types::time::now_ms().saturating_sub(hours * 3600 * 1000);
    let only = query.segment;
    let sizes = state.streams.pulse.sizes_since(from, |id| only.as_deref().is_none_or(|o| o == id));
    Ok(Json(json!({"from": from, "sizes": sizes})))
}
