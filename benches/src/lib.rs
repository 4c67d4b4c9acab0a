//! journeyflow's end-to-end benchmark over the standard workload of `shared/BENCHMARK.md`:
//! the workload and its data, the engine driver, the measurements (each run in a process of
//! its own by the `journeyflow-bench` binary), the from-scratch baseline, the independent
//! reference that checks every load's membership, and the report with its plots.

pub mod cases;
pub mod driver;
/// The test suite's journey interpreter, over [`reference`]: the benchmark checks the
/// journeys' transitions and actions against it.
#[allow(missing_docs)]
#[path = "../../pipeline/tests/common/journey_reference.rs"]
pub mod journey_reference;
pub mod machine;
pub mod plots;
pub mod recompute;
/// The test suite's from-scratch reference evaluator, which reads the raw event and definition
/// JSON itself and shares no code with the engine: the benchmark checks every load's
/// membership against it.
#[allow(missing_docs)]
#[path = "../../pipeline/tests/common/reference.rs"]
pub mod reference;
pub mod report;
pub mod soak;
pub mod workload;
