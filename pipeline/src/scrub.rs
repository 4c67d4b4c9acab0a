//! Removing deleted users from the files of one process: once every output through a
//! deletion's time is durable and the grace (`retention.deleted_users`) has passed, every
//! record of the user timed at or before the deletion goes from the files under the data
//! directory and the archive. NDJSON lines (the ingest log, output and dead-letter files) are
//! overwritten in place with spaces, so that every byte offset kept elsewhere (checkpoint
//! positions, webhook cursors, readers following a file) stays valid and readers skip them as
//! blank lines; Parquet files (checkpoints, the archive) are written again without the rows.
//! Deletions are carried out in the order they were applied; those done are listed, by key
//! and time, in `DATA_DIR/scrubbed.json`, so that a restart does not do them again.

use arrow::array::{Array, BooleanArray, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array};
use journeyflow_connectors::files::write_atomic;
use journeyflow_connectors::parquet_file::{read_batches, write_batches};
use journeyflow_operators::Time;
use journeyflow_types::{decode_record, Key, KeyMap};
use serde::Deserialize;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A deletion to carry out: the user and the time.
pub type Erasure = (Key, Time);

/// Carries out deletions in the files of one process.
pub struct Scrubber {
    data: PathBuf,
    archive: Option<PathBuf>,
    grace: Time,
    /// Deletions carried out, in order.
    done: Vec<Erasure>,
    /// How many of the applied deletions are carried out (or were before a restart).
    count: usize,
}

impl Scrubber {
    /// A scrubber over `data` (and `archive`), with what `data/scrubbed.json` lists as done.
    pub fn open(data: &Path, archive: Option<&Path>, grace: Time) -> anyhow::Result<Scrubber> {
        let path = data.join("scrubbed.json");
        let done: Vec<(String, Time)> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
        };
        let done = done.into_iter().filter_map(|(key, at)| Some((Key::parse(&key)?, at))).collect();
        Ok(Scrubber { data: data.to_path_buf(), archive: archive.map(Path::to_path_buf), grace, done, count: 0 })
    }

    /// Carries out, in order, the `applied` deletions whose time plus the grace every output
    /// has passed (`durable`); returns how many of `applied` are carried out.
    pub fn step(&mut self, applied: &[Erasure], durable: Time) -> anyhow::Result<usize> {
        let mut due: Vec<Erasure> = Vec::new();
        for &(user, at) in &applied[self.count.min(applied.len())..] {
            if self.done.contains(&(user, at)) {
                if due.is_empty() {
                    self.count += 1;
                }
                continue;
            }
            if durable <= at.saturating_add(self.grace) {
                break;
            }
            due.push((user, at));
        }
        if due.is_empty() {
            return Ok(self.count);
        }
        // One pass over the files for every deletion due.
        let users: KeyMap<Time> = due.iter().map(|(u, at)| (*u, *at)).collect();
        let mut files = Vec::new();
        walk(&self.data, &mut files)?;
        if let Some(archive) = &self.archive {
            walk(archive, &mut files)?;
        }
        for file in files {
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with('.') || name == "control.ndjson" {
                continue;
            }
            scrub_file(&file, &users, false)?;
        }
        self.done.extend(due.iter().copied());
        let listed: Vec<(String, Time)> = self.done.iter().map(|(u, at)| (u.to_string(), *at)).collect();
        write_atomic(&self.data.join("scrubbed.json"), &serde_json::to_vec(&listed)?)?;
        // Those done before a restart and now passed count too.
        while self.count < applied.len() && self.done.contains(&applied[self.count]) {
            self.count += 1;
        }
        Ok(self.count)
    }
}

/// What scrubbing one file removed: NDJSON lines or Parquet rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Lines blanked or removed.
    pub lines: usize,
    /// Rows dropped.
    pub rows: usize,
}

/// Removes the records of `users` (each timed at or before its time) from one file, by its
/// kind: NDJSON lines are overwritten with spaces in place, or, with `compact`, the file is
/// written again without them (for files nothing follows by offset); Parquet rows are dropped.
/// Other files are left alone.
pub fn scrub_file(path: &Path, users: &KeyMap<Time>, compact: bool) -> anyhow::Result<Removed> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    Ok(match name {
        n if n.ends_with(".ndjson") && compact => Removed { lines: remove_lines(path, users)?, rows: 0 },
        n if n.ends_with(".ndjson") => Removed { lines: blank_lines(path, users)?, rows: 0 },
        n if n.ends_with(".parquet") => Removed { lines: 0, rows: drop_rows(path, users)? },
        _ => Removed::default(),
    })
}

