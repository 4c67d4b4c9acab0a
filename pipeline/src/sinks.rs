//! Where one worker's outputs go: its NDJSON logs under `out/`, segmented (the actions log is
//! also the webhooks' outbox, followed as far as it is synced), the Kafka output topics (keyed by user
//! id) and the Parquet archive (with the accepted events). Every record carries its
//! deterministic id.
//! After a restart, records before the frontier the previous run made durable are not written
//! again; later ones may be, with the same ids.

use crate::archive::{output_index, Archives};
use crate::journey_output::{ActionLine, TransitionLine};
use crate::record_id::{Ids, WithId};
use crate::segment_output::ChangeLine;
use journeyflow_connectors::files::sync_dir;
use journeyflow_connectors::kafka::Sink;
use journeyflow_connectors::ndjson::Rolling;
use journeyflow_control_api::tail::{Allowance, Item, Kind, Tail, Topic};
use journeyflow_operators::Time;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Worker `index`'s log of output `kind` (`segment_changes`, `journey_transitions`,
/// `journey_actions`, `dead_letter`) in `dir`: a directory of segments.
pub fn output_log(dir: &Path, kind: &str, index: usize) -> PathBuf {
    dir.join(format!("{kind}-{index}"))
}

/// Opens that log to append (made with its first segment if new; the single file of an
/// older layout, `<kind>-<index>.ndjson`, becomes that segment).
pub fn open_output_log(dir: &Path, kind: &str, index: usize, segment_bytes: u64) -> std::io::Result<Rolling> {
    let log = output_log(dir, kind, index);
    Rolling::open(&log, &log.with_extension("ndjson"), segment_bytes)
}

/// The Kafka side of the sinks: the producer and the topic per output.
#[derive(Clone)]
pub struct KafkaOutputs {
    /// The producer.
    pub sink: Arc<Sink>,
    /// Segment changes topic.
    pub changes: String,
    /// Journey transitions topic.
    pub transitions: String,
    /// Journey actions topic.
    pub actions: String,
}

/// Where a worker's records go for the live streams: into its process's tail (process 0),
/// or, a few a second, to be forwarded to process 0's.
pub enum TailOut {
    /// Process 0's tail.
    Local(Tail),
    /// Records to forward, as the allowance lets them go.
    Forward {
        /// This process's tail, which knows the topics process 0's streams follow.
        tail: Tail,
        /// How many may still go this second.
        allowance: Allowance,
        /// Those to forward at the worker's next step.
        pending: Vec<Item>,
    },
}

/// One worker's sinks.
pub struct Sinks {
    changes: Rolling,
    transitions: Rolling,
    actions: Rolling,
    /// Input records that were not events: `{"source", "offset", "error", "line"}`.
    dead_letters: Rolling,
    kafka: Option<KafkaOutputs>,
    archives: Option<Archives>,
    /// Through where the archive holds every record (`None`: no archive).
    archived: Option<Time>,
    skip_before: Time,
    ids: Ids,
    line: Vec<u8>,
    tail: Option<TailOut>,
}

impl Sinks {
    /// Worker `index`'s logs in `dir` (appended to; a line a crash cut short is removed first;
    /// segments sealed past `segment_bytes`), the Kafka topics if any; records before
    /// `skip_before` are dropped.
    pub fn open(
        dir: &Path,
        index: usize,
        segment_bytes: u64,
        kafka: Option<KafkaOutputs>,
        archives: Option<Archives>,
        skip_before: Time,
    ) -> std::io::Result<Sinks> {
        std::fs::create_dir_all(dir)?;
        let open = |kind: &str| open_output_log(dir, kind, index, segment_bytes);
        let actions = open("journey_actions")?;
        sync_dir(dir)?;
        Ok(Sinks {
            changes: open("segment_changes")?,
            transitions: open("journey_transitions")?,
            dead_letters: open("dead_letter")?,
            actions,
            kafka,
            archived: archives.as_ref().map(|_| skip_before),
            archives,
            skip_before,
            ids: Ids::default(),
            line: Vec::new(),
            tail: None,
        })
    }

