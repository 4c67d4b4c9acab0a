//! Sources and sinks at the edge of the dataflow: NDJSON event files split into per-worker
//! parts on line boundaries, atomic NDJSON output files, and the durable ingest log that
//! HTTP ingest appends to and workers tail, and the webhook sink for actions. Each connector is one folder; nothing here knows
//! about timely or differential dataflow.

pub mod ndjson;
pub mod wal;
pub mod webhook;
