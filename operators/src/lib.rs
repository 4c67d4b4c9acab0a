//! Timely and differential-dataflow operators that maintain segment membership
//! incrementally. Pure dataflow: no I/O, no definitions parsing. Each operator is one
//! file; every collection is keyed by user (the events arrangement by event name, each
//! event on its user's worker) and timed in event-time milliseconds.

pub mod aggregate;
pub mod cohort;
pub mod complement;
pub mod dedup;
pub mod due;
pub mod funnel;
pub mod held;
pub mod intersect;
pub mod journey;
pub mod paths;
pub mod profiles;
pub mod retain;
pub mod select;
pub mod sequence;
#[cfg(test)]
mod testing;
pub mod union;
pub mod window;
pub mod window_count;

/// Event time in epoch milliseconds: the timestamp of every dataflow here.
pub type Time = u64;

/// The end of time: an interval ending here never closes.
pub const FOREVER: Time = Time::MAX;

/// An event shared between the operators that read it (cloning is a reference count).
pub type SharedEvent = journeyflow_types::Record;

/// A user, by the key of its id.
pub type UserId = journeyflow_types::Key;

/// A set of users changing over time (each present user has multiplicity 1).
pub type Users<'scope> = differential_dataflow::VecCollection<'scope, Time, UserId, isize>;