    /// Sends the records written from now on to the live streams through `out` too.
    pub fn tail_to(&mut self, out: TailOut) {
        self.tail = Some(out);
    }

    /// The records to forward to process 0's tail (see [`TailOut::Forward`]), and how many
    /// of each topic were left out.
    pub fn forwarded(&mut self) -> Vec<Item> {
        match &mut self.tail {
            Some(TailOut::Forward { allowance, pending, .. }) => {
                let mut out = std::mem::take(pending);
                out.extend(allowance.left_out());
                out
            }
            _ => Vec::new(),
        }
    }

    /// The record just written (in `line`) for the live streams, if one follows its topic.
    fn tail_record(&mut self, kind: Kind, topic: &str) {
        match &self.tail {
            Some(TailOut::Local(tail) | TailOut::Forward { tail, .. }) if tail.wants(kind, topic) => {}
            _ => return,
        }
        let topic = Topic::of(kind, topic);
        let line = String::from_utf8_lossy(self.line.strip_suffix(b"\n").unwrap_or(&self.line)).into_owned();
        let item = Item { kind, topic, line, missed: 0 };
        match &mut self.tail {
            Some(TailOut::Local(tail)) => tail.send(item),
            Some(TailOut::Forward { allowance, pending, .. }) => {
                let now = journeyflow_types::time::now_ms();
                pending.extend(allowance.take(&item.topic, now).then_some(item));
            }
            None => {}
        }
    }

    /// Starts a batch: records equal in every field are numbered within it.
    pub fn batch(&mut self) {
        self.ids.clear();
    }

    /// A user entered (`diff > 0`) or left a segment (because they were deleted, when `deleted`).
    pub fn change(
        &mut self,
        segment: &str,
        user_id: &str,
        diff: isize,
        time: Time,
        deleted: bool,
    ) -> anyhow::Result<()> {
        let line = ChangeLine::new(segment, user_id, diff, time).deleted(deleted);
        let record = self.ids.change(&line);
        if time >= self.skip_before {
            let kafka = self.kafka.as_ref().map(|k| (&*k.sink, k.changes.as_str()));
            write(&mut self.line, &mut self.changes, &record, kafka, user_id)?;
            self.tail_record(Kind::Change, segment);
            self.archive("segment_changes", time);
        }
        Ok(())
    }

    /// A journey transition.
    pub fn transition(&mut self, line: &TransitionLine) -> anyhow::Result<()> {
        let record = self.ids.transition(line);
        if line.time >= self.skip_before {
            let kafka = self.kafka.as_ref().map(|k| (&*k.sink, k.transitions.as_str()));
            write(&mut self.line, &mut self.transitions, &record, kafka, &line.user_id)?;
            self.tail_record(Kind::Transition, &line.journey);
            self.archive("journey_transitions", line.time);
        }
        Ok(())
    }

    /// A journey action (the webhooks deliver the sent ones from the actions file).
    pub fn action(&mut self, line: &ActionLine) -> anyhow::Result<()> {
        let record = self.ids.action(line);
        if line.time < self.skip_before {
            return Ok(());
        }
        let kafka = self.kafka.as_ref().map(|k| (&*k.sink, k.actions.as_str()));
        write(&mut self.line, &mut self.actions, &record, kafka, &line.user_id)?;
        self.tail_record(Kind::Action, &line.journey);
        self.archive("journey_actions", line.time);
        Ok(())
    }

