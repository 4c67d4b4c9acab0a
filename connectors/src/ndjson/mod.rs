//! Newline-delimited JSON: reading event files in parallel parts, writing output files.

mod reader;
mod writer;

pub use reader::{line_numbers, PartReader, RawRecord, BLOCK};
pub use writer::NdjsonWriter;
