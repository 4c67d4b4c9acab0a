//! The live streams' heartbeat: one task looks at the engine once a second and publishes what
//! the streams send (the overview, the segments' sizes, summed over the cluster) through a
//! watch channel, so that many open streams cost one look; it also keeps each segment's size
//! over the last hours (a point a minute: 360 a segment at most), for the console's
//! sparklines and charts. The task ends when the server
//! stops, and with it every stream.

use crate::handle::EngineHandle;
use crate::tally::Tally;
use journeyflow_connectors::wal::Wal;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// How often the engine is looked at.
const EVERY: Duration = Duration::from_secs(1);
/// How long sizes are kept.
pub const KEEP_MS: u64 = 6 * 3600 * 1000;
/// A size is kept once a minute.
const EVERY_MS: u64 = 60_000;

/// What the engine showed at one look.
#[derive(Debug, Default)]
pub struct Beat {
    /// Wall time of the look, ms.
    pub time: u64,
    /// The overview document (see `GET /v1/streams/overview`).
    pub overview: Value,
    /// Members of each installed segment, over the cluster.
    pub sizes: BTreeMap<String, i64>,
    /// The engine's watermark.
    pub watermark: u64,
}

/// Each segment's sizes over the last hours: `(wall time ms, size)`, oldest first.
#[derive(Debug, Default)]
pub struct SizeHistory {
    points: BTreeMap<String, VecDeque<(u64, i64)>>,
}

impl SizeHistory {
    /// Records the sizes at `now` (forgetting segments no longer in `sizes`, and points older
    /// than [`KEEP_MS`]).
    pub fn record(&mut self, now: u64, sizes: &BTreeMap<String, i64>) {
        self.points.retain(|id, _| sizes.contains_key(id));
        for (id, size) in sizes {
            let points = self.points.entry(id.clone()).or_default();
            if points.back().is_none_or(|(at, _)| now >= at + EVERY_MS) {
                points.push_back((now, *size));
            }
            while points.front().is_some_and(|(at, _)| at + KEEP_MS < now) {
                points.pop_front();
            }
        }
    }

    /// The points since `since` of each segment `wanted` accepts, the latest size (if newer
    /// than the last point) closing each series.
    pub fn since(&self, since: u64, now: u64, sizes: &BTreeMap<String, i64>, wanted: impl Fn(&str) -> bool) -> Value {
        let series: serde_json::Map<String, Value> = self
            .points
            .iter()
            .filter(|(id, _)| wanted(id))
            .map(|(id, points)| {
                let mut out: Vec<(u64, i64)> = points.iter().filter(|(at, _)| *at >= since).copied().collect();
                if let Some(size) = sizes.get(id) {
                    if out.last().is_none_or(|(at, last)| last != size || *at < now) {
                        out.push((now, *size));
                    }
                }
                (id.clone(), json!(out))
            })
            .collect();
        Value::Object(series)
    }
}

/// The heartbeat's outputs.
pub struct Pulse {
    beats: watch::Receiver<Arc<Beat>>,
    history: Arc<Mutex<SizeHistory>>,
}

impl Pulse {
    /// Starts the task on the current runtime (it ends once `engine` says it is stopping).
    pub fn start(engine: EngineHandle, wal: Arc<Wal>) -> Pulse {
        let (tx, beats) = watch::channel(Arc::new(Beat::default()));
        let history = Arc::new(Mutex::new(SizeHistory::default()));
        let kept = history.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(EVERY);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                if engine.progress.stopping.load(Ordering::Relaxed) {
                    break;
                }
                // Topics no stream follows any longer cost the workers nothing from now on.
                engine.tail.prune();
                let beat = look(&engine, &wal);
                kept.lock().unwrap_or_else(PoisonError::into_inner).record(beat.time, &beat.sizes);
                if tx.send(Arc::new(beat)).is_err() {
                    // No receiver: the server is gone.
                    break;
                }
            }
        });
        Pulse { beats, history }
    }

    /// A receiver of every beat from now on.
    pub fn beats(&self) -> watch::Receiver<Arc<Beat>> {
        self.beats.clone()
    }

    /// Each segment's sizes since `since` (wall time, ms), of those `wanted` accepts.
    pub fn sizes_since(&self, since: u64, wanted: impl Fn(&str) -> bool) -> Value {
        let beat = self.beats.borrow().clone();
        let history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        history.since(since, beat.time, &beat.sizes, wanted)
    }
}

