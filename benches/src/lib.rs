//! journeyflow's end-to-end benchmark over the standard workload of `shared/BENCHMARK.md`:
//! the workload and its data, the engine driver, the measurements (each run in a process of
//! its own by the `journeyflow-bench` binary), the from-scratch baseline that checks them,
//! and the report with its plots.

pub mod cases;
pub mod driver;
pub mod machine;
pub mod plots;
pub mod recompute;
pub mod report;
pub mod workload;
