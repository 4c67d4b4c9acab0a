//! Sources and sinks at the edge of the dataflow: NDJSON event files split into per-worker
//! parts on line boundaries, atomic NDJSON output files, the durable ingest log that HTTP
//! ingest appends to and workers tail, Kafka topics in and out, Parquet files (events in
//! and out, the time-partitioned archive), and the webhook sink for actions. Nothing here knows about
//! timely or differential dataflow.

pub mod archive;
pub mod event_parquet;
pub mod files;
pub mod kafka;
pub mod ndjson;
pub mod parquet_file;
pub mod wal;
pub mod webhook;
