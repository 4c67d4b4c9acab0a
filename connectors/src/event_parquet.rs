//! Segment events as Parquet files: the column layout, a streaming writer of JSON event lines
//! (written under a hidden temporary name and renamed when finished), and a reader of one
//! worker's share of the row groups back to JSON lines, so Parquet input takes the same
//! decoding path as NDJSON.

use crate::ndjson::RawRecord;
use crate::parquet_file::Error;
use arrow::array::TimestampMillisecondBuilder;
use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StringBuilder, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::Value as J;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows per row group: the unit dealt to workers.
pub const ROW_GROUP: usize = 131_072;

/// String columns, in file order; `timestamp` follows `userId`'s group (see [`schema`]).
const TEXT: [&str; 4] = ["messageId", "type", "userId", "anonymousId"];
/// Columns holding JSON text.
const OBJECTS: [&str; 2] = ["properties", "traits"];

/// The columns: `messageId`, `type`, `userId`, `anonymousId` (strings), `timestamp`
/// (milliseconds, UTC), `event` (string), `properties` and `traits` (JSON text); all nullable.
pub fn schema() -> SchemaRef {
    let mut fields: Vec<Field> = TEXT.iter().map(|n| Field::new(*n, DataType::Utf8, true)).collect();
    fields.push(Field::new("timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), true));
    fields.push(Field::new("event", DataType::Utf8, true));
    fields.extend(OBJECTS.iter().map(|n| Field::new(*n, DataType::Utf8, true)));
    Arc::new(Schema::new(fields))
}

fn format<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> Error + '_ {
    move |e| Error::Format { path: path.display().to_string(), message: e.to_string() }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.display().to_string(), source }
}

/// Builders of one row group.
struct Columns {
    text: Vec<StringBuilder>,
    timestamp: TimestampMillisecondBuilder,
    event: StringBuilder,
    objects: Vec<StringBuilder>,
    rows: usize,
}

impl Columns {
    fn new() -> Columns {
        Columns {
            text: TEXT.iter().map(|_| StringBuilder::new()).collect(),
            timestamp: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            event: StringBuilder::new(),
            objects: OBJECTS.iter().map(|_| StringBuilder::new()).collect(),
            rows: 0,
        }
    }

    fn push(&mut self, v: &J) {
        for (name, b) in TEXT.iter().zip(&mut self.text) {
            b.append_option(v.get(*name).and_then(J::as_str));
        }
        self.timestamp.append_option(v.get("timestamp").and_then(J::as_i64));
        self.event.append_option(v.get("event").and_then(J::as_str));
        for (name, b) in OBJECTS.iter().zip(&mut self.objects) {
            b.append_option(v.get(*name).filter(|o| !o.is_null()).map(J::to_string));
        }
        self.rows += 1;
    }

    fn finish(&mut self) -> RecordBatch {
        let mut arrays: Vec<ArrayRef> = self.text.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        arrays.push(Arc::new(self.timestamp.finish()));
        arrays.push(Arc::new(self.event.finish()));
        arrays.extend(self.objects.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        self.rows = 0;
        RecordBatch::try_new(schema(), arrays).expect("columns match the schema")
    }
}

/// Writes JSON event lines into a Parquet file, a row group at a time.
pub struct EventWriter {
    path: PathBuf,
    tmp: PathBuf,
    writer: ArrowWriter<File>,
    columns: Columns,
    rows: u64,
}

impl EventWriter {
    /// Starts `path` (created when finished; until then the rows go to a hidden temporary file).
    pub fn create(path: &Path) -> Result<EventWriter, Error> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("events");
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        let file = File::create(&tmp).map_err(io(&tmp))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP))
            .build();
        let writer = ArrowWriter::try_new(file, schema(), Some(props)).map_err(format(path))?;
        Ok(EventWriter { path: path.to_path_buf(), tmp, writer, columns: Columns::new(), rows: 0 })
    }

    /// Adds one event given as a JSON line; `Err` names the row when it is not a JSON object.
    pub fn push_line(&mut self, line: &str) -> Result<(), Error> {
        let v: J = serde_json::from_str(line).map_err(|e| Error::Format {
            path: self.path.display().to_string(),
            message: format!("row {}: {e}", self.rows + 1),
        })?;
        if !v.is_object() {
            let message = format!("row {}: not a JSON object", self.rows + 1);
            return Err(Error::Format { path: self.path.display().to_string(), message });
        }
        self.columns.push(&v);
        self.rows += 1;
        if self.columns.rows == ROW_GROUP {
            let batch = self.columns.finish();
            self.writer.write(&batch).map_err(format(&self.path))?;
        }
        Ok(())
    }

    /// Writes the rest, syncs and renames the file into place; returns the rows written.
    pub fn finish(mut self) -> Result<u64, Error> {
        if self.columns.rows > 0 {
            let batch = self.columns.finish();
            self.writer.write(&batch).map_err(format(&self.path))?;
        }
        let file = self.writer.into_inner().map_err(format(&self.path))?;
        file.sync_all().map_err(io(&self.tmp))?;
        std::fs::rename(&self.tmp, &self.path).map_err(io(&self.path))?;
        Ok(self.rows)
    }
}

