//! Reads a partition file as it grows: complete lines only, from where it left off.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// A reader following one partition file.
pub struct Tail {
    file: File,
    /// Bytes consumed as complete lines.
    offset: u64,
    /// Bytes read past `offset` that do not end a line yet.
    partial: Vec<u8>,
}

impl Tail {
    /// Follows `path` from its start.
    pub fn open(path: &Path) -> io::Result<Tail> {
        Ok(Tail { file: File::open(path)?, offset: 0, partial: Vec::new() })
    }

    /// The byte offset just after the last complete line handed out.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Up to `max` complete lines (without newlines) appended since the last call.
    pub fn read(&mut self, max: usize) -> io::Result<Vec<Vec<u8>>> {
        let mut lines = Vec::new();
        loop {
            while lines.len() < max {
                let Some(end) = self.partial.iter().position(|b| *b == b'\n') else { break };
                let mut line: Vec<u8> = self.partial.drain(..=end).collect();
                self.offset += line.len() as u64;
                line.pop();
                if !line.is_empty() {
                    lines.push(line);
                }
            }
            if lines.len() >= max {
                return Ok(lines);
            }
            self.file.seek(SeekFrom::Start(self.offset + self.partial.len() as u64))?;
            let mut chunk = vec![0; 1 << 16];
            let n = self.file.read(&mut chunk)?;
            if n == 0 {
                return Ok(lines);
            }
            self.partial.extend_from_slice(&chunk[..n]);
        }
    }
}
