//! How HTTP handlers reach the timely workers. A request goes to worker 0 over a bounded
//! queue; worker 0 decides changes against the catalog and sequences them through the
//! dataflow's control input so that every worker applies them at the same event time; answers
//! come back on a channel (one from worker 0 for changes, one per worker for membership
//! shares). The handle also shares what handlers need without asking the workers: user ids by
//! key, the catalog, the engine's progress, and what became of changes answered `202`.

use crate::catalog::{CatalogView, Change, Refusal};
use crate::history::Histories;
use journeyflow_types::Key;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use tokio::sync::mpsc;

pub use crate::catalog::JourneyEntry;

/// Event time in epoch milliseconds.
pub type Time = u64;

/// What a handler asks of the workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// A change to what runs: worker 0 checks it against the catalog, logs it and applies it
    /// (or refuses it), one at a time.
    Change(Change),
    /// A change bringing over what was accepted before (an older version's store, the
    /// definitions topic): checked the same way, under the hard ceilings rather than the
    /// configured limits, which may have been lowered since.
    Import(Change),
    /// Members of a segment as of the request's time.
    Members {
        /// Segment id.
        id: String,
    },
    /// The segments a user belongs to as of the request's time.
    UserSegments {
        /// The user id.
        user_id: String,
    },
    /// What is held about a user as of the request's time.
    UserProfile {
        /// The user id.
        user_id: String,
        /// Which of their events.
        events: crate::profile::EventsWanted,
    },
    /// A snapshot of every journey's state as of the request's time, for a checkpoint (the
    /// engine's own request: the API never makes it).
    SnapshotJourneys,
    /// A journey's per-hour counts for the hours starting in `[from, to)`.
    JourneyHours {
        /// Journey id.
        id: String,
        /// The first hour (epoch ms, an hour's start).
        from: Time,
        /// The end (exclusive).
        to: Time,
    },
    /// A funnel's report as of the request's time: each worker's cells.
    FunnelReport {
        /// Funnel id.
        id: String,
        /// The range and its buckets.
        query: crate::buckets::Buckets,
    },
    /// A path analysis's report as of the request's time: each worker's counts.
    PathsReport {
        /// Its id.
        id: String,
        /// The range of anchors (its step is not used).
        query: crate::buckets::Buckets,
    },
    /// A retention cohort's report as of the request's time: each worker's cells.
    CohortReport {
        /// Cohort id.
        id: String,
        /// The range and its buckets (the cohorts).
        query: crate::buckets::Buckets,
    },
}

/// One per-hour count of a journey: `field` (`entered`, `converted`, `exited`, `completed`,
/// `canceled`, `converted_value` in millionths, or an action status) of the journey, or of
/// `node` when given, in the hour starting at `hour`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourCount {
    /// The hour's start, epoch ms.
    pub hour: Time,
    /// The node, for a node's count.
    pub node: Option<String>,
    /// What is counted.
    pub field: String,
    /// How many (or millionths, for a value).
    pub value: i64,
}

impl Request {
    /// How many answers the request gets: one per worker for membership, else one.
    pub fn answers(&self, workers: usize) -> usize {
        match self {
            Request::Members { .. }
            | Request::UserSegments { .. }
            | Request::UserProfile { .. }
            | Request::JourneyHours { .. }
            | Request::FunnelReport { .. }
            | Request::CohortReport { .. }
            | Request::PathsReport { .. } => workers,
            Request::Change(_) | Request::Import(_) | Request::SnapshotJourneys => 1,
        }
    }
}

/// What the workers answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// The change is logged, in the catalog, and applies as of this time.
    Applied(Time),
    /// The change was not applied.
    Refused(Refusal),
    /// One worker's members as of a time.
    Members(Time, Vec<Key>),
    /// One worker's share of a user's segments as of a time.
    Segments(Time, Vec<String>),
    /// One worker's share of what is held about a user as of a time.
    Profile(Time, Box<crate::profile::ProfilePart>),
    /// One worker's share of a journey's per-hour counts, counted at least through a time.
    Hours(Time, Vec<HourCount>),
    /// One worker's share of a funnel's report as of a time.
    Funnel(Time, crate::funnel_report::FunnelPart),
    /// One worker's share of a cohort's report as of a time.
    Cohort(Time, crate::cohort_report::CohortPart),
    /// One worker's share of a path analysis's report as of a time.
    Paths(Time, crate::path_report::PathsPart),
    /// The request could not be answered (nothing was applied).
    Failed(String),
}

/// A request with the channel its answers go to.
pub struct Ticket {
    /// The request.
    pub request: Request,
    /// Where answers go.
    pub reply: mpsc::UnboundedSender<Answer>,
    /// The time to apply it as of, if not the time worker 0 receives it (never before the
    /// watermark).
    pub at: Option<Time>,
}

/// Requests waiting for worker 0 at most: more get 503 until it catches up.
pub const REQUEST_QUEUE: usize = 1024;

/// What became of a change whose answer did not come in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied as of this time.
    Applied(Time),
    /// Not applied, and why.
    Refused(Refusal),
    /// Still waiting for worker 0.
    Pending,
    /// The workers stopped before taking it: not applied.
    Lost(String),
}

