//! Journey reports as a collection: transitions and actions become counts per journey and
//! per node (entered, exited, and from them "currently there"; converted, exited, completed,
//! canceled; actions by status), maintained incrementally and readable at any complete time.

use super::record::{ActionStatus, JourneyOutput, Reason};
use crate::Time;
use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;

/// One counter; its multiplicity in the collection is its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Stat {
    /// Entries (including restarts under `always` re-entry).
    Entered,
    /// Users inside the journey, not at an exit node.
    InProgress,
    /// Left by performing the goal.
    Converted,
    /// Left because the exit rule held.
    Exited,
    /// Reached an exit node.
    Completed,
    /// Inside when the journey ended, or when the user was deleted.
    Canceled,
    /// Taken over from the previous version, at a node of this one.
    MigratedIn,
    /// Inside the previous version, and out of the journey by the migration.
    MigratedOut,
    /// Arrivals at a node.
    NodeEntered(u32),
    /// Departures from a node (arrivals minus departures: users there now; at an exit node,
    /// users who finished there).
    NodeExited(u32),
    /// Action records at a node, by status.
    NodeActions(u32, ActionStatus),
}

/// Counters per `(journey index, stat)`. `is_exit(journey, node)` says which nodes are exits.
pub fn stats<'s>(
    outputs: StreamVec<'s, Time, JourneyOutput>,
    is_exit: impl Fn(u32, u32) -> bool + 'static,
) -> VecCollection<'s, Time, (u32, Stat)> {
    outputs
        .flat_map(move |record| {
            let mut counts: Vec<(Stat, isize)> = Vec::new();
            let journey = match &record {
                JourneyOutput::Action(a) => {
                    counts.push((Stat::NodeActions(a.node, a.status), 1));
                    a.journey
                }
                JourneyOutput::Transition(t) if matches!(t.reason, Reason::Migrated(_)) => {
                    // `from` is a node of the previous version: only where the user is now counts.
                    match t.to {
                        Some(to) => {
                            counts.extend([(Stat::MigratedIn, 1), (Stat::NodeEntered(to), 1), (Stat::InProgress, 1)]);
                            if is_exit(t.journey, to) {
                                counts.extend([(Stat::Completed, 1), (Stat::InProgress, -1)]);
                            }
                        }
                        None => counts.push((Stat::MigratedOut, 1)),
                    }
                    t.journey
                }
                JourneyOutput::Transition(t) => {
                    if matches!(t.reason, Reason::Entry | Reason::Scheduled | Reason::Api) {
                        counts.push((Stat::Entered, 1));
                    }
                    if let Some(from) = t.from {
                        counts.push((Stat::NodeExited(from), 1));
                    }
                    match t.to {
                        Some(to) => {
                            counts.push((Stat::NodeEntered(to), 1));
                            if t.from.is_none() {
                                counts.push((Stat::InProgress, 1));
                            }
                            if is_exit(t.journey, to) {
                                counts.push((Stat::Completed, 1));
                                counts.push((Stat::InProgress, -1));
                            }
                        }
                        None => {
                            counts.push((Stat::InProgress, -1));
                            match t.reason {
                                Reason::Goal => counts.push((Stat::Converted, 1)),
                                Reason::ExitWhen => counts.push((Stat::Exited, 1)),
                                Reason::Ended | Reason::Deleted => counts.push((Stat::Canceled, 1)),
                                _ => {}
                            }
                        }
                    }
                    t.journey
                }
            };
            let time = match &record {
                JourneyOutput::Action(a) => a.time,
                JourneyOutput::Transition(t) => t.time,
            };
            counts.into_iter().map(move |(stat, diff)| ((journey, stat), time, diff))
        })
        .as_collection()
        .consolidate()
}
