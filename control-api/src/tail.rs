//! The live tail: output records as the workers write them (segment changes, journey
//! transitions and actions, dead letters), for the streams of a segment's changes, a
//! journey's transitions and the dead letters. A view, not a delivery (the outputs, Kafka and
//! webhooks deliver every record): one bounded broadcast per followed topic, whose slow
//! readers are told how many records they missed. Records are made only for topics a stream
//! follows; in a cluster process 0 tells the others which (every second), and each of their
//! workers forwards at most [`FORWARD_PER_SECOND`] records a second, counting what it leaves
//! out so that the streams say so.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use tokio::sync::broadcast;

/// Records a topic's broadcast holds for its slowest reader.
const CAPACITY: usize = 1024;

/// Records a worker of another process forwards to process 0 per second, at most.
pub const FORWARD_PER_SECOND: u32 = 50;

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A segment change.
    Change,
    /// A journey transition.
    Transition,
    /// A journey action.
    Action,
    /// An input record that was not an event.
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

/// What a stream follows.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Topic {
    /// A segment's changes.
    Segment(String),
    /// A journey's transitions and actions.
    Journey(String),
    /// The dead letters.
    DeadLetters,
}

impl Topic {
    /// The topic a record of `kind` about `name` (a segment or journey id) belongs to.
    pub fn of(kind: Kind, name: &str) -> Topic {
        match kind {
            Kind::Change => Topic::Segment(name.to_string()),
            Kind::Transition | Kind::Action => Topic::Journey(name.to_string()),
            Kind::DeadLetter => Topic::DeadLetters,
        }
    }

    /// Whether a record of `kind` about `name` belongs to this topic (no topic made to ask).
    fn holds(&self, kind: Kind, name: &str) -> bool {
        match (self, kind) {
            (Topic::Segment(s), Kind::Change) => s == name,
            (Topic::Journey(j), Kind::Transition | Kind::Action) => j == name,
            (Topic::DeadLetters, Kind::DeadLetter) => true,
            _ => false,
        }
    }
}

/// One record as written (its `line`, with its `id`), or, with `missed` > 0, how many records
/// of the topic were left out on the way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// What it is.
    pub kind: Kind,
    /// What it belongs to.
    pub topic: Topic,
    /// The record as the output line has it.
    pub line: String,
    /// Records left out (then `line` is empty, and `kind` says nothing).
    pub missed: u64,
}

#[derive(Default)]
struct Channels {
    /// A broadcast per topic a stream of this process follows.
    local: BTreeMap<Topic, broadcast::Sender<Arc<Item>>>,
    /// The topics process 0's streams follow (on another process of a cluster).
    remote: BTreeSet<Topic>,
}

/// The broadcasts the workers write into and the streams read.
#[derive(Clone, Default)]
pub struct Tail {
    channels: Arc<RwLock<Channels>>,
    /// Whether any topic is followed (the workers look at nothing else while none is).
    any: Arc<AtomicBool>,
}

impl Tail {
    /// Whether a stream follows the topic of a record of `kind` about `name` (records are made
    /// only then). The followed topics are few (a stream each at most): they are looked through,
    /// and no topic is made for a record nobody follows.
    pub fn wants(&self, kind: Kind, name: &str) -> bool {
        if !self.any.load(Ordering::Relaxed) {
            return false;
        }
        let channels = self.channels.read().unwrap_or_else(PoisonError::into_inner);
        channels.local.iter().any(|(t, s)| t.holds(kind, name) && s.receiver_count() > 0)
            || channels.remote.iter().any(|t| t.holds(kind, name))
    }

    /// Sends a record to the streams of its topic (none: it goes).
    pub fn send(&self, item: Item) {
        let channels = self.channels.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = channels.local.get(&item.topic) {
            let _ = sender.send(Arc::new(item));
        }
    }

    /// A reader of `topic`'s records sent from now on.
    pub fn subscribe(&self, topic: Topic) -> broadcast::Receiver<Arc<Item>> {
        let mut channels = self.channels.write().unwrap_or_else(PoisonError::into_inner);
        let reader = channels.local.entry(topic).or_insert_with(|| broadcast::channel(CAPACITY).0).subscribe();
        self.any.store(true, Ordering::Relaxed);
        reader
    }

