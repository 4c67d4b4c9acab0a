//! Checkpoints, under `DATA_DIR/checkpoints/<seq>/`: the events each worker read since the
//! checkpoint before (as Parquet, each with the time it entered at) and, in `manifest.json`,
//! every event file of the chain (with the latest time of its events) and the source positions
//! they cover (ingest log offsets, Kafka offsets) with each partition's largest event time. A
//! checkpoint is complete once its manifest exists. A restart enters the events of the newest
//! complete checkpoint at their times and reads the sources from its positions: nothing below
//! them is read again, so a topic may have lost those messages (retention shorter than the
//! windows). A file whose events have all expired leaves the chain (see [`complete`]) and is
//! deleted once a manifest without it is written.

use crate::journey_snapshot::SnapshotRef;
use arrow::array::{RecordBatch, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use journeyflow_connectors::files::{sync_dir, write_atomic};
use journeyflow_connectors::parquet_file::{read_batches, write_batches};
use journeyflow_operators::Time;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows a worker buffers before writing a file of the open checkpoint.
const CHUNK: usize = 200_000;

/// Where the sources stood.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Positions {
    /// Ingest log partition → bytes read.
    pub wal: BTreeMap<usize, u64>,
    /// `(topic, partition, next offset)`.
    pub kafka: Vec<(String, i32, i64)>,
    /// Partition name (`wal/<p>`, `kafka/<topic>/<p>`) → the largest event time it delivered.
    pub seen: BTreeMap<String, Time>,
}

impl Positions {
    /// Adds another worker's positions.
    pub fn merge(&mut self, other: Positions) {
        self.wal.extend(other.wal);
        for k in other.kafka {
            self.kafka.retain(|(t, p, _)| (t, p) != (&k.0, &k.1));
            self.kafka.push(k);
        }
        self.kafka.sort();
        self.seen.extend(other.seen);
    }
}

/// A complete checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Its number.
    pub seq: u64,
    /// Every event file of the chain, relative to the checkpoints directory.
    pub files: Vec<String>,
    /// The source positions the files cover.
    pub positions: Positions,
    /// The latest time (entered at, or timestamp) of each file's events, where known: once
    /// that has expired, the file leaves the chain (see [`complete`]).
    #[serde(default)]
    pub latest: BTreeMap<String, Time>,
    /// The earliest time each file's events entered at, where known (a file partly expired is
    /// merged again without its expired events: see [`crate::chain_merge`]).
    #[serde(default)]
    pub earliest: BTreeMap<String, Time>,
    /// The journeys' states as of a time before every event read past the positions (see
    /// [`crate::journey_snapshot`]), if one was taken.
    #[serde(default)]
    pub journeys: Option<SnapshotRef>,
}

/// What one worker wrote for a checkpoint.
#[derive(Clone, Debug, Default)]
pub struct Part {
    /// Its event files, relative to the checkpoints directory.
    pub files: Vec<String>,
    /// The latest time of each file's events.
    pub latest: BTreeMap<String, Time>,
    /// The earliest time each file's events entered at.
    pub earliest: BTreeMap<String, Time>,
    /// Its sources' positions.
    pub positions: Positions,
    /// The worker's watermark when it took the positions: every event it reads later enters
    /// at this time or later.
    pub watermark: Time,
}

/// The schema of a checkpoint's event files.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("time", DataType::UInt64, false), Field::new("line", DataType::Utf8, false)]))
}

/// The events one worker read since the last checkpoint, written as the open checkpoint's. A
/// chunk that cannot be written (a full disk) is kept and written later: the chain of
/// checkpoints never misses an event.
pub struct Recorder {
    root: PathBuf,
    writer: String,
    seq: u64,
    times: UInt64Builder,
    lines: StringBuilder,
    n: usize,
    /// The latest time (entered at, or timestamp) of the rows recorded since the last cut.
    latest: Time,
    /// The earliest time entered at of the rows recorded since the last cut.
    earliest: Time,
    chunks: usize,
    /// Chunks cut and not written yet: `(file name, rows, (earliest, latest) time)`.
    unwritten: Vec<(String, RecordBatch, (Time, Time))>,
    files: Vec<String>,
    latests: BTreeMap<String, Time>,
    earliests: BTreeMap<String, Time>,
}

