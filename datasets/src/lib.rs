//! Event data for tests, demos and benchmarks: a deterministic generator of Segment-spec
//! events (seeded per event, so any slice can be made in parallel and reproduced) and a
//! loader of the real CDNOW purchase history.

pub mod cdnow;
pub mod generator;
