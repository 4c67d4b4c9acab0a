//! Reads one worker's part of an NDJSON file. The file is cut into blocks of `BLOCK` bytes
//! dealt round-robin to the parts, and a line belongs to the block holding its first byte,
//! so parts cover every line exactly once whatever their number, and every part moves
//! through a time-ordered file at the same pace (contiguous halves would leave one worker
//! waiting for the other's watermark). Records carry their byte offset; line numbers, only
//! needed for dead letters, are found afterwards by `line_numbers`. Lines longer than the
//! limit are reported without being held in memory.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes per block dealt to a part.
pub const BLOCK: u64 = 1 << 20;

/// One line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawRecord {
    /// A line within the size limit (without its line terminator).
    Line {
        /// 1-based line number, when known.
        line: Option<u64>,
        /// Byte offset of the line's first byte.
        offset: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// A line over the size limit; its bytes were skipped.
    TooLarge {
        /// 1-based line number, when known.
        line: Option<u64>,
        /// Byte offset of the line's first byte.
        offset: u64,
        /// The line's length in bytes.
        size: usize,
    },
}

/// An iterator over the records of one part of a file.
pub struct PartReader {
    reader: BufReader<File>,
    len: u64,
    /// This part's next block.
    next_block: u64,
    /// Blocks between two of this part's blocks.
    stride: u64,
    /// Offset of the next unread byte.
    pos: u64,
    /// Lines starting at or after this offset belong to another block.
    end: u64,
    max_record: usize,
}

impl PartReader {
    /// Opens part `part` of `parts` of `path`; records longer than `max_record` bytes are reported as too large.
    pub fn open(path: &Path, part: usize, parts: usize, max_record: usize) -> io::Result<PartReader> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let reader = BufReader::with_capacity(1 << 18, file);
        Ok(PartReader { reader, len, next_block: part as u64, stride: parts.max(1) as u64, pos: 0, end: 0, max_record })
    }

    /// Moves to the next block of this part; false when there is none.
    fn enter_next_block(&mut self) -> io::Result<bool> {
        let start = self.next_block * BLOCK;
        if start >= self.len {
            return Ok(false);
        }
        self.next_block += self.stride;
        self.end = (start + BLOCK).min(self.len);
        self.pos = start;
        if start == 0 {
            self.reader.seek(SeekFrom::Start(0))?;
            return Ok(true);
        }
        // Unless the previous byte ends a line, the line at `start` belongs to the block before.
        self.reader.seek(SeekFrom::Start(start - 1))?;
        let mut prev = [0u8; 1];
        self.reader.read_exact(&mut prev)?;
        if prev[0] != b'\n' {
            let mut skipped = Vec::new();
            self.pos += self.reader.read_until(b'\n', &mut skipped)? as u64;
        }
        Ok(true)
    }

    fn next_record(&mut self) -> io::Result<Option<RawRecord>> {
        loop {
            while self.pos >= self.end {
                if !self.enter_next_block()? {
                    return Ok(None);
                }
            }
            let offset = self.pos;
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
                self.pos = self.end;
                continue;
            }
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
                size -= 1;
            }
            if size > self.max_record {
                return Ok(Some(RawRecord::TooLarge { line: None, offset, size }));
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(RawRecord::Line { line: None, offset, bytes }));
        }
    }
}

impl Iterator for PartReader {
    type Item = io::Result<RawRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// The 1-based line numbers of lines starting at `offsets` (sorted ascending), in one pass
/// over the file up to the last of them.
pub fn line_numbers(path: &Path, offsets: &[u64]) -> io::Result<Vec<u64>> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut out = Vec::with_capacity(offsets.len());
    let (mut pos, mut line) = (0u64, 1u64);
    let mut buf = vec![0u8; 1 << 20];
    for &offset in offsets {
        while pos < offset {
            let want = (offset - pos).min(buf.len() as u64) as usize;
            let n = reader.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            line += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            pos += n as u64;
        }
        out.push(line);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_of(path: &Path, parts: usize, max: usize) -> Vec<RawRecord> {
        let mut all: Vec<RawRecord> = (0..parts)
            .flat_map(|p| PartReader::open(path, p, parts, max).unwrap().map(Result::unwrap).collect::<Vec<_>>())
            .collect();
        all.sort_by_key(|r| match r {
            RawRecord::Line { offset, .. } | RawRecord::TooLarge { offset, .. } => *offset,
        });
        all
    }

    #[test]
    fn parts_cover_every_line_once() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let text = "alpha\nbeta\n\ngamma delta\r\nx\nlast-no-newline";
        f.write_all(text.as_bytes()).unwrap();
        let whole = lines_of(f.path(), 1, 100);
        assert_eq!(whole.len(), 5);
        assert_eq!(whole[2], RawRecord::Line { line: None, offset: 12, bytes: b"gamma delta".to_vec() });
        assert_eq!(whole[4], RawRecord::Line { line: None, offset: 27, bytes: b"last-no-newline".to_vec() });
        for parts in 2..=4 {
            assert_eq!(lines_of(f.path(), parts, 100), whole, "{parts} parts");
        }
        assert_eq!(line_numbers(f.path(), &[0, 12, 27]).unwrap(), vec![1, 4, 6]);
    }

    #[test]
    fn lines_across_block_boundaries_belong_to_one_part() {
        // Lines of varying length so that block boundaries fall inside lines and on line starts.
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut expected = Vec::new();
        let mut offset = 0u64;
        for i in 0..40_000u64 {
            let line = format!("{i}:{}", "y".repeat((i % 97) as usize));
            expected.push(RawRecord::Line { line: None, offset, bytes: line.clone().into_bytes() });
            offset += line.len() as u64 + 1;
            writeln!(f, "{line}").unwrap();
        }
        assert!(offset > 2 * BLOCK);
        for parts in 1..=3 {
            assert_eq!(lines_of(f.path(), parts, 1000), expected, "{parts} parts");
        }
    }

    #[test]
    fn long_lines_are_reported_not_kept() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"short\n0123456789abcdef\nok\n").unwrap();
        let got = lines_of(f.path(), 1, 8);
        assert_eq!(got[1], RawRecord::TooLarge { line: None, offset: 6, size: 16 });
        assert_eq!(got[2], RawRecord::Line { line: None, offset: 23, bytes: b"ok".to_vec() });
    }
}