impl Recorder {
    /// Worker `index` of `peers` recording for checkpoint `seq` under `root`.
    pub fn new(root: &Path, index: usize, peers: usize, seq: u64) -> Recorder {
        Recorder {
            root: root.to_path_buf(),
            writer: format!("{index}of{peers}"),
            seq,
            times: UInt64Builder::new(),
            lines: StringBuilder::new(),
            n: 0,
            latest: 0,
            earliest: Time::MAX,
            chunks: 0,
            unwritten: Vec::new(),
            files: Vec::new(),
            latests: BTreeMap::new(),
            earliests: BTreeMap::new(),
        }
    }

    /// The checkpoint being recorded.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Bytes of chunks that could not be written yet (none while writes succeed).
    pub fn backlog(&self) -> usize {
        self.unwritten.iter().map(|(_, batch, _)| batch.get_array_memory_size()).sum()
    }

    /// An event (its line as read, its timestamp `ts`) entered at `time`.
    pub fn record(&mut self, time: Time, ts: Time, line: &str) -> anyhow::Result<()> {
        self.times.append_value(time);
        self.lines.append_value(line);
        self.latest = self.latest.max(time).max(ts);
        self.earliest = self.earliest.min(time);
        self.n += 1;
        if self.n >= CHUNK {
            self.cut()?;
            if let Err(e) = self.write() {
                // Kept, and written with the checkpoint's last chunk.
                tracing::warn!("a checkpoint chunk is not written yet: {e:#}");
            }
        }
        Ok(())
    }

    /// Makes the rows recorded so far a chunk of the open checkpoint.
    fn cut(&mut self) -> anyhow::Result<()> {
        if self.n == 0 {
            return Ok(());
        }
        let name = format!("{}/events-{}-{}.parquet", self.seq, self.writer, self.chunks);
        let columns: Vec<arrow::array::ArrayRef> =
            vec![std::sync::Arc::new(self.times.finish()), std::sync::Arc::new(self.lines.finish())];
        self.unwritten.push((name, RecordBatch::try_new(schema(), columns)?, (self.earliest, self.latest)));
        self.chunks += 1;
        self.n = 0;
        self.latest = 0;
        self.earliest = Time::MAX;
        Ok(())
    }

    /// Writes the chunks not written yet, in order; stops at the first that fails.
    fn write(&mut self) -> anyhow::Result<()> {
        while let Some((name, batch, (earliest, latest))) = self.unwritten.first() {
            write_batches(&self.root.join(name), &schema(), std::slice::from_ref(batch))?;
            self.files.push(name.clone());
            self.latests.insert(name.clone(), *latest);
            self.earliests.insert(name.clone(), *earliest);
            self.unwritten.remove(0);
        }
        Ok(())
    }

    /// Writes what is left for the open checkpoint and returns this worker's part of it (with
    /// `positions`); the next checkpoint opens. On failure nothing is lost: a later call
    /// (with later positions) finishes the same checkpoint.
    pub fn finish(&mut self, positions: Positions) -> anyhow::Result<Part> {
        self.cut()?;
        self.write()?;
        let part = Part {
            files: std::mem::take(&mut self.files),
            latest: std::mem::take(&mut self.latests),
            earliest: std::mem::take(&mut self.earliests),
            positions,
            watermark: 0,
        };
        self.seq += 1;
        self.chunks = 0;
        Ok(part)
    }
}

/// The newest complete checkpoint under `root`, once checkpoints after it that were never
/// completed (no manifest) are removed. A manifest that exists but cannot be read is an error
/// naming it: nothing is removed, and the run does not start from an older checkpoint than
/// the newest one.
pub fn newest(root: &Path) -> anyhow::Result<Option<Manifest>> {
    let mut seqs: Vec<u64> = match std::fs::read_dir(root) {
        Ok(entries) => entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", root.display())),
    };
    seqs.sort_unstable();
    let unreadable = |path: &Path, e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "checkpoint manifest {} cannot be read ({e}); it is kept as it is: repair it, or move its \
             directory away to start from the checkpoint before it",
            path.display()
        )
    };
    for seq in seqs.into_iter().rev() {
        let path = root.join(seq.to_string()).join("manifest.json");
        match std::fs::read(&path) {
            Ok(bytes) => {
                return serde_json::from_slice(&bytes).map(Some).map_err(|e| unreadable(&path, &e));
            }
            // Never completed: its files are not in any manifest.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::remove_dir_all(root.join(seq.to_string()))?;
            }
            Err(e) => return Err(unreadable(&path, &e)),
        }
    }
    Ok(None)
}

