//! Output retention: deletes the sealed segments of this process's output logs (segment
//! changes, transitions, actions, dead letters under `out/`) once every record in them is
//! durable and older than `retention.outputs` in event time, and, for the actions logs, once
//! every webhook channel's saved cursor is past them. The segment being written is never
//! deleted, so a log always keeps its end.

use journeyflow_connectors::wal::segments;
use journeyflow_operators::Time;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Deletes expired output segments in one directory.
pub struct OutputRetention {
    dir: PathBuf,
    keep: Time,
    /// The latest record time of each sealed segment looked at (sealed segments do not grow).
    latest: BTreeMap<PathBuf, Time>,
}

impl OutputRetention {
    /// Keeps records of the logs in `dir` for `keep` ms of event time.
    pub fn new(dir: &Path, keep: Time) -> OutputRetention {
        OutputRetention { dir: dir.to_path_buf(), keep, latest: BTreeMap::new() }
    }

    /// With event time at `watermark` and every output before `durable` durable, deletes the
    /// sealed segments whose records all precede both `watermark - keep` and `durable` (and, in
    /// an actions log, every webhook cursor); returns how many went.
    pub fn step(&mut self, watermark: Time, durable: Time) -> anyhow::Result<usize> {
        let horizon = watermark.saturating_sub(self.keep).min(durable);
        let cursors = journeyflow_connectors::webhook::saved_cursors(&self.dir)?;
        let mut gone = 0;
        for log in logs(&self.dir)? {
            let name = log.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            // What every channel delivered (nothing more is deleted from a log a channel has
            // no place in yet: it starts at the log's end).
            let delivered = match name.starts_with("journey_actions-") {
                true => cursors.iter().map(|c| c.get(&name).copied().unwrap_or(0)).min().unwrap_or(u64::MAX),
                false => u64::MAX,
            };
            let bases = segments::bases(&log)?;
            // Every segment but the last is sealed; it ends where the next begins.
            let mut below = 0;
            for pair in bases.windows(2) {
                let path = segments::segment_path(&log, pair[0]);
                let latest = match self.latest.get(&path) {
                    Some(t) => *t,
                    None => {
                        let t = latest_time(&path)?;
                        self.latest.insert(path.clone(), t);
                        t
                    }
                };
                if latest >= horizon || pair[1] > delivered {
                    break;
                }
                below = pair[1];
            }
            if below > 0 {
                gone += segments::discard_before(&log, below)?;
                self.latest.retain(|p, _| p.exists());
            }
        }
        Ok(gone)
    }
}

/// The output logs in `dir`: its directories of segments.
fn logs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// The latest `time` of a segment's records (0 when it has none).
fn latest_time(path: &Path) -> std::io::Result<Time> {
    #[derive(serde::Deserialize)]
    struct Timed {
        time: Option<Time>,
    }
    let mut latest = 0;
    for line in BufReader::new(std::fs::File::open(path)?).split(b'\n') {
        let line = line?;
        if let Ok(Timed { time: Some(t) }) = serde_json::from_slice::<Timed>(&line) {
            latest = latest.max(t);
        }
    }
    Ok(latest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use journeyflow_connectors::ndjson::Rolling;

    fn log(dir: &Path, name: &str, times: &[Time]) -> PathBuf {
        let path = dir.join(name);
        let mut log = Rolling::open(&path, &path.with_extension("ndjson"), 35).unwrap();
        for t in times {
            // 35 bytes a line: one record per segment.
            log.push(format!("{{\"time\":{t:>10},\"id\":\"0123456\"}}\n").as_bytes());
            log.flush().unwrap();
        }
        log.sync().unwrap();
        path
    }

    #[test]
    fn sealed_segments_go_once_old_durable_and_delivered_and_the_last_never() {
        let dir = tempfile::tempdir().unwrap();
        let changes = log(dir.path(), "segment_changes-0", &[10, 20, 30]);
        let actions = log(dir.path(), "journey_actions-0", &[10, 20, 30]);
        assert_eq!(segments::bases(&changes).unwrap(), vec![0, 35, 70, 105]);
        let cursor = |at: u64| {
            let files = serde_json::json!({"files": {"journey_actions-0": at}});
            std::fs::write(dir.path().join("webhook_cursor-email.json"), files.to_string()).unwrap();
        };
        cursor(0);
        let mut retention = OutputRetention::new(dir.path(), 100);
        assert_eq!(retention.step(110, 1_000).unwrap(), 0, "nothing before the horizon (10)");
        assert_eq!(retention.step(125, 1_000).unwrap(), 2, "the first two changes' segments (10, 20)");
        assert_eq!(segments::bases(&changes).unwrap(), vec![70, 105]);
        assert_eq!(segments::bases(&actions).unwrap(), vec![0, 35, 70, 105], "the webhook has delivered nothing");
        cursor(45);
        assert_eq!(retention.step(125, 1_000).unwrap(), 1, "the action delivered");
        assert_eq!(retention.step(1_000, 25).unwrap(), 0, "not durable");
        cursor(1_000);
        assert_eq!(retention.step(1_000, 1_000).unwrap(), 3);
        assert_eq!(segments::bases(&changes).unwrap(), vec![105], "the segment being written stays");
        assert_eq!(segments::bases(&actions).unwrap(), vec![105]);
    }
}
