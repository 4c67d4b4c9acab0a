//! How one event read from a source partition enters a worker: decoded, placed at its time
//! (or its partition's watermark, when late), offered to the programs, archived and recorded
//! for the next checkpoint. The same for ingest log lines and Kafka messages.

use crate::checkpoint::Recorder;
use crate::programs::Programs;
use crate::sinks::Sinks;
use crate::watermark::Watermarks;
use journeyflow_control_api::handle::Progress;
use journeyflow_operators::Time;
use journeyflow_types::{decode_line, Key};
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
}

impl Entry<'_> {
    /// Enters `line`, read from partition `w`: the time it entered at, `Ok(None)` when the
    /// late policy refused it, or why it is not an event.
    pub fn enter(&mut self, w: usize, line: &[u8]) -> anyhow::Result<Result<Option<Time>, String>> {
        let event = match decode_line(line) {
            Ok(event) => event,
            Err(e) => {
                self.progress.rejected.fetch_add(1, Ordering::Relaxed);
                return Ok(Err(e.to_string()));
            }
        };
        let floor = self.marks.floor(w);
        self.marks.saw(w, event.ts);
        self.users.push((event.user, Arc::from(event.user_id.as_str())));
        let archived = self.sinks.archives_events().then(|| event.clone());
        let Ok(time) = self.programs.offer_at_least(event, floor) else {
            self.progress.rejected.fetch_add(1, Ordering::Relaxed);
            return Ok(Ok(None));
        };
        if let Some(event) = &archived {
            self.sinks.event(time, event);
        }
        if let Some(recorder) = &mut self.recorder {
            // Decoded, so UTF-8.
            recorder.record(time, std::str::from_utf8(line).unwrap_or_default())?;
        }
        Ok(Ok(Some(time)))
    }
}