/// Writes checkpoint `seq`'s manifest from every worker's part, after `previous`, with the
/// journey snapshot `journeys` (or the previous one's), leaving out of the chain the files
/// whose events are all before `expired` (their latest time known) and, given a slack,
/// merging old files (see [`crate::chain_merge`]); returns it and the files left out (to
/// delete once it is written).
pub fn complete(
    root: &Path,
    seq: u64,
    previous: Option<&Manifest>,
    parts: Vec<Part>,
    journeys: Option<SnapshotRef>,
    expired: Time,
    merging: Option<Time>,
) -> anyhow::Result<(Manifest, Vec<String>)> {
    let mut manifest = previous.cloned().unwrap_or(Manifest {
        seq,
        files: Vec::new(),
        positions: Positions::default(),
        latest: BTreeMap::new(),
        earliest: BTreeMap::new(),
        journeys: None,
    });
    manifest.seq = seq;
    if journeys.is_some() {
        manifest.journeys = journeys;
    }
    for part in parts {
        manifest.files.extend(part.files);
        manifest.latest.extend(part.latest);
        manifest.earliest.extend(part.earliest);
        manifest.positions.merge(part.positions);
    }
    let gone = |file: &String| manifest.latest.get(file).is_some_and(|t| *t < expired);
    let (mut dropped, kept): (Vec<String>, Vec<String>) = manifest.files.iter().cloned().partition(gone);
    manifest.files = kept;
    let dir = root.join(seq.to_string());
    std::fs::create_dir_all(&dir)?;
    if let Some(slack) = merging {
        dropped.extend(crate::chain_merge::merge(root, seq, &mut manifest, expired, slack));
    }
    let named: std::collections::BTreeSet<&String> = manifest.files.iter().collect();
    let (latest, earliest) = (&mut manifest.latest, &mut manifest.earliest);
    latest.retain(|file, _| named.contains(file));
    earliest.retain(|file, _| named.contains(file));
    // The directory's and the event files' names, then the manifest naming them.
    sync_dir(root)?;
    sync_dir(&dir)?;
    write_atomic(&dir.join("manifest.json"), &serde_json::to_vec_pretty(&manifest)?)?;
    Ok((manifest, dropped))
}

/// After `manifest` is written: deletes the event files of checkpoints up to it that its
/// chain no longer names (left out as expired, or left behind by a rewrite that raced with
/// their leaving), the manifests before it (they name such files), and directories left
/// empty. Returns how many files went.
pub fn sweep(root: &Path, manifest: &Manifest) -> anyhow::Result<usize> {
    let named: std::collections::BTreeSet<&str> = manifest.files.iter().map(String::as_str).collect();
    let mut gone = 0;
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let Some(seq) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else { continue };
        if seq > manifest.seq {
            continue;
        }
        for file in std::fs::read_dir(entry.path())? {
            let file = file?;
            let name = file.file_name().to_string_lossy().into_owned();
            let relative = format!("{seq}/{name}");
            let stale_manifest = name == "manifest.json" && seq < manifest.seq;
            let stale_events = name.starts_with("events-") && !named.contains(relative.as_str());
            if stale_manifest || stale_events {
                std::fs::remove_file(file.path())?;
                gone += usize::from(stale_events);
            }
        }
        if seq < manifest.seq && std::fs::read_dir(entry.path())?.next().is_none() {
            std::fs::remove_dir(entry.path())?;
        }
    }
    if gone > 0 {
        sync_dir(root)?;
    }
    Ok(gone)
}

