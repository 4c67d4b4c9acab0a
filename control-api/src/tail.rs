//! The live tail: output records as the workers write them (segment changes, journey
//! transitions and actions, dead letters), for the streams of a segment's changes, a
//! journey's transitions and the dead letters. A view, not a delivery: a bounded broadcast whose slow readers are told how
//! many they missed (the outputs, Kafka and webhooks deliver every record), and in a cluster
//! each other process sends process 0 at most [`FORWARD_PER_SECOND`] records a second per
//! worker.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Records the broadcast holds for its slowest reader.
const CAPACITY: usize = 1024;

/// Records a worker of another process forwards to process 0 per second, at most.
pub const FORWARD_PER_SECOND: u32 = 50;

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A segment change (its `segment` is the topic).
    Change,
    /// A journey transition (its `journey` is the topic).
    Transition,
    /// A journey action.
    Action,
    /// An input record that was not an event (its source is the topic).
    DeadLetter,
}

impl Kind {
    /// The event name a stream sends it under.
    pub fn event(self) -> &'static str {
        match self {
            Kind::Change => "change",
            Kind::Transition => "transition",
            Kind::Action => "action",
            Kind::DeadLetter => "dead_letter",
        }
    }
}

/// One record as written, with the segment or journey it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// What it is.
    pub kind: Kind,
    /// The segment or journey id.
    pub topic: String,
    /// The record as the output line has it (with its `id`).
    pub line: String,
}

/// The broadcast the workers write into and the streams read.
#[derive(Clone)]
pub struct Tail {
    sender: broadcast::Sender<Arc<Item>>,
}

impl Default for Tail {
    fn default() -> Tail {
        Tail { sender: broadcast::channel(CAPACITY).0 }
    }
}

impl Tail {
    /// Whether a stream reads the tail (records are made only then).
    pub fn wanted(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Sends a record to every stream (none: it goes).
    pub fn send(&self, item: Item) {
        let _ = self.sender.send(Arc::new(item));
    }

    /// A reader of the records sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Item>> {
        self.sender.subscribe()
    }
}

/// A per-second allowance of records (a worker's forwarding to process 0).
#[derive(Debug, Default)]
pub struct Allowance {
    second: u64,
    used: u32,
}

impl Allowance {
    /// Whether one more record may go at wall time `now_ms`.
    pub fn take(&mut self, now_ms: u64) -> bool {
        let second = now_ms / 1000;
        if second != self.second {
            (self.second, self.used) = (second, 0);
        }
        self.used += 1;
        self.used <= FORWARD_PER_SECOND
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allowance_lets_so_many_go_each_second() {
        let mut a = Allowance::default();
        let first = (0..100).filter(|_| a.take(5_000)).count();
        let next = (0..100).filter(|_| a.take(6_000)).count();
        assert_eq!((first, next), (FORWARD_PER_SECOND as usize, FORWARD_PER_SECOND as usize));
    }

    #[tokio::test]
    async fn a_slow_reader_is_told_how_many_it_missed() {
        let tail = Tail::default();
        assert!(!tail.wanted());
        let mut reader = tail.subscribe();
        assert!(tail.wanted());
        for i in 0..CAPACITY + 3 {
            tail.send(Item { kind: Kind::Change, topic: "s".into(), line: i.to_string() });
        }
        assert!(matches!(reader.recv().await, Err(broadcast::error::RecvError::Lagged(3))));
        assert_eq!(reader.recv().await.unwrap().line, "3");
    }
}
