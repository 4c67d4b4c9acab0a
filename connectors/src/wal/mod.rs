//! The durable ingest log: accepted events are appended, one JSON line each, to one of a
//! fixed number of partition files (`part-<p>.ndjson`, the partition chosen by user) and
//! synced to disk before the sender is answered; workers tail the partitions they own. A
//! restart reads the partitions again from where the newest checkpoint left them, so nothing
//! acknowledged is lost.
//!
//! Each partition has one writer thread that owns its file: appends queue up (a bounded queue:
//! a full one is refused at once) and are written and synced together (group commit). Lines
//! become visible to readers only once synced (the partition's committed length), and an append
//! that fails (a full disk, an I/O error) is cut off again before anything else is written, so
//! a refused line is never read and never glued to the next one. Appends succeed again by
//! themselves once the cause is gone (space freed).

mod tail;

pub use tail::Tail;

use crate::files::{is_full, sync_dir};
use crate::ndjson::open_append;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Appends waiting for one partition's writer, at most.
const QUEUE: usize = 4096;
/// Bytes waiting for one partition's writer, at most.
const QUEUE_BYTES: u64 = 64 << 20;
/// The most bytes one group commit writes.
const GROUP_BYTES: usize = 16 << 20;

/// Why an append was not made durable (nothing of it is in the log).
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The disk (or a quota) is full.
    #[error("the ingest log's disk is full: {0}")]
    Full(io::Error),
    /// Writing or syncing failed.
    #[error("the ingest log could not be written: {0}")]
    Io(io::Error),
    /// Too many appends are waiting for this partition.
    #[error("too many appends are waiting for the ingest log")]
    Busy,
    /// The log is closed.
    #[error("the ingest log is closed")]
    Closed,
}

/// One append, and where its outcome goes.
struct Append {
    bytes: Vec<u8>,
    done: oneshot::Sender<Result<(), AppendError>>,
}

/// The appending side of the log.
pub struct Wal {
    dir: PathBuf,
    queues: Vec<SyncSender<Append>>,
    committed: Vec<Arc<AtomicU64>>,
    /// Bytes queued for each partition's writer and not written yet.
    queued: Vec<Arc<AtomicU64>>,
}

impl Wal {
    /// Opens (creating if needed) at least `partitions` partition files in `dir`, and every
    /// one it already holds (a restart with fewer workers still reads them all), and starts
    /// their writers. A last line a crash cut short is removed.
    pub fn open(dir: &Path, partitions: usize) -> io::Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let existing = (0..).take_while(|p| part_path(dir, *p).exists()).count();
        let count = partitions.max(existing).max(1);
        let mut queues = Vec::with_capacity(count);
        let mut committed = Vec::with_capacity(count);
        let mut queued = Vec::with_capacity(count);
        for p in 0..count {
            let path = part_path(dir, p);
            // Cuts a line left unfinished; then written at explicit offsets.
            drop(open_append(&path)?);
            let file = std::fs::OpenOptions::new().read(true).write(true).open(&path)?;
            let length = Arc::new(AtomicU64::new(file.metadata()?.len()));
            let (tx, rx) = sync_channel(QUEUE);
            let waiting = Arc::new(AtomicU64::new(0));
            let writer = Writer { file, committed: length.clone(), queued: waiting.clone(), dirty: false };
            std::thread::Builder::new().name(format!("ingest-log-{p}")).spawn(move || writer.run(rx))?;
            queues.push(tx);
            committed.push(length);
            queued.push(waiting);
        }
        if existing < count {
            sync_dir(dir)?;
        }
        Ok(Wal { dir: dir.to_path_buf(), queues, committed, queued })
    }

    /// The number of partitions.
    pub fn partitions(&self) -> usize {
        self.queues.len()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of partition `part` that are synced and readable; readers stop there.
    pub fn committed(&self, part: usize) -> Arc<AtomicU64> {
        self.committed[part].clone()
    }

    /// Bytes queued for the writers and not written yet.
    pub fn queued_bytes(&self) -> u64 {
        self.queued.iter().map(|q| q.load(Ordering::Relaxed)).sum()
    }

    /// Queues lines (without their newlines) for partition `part`; the receiver says once they
    /// are synced (`Ok`: they survive a crash) or that none of them is in the log. Dropping the
    /// receiver before the writer takes the lines (a request that timed out) withdraws them.
    pub fn append(&self, part: usize, lines: &[Vec<u8>]) -> oneshot::Receiver<Result<(), AppendError>> {
        let (done, outcome) = oneshot::channel();
        let mut bytes = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            debug_assert!(!line.contains(&b'\n'), "a log line holds no newline");
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
        }
        let size = bytes.len() as u64;
        let queued = &self.queued[part];
        if queued.fetch_add(size, Ordering::AcqRel) + size > QUEUE_BYTES {
            queued.fetch_sub(size, Ordering::AcqRel);
            let _ = done.send(Err(AppendError::Busy));
            return outcome;
        }
        let refused = match self.queues[part].try_send(Append { bytes, done }) {
            Ok(()) => return outcome,
            Err(TrySendError::Full(a)) => (a, AppendError::Busy),
            Err(TrySendError::Disconnected(a)) => (a, AppendError::Closed),
        };
        queued.fetch_sub(size, Ordering::AcqRel);
        let _ = refused.0.done.send(Err(refused.1));
        outcome
    }

    /// Appends and waits, from a thread that may block (tests, tools).
    pub fn append_blocking(&self, part: usize, lines: &[Vec<u8>]) -> Result<(), AppendError> {
        self.append(part, lines).blocking_recv().unwrap_or(Err(AppendError::Closed))
    }
}

