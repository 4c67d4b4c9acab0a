//! Newline-delimited JSON: reading event files in parallel parts, writing output files,
//! appending whole lines (to a file, or to a log of segments).

mod append;
mod reader;
mod rolling;
mod writer;

pub use append::{open_append, Appender};
pub use reader::{line_numbers, PartReader, RawRecord, BLOCK};
pub use rolling::{log_end, Rolling};
pub use writer::NdjsonWriter;
