//! Journey state in checkpoints. A journey's users depend on everything it saw since its
//! publication, long after those events expired; so that a checkpoint chain (and a restart)
//! need not keep them, each journey version's per-user state and report counters are written
//! as of a time `S` (every input through `S` done), under `checkpoints/journeys/<S>/`, one
//! file per worker of the process (and, on process 0, the API's latest journey records
//! through `S`): a Parquet file of one column, `line`, a JSON document each (an older
//! version's NDJSON files are read too). A restart places each user back at `S`; the events through `S` only set the
//! condition memberships again, as for a journey installed over history.

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use journeyflow_connectors::parquet_file::{read_batches, write_batches};
use journeyflow_operators::journey::machine::UserState;
use journeyflow_operators::journey::quota::QuotaState;
use journeyflow_operators::journey::record::Status;
use journeyflow_operators::journey::stats::Stat;
use journeyflow_operators::Time;
use journeyflow_types::{Key, KeyMap};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The largest snapshot line written and read back (a user's state is far smaller; a
/// journey's line holds its quota's window, at most 100,000 times).
const MAX_LINE: usize = 4 << 20;

/// One journey version's state on one worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JourneyState {
    /// The journey id.
    pub id: String,
    /// The version.
    pub version: u32,
    /// Its status.
    pub status: Status,
    /// Users with anything to keep (condition memberships left out), in key order.
    pub users: Vec<(Key, UserState)>,
    /// The worker's share of the report counters through the time.
    pub counts: BTreeMap<Stat, isize>,
    /// What the journey's quota has counted (on the worker counting it).
    pub quota: Option<QuotaState>,
}

/// A snapshot a worker took: every journey running at `time`, or `None` where one of them went
/// before its state was complete (the snapshot is abandoned; a later one is taken).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    /// The time it is as of.
    pub time: Time,
    /// The journeys' states.
    pub journeys: Option<Vec<JourneyState>>,
}

/// A complete snapshot, as a manifest names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// The time it is as of.
    pub time: Time,
    /// Its files, relative to the checkpoints directory.
    pub files: Vec<String>,
    /// The journeys it holds.
    #[serde(default)]
    pub journeys: Vec<String>,
}

/// One line of a snapshot file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    /// A journey version's status and counters.
    Journey {
        journey: String,
        version: u32,
        status: Status,
        counts: Vec<(Stat, isize)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quota: Option<QuotaState>,
    },
    /// More of a journey version's counters (its per-hour ones, a thousand a line).
    Counts { journey: String, version: u32, counts: Vec<(Stat, isize)> },
    /// One user's state under their key (as hex); `user_id` where known (the deletion scrub
    /// finds the line by it).
    User { journey: String, user: String, user_id: Option<String>, time: Time, state: UserState },
    /// One of the API's latest journey records (a transition or an action line as written),
    /// of the user with key `user` (as hex; snapshots before it named the user by `user_id`
    /// alone, which is kept where known, for the deletion scrub).
    Record {
        journey: String,
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        user_id: Option<String>,
        time: Time,
        line: String,
    },
}

/// A counter and its value.
type Counted = (Stat, isize);

/// The directory of the snapshot as of `time`.
pub fn dir(root: &Path, time: Time) -> PathBuf {
    root.join("journeys").join(time.to_string())
}

/// Writes worker `local`'s states as of `time` (user ids from `names`) and, when given, the
/// API's journey records `(journey, user, time, line)` through `time`; returns the file's
/// name relative to `root`.
pub fn write(
    root: &Path,
    time: Time,
    local: usize,
    journeys: &[JourneyState],
    names: &KeyMap<Arc<str>>,
    records: &[(String, Key, Time, String)],
) -> anyhow::Result<String> {
    let mut out = arrow::array::StringBuilder::new();
    let mut text = Vec::new();
    let mut line = |l: &Line| -> anyhow::Result<()> {
        text.clear();
        serde_json::to_writer(&mut text, l)?;
        anyhow::ensure!(text.len() <= MAX_LINE, "a snapshot line of {} bytes, more than can be read back", text.len());
        out.append_value(std::str::from_utf8(&text)?);
        Ok(())
    };
    for j in journeys {
        let (hourly, counts): (Vec<Counted>, Vec<Counted>) = j
            .counts
            .iter()
            .filter(|(_, n)| **n != 0)
            .map(|(s, n)| (*s, *n))
            .partition(|(s, _)| matches!(s, Stat::Hourly(..)));
        let quota = j.quota.clone();
        line(&Line::Journey { journey: j.id.clone(), version: j.version, status: j.status, counts, quota })?;
        for chunk in hourly.chunks(1_000) {
            line(&Line::Counts { journey: j.id.clone(), version: j.version, counts: chunk.to_vec() })?;
        }
        for (user, state) in &j.users {
            let user_id = names.get(user).map(|n| n.to_string());
            let key = user.to_string();
            line(&Line::User { journey: j.id.clone(), user: key, user_id, time, state: state.clone() })?;
        }
    }
    for (journey, user, at, text) in records.iter().filter(|r| r.2 <= time) {
        let (journey, line_text, time) = (journey.clone(), text.clone(), *at);
        let user_id = names.get(user).map(|n| n.to_string());
        line(&Line::Record { journey, user: Some(user.to_string()), user_id, time, line: line_text })?;
    }
    let dir = dir(root, time);
    std::fs::create_dir_all(&dir)?;
    let name = format!("{local}.parquet");
    let batch = RecordBatch::try_new(schema(), vec![Arc::new(out.finish())])?;
    write_batches(&dir.join(&name), &schema(), &[batch])?;
    journeyflow_connectors::files::sync_dir(&dir)?;
    Ok(format!("journeys/{time}/{name}"))
}