    /// Forgets the topics no stream follows any longer; returns those still followed here.
    pub fn prune(&self) -> BTreeSet<Topic> {
        let mut channels = self.channels.write().unwrap_or_else(PoisonError::into_inner);
        channels.local.retain(|_, sender| sender.receiver_count() > 0);
        self.any.store(!channels.local.is_empty() || !channels.remote.is_empty(), Ordering::Relaxed);
        channels.local.keys().cloned().collect()
    }

    /// On another process of a cluster: the topics process 0's streams follow.
    pub fn follow_remote(&self, topics: BTreeSet<Topic>) {
        let mut channels = self.channels.write().unwrap_or_else(PoisonError::into_inner);
        channels.remote = topics;
        self.any.store(!channels.local.is_empty() || !channels.remote.is_empty(), Ordering::Relaxed);
    }
}

/// A per-second allowance of records (a worker's forwarding to process 0), counting by topic
/// what it leaves out.
#[derive(Debug, Default)]
pub struct Allowance {
    second: u64,
    used: u32,
    left_out: BTreeMap<Topic, u64>,
}

impl Allowance {
    /// Whether one more record of `topic` may go at wall time `now_ms` (one that may not is
    /// counted).
    pub fn take(&mut self, topic: &Topic, now_ms: u64) -> bool {
        let second = now_ms / 1000;
        if second != self.second {
            (self.second, self.used) = (second, 0);
        }
        self.used += 1;
        let allowed = self.used <= FORWARD_PER_SECOND;
        if !allowed {
            *self.left_out.entry(topic.clone()).or_default() += 1;
        }
        allowed
    }

    /// What was left out since the last call, as items saying so.
    pub fn left_out(&mut self) -> Vec<Item> {
        std::mem::take(&mut self.left_out)
            .into_iter()
            .map(|(topic, missed)| Item { kind: Kind::Change, topic, line: String::new(), missed })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(topic: &Topic, line: &str) -> Item {
        Item { kind: Kind::Change, topic: topic.clone(), line: line.into(), missed: 0 }
    }

    #[test]
    fn an_allowance_lets_so_many_go_each_second_and_counts_the_rest() {
        let mut a = Allowance::default();
        let t = Topic::Segment("s".into());
        let first = (0..100).filter(|_| a.take(&t, 5_000)).count();
        let next = (0..100).filter(|_| a.take(&t, 6_000)).count();
        assert_eq!((first, next), (FORWARD_PER_SECOND as usize, FORWARD_PER_SECOND as usize));
        let left = a.left_out();
        assert_eq!((left.len(), left[0].missed), (1, 200 - 2 * FORWARD_PER_SECOND as u64));
        assert!(a.left_out().is_empty());
    }

    #[tokio::test]
    async fn a_topic_is_wanted_while_followed_and_a_slow_reader_is_told_how_many_it_missed() {
        let tail = Tail::default();
        let (s, quiet) = (Topic::Segment("s".into()), Topic::Segment("quiet".into()));
        assert!(!tail.wants(Kind::Change, "s"));
        let mut reader = tail.subscribe(s.clone());
        let mut other = tail.subscribe(quiet.clone());
        assert!(tail.wants(Kind::Change, "s") && !tail.wants(Kind::DeadLetter, ""));
        assert!(!tail.wants(Kind::Transition, "s"), "a journey named as the segment is another topic");
        for i in 0..CAPACITY + 3 {
            tail.send(item(&s, &i.to_string()));
        }
        tail.send(item(&quiet, "mine"));
        assert!(matches!(reader.recv().await, Err(broadcast::error::RecvError::Lagged(3))));
        assert_eq!(reader.recv().await.unwrap().line, "3");
        // A busy topic pushes nothing of a quiet one out.
        assert_eq!(other.recv().await.unwrap().line, "mine");
        drop((reader, other));
        assert!(tail.prune().is_empty());
        assert!(!tail.wants(Kind::Change, "s"));
        tail.follow_remote(BTreeSet::from([quiet.clone()]));
        assert!(tail.wants(Kind::Change, "quiet") && !tail.wants(Kind::Change, "s"));
    }
}
