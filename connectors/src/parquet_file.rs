//! Parquet files of JSON rows under an Arrow schema: written whole under a hidden temporary
//! name, synced and renamed (so a reader never sees half a file), and read back as JSON rows.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::json::{LineDelimitedWriter, ReaderBuilder};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::path::Path;

/// A Parquet or Arrow error, with the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A row that does not fit the schema, or a bad file.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.display().to_string(), source }
}

fn format<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> Error + '_ {
    move |e| Error::Format { path: path.display().to_string(), message: e.to_string() }
}

/// Writes `rows` (JSON objects, one per line, newline-terminated) as one Parquet file at
/// `path`, atomically; returns the number of rows.
pub fn write_json_rows(path: &Path, schema: &SchemaRef, rows: &[u8]) -> Result<usize, Error> {
    let mut decoder =
        ReaderBuilder::new(schema.clone()).with_batch_size(65_536).build_decoder().map_err(format(path))?;
    let mut batches = Vec::new();
    let mut rest = rows;
    loop {
        let used = decoder.decode(rest).map_err(format(path))?;
        rest = &rest[used..];
        if let Some(batch) = decoder.flush().map_err(format(path))? {
            batches.push(batch);
        }
        if rest.is_empty() {
            break;
        }
    }
    write_batches(path, schema, &batches)
}

/// Writes record batches as one Parquet file at `path`, atomically; returns the number of
/// rows.
pub fn write_batches(path: &Path, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<usize, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(path))?;
    }
    // Hidden while written: readers of a directory (pyarrow, DuckDB's `*.parquet`) skip it,
    // also when a crash leaves it behind.
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let written = (|| {
        let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(format(path))?;
        let mut n = 0;
        for batch in batches {
            n += batch.num_rows();
            writer.write(batch).map_err(format(path))?;
        }
        let file = writer.into_inner().map_err(format(path))?;
        file.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        Ok(n)
    })();
    if written.is_err() {
        // A failed write (a full disk) leaves nothing behind to take more space.
        let _ = std::fs::remove_file(&tmp);
    }
    let n = written?;
    crate::files::sync_parent(path).map_err(io(path))?;
    Ok(n)
}

/// The record batches of a Parquet file.
pub fn read_batches(path: &Path) -> Result<Vec<RecordBatch>, Error> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(format(path))?.build().map_err(format(path))?;
    reader.collect::<Result<Vec<_>, _>>().map_err(format(path))
}

/// The rows of a Parquet file as JSON objects, one per line.
pub fn read_json_rows(path: &Path) -> Result<Vec<u8>, Error> {
    let mut out = LineDelimitedWriter::new(Vec::new());
    for batch in read_batches(path)? {
        out.write(&batch).map_err(format(path))?;
    }
    out.finish().map_err(format(path))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn rows_written_are_read_back_and_no_temporary_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("time", DataType::UInt64, false),
            Field::new("to", DataType::Utf8, true),
        ]));
        let path = dir.path().join("a/b.parquet");
        let rows = b"{\"id\":\"x\",\"time\":5,\"to\":null}\n{\"id\":\"y\",\"time\":7,\"to\":\"n\"}\n";
        assert_eq!(write_json_rows(&path, &schema, rows).unwrap(), 2);
        let back = String::from_utf8(read_json_rows(&path).unwrap()).unwrap();
        assert_eq!(back, "{\"id\":\"x\",\"time\":5}\n{\"id\":\"y\",\"time\":7,\"to\":\"n\"}\n");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("a")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("b.parquet")]);
    }

    #[test]
    fn a_row_that_does_not_fit_the_schema_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("time", DataType::UInt64, false)]));
        let path = dir.path().join("bad.parquet");
        let err = write_json_rows(&path, &schema, b"{\"time\":\"soon\"}\n").unwrap_err().to_string();
        assert!(err.contains("bad.parquet"), "{err}");
        assert!(!path.exists());
    }
}
