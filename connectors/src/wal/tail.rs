//! Reads a file, or a partition's segments in turn, as it grows: complete lines only, from
//! where it left off.

use super::segments;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A reader following one file, or one partition's segments.
pub struct Tail {
    file: File,
    /// The partition directory whose segments follow one another (`None`: one file).
    segments: Option<PathBuf>,
    /// The offset of the file's first byte (a segment's base; 0 for a plain file).
    base: u64,
    /// Bytes consumed as complete lines.
    offset: u64,
    /// Bytes read past `offset` that do not end a line yet.
    partial: Vec<u8>,
    /// The read buffer.
    chunk: Vec<u8>,
    /// Bytes of the file that may be read (its writer's committed length), if limited.
    limit: Option<Arc<AtomicU64>>,
}

impl Tail {
    /// Follows `path` from its start.
    pub fn open(path: &Path) -> io::Result<Tail> {
        Tail::open_at(path, 0)
    }

    /// Follows `path` from byte `offset` (the start of a line).
    pub fn open_at(path: &Path, offset: u64) -> io::Result<Tail> {
        Tail::open_file(path, None, 0, offset)
    }

    /// Follows the segments of partition directory `part` from partition offset `offset`
    /// (the start of a line), going on to each next segment at the end of the one before.
    pub fn open_partition(part: &Path, offset: u64) -> io::Result<Tail> {
        let base = segments::locate(part, offset)?;
        Tail::open_file(&segments::segment_path(part, base), Some(part.to_path_buf()), base, offset)
    }

    fn open_file(path: &Path, segments: Option<PathBuf>, base: u64, offset: u64) -> io::Result<Tail> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset - base))?;
        Ok(Tail { file, segments, base, offset, partial: Vec::new(), chunk: vec![0; 1 << 16], limit: None })
    }

    /// Reads only as far as `committed` says (what its writer has made durable).
    pub fn until(mut self, committed: Arc<AtomicU64>) -> Tail {
        self.limit = Some(committed);
        self
    }

    /// The byte offset just after the last complete line handed out.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Up to `max` complete lines (without newlines) appended since the last call.
    pub fn read(&mut self, max: usize) -> io::Result<Vec<Vec<u8>>> {
        Ok(self.read_at(max)?.into_iter().map(|(_, line)| line).collect())
    }

    /// Up to `max` complete lines appended since the last call, each with its byte offset.
    pub fn read_at(&mut self, max: usize) -> io::Result<Vec<(u64, Vec<u8>)>> {
        let mut lines = Vec::new();
        loop {
            // Lines are cut from `partial` by index, and what they used is drained once.
            let mut start = 0;
            while lines.len() < max {
                let Some(len) = self.partial[start..].iter().position(|b| *b == b'\n') else { break };
                if len > 0 {
                    lines.push((self.offset + start as u64, self.partial[start..start + len].to_vec()));
                }
                start += len + 1;
            }
            self.offset += start as u64;
            self.partial.drain(..start);
            if lines.len() >= max {
                return Ok(lines);
            }
            // Only this reader moves the file's position: it is at `offset + partial.len()`.
            let at = self.offset + self.partial.len() as u64;
            let room = match &self.limit {
                Some(limit) => (limit.load(Ordering::Acquire).saturating_sub(at) as usize).min(self.chunk.len()),
                None => self.chunk.len(),
            };
            if room == 0 {
                return Ok(lines);
            }
            let n = self.file.read(&mut self.chunk[..room])?;
            if n == 0 {
                // The end of a segment: whole lines only, and the next starts here, if it exists.
                match &self.segments {
                    Some(part) if self.partial.is_empty() && at > self.base => {
                        match File::open(segments::segment_path(part, at)) {
                            Ok(next) => {
                                self.file = next;
                                self.base = at;
                                continue;
                            }
                            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(lines),
                            Err(e) => return Err(e),
                        }
                    }
                    _ => return Ok(lines),
                }
            }
            self.partial.extend_from_slice(&self.chunk[..n]);
        }
    }
}