/// The outcomes of the latest changes answered `202 Accepted`, by request id.
#[derive(Default)]
pub struct Outcomes {
    recent: Mutex<VecDeque<(String, Outcome)>>,
}

impl Outcomes {
    /// How many are kept.
    const KEEP: usize = 1024;

    /// What became of request `id`, if it is among the latest.
    pub fn get(&self, id: &str) -> Option<Outcome> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.iter().find(|(r, _)| r == id).map(|(_, o)| o.clone())
    }

    /// Records (or updates) request `id`'s outcome.
    pub fn set(&self, id: &str, outcome: Outcome) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        match recent.iter_mut().find(|(r, _)| r == id) {
            Some(slot) => slot.1 = outcome,
            None => {
                recent.push_back((id.to_string(), outcome));
                while recent.len() > Self::KEEP {
                    recent.pop_front();
                }
            }
        }
    }
}

/// Progress counters the workers publish.
#[derive(Debug, Default)]
pub struct Progress {
    /// Events the workers rejected (unreadable from the log, or late under the dead-letter policy).
    pub rejected: AtomicU64,
    /// Events read by the workers.
    pub events_processed: AtomicU64,
    /// Late events, moved up to the watermark.
    pub late: AtomicU64,
    /// Repeated `messageId`s dropped.
    pub duplicates: AtomicU64,
    /// Events of suppressed users dropped.
    pub suppressed: AtomicU64,
    /// Every output of every worker before this time is durable.
    pub durable: AtomicU64,
    /// How many deletions (the first ones, in order) every process has carried out in its files.
    pub scrubbed: AtomicU64,
    /// The lowest worker watermark (event time).
    pub watermark: AtomicU64,
    /// Members per installed segment (summed from the change outputs).
    pub segment_sizes: Mutex<BTreeMap<String, i64>>,
    /// Bytes of each ingest log partition the workers have read.
    pub log_read: Mutex<BTreeMap<usize, u64>>,
    /// Malformed Kafka messages sent to the dead-letter topic.
    pub dead_letters: AtomicU64,
    /// Messages not read yet, per Kafka `(topic, partition)`.
    pub kafka_lag: Mutex<BTreeMap<(String, i32), i64>>,
    /// Records this process's arrangements hold (every worker's).
    pub arranged_records: Arc<AtomicI64>,
    /// Records waiting in this process's arrangements' batchers.
    pub batched_records: Arc<AtomicI64>,
    /// Events this process's ingest accepted (appended to its log).
    pub events_in: AtomicU64,
    /// Set once the server is stopping: live streams end.
    pub stopping: std::sync::atomic::AtomicBool,
    /// The latest counts each other process of the cluster sent (on process 0).
    pub peer_tallies: Mutex<BTreeMap<usize, crate::tally::Tally>>,
}

impl Progress {
    /// Bytes of each ingest log partition synced but not read by the workers yet.
    pub fn log_lags(&self, wal: &journeyflow_connectors::wal::Wal) -> Vec<u64> {
        self.lags_behind((0..wal.partitions()).map(|p| wal.committed(p).load(Ordering::Acquire)))
    }

    /// Bytes of each partition synced (`committed`, by partition) but not read yet.
    pub fn lags_behind(&self, committed: impl Iterator<Item = u64>) -> Vec<u64> {
        let read = self.log_read.lock().unwrap_or_else(PoisonError::into_inner);
        committed.enumerate().map(|(p, c)| c.saturating_sub(read.get(&p).copied().unwrap_or(0))).collect()
    }

    /// Bytes of the ingest log synced but not read by the workers yet.
    pub fn log_lag(&self, wal: &journeyflow_connectors::wal::Wal) -> u64 {
        self.log_lags(wal).iter().sum()
    }
}

/// The shared side of the engine, cloned into every handler.
#[derive(Clone)]
pub struct EngineHandle {
    requests: std::sync::mpsc::SyncSender<Ticket>,
    workers: usize,
    /// User ids by key, filled as events are read.
    pub names: Arc<RwLock<crate::user_names::UserNames>>,
    /// The installed segments and the journeys, as worker 0 last published them.
    pub catalog: Arc<CatalogView>,
    /// Counters.
    pub progress: Arc<Progress>,
    /// Journey reports (as `journey_stats.json` shows them), kept current by the workers.
    pub journey_reports: Arc<Mutex<BTreeMap<String, serde_json::Value>>>,
    /// Each user's latest transitions in each journey and latest actions.
    pub histories: Arc<Mutex<Histories>>,
    /// What became of changes answered before they were applied.
    pub outcomes: Arc<Outcomes>,
    /// Output records as they are written, for the live streams.
    pub tail: crate::tail::Tail,
}

/// What a change came to within the wait a handler allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    /// Logged, in the catalog, applied as of this time.
    Applied(Time),
    /// Not applied.
    Refused(Refusal),
    /// Not decided yet: its outcome will be at `/v1/requests/{id}`.
    Pending(String),
}

