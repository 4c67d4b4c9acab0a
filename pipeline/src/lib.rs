//! journeyflow's pipeline: compiles definitions into dataflows, runs the timely workers,
//! and implements the `journeyflow` commands.

pub mod cli;
pub mod compile;
pub mod config;
pub mod engine;
pub mod journey_output;
pub mod live;
pub mod programs;
pub mod replay;