/// The events of one checkpoint file: `(time, line)`.
pub fn events(root: &Path, file: &str) -> anyhow::Result<Vec<(Time, String)>> {
    let mut out = Vec::new();
    for batch in read_batches(&root.join(file))? {
        let times = batch.column(0).as_any().downcast_ref::<arrow::array::UInt64Array>();
        let lines = batch.column(1).as_any().downcast_ref::<arrow::array::StringArray>();
        let (Some(times), Some(lines)) = (times, lines) else {
            anyhow::bail!("{file}: not a checkpoint file (columns time, line)");
        };
        out.extend(times.values().iter().zip(lines.iter()).map(|(t, l)| (*t, l.unwrap_or_default().to_string())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_complete_with_its_manifest_and_chains_the_files_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut recorder = Recorder::new(root, 0, 1, 1);
        recorder.record(5, 5, "{\"a\":1}").unwrap();
        let positions = Positions { wal: BTreeMap::from([(0, 8)]), ..Positions::default() };
        let part = recorder.finish(positions.clone()).unwrap();
        assert!(!root.join("1/manifest.json").exists(), "no manifest yet");
        let (first, _) = complete(root, 1, None, vec![part], None, 0, None).unwrap();
        recorder.record(9, 9, "{\"a\":2}").unwrap();
        let later = Positions { wal: BTreeMap::from([(0, 16)]), ..Positions::default() };
        let (second, _) =
            complete(root, 2, Some(&first), vec![recorder.finish(later.clone()).unwrap()], None, 0, None).unwrap();
        // A third, never completed, is removed.
        recorder.record(11, 11, "{\"a\":3}").unwrap();
        recorder.finish(Positions::default()).unwrap();
        assert!(root.join("3").exists());
        assert_eq!(newest(root).unwrap(), Some(second.clone()));
        assert!(!root.join("3").exists());
        assert_eq!(second.positions, later);
        let all: Vec<(Time, String)> = second.files.iter().flat_map(|f| events(root, f).unwrap()).collect();
        assert_eq!(all, vec![(5, "{\"a\":1}".to_string()), (9, "{\"a\":2}".to_string())]);
    }

    #[test]
    fn files_whose_events_all_expired_leave_the_chain_and_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut recorder = Recorder::new(root, 0, 1, 1);
        let mut previous = None;
        // Checkpoint 1: events at 5 and (late, entered at 12) 3; 2: at 9; 3: at 20.
        for (seq, rows) in [(1, vec![(5, 5), (12, 3)]), (2, vec![(9, 9)]), (3, vec![(20, 20)])] {
            for (time, ts) in rows {
                recorder.record(time, ts, &format!("{{\"t\":{ts}}}")).unwrap();
            }
            let part = recorder.finish(Positions::default()).unwrap();
            let (manifest, dropped) = complete(root, seq, previous.as_ref(), vec![part], None, 10, None).unwrap();
            // Checkpoint 1's file holds an event entered at 12: it stays; checkpoint 2's goes.
            assert_eq!(dropped, if seq == 2 { vec!["2/events-0of1-0.parquet".to_string()] } else { vec![] });
            previous = Some(manifest);
        }
        let manifest = previous.unwrap();
        assert_eq!(manifest.files, vec!["1/events-0of1-0.parquet", "3/events-0of1-0.parquet"]);
        // A file no manifest names (a rewrite that raced with its leaving) goes too.
        std::fs::write(root.join("1/events-0of1-9.parquet"), b"").unwrap();
        assert_eq!(sweep(root, &manifest).unwrap(), 2);
        assert!(!root.join("2").exists() && !root.join("1/manifest.json").exists());
        assert_eq!(newest(root).unwrap(), Some(manifest.clone()));
        let all: Vec<Time> = manifest.files.iter().flat_map(|f| events(root, f).unwrap()).map(|(t, _)| t).collect();
        assert_eq!(all, vec![5, 12, 20]);
    }

    #[test]
    fn a_manifest_that_cannot_be_read_is_reported_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut recorder = Recorder::new(root, 0, 1, 1);
        recorder.record(5, 5, "{\"a\":1}").unwrap();
        let (first, _) =
            complete(root, 1, None, vec![recorder.finish(Positions::default()).unwrap()], None, 0, None).unwrap();
        std::fs::create_dir_all(root.join("2")).unwrap();
        std::fs::write(root.join("2/manifest.json"), b"{ not a manifest").unwrap();
        // A newer one never completed is removed; the unreadable one is named, not removed.
        std::fs::create_dir_all(root.join("3")).unwrap();
        let err = newest(root).unwrap_err().to_string();
        assert!(err.contains("2/manifest.json") && err.contains("cannot be read"), "{err}");
        assert!(root.join("2/manifest.json").exists() && !root.join("3").exists());
        // Moved away, the one before it is the newest again.
        std::fs::rename(root.join("2"), root.join("broken")).unwrap();
        assert_eq!(newest(root).unwrap(), Some(first));
    }
}
