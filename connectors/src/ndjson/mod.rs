//! Newline-delimited JSON: reading event files in parallel parts, writing output files,
//! appending whole lines.

mod append;
mod reader;
mod writer;

pub use append::{open_append, Appender};
pub use reader::{line_numbers, PartReader, RawRecord, BLOCK};
pub use writer::NdjsonWriter;
