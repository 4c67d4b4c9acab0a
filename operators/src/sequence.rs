//! `sequence`: users with a chain of events matching the steps in `(timestamp, messageId)`
//! order, whose first step lies in `(T - within, T]`, whose last step lies at or before
//! `T - min_age`, and after whose last step no `then_not` event has happened up to T.
//!
//! Each user's events wait in a time-ordered queue (`due`) until the frontier passes them.
//! When a user's events change, the time intervals during which the condition holds if no
//! further event arrives are computed from the events in the window, and timers are set at
//! their bounds; at each such time the user's membership is re-read from the intervals. So
//! membership changes caused only by time passing (a cart becoming old enough, a first step
//! leaving the window) fall out at the exact millisecond, and only changes leave the operator.
//! An event is forgotten at `ts + within`: no interval through it reaches past that time.

use crate::due::Due;
use crate::window::apply;
use crate::{Time, UserId, Users, FOREVER};
use differential_dataflow::{AsCollection, VecCollection};
use journeyflow_types::KeyMap;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

/// One event relevant to a sequence. Ordered by `(ts, message_id)` first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SequenceEvent {
    /// Event time.
    pub ts: Time,
    /// Tie-breaker among equal timestamps.
    pub message_id: String,
    /// Bit `i` is set when the event matches step `i`.
    pub steps: u64,
    /// Whether the event matches `then_not`.
    pub then_not: bool,
}

/// Parameters of a sequence condition (steps are given as bit positions).
#[derive(Clone, Copy, Debug)]
pub struct SequenceSpec {
    /// Number of steps (at most 64).
    pub steps: usize,
    /// The first step lies in `(T - within, T]`.
    pub within: Time,
    /// The last step lies at or before `T - min_age`.
    pub min_age: Time,
}

/// Members of a `sequence` condition, given each user's relevant events.
pub fn sequence<'s>(events: VecCollection<'s, Time, (UserId, SequenceEvent)>, spec: SequenceSpec) -> Users<'s> {
    let exchange = Exchange::new(|((user, _), _, _): &((UserId, SequenceEvent), Time, isize)| user.0 as u64);
    type Output = timely::container::CapacityContainerBuilder<Vec<(UserId, Time, isize)>>;
    events
        .inner
        .unary_frontier::<Output, _, _, _>(exchange, "Sequence", move |_, _| {
            // An event arriving (`Some`) or a time at which a user's membership may change (`None`).
            let mut due: Due<Option<(SequenceEvent, isize)>> = Due::default();
            let mut users: KeyMap<Chains> = KeyMap::default();
            let (mut items, mut changes) = (Vec::new(), Vec::new());
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    due.hold(&cap);
                    for ((user, event), time, diff) in data.drain(..) {
                        let start = time.max(event.ts);
                        if start < event.ts.saturating_add(spec.within) && diff != 0 {
                            due.push(start, user, Some((event, diff)));
                        }
                    }
                });
                while let Some((time, user)) = due.next(frontier, &mut items) {
                    let chains = users.entry(user).or_default();
                    let arrived = items.iter().any(Option::is_some);
                    for (event, diff) in items.drain(..).flatten() {
                        // Forgotten at `ts + within`, where no interval through it reaches.
                        due.push(event.ts.saturating_add(spec.within), user, None);
                        apply(&mut chains.events, event, diff);
                    }
                    chains.forget(time, spec.within);
                    if arrived {
                        chains.intervals = member_intervals(&chains.present(), spec);
                        for &(start, end) in &chains.intervals {
                            for bound in [start, end] {
                                if bound > time && bound != FOREVER {
                                    due.push(bound, user, None);
                                }
                            }
                        }
                    }
                    let member = chains.intervals.iter().any(|&(start, end)| start <= time && time < end);
                    if member != chains.member {
                        chains.member = member;
                        changes.push((user, time, if member { 1 } else { -1 }));
                    }
                    if chains.events.is_empty() && !member {
                        users.remove(&user);
                    }
                }
                due.send(&mut changes, |cap, batch| output.session(cap).give_iterator(batch.drain(..)));
            }
        })
        .as_collection()
}

