//! The control log, `DATA_DIR/control.ndjson`: every change the catalog accepted (installs,
//! replacements, removals, drafts, publications, lifecycle commands) with the time it applies
//! as of, appended and synced before it is applied or answered. It is the one durable record
//! of definitions: the catalog the API shows is its fold, and a restart applies the changes
//! again at the same times, so the programs, and so their outputs, come out as they did. An
//! append that fails (a full disk) is cut off again, so the log always reads back whole.

use journeyflow_connectors::files::sync_parent;
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

/// The log, open to append.
pub struct ControlLog {
    file: File,
    /// Bytes of whole, synced entries.
    length: u64,
    /// A failed append could not be cut off yet: nothing is appended until it is.
    dirty: bool,
}

impl ControlLog {
    /// Opens the log in `dir` and reads what it holds.
    pub fn open(dir: &Path) -> anyhow::Result<(ControlLog, Vec<Entry>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("control.ndjson");
        let existed = path.exists();
        let file = open_append(&path)?;
        if !existed {
            sync_parent(&path)?;
        }
        let text = std::fs::read_to_string(&path)?;
        let entries = text
            .lines()
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))
            })
            .collect::<anyhow::Result<Vec<Entry>>>()?;
        Ok((ControlLog { file, length: text.len() as u64, dirty: false }, entries))
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
        let (mut log, entries) = ControlLog::open(dir.path()).unwrap();
        assert!(entries.is_empty());
        let a = Entry { time: 5, change: Change::RemoveSegment { id: "a".into() } };
        let b = Entry { time: 7, change: Change::JourneyCommand { id: "j".into(), command: Lifecycle::Pause } };
        log.append(&a).unwrap();
        log.append(&b).unwrap();
        drop(log);
        assert_eq!(ControlLog::open(dir.path()).unwrap().1, vec![a, b]);
    }
}