impl EngineHandle {
    /// A handle for `workers` workers, and the receiving end worker 0 reads requests from.
    pub fn new(workers: usize) -> (EngineHandle, std::sync::mpsc::Receiver<Ticket>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(REQUEST_QUEUE);
        let handle = EngineHandle {
            requests: tx,
            workers,
            names: Arc::default(),
            catalog: Arc::default(),
            progress: Arc::default(),
            journey_reports: Arc::default(),
            histories: Arc::default(),
            outcomes: Arc::default(),
            tail: crate::tail::Tail::default(),
        };
        (handle, rx)
    }

    /// Sends a request and waits (up to `timeout`) for all its answers.
    pub async fn call(&self, request: Request, timeout: std::time::Duration) -> Result<Vec<Answer>, CallError> {
        self.submit(request)?.wait(timeout).await
    }

    /// Sends a change and waits (up to `timeout`; zero: not at all) for worker 0 to apply or
    /// refuse it. Past that, the change is `Pending`: it is still applied or refused in order,
    /// and its outcome is kept under the id returned.
    pub async fn change(&self, change: Change, timeout: std::time::Duration) -> Result<Changed, CallError> {
        let mut pending = self.submit(Request::Change(change))?;
        // A wait of zero does not wait at all: every change is answered 202.
        let waited = match timeout.is_zero() {
            true => Err(CallError::Timeout),
            false => pending.wait_mut(timeout).await,
        };
        let answer = match waited {
            Err(CallError::Timeout) => {
                let id = uuid::Uuid::new_v4().to_string();
                self.outcomes.set(&id, Outcome::Pending);
                let (outcomes, key) = (self.outcomes.clone(), id.clone());
                tokio::spawn(async move {
                    let outcome = match pending.wait_mut(std::time::Duration::from_secs(86_400)).await {
                        Ok(answers) => match answers.into_iter().next() {
                            Some(Answer::Applied(at)) => Outcome::Applied(at),
                            Some(Answer::Refused(why)) => Outcome::Refused(why),
                            other => Outcome::Lost(format!("unexpected answer {other:?}")),
                        },
                        Err(e) => Outcome::Lost(e.to_string()),
                    };
                    outcomes.set(&key, outcome);
                });
                return Ok(Changed::Pending(id));
            }
            other => other?.into_iter().next(),
        };
        match answer {
            Some(Answer::Applied(at)) => Ok(Changed::Applied(at)),
            Some(Answer::Refused(why)) => Ok(Changed::Refused(why)),
            Some(Answer::Failed(why)) => Err(CallError::Failed(why)),
            _ => Err(CallError::Stopped),
        }
    }

    /// Sends a request without waiting: requests are applied in the order they are submitted.
    pub fn submit(&self, request: Request) -> Result<Pending, CallError> {
        self.submit_at(request, None)
    }

    /// Sends a request to apply as of `at` (or the watermark, if later), without waiting.
    pub fn submit_at(&self, request: Request, at: Option<Time>) -> Result<Pending, CallError> {
        let expected = request.answers(self.workers);
        let (reply, answers) = mpsc::unbounded_channel();
        match self.requests.try_send(Ticket { request, reply, at }) {
            Ok(()) => Ok(Pending { expected, answers, got: Vec::new() }),
            Err(std::sync::mpsc::TrySendError::Full(_)) => Err(CallError::Busy),
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => Err(CallError::Stopped),
        }
    }

    /// The user id of a key, if seen.
    pub fn name(&self, key: &Key) -> Option<Arc<str>> {
        self.names.read().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    /// The lowest worker watermark.
    pub fn watermark(&self) -> Time {
        self.progress.watermark.load(Ordering::Relaxed)
    }

    /// Every output of every worker before this time is durable.
    pub fn durable(&self) -> Time {
        self.progress.durable.load(Ordering::Relaxed)
    }
}

/// A submitted request whose answers are still to come.
pub struct Pending {
    expected: usize,
    answers: mpsc::UnboundedReceiver<Answer>,
    got: Vec<Answer>,
}

impl Pending {
    /// Waits (up to `timeout`) for all the answers.
    pub async fn wait(mut self, timeout: std::time::Duration) -> Result<Vec<Answer>, CallError> {
        self.wait_mut(timeout).await
    }

    /// Waits (up to `timeout`) for all the answers; after a timeout, may be waited on again.
    async fn wait_mut(&mut self, timeout: std::time::Duration) -> Result<Vec<Answer>, CallError> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.got.len() < self.expected {
            match tokio::time::timeout_at(deadline, self.answers.recv()).await {
                Ok(Some(a)) => self.got.push(a),
                Ok(None) => return Err(CallError::Stopped),
                Err(_) => return Err(CallError::Timeout),
            }
        }
        Ok(std::mem::take(&mut self.got))
    }
}

/// Why a call to the workers got no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The workers have stopped.
    #[error("the workers have stopped")]
    Stopped,
    /// No answer in time.
    #[error("the workers did not answer in time")]
    Timeout,
    /// Too many requests are waiting for the workers.
    #[error("too many requests are waiting for the workers; try again shortly")]
    Busy,
    /// The workers could not take the request (nothing was applied).
    #[error("{0}")]
    Failed(String),
}
