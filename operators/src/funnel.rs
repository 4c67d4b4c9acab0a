//! `funnel`: each user's attempts at a funnel, kept as an arrangement by user that reports read
//! as of any time. Every event matching the first step starts an attempt; from it each next
//! step is the earliest matching event after the previous step's (strict order) or after the
//! first step's (any order), in `(timestamp, messageId)` order, all within the window of the
//! first; the attempt reached the furthest step so found. Which attempt counts for a report
//! (the first in each bucket of entry times) is decided when the report is read, so the
//! buckets are the query's; the trait a report is broken down by is kept beside the attempts.
//!
//! A user's attempts are recomputed by a differential `reduce` when their matching events (or
//! that trait) change, so a funnel installed over the retained history is computed at once and
//! kept current as events arrive and expire.

use crate::{Time, UserId};
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::VecCollection;
use journeyflow_types::Value;
use serde::{Deserialize, Serialize};

/// What a funnel's reduce reads of a user.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FunnelItem {
    /// An event matching some step: `(timestamp, messageId)` order first.
    Event {
        /// Event time.
        ts: Time,
        /// Tie-breaker among equal timestamps.
        message_id: String,
        /// Bit `i` is set when the event matches step `i`.
        steps: u32,
    },
    /// The value of the trait the funnel is broken down by.
    Trait(Value),
}

/// One attempt: the first step's time and the time each later step it reached was reached.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Attempt {
    /// The first step's event time (ordered with `message_id`, the order of attempts).
    pub start: Time,
    /// The first step's `messageId`.
    pub message_id: String,
    /// When each step after the first was reached, in step order (as many as were reached;
    /// in any order, a step is reached once it and every step before it has happened).
    pub reached: Vec<Time>,
}

impl Attempt {
    /// Steps reached, the first included.
    pub fn steps(&self) -> usize {
        1 + self.reached.len()
    }
}

/// What the funnel keeps per user: each attempt, and the breakdown trait's value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FunnelOut {
    /// One attempt.
    Attempt(Attempt),
    /// The breakdown trait's value (absent when the user has none).
    Breakdown(Value),
}

/// A funnel's attempts by user.
pub type FunnelTrace = TraceAgent<ValSpine<UserId, FunnelOut, Time, isize>>;

/// A funnel's shape, as its operator needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunnelSpec {
    /// Number of steps (2 to 32).
    pub steps: usize,
    /// Every later step at most this long after the first.
    pub within: Time,
    /// Whether the later steps must come in their order.
    pub strict: bool,
}

/// Each user's attempts (and breakdown value), from the events matching some step (and the
/// breakdown trait's values), arranged by user.
pub fn funnel<'s>(items: VecCollection<'s, Time, (UserId, FunnelItem)>, spec: FunnelSpec) -> Arranged<'s, FunnelTrace> {
    type Builder = ValBuilder<UserId, FunnelOut, Time, isize>;
    type Spine = ValSpine<UserId, FunnelOut, Time, isize>;
    items.arrange_by_key_named("FunnelInput").reduce_abelian::<_, Builder, Spine, _, _>(
        "Funnel",
        move |_user, input, output| {
            let mut events = Vec::with_capacity(input.len());
            for (item, diff) in input.iter() {
                match item {
                    // A positive count (duplicates were removed upstream; a negative one would
                    // be a retraction of something never there).
                    FunnelItem::Event { ts, message_id, steps } if *diff > 0 => {
                        events.push((*ts, message_id.as_str(), *steps))
                    }
                    FunnelItem::Trait(v) if *diff > 0 => output.push((FunnelOut::Breakdown(v.clone()), 1)),
                    _ => {}
                }
            }
            // The input comes sorted: events by `(timestamp, messageId)`.
            for attempt in attempts(&events, spec) {
                output.push((FunnelOut::Attempt(attempt), 1));
            }
        },
        |vec, key, upds| {
            vec.clear();
            vec.extend(upds.drain(..).map(|(v, t, r)| ((*key, v), t, r)));
        },
    )
}

