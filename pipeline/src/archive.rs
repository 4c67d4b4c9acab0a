//! What the Parquet archive holds and its columns: accepted events (`events`) and every output
//! (`segment_changes`, `journey_transitions`, `journey_actions`), one worker's rows written
//! when its outputs before a frontier are complete, at most every `interval`; and how long it
//! keeps them.

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use journeyflow_connectors::archive::Archive;
use journeyflow_connectors::parquet_file::Error;
use journeyflow_operators::Time;
use journeyflow_types::Event;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn schema(fields: &[(&str, DataType, bool)]) -> SchemaRef {
    Arc::new(Schema::new(fields.iter().map(|(n, t, null)| Field::new(*n, t.clone(), *null)).collect::<Vec<_>>()))
}

/// Columns of `events`: the time the event counts at, its own timestamp, and its content.
pub fn events_schema() -> SchemaRef {
    use DataType::{UInt64, Utf8};
    schema(&[
        ("time", UInt64, false),
        ("timestamp", UInt64, false),
        ("message_id", Utf8, false),
        ("user_id", Utf8, false),
        ("type", Utf8, false),
        ("event", Utf8, true),
        ("properties", Utf8, false),
    ])
}

/// Columns of each output kind, as the NDJSON and Kafka sinks write it.
pub fn output_schema(kind: &str) -> SchemaRef {
    use DataType::{UInt32, UInt64, Utf8};
    match kind {
        "segment_changes" => schema(&[
            ("id", Utf8, false),
            ("segment", Utf8, false),
            ("user_id", Utf8, false),
            ("change", Utf8, false),
            ("time", UInt64, false),
        ]),
        "journey_transitions" => schema(&[
            ("id", Utf8, false),
            ("journey", Utf8, false),
            ("version", UInt32, false),
            ("user_id", Utf8, false),
            ("from", Utf8, true),
            ("to", Utf8, true),
            ("time", UInt64, false),
            ("reason", Utf8, false),
        ]),
        "journey_actions" => schema(&[
            ("id", Utf8, false),
            ("action_id", Utf8, false),
            ("journey", Utf8, false),
            ("version", UInt32, false),
            ("node", Utf8, false),
            ("user_id", Utf8, false),
            ("channel", Utf8, false),
            ("template", Utf8, true),
            // The payload object as JSON text.
            ("payload", Utf8, true),
            ("time", UInt64, false),
            ("status", Utf8, false),
            ("error", Utf8, true),
        ]),
        other => panic!("no archive kind {other}"),
    }
}

#[derive(Serialize)]
struct EventRow<'a> {
    time: Time,
    timestamp: Time,
    message_id: &'a str,
    user_id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    event: Option<&'a str>,
    properties: String,
}

/// Keeps the archive to its retention: each time the durable frontier enters a new hour, the
/// hour partitions that ended `keep` or more before it are deleted.
pub struct Sweeper {
    dir: PathBuf,
    keep: Time,
    /// The hour of the durable frontier at the last sweep.
    swept: Option<Time>,
}

impl Sweeper {
    /// A sweeper of the archive in `dir` keeping `keep` of event time behind the durable frontier.
    pub fn new(dir: &Path, keep: Time) -> Sweeper {
        Sweeper { dir: dir.to_path_buf(), keep, swept: None }
    }

    /// Sweeps if the durable frontier `durable` entered a new hour; returns the partitions deleted.
    pub fn step(&mut self, durable: Time) -> usize {
        let hour = durable - durable % 3_600_000;
        if self.swept == Some(hour) {
            return 0;
        }
        match journeyflow_connectors::archive::discard_before(&self.dir, durable.saturating_sub(self.keep)) {
            Ok(gone) => {
                self.swept = Some(hour);
                gone
            }
            Err(e) => {
                // Tried again at the next step.
                tracing::warn!("archive: partitions past the retention in {} not deleted yet: {e}", self.dir.display());
                0
            }
        }
    }
}

/// One worker's archives.
pub struct Archives {
    events: Archive,
    outputs: [Archive; 3],
    interval: Duration,
    written: Instant,
    row: Vec<u8>,
    /// Whether the last write failed.
    failing: bool,
}

/// The output kinds, in the order of `Archives::outputs`.
const OUTPUTS: [&str; 3] = ["segment_changes", "journey_transitions", "journey_actions"];

