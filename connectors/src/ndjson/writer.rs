//! Writes NDJSON files atomically: records go to `NAME.tmp`, which is flushed, synced and
//! renamed over `NAME` on `finish`, so a reader never sees a half-written file.

use serde::Serialize;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// An NDJSON output file in the making.
pub struct NdjsonWriter {
    out: BufWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    records: u64,
}

impl NdjsonWriter {
    /// Starts writing `path` (through a temporary file beside it).
    pub fn create(path: &Path) -> io::Result<NdjsonWriter> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        Ok(NdjsonWriter { out, tmp, path: path.to_path_buf(), records: 0 })
    }

    /// Appends one record as a line.
    pub fn write<T: Serialize>(&mut self, record: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")?;
        self.records += 1;
        Ok(())
    }

    /// Flushes, syncs and moves the file into place; returns the number of records.
    pub fn finish(self) -> io::Result<u64> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)?;
        Ok(self.records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appears_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let mut w = NdjsonWriter::create(&path).unwrap();
        w.write(&serde_json::json!({"a": 1})).unwrap();
        w.write(&serde_json::json!({"a": 2})).unwrap();
        assert!(!path.exists());
        assert_eq!(w.finish().unwrap(), 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
    }
}