/// The attempts of one user's events (sorted by `(timestamp, messageId)`, each with its step
/// bits), one per event matching the first step, in that order.
pub fn attempts(events: &[(Time, &str, u32)], spec: FunnelSpec) -> Vec<Attempt> {
    let later = spec.steps.saturating_sub(1);
    // at[s]: the indices of the events matching step s + 1, in order, so each attempt finds its
    // next step by a binary search however many events lie between (memory: one index per
    // event and step it matches).
    let mut at: Vec<Vec<u32>> = vec![Vec::new(); later];
    for (i, e) in events.iter().enumerate() {
        for (s, list) in at.iter_mut().enumerate() {
            if e.2 & (1 << (s + 1)) != 0 {
                list.push(i as u32);
            }
        }
    }
    let mut out = Vec::new();
    for (i, &(start, message_id, bits)) in events.iter().enumerate() {
        if bits & 1 == 0 {
            continue;
        }
        let deadline = start.saturating_add(spec.within);
        let found = |s: usize, from: usize| {
            let list = &at[s];
            let j = *list.get(list.partition_point(|j| (*j as usize) < from))? as usize;
            (events[j].0 <= deadline).then_some(j)
        };
        let mut reached = Vec::new();
        let (mut previous, mut latest) = (i, start);
        for s in 0..later {
            let from = if spec.strict { previous + 1 } else { i + 1 };
            let Some(j) = found(s, from) else { break };
            previous = j;
            latest = latest.max(events[j].0);
            reached.push(latest);
        }
        out.push(Attempt { start, message_id: message_id.to_string(), reached });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(steps: usize, within: Time, strict: bool) -> FunnelSpec {
        FunnelSpec { steps, within, strict }
    }

    fn reached(events: &[(Time, &str, u32)], spec: FunnelSpec) -> Vec<(Time, Vec<Time>)> {
        attempts(events, spec).into_iter().map(|a| (a.start, a.reached)).collect()
    }

    #[test]
    fn each_first_step_starts_an_attempt_and_takes_the_earliest_next_steps() {
        // view(1) view(2) cart(3) view(5) buy(6) cart(7) buy(8)
        let events = [(1, "a", 1), (2, "b", 1), (3, "c", 2), (5, "d", 1), (6, "e", 4), (7, "f", 2), (8, "g", 4)];
        assert_eq!(reached(&events, spec(3, 100, true)), vec![(1, vec![3, 6]), (2, vec![3, 6]), (5, vec![7, 8])]);
        // Within 4: the first attempt's purchase at 6 is 5 after it.
        assert_eq!(reached(&events, spec(3, 4, true)), vec![(1, vec![3]), (2, vec![3, 6]), (5, vec![7, 8])]);
    }

    #[test]
    fn strict_order_needs_a_later_event_for_each_step_and_any_order_does_not() {
        // first(1), step 2 at 2, step 1 at 3: strict reaches step 1 only then 2 after 3.
        let events = [(1, "a", 1), (2, "b", 4), (3, "c", 2)];
        assert_eq!(reached(&events, spec(3, 100, true)), vec![(1, vec![3])]);
        assert_eq!(reached(&events, spec(3, 100, false)), vec![(1, vec![3, 3])]);
        // One event matching steps 1 and 2 fills both in any order, only one in strict.
        let both = [(1, "a", 1), (4, "b", 6)];
        assert_eq!(reached(&both, spec(3, 100, true)), vec![(1, vec![4])]);
        assert_eq!(reached(&both, spec(3, 100, false)), vec![(1, vec![4, 4])]);
    }

    #[test]
    fn an_event_matching_the_first_step_is_not_its_own_next_step() {
        // Every event matches both steps: each reaches step 2 at the next event.
        let events = [(1, "a", 3), (1, "b", 3), (2, "c", 3)];
        assert_eq!(reached(&events, spec(2, 10, true)), vec![(1, vec![1]), (1, vec![2]), (2, vec![])]);
        assert_eq!(reached(&events, spec(2, 10, false)), vec![(1, vec![1]), (1, vec![2]), (2, vec![])]);
    }
}