/// One partition's writer thread.
struct Writer {
    file: File,
    committed: Arc<AtomicU64>,
    /// Bytes queued for this writer.
    queued: Arc<AtomicU64>,
    /// Bytes past `committed` may be on disk (a failed append not cut off yet).
    dirty: bool,
}

impl Writer {
    fn run(mut self, queue: Receiver<Append>) {
        while let Ok(first) = queue.recv() {
            let mut group = vec![first];
            let mut size = group[0].bytes.len();
            while size < GROUP_BYTES {
                match queue.try_recv() {
                    Ok(next) => {
                        size += next.bytes.len();
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            let queued: u64 = group.iter().map(|a| a.bytes.len() as u64).sum();
            // Appends nobody waits for any more (their request timed out) are not written.
            group.retain(|a| !a.done.is_closed());
            let outcome = if group.is_empty() { Ok(()) } else { self.write(&group) };
            self.queued.fetch_sub(queued, Ordering::AcqRel);
            for append in group {
                let answer = match &outcome {
                    Ok(()) => Ok(()),
                    Err(e) if is_full(e) => Err(AppendError::Full(io::Error::new(e.kind(), e.to_string()))),
                    Err(e) => Err(AppendError::Io(io::Error::new(e.kind(), e.to_string()))),
                };
                let _ = append.done.send(answer);
            }
        }
    }

    /// Writes a group after the committed bytes and syncs it; on failure cuts the file back.
    fn write(&mut self, group: &[Append]) -> io::Result<()> {
        let at = self.committed.load(Ordering::Acquire);
        if self.dirty {
            self.file.set_len(at)?;
            self.dirty = false;
        }
        let mut bytes = Vec::with_capacity(group.iter().map(|a| a.bytes.len()).sum());
        for a in group {
            bytes.extend_from_slice(&a.bytes);
        }
        let written = self.file.write_all_at(&bytes, at).and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.committed.store(at + bytes.len() as u64, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                tracing::warn!("ingest log: an append of {} bytes failed and is cut off: {e}", bytes.len());
                self.dirty = self.file.set_len(at).and_then(|()| self.file.sync_data()).is_err();
                Err(e)
            }
        }
    }
}

/// The file of partition `part` in `dir`.
pub fn part_path(dir: &Path, part: usize) -> PathBuf {
    dir.join(format!("part-{part}.ndjson"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn appended_lines_are_read_back_in_order_and_partial_lines_wait() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 2).unwrap();
        let mut tail = Tail::open(&part_path(dir.path(), 1)).unwrap();
        assert!(tail.read(10).unwrap().is_empty());
        wal.append_blocking(1, &[b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()]).unwrap();
        wal.append_blocking(0, &[b"{\"other\":0}".to_vec()]).unwrap();
        assert_eq!(tail.read(1).unwrap(), vec![b"{\"a\":1}".to_vec()]);
        // A half-written line (as after a crash mid-write) is not handed out.
        let mut raw = std::fs::OpenOptions::new().append(true).open(part_path(dir.path(), 1)).unwrap();
        raw.write_all(b"{\"a\":").unwrap();
        assert_eq!(tail.read(10).unwrap(), vec![b"{\"a\":2}".to_vec()]);
        raw.write_all(b"3}\n").unwrap();
        assert_eq!(tail.read(10).unwrap(), vec![b"{\"a\":3}".to_vec()]);
        // Reopened from the start, everything is there.
        let mut again = Tail::open(&part_path(dir.path(), 1)).unwrap();
        assert_eq!(again.read(10).unwrap().len(), 3);
        assert_eq!(again.offset(), std::fs::metadata(part_path(dir.path(), 1)).unwrap().len());
    }

    #[test]
    fn a_reader_stops_at_the_committed_length() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 1).unwrap();
        wal.append_blocking(0, &[b"{\"a\":1}".to_vec()]).unwrap();
        let mut tail = Tail::open(&part_path(dir.path(), 0)).unwrap().until(wal.committed(0));
        // Bytes past the committed length (an append being written) are not read.
        std::fs::OpenOptions::new().append(true).open(part_path(dir.path(), 0)).unwrap().write_all(b"{}\n").unwrap();
        assert_eq!(tail.read(10).unwrap(), vec![b"{\"a\":1}".to_vec()]);
        assert!(tail.read(10).unwrap().is_empty());
    }

    #[test]
    fn a_reopened_log_keeps_every_partition_and_drops_a_line_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 3).unwrap();
        wal.append_blocking(2, &[b"{\"a\":1}".to_vec()]).unwrap();
        drop(wal);
        std::fs::OpenOptions::new().append(true).open(part_path(dir.path(), 2)).unwrap().write_all(b"{\"a\":").unwrap();
        let wal = Wal::open(dir.path(), 1).unwrap();
        assert_eq!(wal.partitions(), 3);
        wal.append_blocking(2, &[b"{\"a\":2}".to_vec()]).unwrap();
        assert_eq!(std::fs::read_to_string(part_path(dir.path(), 2)).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
    }
}
