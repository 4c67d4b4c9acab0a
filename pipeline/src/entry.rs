//! How one event read from a source partition enters a worker: decoded, refused when timed
//! further after its receipt than the allowed skew (a wrong device clock must not move event
//! time), placed at its time (or its partition's watermark, when late), offered to the
//! programs, archived and recorded for the next checkpoint. The same for ingest log lines and
//! Kafka messages.

use crate::checkpoint::Recorder;
use crate::programs::Programs;
use crate::sinks::Sinks;
use crate::watermark::Watermarks;
use journeyflow_control_api::handle::Progress;
use journeyflow_operators::Time;
use journeyflow_types::time::{format_instant, now_ms};
use journeyflow_types::{decode_record, Key};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What an event needs on its way in.
pub struct Entry<'a> {
    /// The worker's programs.
    pub programs: &'a mut Programs,
    /// Its sinks (the archive takes accepted events).
    pub sinks: &'a mut Sinks,
    /// Its partitions' watermarks.
    pub marks: &'a mut Watermarks,
    /// The open checkpoint's recorder, if checkpoints are taken.
    pub recorder: Option<&'a mut Recorder>,
    /// Counters.
    pub progress: &'a Progress,
    /// User ids seen, for answers.
    pub users: Vec<(Key, Arc<str>)>,
    /// An event timed more than this after it was received is refused (ms).
    pub max_future_skew: Time,
}

impl Entry<'_> {
    /// Enters `line`, read from partition `w` and received at `received` (a Kafka message's
    /// timestamp: a `receivedAt` in its payload is the producer's word and counts for nothing),
    /// or, with `None` (an ingest log line), at its own `receivedAt`, which HTTP ingest wrote,
    /// else now: the time it entered at, `Ok(None)` when the late policy refused it, or why it
    /// is not taken (to be dead-lettered).
    pub fn enter(
        &mut self,
        w: usize,
        line: &[u8],
        received: Option<Time>,
    ) -> anyhow::Result<Result<Option<Time>, String>> {
        let event = match decode_record(line) {
            Ok((event, own)) => {
                let received = received.or(own).unwrap_or_else(now_ms);
                let latest = received.saturating_add(self.max_future_skew);
                if event.ts() > latest {
                    self.progress.rejected.fetch_add(1, Ordering::Relaxed);
                    return Ok(Err(format!(
                        "timestamp {} is more than {} ms after the event was received ({}): a device clock is wrong",
                        format_instant(event.ts()),
                        self.max_future_skew,
                        format_instant(received)
                    )));
                }
                event
            }
            Err(e) => {
                self.progress.rejected.fetch_add(1, Ordering::Relaxed);
                return Ok(Err(e.to_string()));
            }
        };
        let (floor, ts) = (self.marks.floor(w), event.ts());
        self.marks.saw(w, ts);
        self.users.push((event.user(), Arc::from(event.user_id())));
        let archived = self.sinks.archives_events().then(|| event.to_event());
        let Ok(time) = self.programs.offer_at_least(event, floor) else {
            self.progress.rejected.fetch_add(1, Ordering::Relaxed);
            return Ok(Ok(None));
        };
        if let Some(event) = &archived {
            self.sinks.event(time, event);
        }
        if let Some(recorder) = &mut self.recorder {
            // Decoded, so UTF-8.
            recorder.record(time, ts, std::str::from_utf8(line).unwrap_or_default())?;
        }
        Ok(Ok(Some(time)))
    }
}
