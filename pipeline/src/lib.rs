//! journeyflow's pipeline: compiles definitions into dataflows, runs the timely workers,
//! and implements the `journeyflow` commands.

pub mod admission;
pub mod analysis;
pub mod archive;
pub mod arrangement_sizes;
pub mod catalog_topic;
pub mod chain_merge;
pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod cohort;
pub mod compile;
pub mod config;
pub mod control_compaction;
pub mod control_log;
pub mod durable;
pub mod entry;
pub mod funnel;
pub mod inputs;
pub mod journey_output;
pub mod journey_snapshot;
pub mod kafka_input;
pub mod live;
pub mod output_retention;
pub mod paths;
pub mod profile;
pub mod programs;
pub mod record_id;
pub mod replay;
pub mod scrub;
pub mod segment_output;
pub mod sequencer;
pub mod sinks;
pub mod throttle;
pub mod watermark;
