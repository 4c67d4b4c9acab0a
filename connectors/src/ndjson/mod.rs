//! Newline-delimited JSON: reading event files in parallel parts, writing output files.

mod reader;
mod writer;

pub use reader::{PartReader, RawRecord};
pub use writer::NdjsonWriter;
