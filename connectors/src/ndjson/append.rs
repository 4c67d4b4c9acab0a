//! Appending whole lines to a file a crash may have left with a line cut short.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

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
