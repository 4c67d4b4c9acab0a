//! The control log, `DATA_DIR/control.ndjson`: every change request the workers applied
//! (installs, replacements, removals, publications, lifecycle commands) with the time it
//! applied as of, appended and synced before it is applied. A restart applies them again at
//! the same times, so the programs, and so their outputs, come out as they did.

use journeyflow_connectors::ndjson::open_append;
use journeyflow_control_api::handle::Request;
use journeyflow_operators::Time;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// One applied request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The time it applied as of.
    pub time: Time,
    /// The request.
    pub request: Request,
}

/// The log, open to append.
pub struct ControlLog {
    file: File,
}

impl ControlLog {
    /// Opens the log in `dir` and reads what it holds.
    pub fn open(dir: &Path) -> anyhow::Result<(ControlLog, Vec<Entry>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("control.ndjson");
        let file = open_append(&path)?;
        let text = std::fs::read_to_string(&path)?;
        let entries = text
            .lines()
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))
            })
            .collect::<anyhow::Result<Vec<Entry>>>()?;
        Ok((ControlLog { file }, entries))
    }

    /// Appends an entry and syncs it to disk.
    pub fn append(&mut self, entry: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_appended_are_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, entries) = ControlLog::open(dir.path()).unwrap();
        assert!(entries.is_empty());
        let a = Entry { time: 5, request: Request::RemoveSegment { id: "a".into() } };
        let b = Entry { time: 7, request: Request::JourneyCommand { id: "j".into(), command: "pause".into() } };
        log.append(&a).unwrap();
        log.append(&b).unwrap();
        drop(log);
        assert_eq!(ControlLog::open(dir.path()).unwrap().1, vec![a, b]);
    }
}
