//! The durable ingest log: accepted events are appended, one JSON line each, to one of a
//! fixed number of partitions (the partition chosen by user) and synced to disk before the
//! sender is answered; workers tail the partitions they own. A partition is a directory of
//! segments ([`segments`]): the writer starts a new one when the last reaches the segment
//! size, and the segments a complete checkpoint covers are deleted. A restart reads the
//! partitions again from where the newest checkpoint left them, so nothing acknowledged is
//! lost.
//!
//! Each partition has one writer thread that owns its file: appends queue up (a bounded queue:
//! a full one is refused at once) and are written and synced together (group commit). Lines
//! become visible to readers only once synced (the partition's committed length), and an append
//! that fails (a full disk, an I/O error) is cut off again before anything else is written, so
//! a refused line is never read and never glued to the next one. Appends succeed again by
//! themselves once the cause is gone (space freed).

pub mod segments;
mod tail;

pub use segments::{discard_before, part_dir};
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
/// The size at which a partition's writer starts a new segment, by default.
pub const SEGMENT_BYTES: u64 = 64 << 20;

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
    /// Opens (creating if needed) at least `partitions` partitions in `dir`, and every one it
    /// already holds (a restart with fewer workers still reads them all), and starts their
    /// writers, which begin a new segment past `segment_bytes`. A last line a crash cut short
    /// is removed.
    pub fn open(dir: &Path, partitions: usize, segment_bytes: u64) -> io::Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let existing = (0..).take_while(|p| segments::exists(dir, *p)).count();
        let count = partitions.max(existing).max(1);
        let mut queues = Vec::with_capacity(count);
        let mut committed = Vec::with_capacity(count);
        let mut queued = Vec::with_capacity(count);
        for p in 0..count {
            let part = segments::prepare(dir, p)?;
            let base = segments::bases(&part)?.last().copied().unwrap_or(0);
            let path = segments::segment_path(&part, base);
            // Cuts a line left unfinished; then written at explicit offsets.
            drop(open_append(&path)?);
            sync_dir(&part)?;
            let file = std::fs::OpenOptions::new().read(true).write(true).open(&path)?;
            let length = Arc::new(AtomicU64::new(base + file.metadata()?.len()));
            let (tx, rx) = sync_channel(QUEUE);
            let waiting = Arc::new(AtomicU64::new(0));
            let writer = Writer {
                part,
                file,
                base,
                segment_bytes: segment_bytes.max(1),
                committed: length.clone(),
                queued: waiting.clone(),
                dirty: false,
            };
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
    /// The partition's directory.
    part: PathBuf,
    /// The last segment, written at explicit offsets.
    file: File,
    /// The partition offset of its first byte.
    base: u64,
    /// Past this many bytes, the next group goes to a new segment.
    segment_bytes: u64,
    /// The partition's synced length.
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
            self.file.set_len(at - self.base)?;
            self.dirty = false;
        }
        if at - self.base >= self.segment_bytes {
            self.next_segment(at);
        }
        let mut bytes = Vec::with_capacity(group.iter().map(|a| a.bytes.len()).sum());
        for a in group {
            bytes.extend_from_slice(&a.bytes);
        }
        let written = self.file.write_all_at(&bytes, at - self.base).and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.committed.store(at + bytes.len() as u64, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                tracing::warn!("ingest log: an append of {} bytes failed and is cut off: {e}", bytes.len());
                self.dirty = self.file.set_len(at - self.base).and_then(|()| self.file.sync_data()).is_err();
                Err(e)
            }
        }
    }

    /// Starts a new segment at offset `at` (the end of the last, which holds whole lines
    /// only). If it cannot be made (a full disk), the last one grows on, and the next group
    /// tries again.
    fn next_segment(&mut self, at: u64) {
        let path = segments::segment_path(&self.part, at);
        let made = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .and_then(|file| sync_dir(&self.part).map(|()| file));
        match made {
            Ok(file) => {
                self.file = file;
                self.base = at;
            }
            Err(e) => tracing::warn!("ingest log: no new segment at {} yet: {e}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::segments::{bases, segment_path};
    use super::*;
    use std::io::Write;

    /// The first segment of partition `p`.
    fn first(dir: &Path, p: usize) -> PathBuf {
        segment_path(&part_dir(dir, p), 0)
    }

    #[test]
    fn appended_lines_are_read_back_in_order_and_partial_lines_wait() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 2, SEGMENT_BYTES).unwrap();
        let mut tail = Tail::open_partition(&part_dir(dir.path(), 1), 0).unwrap();
        assert!(tail.read(10).unwrap().is_empty());
        wal.append_blocking(1, &[b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()]).unwrap();
        wal.append_blocking(0, &[b"{\"other\":0}".to_vec()]).unwrap();
        assert_eq!(tail.read(1).unwrap(), vec![b"{\"a\":1}".to_vec()]);
        // A half-written line (as after a crash mid-write) is not handed out.
        let mut raw = std::fs::OpenOptions::new().append(true).open(first(dir.path(), 1)).unwrap();
        raw.write_all(b"{\"a\":").unwrap();
        assert_eq!(tail.read(10).unwrap(), vec![b"{\"a\":2}".to_vec()]);
        raw.write_all(b"3}\n").unwrap();
        assert_eq!(tail.read(10).unwrap(), vec![b"{\"a\":3}".to_vec()]);
        // Reopened from the start, everything is there.
        let mut again = Tail::open_partition(&part_dir(dir.path(), 1), 0).unwrap();
        assert_eq!(again.read(10).unwrap().len(), 3);
        assert_eq!(again.offset(), std::fs::metadata(first(dir.path(), 1)).unwrap().len());
    }

    #[test]
    fn a_reader_stops_at_the_committed_length() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 1, SEGMENT_BYTES).unwrap();
        wal.append_blocking(0, &[b"{\"a\":1}".to_vec()]).unwrap();
        let mut tail = Tail::open_partition(&part_dir(dir.path(), 0), 0).unwrap().until(wal.committed(0));
        // Bytes past the committed length (an append being written) are not read.
        std::fs::OpenOptions::new().append(true).open(first(dir.path(), 0)).unwrap().write_all(b"{}\n").unwrap();
        assert_eq!(tail.read(10).unwrap(), vec![b"{\"a\":1}".to_vec()]);
        assert!(tail.read(10).unwrap().is_empty());
    }

    #[test]
    fn a_reopened_log_keeps_every_partition_and_drops_a_line_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 3, SEGMENT_BYTES).unwrap();
        wal.append_blocking(2, &[b"{\"a\":1}".to_vec()]).unwrap();
        drop(wal);
        std::fs::OpenOptions::new().append(true).open(first(dir.path(), 2)).unwrap().write_all(b"{\"a\":").unwrap();
        let wal = Wal::open(dir.path(), 1, SEGMENT_BYTES).unwrap();
        assert_eq!(wal.partitions(), 3);
        wal.append_blocking(2, &[b"{\"a\":2}".to_vec()]).unwrap();
        assert_eq!(std::fs::read_to_string(first(dir.path(), 2)).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
    }

    /// Lines `{"n":i}` for `range`.
    fn lines(range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
        range.map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect()
    }

    #[test]
    fn segments_roll_over_keep_the_partition_offsets_and_go_once_behind_a_position() {
        let dir = tempfile::tempdir().unwrap();
        let part = part_dir(dir.path(), 0);
        // Segments of about 30 bytes: a few lines each.
        let wal = Wal::open(dir.path(), 1, 30).unwrap();
        let mut tail = Tail::open_partition(&part, 0).unwrap().until(wal.committed(0));
        let mut read = Vec::new();
        let mut offsets = Vec::new();
        for i in 0..20 {
            wal.append_blocking(0, &lines(i * 3..i * 3 + 3)).unwrap();
            if i % 4 == 0 {
                for (at, line) in tail.read_at(100).unwrap() {
                    offsets.push(at);
                    read.push(line);
                }
            }
        }
        read.extend(tail.read(1000).unwrap());
        assert_eq!(read, lines(0..60), "read across segments in order, each line once");
        assert!(bases(&part).unwrap().len() > 5, "{:?}", bases(&part).unwrap());
        let end = wal.committed(0).load(Ordering::Acquire);
        assert_eq!(tail.offset(), end);
        // Behind the offset of line 30, whole segments go; a reader opened there reads the rest.
        let at = offsets[read.iter().position(|l| l == b"{\"n\":30}").unwrap().min(offsets.len() - 1)];
        let before = bases(&part).unwrap();
        let gone = discard_before(&part, at).unwrap();
        let after = bases(&part).unwrap();
        assert!(gone > 0 && after.len() == before.len() - gone, "{before:?} -> {after:?}");
        assert!(after[0] <= at && after[0] > 0);
        let mut from = Tail::open_partition(&part, at).unwrap();
        assert_eq!(from.read(1000).unwrap(), lines(30..60));
        // An offset before the first segment left is an error that says so.
        let err = Tail::open_partition(&part, 0).err().unwrap().to_string();
        assert!(err.contains("no longer in the log"), "{err}");
        // The last segment is never deleted, and a reopened log appends after it.
        drop(wal);
        assert!(discard_before(&part, u64::MAX).unwrap() > 0);
        assert_eq!(bases(&part).unwrap().len(), 1);
        let wal = Wal::open(dir.path(), 1, 30).unwrap();
        assert_eq!(wal.committed(0).load(Ordering::Acquire), end);
        wal.append_blocking(0, &lines(60..61)).unwrap();
        let mut last = Tail::open_partition(&part, end).unwrap();
        assert_eq!(last.read(10).unwrap(), lines(60..61));
    }

    #[test]
    fn a_partition_file_of_the_older_layout_becomes_the_first_segment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("part-0.ndjson"), "{\"a\":1}\n").unwrap();
        std::fs::write(dir.path().join("part-1.ndjson"), "").unwrap();
        let wal = Wal::open(dir.path(), 1, SEGMENT_BYTES).unwrap();
        assert_eq!(wal.partitions(), 2);
        assert_eq!(wal.committed(0).load(Ordering::Acquire), 8);
        wal.append_blocking(0, &[b"{\"a\":2}".to_vec()]).unwrap();
        let mut tail = Tail::open_partition(&part_dir(dir.path(), 0), 8).unwrap();
        assert_eq!(tail.read(10).unwrap(), vec![b"{\"a\":2}".to_vec()]);
        assert!(!dir.path().join("part-0.ndjson").exists());
    }
}