/// Every regular file under `dir`, recursively.
pub fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// The fields of a line that may name a user and a time.
#[derive(Deserialize)]
struct Named {
    #[serde(rename = "userId")]
    user_id_camel: Option<String>,
    #[serde(rename = "anonymousId")]
    anonymous_id: Option<String>,
    user_id: Option<String>,
    /// A journey snapshot's user, by key (hex).
    user: Option<String>,
    time: Option<Time>,
    /// A dead letter's copy of the refused line.
    record: Option<String>,
    /// A webhook dead letter's action.
    action: Option<Box<Named>>,
}

/// Whether a line (an event, an output record, a dead letter) is a record of one of `users`
/// timed at or before their deletion. An event is timed by its timestamp, an output record
/// by its time; a dead letter (untimed) is theirs whenever the line it holds names them.
fn deleted(line: &[u8], users: &KeyMap<Time>) -> bool {
    if let Ok((event, _)) = decode_record(line) {
        return users.get(&event.user()).is_some_and(|at| event.ts() <= *at);
    }
    let Ok(mut named) = serde_json::from_slice::<Named>(line) else { return false };
    if let Some(action) = named.action.take() {
        named = *action;
    }
    let ids = [&named.user_id_camel, &named.anonymous_id, &named.user_id];
    let by_key = named.user.as_deref().and_then(Key::parse).and_then(|key| users.get(&key));
    let at = ids.into_iter().flatten().find_map(|id| users.get(&Key::of(id))).or(by_key);
    match (at, named.time) {
        (Some(at), Some(time)) => time <= *at,
        (Some(_), None) => true,
        (None, _) => named.record.is_some_and(|r| deleted(r.as_bytes(), users) || names(r.as_bytes(), users)),
    }
}

/// Whether a (possibly cut off) line names one of `users` in an id field.
fn names(line: &[u8], users: &KeyMap<Time>) -> bool {
    let text = String::from_utf8_lossy(line);
    ["\"userId\":\"", "\"anonymousId\":\"", "\"user_id\":\""].iter().any(|field| {
        text.match_indices(field).any(|(at, _)| {
            let rest = &text[at + field.len()..];
            rest.split('"').next().is_some_and(|id| users.contains_key(&Key::of(id)))
        })
    })
}

/// Overwrites with spaces every whole line of `path` that is a deleted user's; returns how
/// many.
fn blank_lines(path: &Path, users: &KeyMap<Time>) -> anyhow::Result<usize> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
    };
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut found: Vec<(u64, usize)> = Vec::new();
    let (mut offset, mut line) = (0u64, Vec::new());
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        // A line still being written (no newline yet) is left alone.
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        let text = &line[..n - 1];
        if !text.iter().all(u8::is_ascii_whitespace) && deleted(text, users) {
            found.push((offset, n - 1));
        }
        offset += n as u64;
    }
    if found.is_empty() {
        return Ok(0);
    }
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    for &(at, len) in &found {
        file.write_all_at(&vec![b' '; len], at)?;
    }
    file.sync_data()?;
    Ok(found.len())
}

/// Writes `path` (NDJSON, not being written) again without the deleted users' lines and
/// without blank ones, atomically; returns how many of the users' lines went.
fn remove_lines(path: &Path, users: &KeyMap<Time>) -> anyhow::Result<usize> {
    let reader = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut kept: Vec<u8> = Vec::new();
    let mut removed = 0;
    for line in reader.split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if deleted(&line, users) {
            removed += 1;
        } else {
            kept.extend_from_slice(&line);
            kept.push(b'\n');
        }
    }
    if removed > 0 {
        write_atomic(path, &kept)?;
    }
    Ok(removed)
}

