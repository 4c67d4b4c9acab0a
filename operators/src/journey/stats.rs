//! Journey reports as a collection: transitions, actions and conversions become counts per
//! journey and per node (entered, exited, and from them "currently there"; converted, exited,
//! completed, canceled; actions by status; conversions and their value; per split branch,
//! who took it and converted; and each flow again per hour), maintained incrementally and
//! readable at any complete time.

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
    /// What conversions were worth, in millionths (the counter's value).
    ConvertedValue,
    /// Conversions of users at a node.
    NodeConverted(u32),
    /// What conversions of users at a node were worth, in millionths.
    NodeConvertedValue(u32),
    /// Users who took branch `.1` of split node `.0` (each time they took it).
    SplitEntered(u32, u32),
    /// Conversions after taking branch `.1` of split node `.0` in the same entry.
    SplitConverted(u32, u32),
    /// What those were worth, in millionths.
    SplitValue(u32, u32),
    /// A flow counted in the hour starting at `.0` (epoch ms).
    Hourly(Time, Flow),
}

/// What is counted per hour: what happens, not who is where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Flow {
    /// Entries.
    Entered,
    /// Left by the goal.
    Converted,
    /// Left by the exit rule.
    Exited,
    /// Reached an exit node.
    Completed,
    /// Canceled (the journey ended, or the user was deleted).
    Canceled,
    /// What conversions were worth, in millionths.
    ConvertedValue,
    /// Arrivals at a node.
    NodeEntered(u32),
    /// Departures from a node.
    NodeExited(u32),
    /// Conversions of users at a node.
    NodeConverted(u32),
    /// Action records at a node, by status.
    NodeActions(u32, ActionStatus),
}

impl Flow {
    /// The flow a counter counts, if it counts one.
    pub fn of(stat: Stat) -> Option<Flow> {
        Some(match stat {
            Stat::Entered => Flow::Entered,
            Stat::Converted => Flow::Converted,
            Stat::Exited => Flow::Exited,
            Stat::Completed => Flow::Completed,
            Stat::Canceled => Flow::Canceled,
            Stat::ConvertedValue => Flow::ConvertedValue,
            Stat::NodeEntered(n) => Flow::NodeEntered(n),
            Stat::NodeExited(n) => Flow::NodeExited(n),
            Stat::NodeConverted(n) => Flow::NodeConverted(n),
            Stat::NodeActions(n, s) => Flow::NodeActions(n, s),
            _ => return None,
        })
    }
}

/// The hour a time falls in (its start).
pub fn hour_of(time: Time) -> Time {
    time - time % 3_600_000
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
                JourneyOutput::Conversion(c) => {
                    counts.push((Stat::NodeConverted(c.node), 1));
                    let value = c.value as isize;
                    counts.extend([(Stat::ConvertedValue, value), (Stat::NodeConvertedValue(c.node), value)]);
                    for (node, branch) in c.splits.iter() {
                        counts.extend([
                            (Stat::SplitConverted(*node, *branch), 1),
                            (Stat::SplitValue(*node, *branch), value),
                        ]);
                    }
                    counts.retain(|(_, diff)| *diff != 0);
                    c.journey
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
                    if let (Reason::Split(branch), Some(node)) = (t.reason, t.from) {
                        counts.push((Stat::SplitEntered(node, branch), 1));
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
            let time = record.time();
            // Each flow counted again in its hour.
            for i in 0..counts.len() {
                let (stat, diff) = counts[i];
                if let Some(flow) = Flow::of(stat) {
                    counts.push((Stat::Hourly(hour_of(time), flow), diff));
                }
            }
            counts.into_iter().map(move |(stat, diff)| ((journey, stat), time, diff))
        })
        .as_collection()
        .consolidate()
}
