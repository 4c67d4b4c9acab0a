//! Reads one part of an NDJSON file. Part `p` of `n` owns the lines whose first byte lies
//! in `[p * len / n, (p + 1) * len / n)`, so parts cover every line exactly once whatever
//! `n` is. Each record carries its 1-based line number and byte offset for dead letters;
//! lines longer than the limit are reported without being held in memory.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// One line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawRecord {
    /// A line within the size limit (without its line terminator).
    Line {
        /// 1-based line number.
        line: u64,
        /// Byte offset of the line's first byte.
        offset: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// A line over the size limit; its bytes were skipped.
    TooLarge {
        /// 1-based line number.
        line: u64,
        /// Byte offset of the line's first byte.
        offset: u64,
        /// The line's length in bytes.
        size: usize,
    },
}

/// An iterator over the records of one part of a file.
pub struct PartReader {
    reader: BufReader<File>,
    /// Offset of the next unread byte.
    pos: u64,
    /// Lines starting at or after this offset belong to the next part.
    end: u64,
    /// Line number of the next line.
    line: u64,
    max_record: usize,
}

impl PartReader {
    /// Opens part `part` of `parts` of `path`; records longer than `max_record` bytes are reported as too large.
    pub fn open(path: &Path, part: usize, parts: usize, max_record: usize) -> io::Result<PartReader> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let parts = parts.max(1) as u128;
        let start = (len as u128 * part as u128 / parts) as u64;
        let end = (len as u128 * (part as u128 + 1) / parts) as u64;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        // Line number of the first line at or after `start`: newlines before it, plus one.
        let mut line = 1;
        let mut pos = 0;
        if start > 0 {
            let mut counted = 0u64;
            let mut buf = vec![0u8; 1 << 20];
            let mut remaining = start;
            while remaining > 0 {
                let n = reader.read(&mut buf[..remaining.min(1 << 20) as usize])?;
                if n == 0 {
                    break;
                }
                counted += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                remaining -= n as u64;
            }
            line += counted;
            pos = start;
            // Unless the previous byte ends a line, the line at `start` began in the previous part.
            reader.seek(SeekFrom::Start(start - 1))?;
            let mut prev = [0u8; 1];
            reader.read_exact(&mut prev)?;
            if prev[0] != b'\n' {
                let mut skipped = Vec::new();
                let n = reader.read_until(b'\n', &mut skipped)?;
                pos += n as u64;
                if skipped.last() == Some(&b'\n') {
                    line += 1;
                }
            }
        }
        Ok(PartReader { reader, pos, end, line, max_record })
    }

    fn next_record(&mut self) -> io::Result<Option<RawRecord>> {
        loop {
            if self.pos >= self.end {
                return Ok(None);
            }
            let (line, offset) = (self.line, self.pos);
            let mut bytes = Vec::new();
            let mut size = 0usize;
            let mut ended = false;
            while !ended {
                let buf = self.reader.fill_buf()?;
                if buf.is_empty() {
                    break;
                }
                let (take, found) = match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (buf.len(), false),
                };
                let content = if found { &buf[..take - 1] } else { &buf[..take] };
                if size + content.len() <= self.max_record {
                    bytes.extend_from_slice(content);
                }
                size += content.len();
                self.reader.consume(take);
                self.pos += take as u64;
                ended = found;
            }
            if size == 0 && !ended {
                return Ok(None);
            }
            self.line += 1;
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
                size -= 1;
            }
            if size > self.max_record {
                return Ok(Some(RawRecord::TooLarge { line, offset, size }));
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(RawRecord::Line { line, offset, bytes }));
        }
    }
}

impl Iterator for PartReader {
    type Item = io::Result<RawRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_of(path: &Path, parts: usize, max: usize) -> Vec<RawRecord> {
        (0..parts)
            .flat_map(|p| PartReader::open(path, p, parts, max).unwrap().map(Result::unwrap).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn parts_cover_every_line_once_with_numbers_and_offsets() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let text = "alpha\nbeta\n\ngamma delta\r\nx\nlast-no-newline";
        f.write_all(text.as_bytes()).unwrap();
        let whole = lines_of(f.path(), 1, 100);
        assert_eq!(whole.len(), 5);
        assert_eq!(whole[2], RawRecord::Line { line: 4, offset: 12, bytes: b"gamma delta".to_vec() });
        assert_eq!(whole[4], RawRecord::Line { line: 6, offset: 27, bytes: b"last-no-newline".to_vec() });
        for parts in 2..=text.len() + 1 {
            assert_eq!(lines_of(f.path(), parts, 100), whole, "{parts} parts");
        }
    }

    #[test]
    fn long_lines_are_reported_not_kept() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"short\n0123456789abcdef\nok\n").unwrap();
        let got = lines_of(f.path(), 1, 8);
        assert_eq!(got[1], RawRecord::TooLarge { line: 2, offset: 6, size: 16 });
        assert_eq!(got[2], RawRecord::Line { line: 3, offset: 23, bytes: b"ok".to_vec() });
    }
}