/// A journey version as a snapshot left it, for one worker to restore.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Its version.
    pub version: u32,
    /// Its status.
    pub status: Option<Status>,
    /// The users this worker enters (the dataflow routes each to its owner).
    pub users: Vec<(Key, UserState)>,
    /// Report counters this worker starts from (the process's total, on its first worker).
    pub counts: BTreeMap<Stat, isize>,
    /// What the quota had counted (on the first worker, which counts it again).
    pub quota: Option<QuotaState>,
}

/// What one worker restores from a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restore {
    /// The time it is as of.
    pub time: Time,
    /// By journey id.
    pub journeys: BTreeMap<String, Restored>,
    /// User ids by key, of the users this worker enters.
    pub names: Vec<(Key, Arc<str>)>,
    /// The API's journey records `(journey, user, line)` (for the process's first worker).
    pub records: Vec<(String, Key, String)>,
}

impl Restore {
    /// Whether the snapshot holds `version` of journey `id` (not taken yet).
    pub fn holds(&self, id: &str, version: u32) -> bool {
        self.journeys.get(id).is_some_and(|r| r.version == version)
    }

    /// Takes journey `id`'s state if the snapshot holds `version` of it.
    pub fn take(&mut self, id: &str, version: u32) -> Option<Restored> {
        self.holds(id, version).then(|| self.journeys.remove(id)).flatten()
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, false)]))
}

/// The lines of a snapshot file: a Parquet file's `line` column, or an NDJSON file's lines.
fn lines(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let context = |e: &dyn std::fmt::Display| anyhow::anyhow!("journey snapshot {}: {e}", path.display());
    if path.extension().is_some_and(|x| x == "parquet") {
        let mut out = Vec::new();
        for batch in read_batches(path).map_err(|e| context(&e))? {
            let Some(lines) = batch.column(0).as_any().downcast_ref::<StringArray>() else {
                return Err(context(&"not a snapshot file (a column line)"));
            };
            out.extend(lines.iter().map(|l| l.unwrap_or_default().as_bytes().to_vec()));
        }
        return Ok(out);
    }
    let reader = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| context(&e))?);
    reader.split(b'\n').map(|l| l.map_err(|e| context(&e))).collect()
}

/// Reads worker `local`'s share (of `locals`) of the snapshot `at`: its users are those of
/// every `locals`-th line; the counters and the API's records go to the first worker. Blank
/// lines (a scrubbed user) are skipped.
pub fn read(root: &Path, at: &SnapshotRef, local: usize, locals: usize) -> anyhow::Result<Restore> {
    let mut restore = Restore { time: at.time, ..Restore::default() };
    let mut n = 0usize;
    for file in &at.files {
        let path = root.join(file);
        for (i, line) in lines(&path)?.into_iter().enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            anyhow::ensure!(line.len() <= MAX_LINE, "journey snapshot {}: line {} is too long", path.display(), i + 1);
            let parsed: Line = serde_json::from_slice(&line)
                .map_err(|e| anyhow::anyhow!("journey snapshot {}: line {}: {e}", path.display(), i + 1))?;
            match parsed {
                Line::Journey { journey, version, status, counts, quota } => {
                    let r = restore.journeys.entry(journey).or_default();
                    r.version = version;
                    r.status = Some(status);
                    if local == 0 {
                        for (stat, count) in counts {
                            *r.counts.entry(stat).or_default() += count;
                        }
                        r.quota = r.quota.take().or(quota);
                    }
                }
                Line::Counts { journey, counts, .. } => {
                    if local == 0 {
                        let r = restore.journeys.entry(journey).or_default();
                        for (stat, count) in counts {
                            *r.counts.entry(stat).or_default() += count;
                        }
                    }
                }
                Line::User { journey, user, user_id, state, .. } => {
                    let user = Key::parse(&user).ok_or_else(|| {
                        anyhow::anyhow!("journey snapshot {}: line {}: {user:?} is not a key", path.display(), i + 1)
                    })?;
                    n += 1;
                    if n % locals == local {
                        restore.journeys.entry(journey).or_default().users.push((user, state));
                        if let Some(id) = user_id {
                            restore.names.push((user, id.into()));
                        }
                    }
                }
                Line::Record { journey, user, user_id, line, .. } if local == 0 => {
                    let key = user.as_deref().and_then(Key::parse).or(user_id.as_deref().map(Key::of));
                    let key = key.ok_or_else(|| {
                        anyhow::anyhow!("journey snapshot {}: line {}: a record of no user", path.display(), i + 1)
                    })?;
                    restore.records.push((journey, key, line))
                }
                Line::Record { .. } => {}
            }
        }
    }
    Ok(restore)
}