/// Reads the row groups `part, part + parts, ...` of an events file as JSON lines; a record's
/// `offset` is its row number (0-based) in the file.
pub struct PartRows {
    reader: ParquetRecordBatchReader,
    /// First row number of each of this part's row groups, in order.
    starts: std::vec::IntoIter<(u64, u64)>,
    batch: Option<(RecordBatch, usize)>,
    /// Row number of the next row, and rows left in its group.
    row: (u64, u64),
    path: PathBuf,
}

impl PartRows {
    /// Opens part `part` of `parts` of the file at `path`.
    pub fn open(path: &Path, part: usize, parts: usize) -> Result<PartRows, Error> {
        let file = File::open(path).map_err(io(path))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(format(path))?;
        let expected = schema();
        for field in expected.fields() {
            let found = builder.schema().field_with_name(field.name()).map_err(format(path))?;
            if found.data_type() != field.data_type() {
                let message =
                    format!("column {} is {}, expected {}", field.name(), found.data_type(), field.data_type());
                return Err(Error::Format { path: path.display().to_string(), message });
            }
        }
        let groups = builder.metadata().row_groups();
        let mut first = 0u64;
        let mut mine = Vec::new();
        let mut starts = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            let rows = group.num_rows() as u64;
            if g % parts.max(1) == part {
                mine.push(g);
                starts.push((first, rows));
            }
            first += rows;
        }
        let reader = builder.with_row_groups(mine).with_batch_size(8_192).build().map_err(format(path))?;
        Ok(PartRows { reader, starts: starts.into_iter(), batch: None, row: (0, 0), path: path.to_path_buf() })
    }

    fn next_row(&mut self) -> Result<Option<RawRecord>, Error> {
        loop {
            if let Some((batch, i)) = &mut self.batch {
                if *i < batch.num_rows() {
                    while self.row.1 == 0 {
                        self.row = self.starts.next().unwrap_or((self.row.0, u64::MAX));
                    }
                    let bytes = row_json(batch, *i).into_bytes();
                    *i += 1;
                    let offset = self.row.0;
                    self.row = (self.row.0 + 1, self.row.1 - 1);
                    return Ok(Some(RawRecord::Line { line: Some(offset + 1), offset, bytes }));
                }
            }
            match self.reader.next() {
                None => return Ok(None),
                Some(batch) => self.batch = Some((batch.map_err(format(&self.path))?, 0)),
            }
        }
    }
}

impl Iterator for PartRows {
    type Item = Result<RawRecord, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_row().transpose()
    }
}

/// Row `i` of a batch as the JSON object it was written from.
fn row_json(batch: &RecordBatch, i: usize) -> String {
    let mut out = serde_json::Map::new();
    let text = |name: &str| {
        let col = batch.column_by_name(name)?.as_any().downcast_ref::<StringArray>()?;
        (!col.is_null(i)).then(|| col.value(i))
    };
    for name in TEXT.iter().chain(["event"].iter()) {
        if let Some(s) = text(name) {
            out.insert(name.to_string(), J::String(s.to_string()));
        }
    }
    if let Some(col) =
        batch.column_by_name("timestamp").and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
    {
        if !col.is_null(i) {
            out.insert("timestamp".into(), J::from(col.value(i)));
        }
    }
    for name in OBJECTS {
        if let Some(s) = text(name) {
            // Not JSON: kept as a string, which the decoder then rejects by name.
            out.insert(name.to_string(), serde_json::from_str(s).unwrap_or_else(|_| J::String(s.to_string())));
        }
    }
    J::Object(out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_back_from_the_parts_once_each_with_their_row_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.parquet");
        let mut w = EventWriter::create(&path).unwrap();
        let lines: Vec<String> = (0..(ROW_GROUP as u64 * 2 + 10))
            .map(|i| {
                if i % 2 == 0 {
                    format!(
                        r#"{{"messageId":"m{i}","type":"track","userId":"u{}","timestamp":{},"event":"E","properties":{{"n":{i}}}}}"#,
                        i % 7,
                        1000 + i
                    )
                } else {
                    format!(
                        r#"{{"messageId":"m{i}","type":"identify","anonymousId":"a{i}","timestamp":{},"traits":{{"plan":"pro"}}}}"#,
                        1000 + i
                    )
                }
            })
            .collect();
        for l in &lines {
            w.push_line(l).unwrap();
        }
        assert!(!path.exists(), "visible before it is finished");
        assert_eq!(w.finish().unwrap(), lines.len() as u64);
        let mut seen = vec![None; lines.len()];
        for part in 0..2 {
            for r in PartRows::open(&path, part, 2).unwrap() {
                let RawRecord::Line { offset, bytes, .. } = r.unwrap() else { panic!("no size limit here") };
                assert!(seen[offset as usize].replace(String::from_utf8(bytes).unwrap()).is_none());
            }
        }
        for (line, back) in lines.iter().zip(seen) {
            let (a, b): (J, J) = (serde_json::from_str(line).unwrap(), serde_json::from_str(&back.unwrap()).unwrap());
            assert_eq!(a, b);
        }
    }

    #[test]
    fn a_file_with_other_columns_is_refused_naming_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("messageId", DataType::Int64, false)]));
        crate::parquet_file::write_json_rows(&path, &schema, b"{\"messageId\":1}\n").unwrap();
        let err = PartRows::open(&path, 0, 1).err().unwrap().to_string();
        assert!(err.contains("messageId") && err.contains("other.parquet"), "{err}");
    }
}