/// One look at the engine.
fn look(engine: &EngineHandle, wal: &Wal) -> Beat {
    let progress = &engine.progress;
    let user_ids = engine.names.read().map_or_else(|e| e.into_inner().len(), |n| n.len());
    let sum = crate::tally::cluster(progress, Tally::of(progress, progress.log_lags(wal), 0, user_ids));
    let catalog = engine.catalog.get();
    let sizes: BTreeMap<String, i64> =
        catalog.segments.keys().map(|id| (id.clone(), sum.segment_sizes.get(id).copied().unwrap_or(0))).collect();
    let now = journeyflow_types::time::now_ms();
    let watermark = engine.watermark();
    let sources: Vec<Value> = sum
        .sources
        .iter()
        .map(|s| match s.source.as_str() {
            "http" => json!({"process": s.process, "source": "http", "partition": s.partition, "lag_bytes": s.lag}),
            _ => json!({"process": s.process, "source": "kafka", "topic": s.topic, "partition": s.partition,
                        "lag_messages": s.lag}),
        })
        .collect();
    let overview = json!({
        "time": now,
        "events_in": sum.events_in,
        "events_processed": sum.events_processed,
        "rejected": sum.rejected,
        "late": sum.late,
        "duplicates": sum.duplicates,
        "suppressed": sum.suppressed,
        "dead_letters": sum.dead_letters,
        "watermark": watermark,
        "watermark_lag_ms": now.saturating_sub(watermark),
        "durable": progress.durable.load(Ordering::Relaxed),
        "sources": sources,
        "arranged_records": sum.arranged_records,
        "user_ids": sum.user_ids,
        "segments": sizes.len(),
        "journeys": catalog.journeys.len(),
        "processes": 1 + progress.peer_tallies.lock().unwrap_or_else(PoisonError::into_inner).len(),
    });
    Beat { time: now, overview, sizes, watermark }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_kept_once_a_minute_for_six_hours() {
        let mut h = SizeHistory::default();
        let sizes = |n: i64| BTreeMap::from([("s".to_string(), n)]);
        h.record(0, &sizes(1));
        h.record(30_000, &sizes(2)); // too soon
        h.record(60_000, &sizes(2));
        h.record(70_000, &sizes(3)); // too soon
        let all = h.since(0, 70_000, &sizes(3), |_| true);
        // The latest size closes the series.
        assert_eq!(all["s"], json!([[0, 1], [60_000, 2], [70_000, 3]]));
        assert_eq!(h.since(20_000, 75_000, &sizes(2), |_| true)["s"], json!([[60_000, 2], [75_000, 2]]));
        // Old points go; so does a removed segment.
        h.record(KEEP_MS + 30_000, &sizes(2));
        assert_eq!(h.since(0, KEEP_MS + 30_000, &sizes(2), |_| true)["s"], json!([[60_000, 2], [KEEP_MS + 30_000, 2]]));
        for minute in 0..400 {
            h.record(KEEP_MS + 30_000 + minute * 60_000, &sizes(minute as i64));
        }
        assert!(h.points["s"].len() <= (KEEP_MS / 60_000) as usize + 1);
        h.record(KEEP_MS + 90_000, &BTreeMap::new());
        assert_eq!(h.since(0, 0, &BTreeMap::new(), |_| true), json!({}));
    }
}
