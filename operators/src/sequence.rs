//! `sequence`: users with a chain of events matching the steps in `(timestamp, messageId)`
//! order, whose first step lies in `(T - within, T]`, whose last step lies at or before
//! `T - min_age`, and after whose last step no `then_not` event has happened up to T.
//!
//! Events are windowed to `[ts, ts + within)` (nothing older can take part). For each
//! user, a reduce turns the events present into the time intervals during which the
//! condition holds if no further event arrives; a temporal filter then makes the user a
//! member exactly during those intervals. A new event or an expiry re-runs the reduce,
//! which retracts the old intervals: membership changes caused only by time passing
//! (a cart becoming old enough, a first step leaving the window) fall out at the exact
//! millisecond.

use crate::temporal::{temporal_filter, FOREVER};
use crate::{Time, UserId, Users};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

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
    let windowed = temporal_filter(events, move |(_, e)| (e.ts, e.ts.saturating_add(spec.within)), |x| x);
    let intervals = windowed.reduce_named("Sequence", move |_user, input: &[(&SequenceEvent, isize)], output| {
        let sorted: Vec<&SequenceEvent> = input.iter().filter(|(_, r)| *r > 0).map(|(e, _)| *e).collect();
        for interval in member_intervals(&sorted, spec) {
            output.push((interval, 1));
        }
    });
    temporal_filter(intervals, |(_, (start, end))| (*start, *end), |(user, _)| user)
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
