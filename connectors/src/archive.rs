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

/// Deletes the hour partitions of every kind under `dir` that end at or before `before`
/// (complete: the archive is written only behind the durable frontier); returns how many went.
pub fn discard_before(dir: &Path, before: u64) -> std::io::Result<usize> {
    let mut gone = 0;
    let Ok(kinds) = std::fs::read_dir(dir) else { return Ok(0) };
    for kind in kinds.filter_map(Result::ok).filter(|e| e.path().is_dir()) {
        for day in std::fs::read_dir(kind.path())?.filter_map(Result::ok) {
            let Some(date) =
                day.file_name().to_str().and_then(|n| n.strip_prefix("dt=")?.parse::<chrono::NaiveDate>().ok())
            else {
                continue;
            };
            for hour in std::fs::read_dir(day.path())?.filter_map(Result::ok) {
                let start = hour
                    .file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("hour=")?.parse::<u32>().ok())
                    .and_then(|h| date.and_hms_opt(h, 0, 0))
                    .map(|t| t.and_utc().timestamp_millis() as u64);
                if start.is_some_and(|start| start + HOUR <= before) {
                    std::fs::remove_dir_all(hour.path())?;
                    gone += 1;
                }
            }
            if std::fs::read_dir(day.path())?.next().is_none() {
                std::fs::remove_dir(day.path())?;
            }
        }
    }
    Ok(gone)
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
    fn hours_that_end_before_a_time_are_deleted_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("time", DataType::UInt64, false)]));
        let h0 = 1_704_067_200_000u64; // 2024-01-01 00:00
        for kind in ["changes", "actions"] {
            let mut archive = Archive::new(dir.path(), kind, schema.clone(), "0of1".into());
            // 23:00 of the day before, then 00:00 and 01:00.
            for t in [h0 - HOUR + 1, h0 + 1, h0 + HOUR + 1] {
                archive.push(t, format!("{{\"time\":{t}}}").as_bytes());
            }
            assert_eq!(archive.write_before(h0 + 2 * HOUR).unwrap(), 3);
        }
        std::fs::write(dir.path().join("changes/notes.txt"), "kept").unwrap();
        // Up to 00:30: the hour of 23:00 ends at 00:00, the hour of 00:00 not yet.
        assert_eq!(discard_before(dir.path(), h0 + HOUR / 2).unwrap(), 2);
        for kind in ["changes", "actions"] {
            let base = dir.path().join(kind);
            assert!(!base.join("dt=2023-12-31").exists(), "an emptied day goes too");
            assert!(base.join("dt=2024-01-01/hour=00").exists() && base.join("dt=2024-01-01/hour=01").exists());
        }
        assert_eq!(discard_before(dir.path(), h0 + HOUR).unwrap(), 2);
        assert!(!dir.path().join("changes/dt=2024-01-01/hour=00").exists());
        assert!(dir.path().join("changes/notes.txt").exists());
        assert_eq!(discard_before(&dir.path().join("missing"), u64::MAX).unwrap(), 0);
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
