//! The durable ingest log: accepted events are appended, one JSON line each, to one of a
//! fixed number of partition files (`part-<p>.ndjson`, the partition chosen by user) and
//! synced to disk before the sender is answered; workers tail the partitions they own. A
//! restart reads the partitions again from the start, so nothing acknowledged is lost.

mod tail;

pub use tail::Tail;

use crate::ndjson::open_append;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The appending side of the log.
pub struct Wal {
    dir: PathBuf,
    parts: Vec<Mutex<File>>,
}

impl Wal {
    /// Opens (creating if needed) at least `partitions` partition files in `dir`, and every
    /// one it already holds (a restart with fewer workers still reads them all). A last line
    /// a crash cut short is removed.
    pub fn open(dir: &Path, partitions: usize) -> io::Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let existing = (0..).take_while(|p| part_path(dir, *p).exists()).count();
        let parts = (0..partitions.max(existing).max(1))
            .map(|p| open_append(&part_path(dir, p)).map(Mutex::new))
            .collect::<io::Result<_>>()?;
        Ok(Wal { dir: dir.to_path_buf(), parts })
    }

    /// The number of partitions.
    pub fn partitions(&self) -> usize {
        self.parts.len()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends lines (without their newlines) to partition `part` and syncs the file: when this
    /// returns `Ok`, the lines survive a crash.
    pub fn append(&self, part: usize, lines: &[Vec<u8>]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            debug_assert!(!line.contains(&b'\n'), "a log line holds no newline");
            buf.extend_from_slice(line);
            buf.push(b'\n');
        }
        let mut file = self.parts[part].lock().map_err(|_| io::Error::other("a writer panicked"))?;
        file.write_all(&buf)?;
        file.sync_data()
    }
}

/// The file of partition `part` in `dir`.
pub fn part_path(dir: &Path, part: usize) -> PathBuf {
    dir.join(format!("part-{part}.ndjson"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_lines_are_read_back_in_order_and_partial_lines_wait() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 2).unwrap();
        let mut tail = Tail::open(&part_path(dir.path(), 1)).unwrap();
        assert!(tail.read(10).unwrap().is_empty());
        wal.append(1, &[b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()]).unwrap();
        wal.append(0, &[b"{\"other\":0}".to_vec()]).unwrap();
        assert_eq!(tail.read(1).unwrap(), vec![b"{\"a\":1}".to_vec()]);
        // A half-written line (as after a crash mid-write) is not handed out.
        std::fs::OpenOptions::new().append(true).open(part_path(dir.path(), 1)).unwrap().write_all(b"{\"a\":").unwrap();
        assert_eq!(tail.read(10).unwrap(), vec![b"{\"a\":2}".to_vec()]);
        std::fs::OpenOptions::new().append(true).open(part_path(dir.path(), 1)).unwrap().write_all(b"3}\n").unwrap();
        assert_eq!(tail.read(10).unwrap(), vec![b"{\"a\":3}".to_vec()]);
        // Reopened from the start, everything is there.
        let mut again = Tail::open(&part_path(dir.path(), 1)).unwrap();
        assert_eq!(again.read(10).unwrap().len(), 3);
        assert_eq!(again.offset(), std::fs::metadata(part_path(dir.path(), 1)).unwrap().len());
    }

    #[test]
    fn a_reopened_log_keeps_every_partition_and_drops_a_line_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 3).unwrap();
        wal.append(2, &[b"{\"a\":1}".to_vec()]).unwrap();
        drop(wal);
        std::fs::OpenOptions::new().append(true).open(part_path(dir.path(), 2)).unwrap().write_all(b"{\"a\":").unwrap();
        let wal = Wal::open(dir.path(), 1).unwrap();
        assert_eq!(wal.partitions(), 3);
        wal.append(2, &[b"{\"a\":2}".to_vec()]).unwrap();
        assert_eq!(std::fs::read_to_string(part_path(dir.path(), 2)).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
    }
}
