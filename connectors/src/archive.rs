//! A time-partitioned Parquet archive of one kind of record. Rows are buffered by the hour of
//! their time and written once every record before a frontier is in, as
//! `<dir>/<kind>/dt=YYYY-MM-DD/hour=HH/part-<writer>-<frontier>.parquet` (Hive-style
//! partitions, read as such by DuckDB and pyarrow). Each file is written whole and renamed
//! into place; after a restart, rows written again carry the same ids.

use crate::parquet_file::{write_json_rows, Error};
use arrow::datatypes::SchemaRef;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const HOUR: u64 = 3_600_000;

/// One kind of record's archive, as one writer (a worker) fills it.
pub struct Archive {
    dir: PathBuf,
    schema: SchemaRef,
    writer: String,
    /// Rows (JSON lines with their newline) by the start of their hour, with their times.
    hours: BTreeMap<u64, Vec<(u64, Vec<u8>)>>,
    buffered: usize,
    /// Bytes of the buffered rows.
    bytes: usize,
}

impl Archive {
    /// The archive of `kind` in `dir`, written by `writer` (a name no other writer uses).
    pub fn new(dir: &Path, kind: &str, schema: SchemaRef, writer: String) -> Archive {
        Archive { dir: dir.join(kind), schema, writer, hours: BTreeMap::new(), buffered: 0, bytes: 0 }
    }

    /// Adds a row (a JSON object) of time `time`.
    pub fn push(&mut self, time: u64, row: &[u8]) {
        let mut line = Vec::with_capacity(row.len() + 1);
        line.extend_from_slice(row);
        line.push(b'\n');
        self.bytes += line.len();
        self.hours.entry(time - time % HOUR).or_default().push((time, line));
        self.buffered += 1;
    }

    /// Rows waiting to be written.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Bytes of the rows waiting to be written.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Writes every row before `frontier`, one file per hour; returns how many rows.
    pub fn write_before(&mut self, frontier: u64) -> Result<usize, Error> {
        let mut written = 0;
        let hours: Vec<u64> = self.hours.range(..frontier).map(|(h, _)| *h).collect();
        for hour in hours {
            let Some(rows) = self.hours.remove(&hour) else { continue };
            let (due, kept): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(t, _)| *t < frontier);
            if due.is_empty() {
                self.hours.insert(hour, kept);
                continue;
            }
            let bytes: Vec<u8> = due.iter().flat_map(|(_, l)| l.iter().copied()).collect();
            let path = self.path(hour, frontier);
            match write_json_rows(&path, &self.schema, &bytes) {
                Ok(n) => {
                    written += n;
                    self.buffered -= n;
                    self.bytes -= bytes.len();
                    if !kept.is_empty() {
                        self.hours.insert(hour, kept);
                    }
                }
                Err(e) => {
                    // Kept, to be written with a later frontier: a failed write loses no row.
                    self.hours.insert(hour, due.into_iter().chain(kept).collect());
                    return Err(e);
                }
            }
        }
        Ok(written)
    }

    fn path(&self, hour: u64, frontier: u64) -> PathBuf {
        let start = chrono::DateTime::from_timestamp_millis(hour as i64).unwrap_or_default();
        self.dir
            .join(format!("dt={}", start.format("%Y-%m-%d")))
            .join(format!("hour={}", start.format("%H")))
            .join(format!("part-{}-{frontier}.parquet", self.writer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parquet_file::read_json_rows;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn rows_go_to_the_file_of_their_hour_once_the_frontier_passes_them() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("time", DataType::UInt64, false)]));
        let mut archive = Archive::new(dir.path(), "changes", schema, "0of1".into());
        let (h0, h1) = (1_704_067_200_000u64, 1_704_067_200_000u64 + HOUR); // 2024-01-01 00:00, 01:00
        for t in [h0 + 5, h0 + 9, h1 + 1] {
            archive.push(t, format!("{{\"time\":{t}}}").as_bytes());
        }
        assert_eq!(archive.write_before(h0 + 9).unwrap(), 1);
        assert_eq!(archive.buffered(), 2);
        assert_eq!(archive.write_before(h1 + 2).unwrap(), 2);
        let first = dir.path().join(format!("changes/dt=2024-01-01/hour=00/part-0of1-{}.parquet", h0 + 9));
        assert_eq!(read_json_rows(&first).unwrap(), format!("{{\"time\":{}}}\n", h0 + 5).into_bytes());
        let later = dir.path().join(format!("changes/dt=2024-01-01/hour=01/part-0of1-{}.parquet", h1 + 2));
        assert_eq!(read_json_rows(&later).unwrap(), format!("{{\"time\":{}}}\n", h1 + 1).into_bytes());
        assert_eq!(archive.buffered(), 0);
    }

    #[test]
    fn rows_a_failed_write_could_not_take_are_written_later() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the archive's directory should be: every write fails.
        let blocked = dir.path().join("archive");
        std::fs::write(&blocked, "").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("time", DataType::UInt64, false)]));
        let mut archive = Archive::new(&blocked, "changes", schema, "0of1".into());
        let h0 = 1_704_067_200_000u64;
        archive.push(h0 + 5, format!("{{\"time\":{}}}", h0 + 5).as_bytes());
        assert!(archive.write_before(h0 + 9).is_err());
        assert_eq!((archive.buffered(), archive.buffered_bytes() > 0), (1, true));
        std::fs::remove_file(&blocked).unwrap();
        assert_eq!(archive.write_before(h0 + 10).unwrap(), 1);
        assert_eq!((archive.buffered(), archive.buffered_bytes()), (0, 0));
    }
}