impl Archives {
    /// Worker `index` of `peers`'s archives under `dir`, written at most every `interval`.
    pub fn new(dir: &Path, index: usize, peers: usize, interval: Duration) -> Archives {
        let writer = format!("{index}of{peers}");
        Archives {
            events: Archive::new(dir, "events", events_schema(), writer.clone()),
            outputs: OUTPUTS.map(|kind| Archive::new(dir, kind, output_schema(kind), writer.clone())),
            interval,
            written: Instant::now(),
            row: Vec::new(),
            failing: false,
        }
    }

    /// An accepted event, counting at `time`.
    pub fn event(&mut self, time: Time, event: &Event) {
        let properties: serde_json::Map<String, serde_json::Value> =
            event.props.0.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
        let kind = match event.kind {
            journeyflow_types::Kind::Track => "track",
            journeyflow_types::Kind::Identify => "identify",
            journeyflow_types::Kind::Page => "page",
            journeyflow_types::Kind::Screen => "screen",
        };
        let row = EventRow {
            time,
            timestamp: event.ts,
            message_id: &event.message_id,
            user_id: &event.user_id,
            kind,
            event: (!event.name.is_empty()).then_some(event.name.as_str()),
            properties: serde_json::Value::Object(properties).to_string(),
        };
        self.row.clear();
        serde_json::to_writer(&mut self.row, &row).expect("an event row serializes");
        self.events.push(time, &self.row);
    }

    /// An output record of `kind` (its JSON, as the other sinks write it).
    pub fn output(&mut self, kind: usize, time: Time, json: &[u8]) {
        if OUTPUTS[kind] == "journey_actions" {
            // The payload object becomes JSON text.
            let mut value: serde_json::Value = serde_json::from_slice(json).expect("an action record is JSON");
            if let Some(p) = value.get_mut("payload").filter(|p| !p.is_null()) {
                *p = serde_json::Value::String(p.to_string());
            }
            self.row = serde_json::to_vec(&value).expect("JSON serializes");
            self.outputs[kind].push(time, &self.row);
        } else {
            self.outputs[kind].push(time, json);
        }
    }

    /// Whether it is time to write.
    pub fn due(&self) -> bool {
        self.written.elapsed() >= self.interval
    }

    /// Writes every row before `frontier` (what fails stays buffered for the next call).
    pub fn write_before(&mut self, frontier: Time) -> Result<(), Error> {
        let written = (|| {
            self.events.write_before(frontier)?;
            for archive in &mut self.outputs {
                archive.write_before(frontier)?;
            }
            Ok(())
        })();
        self.failing = written.is_err();
        self.written = Instant::now();
        written
    }

    /// Bytes of rows waiting for a disk that refused them (none while writes succeed: rows
    /// wait for the interval then, which is not a backlog).
    pub fn backlog(&self) -> usize {
        match self.failing {
            true => self.events.buffered_bytes() + self.outputs.iter().map(Archive::buffered_bytes).sum::<usize>(),
            false => 0,
        }
    }
}

/// Index of an output kind in [`Archives::output`].
pub fn output_index(kind: &str) -> usize {
    OUTPUTS.iter().position(|k| *k == kind).expect("an output kind")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweeper_deletes_hours_past_the_retention_once_per_hour_of_the_durable_frontier() {
        let dir = tempfile::tempdir().unwrap();
        let h0 = 1_704_067_200_000u64; // 2024-01-01 00:00
        let hour = |n: u64| dir.path().join(format!("segment_changes/dt=2024-01-01/hour={n:02}"));
        for n in 0..4 {
            std::fs::create_dir_all(hour(n)).unwrap();
        }
        // Keep two hours behind the frontier.
        let mut sweeper = Sweeper::new(dir.path(), 2 * 3_600_000);
        assert_eq!(sweeper.step(h0 + 3 * 3_600_000 + 10), 1, "hour 00 ended two hours before 03:00");
        std::fs::create_dir_all(hour(0)).unwrap();
        assert_eq!(sweeper.step(h0 + 3 * 3_600_000 + 20), 0, "not again within the same hour");
        assert_eq!(sweeper.step(h0 + 4 * 3_600_000), 2, "hours 00 and 01 at 04:00");
        assert!(hour(2).exists() && hour(3).exists());
    }
}