/// Deletes the snapshots other than `keep` (older ones a manifest no longer names, and newer
/// ones never named: a restart takes another).
pub fn sweep(root: &Path, keep: Option<Time>) -> anyhow::Result<()> {
    let base = root.join("journeys");
    let entries = match std::fs::read_dir(&base) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let entry = entry?;
        let time = entry.file_name().to_str().and_then(|n| n.parse::<Time>().ok());
        if time.is_some_and(|t| Some(t) < keep) {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use journeyflow_operators::journey::machine::Position;

    #[test]
    fn a_snapshot_reads_back_split_among_workers_with_counts_once() {
        let scratch = tempfile::tempdir().unwrap();
        let state = |node| UserState {
            at: Some(Position { node, since: 5, timer: Some(90) }),
            entries: 1,
            last_entry: Some(5),
            ..UserState::default()
        };
        let users: Vec<(Key, UserState)> = (0..5).map(|i| (Key(i), state(i as u32))).collect();
        let j = JourneyState {
            id: "j".into(),
            version: 2,
            status: Status::Paused,
            users: users.clone(),
            counts: BTreeMap::from([(Stat::Entered, 5)]),
            quota: Some(QuotaState { recent: [3, 4].into(), total: 7 }),
        };
        let names: KeyMap<Arc<str>> = [(Key(1), Arc::from("u1"))].into_iter().collect();
        let records = vec![
            ("j".to_string(), Key(1), 4, "{\"time\":4}".to_string()),
            ("j".to_string(), Key(1), 11, "{\"time\":11}".to_string()),
        ];
        let file = write(scratch.path(), 10, 0, std::slice::from_ref(&j), &names, &records).unwrap();
        let at = SnapshotRef { time: 10, files: vec![file], journeys: vec!["j".into()] };
        let (a, b) = (read(scratch.path(), &at, 0, 2).unwrap(), read(scratch.path(), &at, 1, 2).unwrap());
        let mut all = a.journeys["j"].users.clone();
        all.extend(b.journeys["j"].users.clone());
        all.sort();
        assert_eq!(all, users);
        assert_eq!((a.journeys["j"].version, a.journeys["j"].status), (2, Some(Status::Paused)));
        assert_eq!(a.journeys["j"].counts[&Stat::Entered] + b.journeys["j"].counts.len() as isize, 5);
        // The quota's count goes to the first worker, which counts it again.
        assert_eq!(a.journeys["j"].quota, Some(QuotaState { recent: [3, 4].into(), total: 7 }));
        assert_eq!(b.journeys["j"].quota, None);
        assert_eq!(a.records, vec![("j".to_string(), Key(1), "{\"time\":4}".to_string())]);
        assert!(b.records.is_empty());
        let mut restore = a;
        assert!(restore.take("j", 1).is_none() && restore.take("j", 2).is_some());
        sweep(scratch.path(), Some(11)).unwrap();
        assert!(!dir(scratch.path(), 10).exists());
    }

    #[test]
    fn a_deleted_users_lines_leave_a_snapshot_file() {
        let scratch = tempfile::tempdir().unwrap();
        let (ann, bob) = (Key::of("ann"), Key::of("bob"));
        let state = UserState { entries: 1, last_entry: Some(5), ..UserState::default() };
        let j = JourneyState {
            id: "j".into(),
            version: 1,
            status: Status::Ongoing,
            users: vec![(ann, state.clone()), (bob, state)],
            counts: BTreeMap::new(),
            quota: None,
        };
        // Ann's id is not known here (her record names her by key): her lines are found by key.
        let names: KeyMap<Arc<str>> = [(bob, Arc::from("bob"))].into_iter().collect();
        let hex = ann.to_string();
        let line = format!("{{\"user_id\":\"{hex}\",\"time\":4}}");
        let records = vec![("j".to_string(), ann, 4, line)];
        let file = write(scratch.path(), 10, 0, std::slice::from_ref(&j), &names, &records).unwrap();
        let path = scratch.path().join(&file);
        let deleted: KeyMap<Time> = [(ann, 20)].into_iter().collect();
        let removed = crate::scrub::scrub_file(&path, &deleted, false).unwrap();
        assert_eq!(removed.rows, 2, "her state and her record");
        let at = SnapshotRef { time: 10, files: vec![file], journeys: vec!["j".into()] };
        let restored = read(scratch.path(), &at, 0, 1).unwrap();
        assert_eq!(restored.journeys["j"].users.iter().map(|(k, _)| *k).collect::<Vec<_>>(), vec![bob]);
        assert!(restored.records.is_empty());
    }
}
