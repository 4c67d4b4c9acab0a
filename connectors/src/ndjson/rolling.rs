//! Appending whole lines to a log of segment files in a directory (named as the ingest log's
//! are, by the offset of their first byte): offsets run on across segments, so whoever follows
//! the log by offset (the webhooks, a checkpoint) is unaffected when a full segment is sealed
//! and a new one begun, and sealed segments can be deleted from the front.

use super::Appender;
use crate::files::sync_dir;
use crate::wal::segments;
use std::path::{Path, PathBuf};

/// A segmented log appended to through an [`Appender`].
pub struct Rolling {
    dir: PathBuf,
    /// Bytes after which the segment being written is sealed.
    max: u64,
    /// The offset of the segment being written.
    base: u64,
    /// Bytes handed to the segment being written (some may still be buffered).
    pushed: u64,
    current: Appender,
}

impl Rolling {
    /// The log in `dir`, appended to after its last whole line; a single file `legacy` of an
    /// older layout becomes its first segment. Segments are sealed once past `max` bytes.
    pub fn open(dir: &Path, legacy: &Path, max: u64) -> std::io::Result<Rolling> {
        segments::adopt(dir, legacy)?;
        let base = segments::bases(dir)?.last().copied().unwrap_or(0);
        let path = segments::segment_path(dir, base);
        let created = !path.exists();
        let current = Appender::open(&path)?;
        if created {
            sync_dir(dir)?;
        }
        let pushed = current.file().metadata()?.len();
        Ok(Rolling { dir: dir.to_path_buf(), max: max.max(1), base, pushed, current })
    }

    /// Adds whole lines after those added before; they reach the file at the next flush. A
    /// full segment is sealed first (if it cannot be written now, a full disk, the lines go
    /// on into it and the flush reports the error).
    pub fn push(&mut self, lines: &[u8]) {
        if self.pushed >= self.max {
            let _ = self.roll();
        }
        self.current.push(lines);
        self.pushed += lines.len() as u64;
    }

    /// The log's offset after everything pushed.
    pub fn end(&self) -> u64 {
        self.base + self.pushed
    }

    /// Writes what is buffered (see [`Appender::flush`]); then, if the segment is full, seals
    /// it (synced) and begins the next.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.current.flush()?;
        if self.pushed >= self.max {
            self.roll()?;
        }
        Ok(())
    }

    /// Writes and syncs the segment being written, then begins the next.
    fn roll(&mut self) -> std::io::Result<()> {
        self.current.sync()?;
        let base = self.end();
        let next = Appender::open(&segments::segment_path(&self.dir, base))?;
        sync_dir(&self.dir)?;
        (self.current, self.base, self.pushed) = (next, base, 0);
        Ok(())
    }

    /// Flushes and makes the segment being written durable (sealed ones are).
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.flush()?;
        self.current.sync()
    }

    /// Bytes buffered and not in the file yet.
    pub fn backlog(&self) -> usize {
        self.current.backlog()
    }
}

/// The offset just after the last whole line of the log in `dir` (0 when it has none).
pub fn log_end(dir: &Path) -> std::io::Result<u64> {
    let Some(base) = segments::bases(dir)?.last().copied() else { return Ok(0) };
    let file = super::open_append(&segments::segment_path(dir, base))?;
    Ok(base + file.metadata()?.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::Tail;

    #[test]
    fn segments_are_sealed_when_full_and_offsets_run_on_across_them_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let (log, legacy) = (dir.path().join("out-0"), dir.path().join("out-0.ndjson"));
        std::fs::write(&legacy, "{\"a\":0}\n{\"a\"").unwrap();
        let mut r = Rolling::open(&log, &legacy, 16).unwrap();
        assert!(!legacy.exists(), "the older single file is the first segment");
        assert_eq!(r.end(), 8, "the line left unfinished is cut");
        for i in 1..=4 {
            r.push(format!("{{\"a\":{i}}}\n").as_bytes());
            r.flush().unwrap();
        }
        assert_eq!(segments::bases(&log).unwrap(), vec![0, 16, 32]);
        drop(r);
        let mut r = Rolling::open(&log, &legacy, 16).unwrap();
        assert_eq!((r.end(), log_end(&log).unwrap()), (40, 40));
        r.push(b"{\"a\":5}\n");
        r.sync().unwrap();
        let mut tail = Tail::open_partition(&log, 8).unwrap();
        let lines: Vec<String> = tail.read(10).unwrap().into_iter().map(|l| String::from_utf8(l).unwrap()).collect();
        assert_eq!(lines, (1..=5).map(|i| format!("{{\"a\":{i}}}")).collect::<Vec<_>>());
        assert_eq!(tail.offset(), 48);
        assert_eq!(segments::discard_before(&log, 33).unwrap(), 2);
        assert_eq!(segments::bases(&log).unwrap(), vec![32, 48], "a full segment is sealed at its sync");
    }
}
