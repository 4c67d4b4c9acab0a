//! Sources and sinks at the edge of the dataflow. For now, NDJSON: event files split into
//! per-worker parts on line boundaries, and atomic NDJSON output files. Each connector
//! is one folder; nothing here knows about timely or differential dataflow.

pub mod ndjson;