/// One user's events in the window, the intervals they make, and whether the user is a member.
#[derive(Default)]
struct Chains {
    /// Sorted by event, consolidated.
    events: Vec<(SequenceEvent, isize)>,
    intervals: Vec<(Time, Time)>,
    member: bool,
}

impl Chains {
    /// Drops the events whose window has closed by `now`.
    fn forget(&mut self, now: Time, within: Time) {
        self.events.retain(|(e, _)| e.ts.saturating_add(within) > now);
    }

    /// The events present, in `(ts, message_id)` order.
    fn present(&self) -> Vec<&SequenceEvent> {
        self.events.iter().filter(|(_, r)| *r > 0).map(|(e, _)| e).collect()
    }
}

/// Disjoint, sorted intervals `[start, end)` of times at which the condition holds over
/// `events` (sorted by `(ts, message_id)`), assuming no other events.
pub fn member_intervals(events: &[&SequenceEvent], spec: SequenceSpec) -> Vec<(Time, Time)> {
    let k = spec.steps;
    // best[i]: the latest first-step time of a chain matching steps 0..=i seen so far.
    let mut best: Vec<Option<Time>> = vec![None; k];
    let then_nots: Vec<Time> = events.iter().filter(|e| e.then_not).map(|e| e.ts).collect();
    let mut intervals = Vec::new();
    for e in events {
        for i in (0..k).rev() {
            if e.steps & (1 << i) == 0 {
                continue;
            }
            let first = if i == 0 { Some(e.ts) } else { best[i - 1] };
            let Some(first) = first else { continue };
            if i == k - 1 {
                let start = e.ts.saturating_add(spec.min_age);
                let next_then_not = then_nots.iter().copied().find(|&t| t > e.ts).unwrap_or(FOREVER);
                let end = first.saturating_add(spec.within).min(next_then_not);
                if start < end {
                    intervals.push((start, end));
                }
            }
            best[i] = Some(best[i].map_or(first, |b| b.max(first)));
        }
    }
    intervals.sort();
    let mut merged: Vec<(Time, Time)> = Vec::with_capacity(intervals.len());
    for (s, e) in intervals {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: Time, steps: u64, then_not: bool) -> SequenceEvent {
        SequenceEvent { ts, message_id: format!("m{ts}"), steps, then_not }
    }

    #[test]
    fn abandoned_cart_interval() {
        // Cart at 100, within 1000, min_age 50: member from 150 until 1100; an order at 400 ends it.
        let spec = SequenceSpec { steps: 1, within: 1000, min_age: 50 };
        let cart = ev(100, 1, false);
        assert_eq!(member_intervals(&[&cart], spec), vec![(150, 1100)]);
        let order = ev(400, 0, true);
        assert_eq!(member_intervals(&[&cart, &order], spec), vec![(150, 400)]);
    }

    #[test]
    fn two_step_funnel_uses_latest_first_step() {
        let spec = SequenceSpec { steps: 2, within: 100, min_age: 0 };
        let (a1, a2, b) = (ev(10, 1, false), ev(50, 1, false), ev(60, 2, false));
        // The chain a2 -> b keeps the user in until 150; a1 alone would end at 110.
        assert_eq!(member_intervals(&[&a1, &a2, &b], spec), vec![(60, 150)]);
        // A step-2 event before any step-1 event does not count.
        assert_eq!(member_intervals(&[&b, &ev(70, 1, false)], spec), vec![]);
    }

    #[test]
    fn one_event_cannot_fill_two_steps() {
        let spec = SequenceSpec { steps: 2, within: 100, min_age: 0 };
        assert_eq!(member_intervals(&[&ev(10, 0b11, false)], spec), vec![]);
        assert_eq!(member_intervals(&[&ev(10, 0b11, false), &ev(20, 0b11, false)], spec), vec![(20, 110)]);
    }
}
