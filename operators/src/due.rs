//! Per-user work waiting for a time: the time-indexed state of the operators whose output
//! changes when time passes (`window`, `sequence`). Items come out ordered by `(time, user)`,
//! a user at a time, once the frontier has passed their time, under one capability at the
//! earliest waiting time, so nothing depends on batching.
//!
//! Items wait in sorted runs and a binary heap, and the earliest head among them comes out
//! next. A large batch (an install over the retained history, a load's rounds) is sorted once
//! into a run, and runs merge when one is no more than twice the next (so there are at most a
//! logarithmic number of them, each item merged a logarithmic number of times, sequentially);
//! taking an item from a run costs nothing. Small batches, a live round's, go through the heap.

use crate::{Time, UserId};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use timely::dataflow::operators::{Capability, InputCapability};
use timely::progress::frontier::MutableAntichain;

type Item<D, K> = (Time, K, D);

/// The least batch that becomes a run rather than going into the heap.
const RUN: usize = 1024;

/// Items by the time they fall due and the user they concern (`K`: a user by default; `()`
/// where only the time matters).
pub struct Due<D, K = UserId> {
    /// Pushed and not yet placed, in no order: they stay here until the earliest of them is
    /// due, so a batch that arrives in parts before any of it is due is sorted once, whole.
    pending: Vec<Item<D, K>>,
    /// The earliest time in `pending` (`Time::MAX` when empty).
    pending_min: Time,
    /// Items that came in large batches: runs sorted in reverse (the next one last), each more
    /// than twice as long as the one after it.
    runs: Vec<Vec<Item<D, K>>>,
    /// Items that came in small batches.
    queue: BinaryHeap<Reverse<Item<D, K>>>,
    /// The least batch that becomes a run.
    run: usize,
    cap: Option<Capability<Time>>,
}

impl<D: Ord, K: Ord + Copy> Default for Due<D, K> {
    fn default() -> Self {
        Due {
            pending: Vec::new(),
            pending_min: Time::MAX,
            runs: Vec::new(),
            queue: BinaryHeap::new(),
            run: RUN,
            cap: None,
        }
    }
}

impl<D: Ord, K: Ord + Copy> Due<D, K> {
    /// Keeps a capability no later than `cap`, for items pushed from a message that came with it.
    pub fn hold(&mut self, cap: &InputCapability<Time>) {
        if let Some(t) = cap.least() {
            if self.cap.as_ref().is_none_or(|held| t < held.time()) {
                self.cap = cap.retain_least(0);
            }
        }
    }

    /// Queues `item` for `user` at `time`, which must not be before a held capability: the time
    /// of the message it came from, or later than the time being taken.
    pub fn push(&mut self, time: Time, user: K, item: D) {
        self.pending_min = self.pending_min.min(time);
        self.pending.push((time, user, item));
    }

    /// The earliest `(time, user)` whose time the frontier has passed, with all its items
    /// moved into `items` (cleared first); `None` when nothing more is due.
    pub fn next(&mut self, frontier: &MutableAntichain<Time>, items: &mut Vec<D>) -> Option<(Time, K)> {
        self.next_complete(|t| !frontier.less_equal(t), items)
    }

    /// [`Due::next`] where `complete` says which times are complete (an operator with several
    /// inputs: complete in all of them).
    pub fn next_complete(&mut self, complete: impl Fn(&Time) -> bool, items: &mut Vec<D>) -> Option<(Time, K)> {
        items.clear();
        if !self.pending.is_empty() && complete(&self.pending_min) {
            self.place_pending();
        }
        let (time, user) = self.head()?;
        if !complete(&time) {
            return None;
        }
        for run in &mut self.runs {
            while run.last().is_some_and(|(t, u, _)| (*t, *u) == (time, user)) {
                if let Some((_, _, item)) = run.pop() {
                    items.push(item);
                }
            }
        }
        self.runs.retain(|run| !run.is_empty());
        while self.queue.peek().is_some_and(|Reverse((t, u, _))| (*t, *u) == (time, user)) {
            if let Some(Reverse((_, _, item))) = self.queue.pop() {
                items.push(item);
            }
        }
        Some((time, user))
    }

    /// The earliest waiting `(time, user)` among the runs and the heap.
    fn head(&self) -> Option<(Time, K)> {
        let runs = self.runs.iter().filter_map(|run| run.last().map(|(t, u, _)| (*t, *u)));
        let queued = self.queue.peek().map(|Reverse((t, u, _))| (*t, *u));
        runs.chain(queued).min()
    }

    /// Moves the pending items where they wait: a large batch becomes a run (merged with the
    /// runs before it while they are no more than twice as long), a small one goes into the heap.
    fn place_pending(&mut self) {
        self.pending_min = Time::MAX;
        if self.pending.len() < self.run {
            self.queue.extend(self.pending.drain(..).map(Reverse));
            return;
        }
        let mut run = std::mem::take(&mut self.pending);
        run.sort_unstable_by(|a, b| b.cmp(a));
        while self.runs.last().is_some_and(|last| last.len() <= 2 * run.len()) {
            if let Some(last) = self.runs.pop() {
                run = merge_reversed(last, run);
            }
        }
        self.runs.push(run);
    }

