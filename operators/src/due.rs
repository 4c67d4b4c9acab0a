//! Per-user work waiting for a time: the time-indexed state of the operators whose output
//! changes when time passes (`window`, `sequence`). Items wait in a queue ordered by
//! `(time, user)` under one capability at the earliest queued time, and come out a user at a
//! time once the frontier has passed their time, so nothing depends on batching.

use crate::{Time, UserId};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use timely::dataflow::operators::{Capability, InputCapability};
use timely::progress::frontier::MutableAntichain;

/// Items by the time they fall due and the user they concern.
pub struct Due<D> {
    queue: BinaryHeap<Reverse<(Time, UserId, D)>>,
    cap: Option<Capability<Time>>,
}

impl<D: Ord> Default for Due<D> {
    fn default() -> Self {
        Due { queue: BinaryHeap::new(), cap: None }
    }
}

impl<D: Ord> Due<D> {
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
    pub fn push(&mut self, time: Time, user: UserId, item: D) {
        self.queue.push(Reverse((time, user, item)));
    }

    /// The earliest `(time, user)` whose time the frontier has passed, with all its items
    /// moved into `items` (cleared first); `None` when nothing more is due.
    pub fn next(&mut self, frontier: &MutableAntichain<Time>, items: &mut Vec<D>) -> Option<(Time, UserId)> {
        items.clear();
        let &Reverse((time, user, _)) = self.queue.peek()?;
        if frontier.less_equal(&time) {
            return None;
        }
        while self.queue.peek().is_some_and(|Reverse((t, u, _))| *t == time && *u == user) {
            if let Some(Reverse((_, _, item))) = self.queue.pop() {
                items.push(item);
            }
        }
        Some((time, user))
    }

    /// A capability to send at `time`, a time taken since the last `settle`.
    fn at(&self, time: Time) -> Option<Capability<Time>> {
        self.cap.as_ref().map(|cap| cap.delayed(&time))
    }

    /// Holds no capability earlier than the earliest queued time (none with nothing queued),
    /// so the operator's output frontier follows its input.
    fn settle(&mut self) {
        self.cap = match (self.queue.peek(), self.cap.take()) {
            (Some(Reverse((next, ..))), Some(cap)) => Some(cap.delayed(next)),
            _ => None,
        };
        // A burst (a large first round, a replay's batch) must not keep its peak allocation.
        if self.queue.capacity() > 4 * self.queue.len() + 1024 {
            self.queue.shrink_to(2 * self.queue.len());
        }
    }

    /// Sends `changes` (in time order, each carrying its time) in one message under a capability
    /// at the earliest of them, as differential's operators do (a message per time would
    /// allocate a buffer per time), then settles.
    pub fn send<S>(&mut self, changes: &mut Vec<(UserId, Time, isize)>, give: S)
    where
        S: FnOnce(&Capability<Time>, &mut Vec<(UserId, Time, isize)>),
    {
        if let Some(cap) = changes.first().and_then(|(_, time, _)| self.at(*time)) {
            give(&cap, changes);
        }
        changes.clear();
        self.settle();
    }
}