    /// An input record that is not an event, with where it was read and why (its first
    /// 1 KiB is kept).
    pub fn dead_letter(&mut self, source: &str, offset: u64, error: &str, record: &[u8]) -> anyhow::Result<()> {
        let kept = &record[..record.len().min(1024)];
        let line = serde_json::json!({"source": source, "offset": offset, "error": error,
            "bytes": record.len(), "line": String::from_utf8_lossy(kept)});
        self.line.clear();
        serde_json::to_writer(&mut self.line, &line)?;
        self.line.push(b'\n');
        self.dead_letters.push(&self.line);
        self.tail_record(Kind::DeadLetter, source);
        Ok(())
    }

    /// The actions log's offset after what was written so far: all synced once `sync` returns.
    pub fn actions_written(&self) -> u64 {
        self.actions.end()
    }

    /// Whether accepted events go to an archive.
    pub fn archives_events(&self) -> bool {
        self.archives.is_some()
    }

    /// An accepted event, counting at `time`, for the archive.
    pub fn event(&mut self, time: Time, event: &journeyflow_types::Event) {
        if let Some(archives) = self.archives.as_mut().filter(|_| time >= self.skip_before) {
            archives.event(time, event);
        }
    }

    /// The line just written (with its newline) to the archive, as a record of `kind`.
    fn archive(&mut self, kind: &str, time: Time) {
        if let Some(archives) = &mut self.archives {
            archives.output(output_index(kind), time, &self.line[..self.line.len() - 1]);
        }
    }

    /// Through where every sink holds every record, once the programs' outputs before
    /// `frontier` are all in: the archive is written at most every interval (and always when
    /// `now` is set); until then it holds what it held.
    pub fn complete_through(&mut self, frontier: Time, now: bool) -> anyhow::Result<Time> {
        match (&mut self.archives, &mut self.archived) {
            (Some(archives), Some(archived)) => {
                if now || archives.due() {
                    archives.write_before(frontier)?;
                    *archived = frontier;
                }
                Ok(*archived)
            }
            _ => Ok(frontier),
        }
    }

    /// Hands buffered lines to the operating system; what it cannot take yet (a full disk)
    /// stays buffered for the next call.
    pub fn flush(&mut self) -> std::io::Result<()> {
        let mut result = Ok(());
        for w in [&mut self.changes, &mut self.transitions, &mut self.actions, &mut self.dead_letters] {
            if let Err(e) = w.flush() {
                result = Err(e);
            }
        }
        result
    }

    /// Flushes and makes the files durable on disk (an error: not all of them are yet).
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.flush()?;
        for w in [&mut self.changes, &mut self.transitions, &mut self.actions, &mut self.dead_letters] {
            w.sync()?;
        }
        Ok(())
    }

    /// Bytes of output waiting for the disk (the archive's too, while it fails).
    pub fn backlog(&self) -> usize {
        let files: usize =
            [&self.changes, &self.transitions, &self.actions, &self.dead_letters].iter().map(|w| w.backlog()).sum();
        files + self.archives.as_ref().map_or(0, Archives::backlog)
    }
}

/// Writes one record as a line to `file` and, with Kafka, to its topic keyed by `user_id`.
fn write<T: Serialize>(
    line: &mut Vec<u8>,
    file: &mut Rolling,
    record: &WithId<'_, T>,
    kafka: Option<(&Sink, &str)>,
    user_id: &str,
) -> anyhow::Result<()> {
    line.clear();
    serde_json::to_writer(&mut *line, record)?;
    if let Some((sink, topic)) = kafka {
        sink.send(topic, user_id.as_bytes(), line, &[("journeyflow.id", record.id.as_bytes())])?;
    }
    line.push(b'\n');
    file.push(line);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_before_the_durable_frontier_are_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut sinks = Sinks::open(dir.path(), 0, 1 << 20, None, None, 10).unwrap();
        sinks.change("s", "u", 1, 9, false).unwrap();
        sinks.change("s", "u", -1, 10, true).unwrap();
        sinks.flush().unwrap();
        let text = std::fs::read_to_string(dir.path().join("segment_changes-0/00000000000000000000.ndjson")).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("\"time\":10"), "{text}");
    }
}