    /// The earliest waiting time.
    fn earliest(&self) -> Option<Time> {
        let pending = (!self.pending.is_empty()).then_some(self.pending_min);
        self.head().map(|(t, _)| t).into_iter().chain(pending).min()
    }

    /// A capability to send at `time`, a time taken since the last `settle`.
    fn at(&self, time: Time) -> Option<Capability<Time>> {
        self.cap.as_ref().map(|cap| cap.delayed(&time))
    }

    /// Holds no capability earlier than the earliest queued time (none with nothing queued),
    /// so the operator's output frontier follows its input.
    fn settle(&mut self) {
        self.cap = match (self.earliest(), self.cap.take()) {
            (Some(next), Some(cap)) => Some(cap.delayed(&next)),
            _ => None,
        };
        // A burst (a large first round, a replay's batch) must not keep its peak allocation.
        if self.queue.capacity() > 4 * self.queue.len() + 1024 {
            self.queue.shrink_to(2 * self.queue.len());
        }
        for buffer in self.runs.iter_mut().chain([&mut self.pending]) {
            if buffer.capacity() > 4 * buffer.len() + 1024 {
                buffer.shrink_to(2 * buffer.len());
            }
        }
    }

    /// Sends `changes` (in time order, each carrying its time) in one message under a capability
    /// at the earliest of them, as differential's operators do (a message per time would
    /// allocate a buffer per time), then settles.
    pub fn send<C, S>(&mut self, changes: &mut Vec<(C, Time, isize)>, give: S)
    where
        S: FnOnce(&Capability<Time>, &mut Vec<(C, Time, isize)>),
    {
        if let Some(cap) = changes.first().and_then(|(_, time, _)| self.at(*time)) {
            give(&cap, changes);
        }
        changes.clear();
        self.settle();
    }
}

/// Merges two runs sorted in reverse into one.
fn merge_reversed<T: Ord>(a: Vec<T>, b: Vec<T>) -> Vec<T> {
    if a.is_empty() {
        return b;
    }
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x >= y,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return merged,
        };
        merged.extend(if take_a { a.next() } else { b.next() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use journeyflow_types::Key;
    use proptest::prelude::*;

    /// Items `(time, user, item)` pushed together, then the frontier they are drained to.
    type Batch = (Vec<(Time, u8, u8)>, Time);

    /// Pushes batches (each followed by a drain up to a frontier) and, while draining, pushes
    /// more for later times as `sequence` does; checks the order items come out in against a
    /// sort of everything pushed, and that only due items come out.
    fn drain_all(batches: Vec<Batch>, echo: bool, run: usize) -> Result<(), TestCaseError> {
        let mut due: Due<u8> = Due { run, ..Due::default() };
        let mut model: Vec<(Time, u8, u8)> = Vec::new();
        let mut frontier = MutableAntichain::from_elem(0);
        let mut passed = 0;
        let mut items = Vec::new();
        let mut last = (0, Key(0));
        for (batch, to) in batches {
            for &(time, user, item) in &batch {
                // Inputs arrive at times the frontier has not passed.
                let time = time.max(passed);
                due.push(time, Key(u128::from(user)), item);
                model.push((time, user, item));
            }
            let to = to.max(passed);
            frontier.update_iter([(to, 1), (passed, -1)]).for_each(drop);
            passed = to;
            while let Some((time, user)) = due.next(&frontier, &mut items) {
                prop_assert!(time < to, "{time} came out before the frontier {to} passed it");
                prop_assert!(
                    (time, user) > last || last == (0, Key(0)),
                    "out of order: {last:?} then {:?}",
                    (time, user)
                );
                last = (time, user);
                let mut expected: Vec<u8> = model
                    .iter()
                    .filter(|(t, u, _)| (*t, Key(u128::from(*u))) == (time, user))
                    .map(|(.., i)| *i)
                    .collect();
                model.retain(|(t, u, _)| (*t, Key(u128::from(*u))) != (time, user));
                prop_assert!(model.iter().all(|(t, u, _)| (*t, Key(u128::from(*u))) > (time, user)));
                expected.sort();
                let mut got = items.clone();
                got.sort();
                prop_assert_eq!(got, expected);
                if echo && time % 3 == 0 {
                    // A later item for the same user, maybe due before other waiting ones.
                    due.push(time + 1 + time % 7, user, 0);
                    model.push((time + 1 + time % 7, user.0 as u8, 0));
                }
            }
            prop_assert!(model.iter().all(|(t, ..)| *t >= to), "an item due before {to} is still waiting");
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn items_come_out_in_time_and_user_order_once_due(
            batches in prop::collection::vec(
                (prop::collection::vec((0..200u64, 0..4u8, 0..3u8), 0..60), 0..220u64), 1..12),
            echo in any::<bool>(),
            run in 1..40usize,
        ) {
            drain_all(batches, echo, run)?;
        }
    }
}