/// Writes `path` (Parquet) again without the rows of deleted users; returns how many went.
/// Rows with a `line` (a checkpoint's events, timed by the `time` they entered at, or a journey
/// snapshot's lines, as [`deleted`] reads them), a
/// `user_id` and a `time` (the archive), or a `userId` or `anonymousId` and a `timestamp`
/// (an event file).
fn drop_rows(path: &Path, users: &KeyMap<Time>) -> anyhow::Result<usize> {
    let batches = read_batches(path)?;
    let Some(schema) = batches.first().map(RecordBatch::schema) else { return Ok(0) };
    let mut kept = Vec::with_capacity(batches.len());
    let mut dropped = 0;
    for batch in &batches {
        let column = |name: &str| batch.column_by_name(name);
        let strings = |name: &str| column(name).and_then(|c| c.as_any().downcast_ref::<StringArray>());
        let times = column("time").and_then(|c| c.as_any().downcast_ref::<UInt64Array>());
        let stamps = column("timestamp").and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>());
        let lines = strings("line");
        let ids: Vec<&StringArray> = ["user_id", "userId", "anonymousId"].into_iter().filter_map(strings).collect();
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|row| {
                let time = times.filter(|t| !t.is_null(row)).map(|t| t.value(row));
                let time = time.or_else(|| stamps.filter(|t| !t.is_null(row)).map(|t| t.value(row).max(0) as Time));
                let at = match lines {
                    Some(lines) => match decode_record(lines.value(row).as_bytes()) {
                        Ok((event, _)) => users.get(&event.user()),
                        // A journey snapshot's line: its user (by key or id) and time.
                        Err(_) => return Some(!deleted(lines.value(row).as_bytes(), users)),
                    },
                    None => {
                        ids.iter().filter(|ids| !ids.is_null(row)).find_map(|ids| users.get(&Key::of(ids.value(row))))
                    }
                };
                Some(at.is_none_or(|at| time.is_some_and(|t| t > *at)))
            })
            .collect();
        dropped += keep.false_count();
        kept.push(arrow::compute::filter_record_batch(batch, &keep)?);
    }
    if dropped > 0 {
        write_batches(path, &schema, &kept)?;
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use serde_json::json;
    use std::sync::Arc;

    fn users(pairs: &[(&str, Time)]) -> KeyMap<Time> {
        pairs.iter().map(|(u, at)| (Key::of(u), *at)).collect()
    }

    #[test]
    fn a_deleted_users_lines_up_to_the_deletion_become_spaces_and_nothing_else_moves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let lines = [
            json!({"type": "track", "event": "A", "userId": "ann", "messageId": "a1", "timestamp": 10}).to_string(),
            json!({"type": "track", "event": "A", "userId": "bob", "messageId": "b1", "timestamp": 10}).to_string(),
            json!({"segment": "s", "user_id": "ann", "change": "exit", "time": 50, "reason": "deleted"}).to_string(),
            // After the deletion: a new user's.
            json!({"type": "track", "event": "A", "userId": "ann", "messageId": "a2", "timestamp": 60}).to_string(),
            json!({"source": "wal/0", "offset": 3, "reason": "bad", "record": "{\"userId\":\"ann\",\"type\":"})
                .to_string(),
            json!({"error": "503", "action": {"action_id": "x", "user_id": "ann", "time": 40}}).to_string(),
            // A journey snapshot's user whose id was not known: by key.
            json!({"kind": "user", "journey": "j", "user": Key::of("ann").to_string(), "time": 30}).to_string(),
        ];
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect::<String>() + "{\"userId\":\"ann\"";
        std::fs::write(&path, &text).unwrap();
        blank_lines(&path, &users(&[("ann", 50)])).unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert_eq!(after.len(), text.len(), "offsets moved");
        let kept: Vec<&str> = after.lines().collect();
        assert!([0, 2, 4, 5, 6].iter().all(|i| kept[*i].trim().is_empty()), "{after}");
        assert_eq!((kept[1], kept[3]), (lines[1].as_str(), lines[3].as_str()));
        // The line being written is left alone.
        assert!(after.ends_with("{\"userId\":\"ann\""));
    }

    #[test]
    fn parquet_rows_of_a_deleted_user_up_to_the_deletion_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("time", DataType::UInt64, false),
            Field::new("user_id", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(UInt64Array::from(vec![10, 20, 70])), Arc::new(StringArray::from(vec!["ann", "bob", "ann"]))],
        )
        .unwrap();
        write_batches(&path, &schema, &[batch]).unwrap();
        drop_rows(&path, &users(&[("ann", 50)])).unwrap();
        let rows = journeyflow_connectors::parquet_file::read_json_rows(&path).unwrap();
        assert_eq!(
            String::from_utf8(rows).unwrap(),
            "{\"time\":20,\"user_id\":\"bob\"}\n{\"time\":70,\"user_id\":\"ann\"}\n"
        );
    }

    #[test]
    fn deletions_are_done_in_order_once_durable_past_the_grace_and_not_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let line =
            |user: &str, t: u64| json!({"segment": "s", "user_id": user, "change": "enter", "time": t}).to_string();
        std::fs::write(&path, format!("{}\n{}\n", line("ann", 5), line("bob", 6))).unwrap();
        let applied = [(Key::of("ann"), 100), (Key::of("bob"), 200)];
        let mut scrubber = Scrubber::open(dir.path(), None, 10).unwrap();
        assert_eq!(scrubber.step(&applied, 110).unwrap(), 0, "not past the grace");
        assert_eq!(scrubber.step(&applied, 111).unwrap(), 1);
        assert!(std::fs::read_to_string(&path).unwrap().starts_with("    "));
        assert!(std::fs::read_to_string(&path).unwrap().contains("bob"));
        // Restarted: the first is listed as done, the second waits.
        let mut scrubber = Scrubber::open(dir.path(), None, 10).unwrap();
        assert_eq!(scrubber.step(&applied, 150).unwrap(), 1);
        assert_eq!(scrubber.step(&applied, 211).unwrap(), 2);
        assert!(!std::fs::read_to_string(&path).unwrap().contains("bob"));
    }
}
