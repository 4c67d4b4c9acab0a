//! The control log, `DATA_DIR/control.ndjson`: every change the catalog accepted (installs,
//! replacements, removals, drafts, publications, lifecycle commands) with the time it applies
//! as of, appended and synced before it is applied or answered. It is the one durable record
//! of definitions: the catalog the API shows is its fold, and a restart applies the changes
//! again at the same times, so the programs, and so their outputs, come out as they did. An
//! append that fails (a full disk) is cut off again, so the log always reads back whole.
//!
//! A compacted log (see [`crate::control_compaction`]) is written whole to a new file that
//! replaces the old one; its first line says through which time it was compacted.

use crate::control_compaction::Compacted;
use journeyflow_connectors::files::{sync_parent, write_atomic_open};
use journeyflow_connectors::ndjson::open_append;
use journeyflow_control_api::catalog::Change;
use journeyflow_operators::Time;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// One applied change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The time it applies as of.
    pub time: Time,
    /// The change (named `request` in the file, as it always was).
    #[serde(rename = "request")]
    pub change: Change,
}

/// The first line of a compacted log.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    /// The time through which the changes were compacted.
    compacted_through: Time,
}

/// The log, open to append.
pub struct ControlLog {
    path: std::path::PathBuf,
    file: File,
    /// What the file holds, read back or appended.
    entries: Vec<Entry>,
    /// The time through which it was compacted, if it was.
    compacted_through: Option<Time>,
    /// Bytes of whole, synced entries.
    length: u64,
    /// A failed append could not be cut off yet: nothing is appended until it is.
    dirty: bool,
}

impl ControlLog {
    /// Opens the log in `dir` and reads what it holds (see [`ControlLog::entries`]).
    pub fn open(dir: &Path) -> anyhow::Result<ControlLog> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("control.ndjson");
        let existed = path.exists();
        let file = open_append(&path)?;
        if !existed {
            sync_parent(&path)?;
        }
        let text = std::fs::read_to_string(&path)?;
        let (mut entries, mut compacted_through) = (Vec::new(), None);
        for (i, line) in text.lines().enumerate() {
            match serde_json::from_str(line) {
                Ok(entry) => entries.push(entry),
                Err(e) => match serde_json::from_str::<Header>(line) {
                    Ok(header) if i == 0 => compacted_through = Some(header.compacted_through),
                    _ => anyhow::bail!("{}:{}: {e}", path.display(), i + 1),
                },
            }
        }
        let length = text.len() as u64;
        Ok(ControlLog { path, file, entries, compacted_through, length, dirty: false })
    }

    /// The time through which the log was compacted, if it was.
    pub fn compacted_through(&self) -> Option<Time> {
        self.compacted_through
    }

    /// The entries it holds, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Replaces the log with its compaction through `through` (written to a new file that
    /// replaces the old one, so a crash leaves one or the other whole).
    pub fn replace(&mut self, compacted: Compacted, through: Time) -> anyhow::Result<()> {
        let mut text = serde_json::to_vec(&Header { compacted_through: through })?;
        text.push(b'\n');
        for entry in &compacted.entries {
            serde_json::to_writer(&mut text, entry)?;
            text.push(b'\n');
        }
        // Appends go to the new file, opened before it took the log's name.
        self.file = write_atomic_open(&self.path, &text)?;
        self.length = text.len() as u64;
        self.dirty = false;
        self.entries = compacted.entries;
        self.compacted_through = Some(through);
        // Either log reads back whole: the rename reaches the disk with the next sync.
        if let Err(e) = sync_parent(&self.path) {
            tracing::warn!("control log: its directory is not synced after the compaction: {e}");
        }
        Ok(())
    }

    /// Appends an entry and syncs it to disk; on failure nothing of it stays in the log (or,
    /// when even cutting it off fails, nothing more is appended until that succeeds).
    pub fn append(&mut self, entry: &Entry) -> std::io::Result<()> {
        if self.dirty {
            self.file.set_len(self.length)?;
            self.dirty = false;
        }
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        match self.file.write_all(&line).and_then(|()| self.file.sync_data()) {
            Ok(()) => {
                self.length += line.len() as u64;
                self.entries.push(entry.clone());
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = self.file.set_len(self.length).and_then(|()| self.file.sync_data()) {
                    tracing::error!("control log: a failed append could not be cut off yet: {cut}");
                    self.dirty = true;
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use journeyflow_control_api::catalog::Lifecycle;

    #[test]
    fn entries_appended_are_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ControlLog::open(dir.path()).unwrap();
        assert!(log.entries().is_empty());
        let a = Entry { time: 5, change: Change::RemoveSegment { id: "a".into() } };
        let b = Entry { time: 7, change: Change::JourneyCommand { id: "j".into(), command: Lifecycle::Pause } };
        log.append(&a).unwrap();
        log.append(&b).unwrap();
        drop(log);
        assert_eq!(ControlLog::open(dir.path()).unwrap().entries(), vec![a, b]);
    }

    #[test]
    fn a_compacted_log_reads_back_with_its_time_and_takes_appends() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ControlLog::open(dir.path()).unwrap();
        let pause = |time| Entry { time, change: Change::JourneyCommand { id: "j".into(), command: Lifecycle::Pause } };
        log.append(&pause(1)).unwrap();
        log.append(&pause(2)).unwrap();
        let kept = vec![pause(2)];
        log.replace(Compacted { entries: kept.clone(), dropped: 1, journeys: true }, 2).unwrap();
        log.append(&pause(3)).unwrap();
        assert_eq!(log.entries(), &[pause(2), pause(3)]);
        drop(log);
        let log = ControlLog::open(dir.path()).unwrap();
        assert_eq!(log.entries(), vec![pause(2), pause(3)]);
        assert_eq!(log.compacted_through(), Some(2));
    }
}
