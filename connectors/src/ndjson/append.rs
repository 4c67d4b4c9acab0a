//! Appending whole lines to a file a crash may have left with a line cut short, through a
//! buffer that a failed write (a full disk) never loses.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// A file appended to through an in-memory buffer: what a write could not put in the file (a
/// full disk, an I/O error) stays buffered, and the next flush writes it right after what was
/// written, so the file gets every byte once and in order when the disk has room again.
pub struct Appender {
    file: File,
    pending: Vec<u8>,
    /// Bytes of `pending` already in the file.
    written: usize,
}

impl Appender {
    /// Opens `path` to append (cutting a line a crash left unfinished).
    pub fn open(path: &Path) -> std::io::Result<Appender> {
        Ok(Appender { file: open_append(path)?, pending: Vec::new(), written: 0 })
    }

    /// Adds bytes after those added before; they reach the file at the next flush.
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// Writes what is buffered; on failure, what was not written stays for the next flush.
    pub fn flush(&mut self) -> std::io::Result<()> {
        while self.written < self.pending.len() {
            match self.file.write(&self.pending[self.written..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.pending.drain(..self.written);
                    self.written = 0;
                    return Err(e);
                }
            }
        }
        self.pending.clear();
        if self.pending.capacity() > 4 << 20 {
            // Give back what a long wait for the disk took.
            self.pending.shrink_to(1 << 20);
        }
        self.written = 0;
        Ok(())
    }

    /// Flushes and makes the file durable.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.flush()?;
        self.file.sync_data()
    }

    /// Bytes buffered and not in the file yet.
    pub fn backlog(&self) -> usize {
        self.pending.len() - self.written
    }

    /// The file's length when opened plus what was written since.
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Opens `path` to append whole lines: a last line without its newline (cut by a crash) is
/// cut off first.
pub fn open_append(path: &Path) -> std::io::Result<File> {
    let mut file = std::fs::OpenOptions::new().create(true).read(true).append(true).open(path)?;
    let len = file.metadata()?.len();
    if len > 0 {
        // Find the last newline, reading backwards in blocks.
        let mut end = len;
        let mut block = vec![0u8; 64 << 10];
        let keep = loop {
            let start = end.saturating_sub(block.len() as u64);
            let chunk = &mut block[..(end - start) as usize];
            file.seek(SeekFrom::Start(start))?;
            file.read_exact(chunk)?;
            if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
                break start + i as u64 + 1;
            }
            if start == 0 {
                break 0;
            }
            end = start;
        };
        if keep < len {
            tracing::warn!("{}: cutting off {} bytes of a line left unfinished", path.display(), len - keep);
            file.set_len(keep)?;
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_line_cut_short_is_removed_and_whole_lines_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.ndjson");
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\"").unwrap();
        let mut f = open_append(&path).unwrap();
        f.write_all(b"{\"a\":3}\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
        std::fs::write(&path, "no newline at all").unwrap();
        drop(open_append(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }
}
