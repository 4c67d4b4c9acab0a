//! How HTTP handlers reach the timely workers. A request goes to worker 0, which sequences it
//! through the dataflow's control input so that every worker applies it at the same event
//! time; answers come back on a channel (one from worker 0 for changes, one per worker for
//! membership shares). The handle also shares what handlers need without asking the
//! workers: user ids by key, the installed definitions, the engine's progress.

use journeyflow_types::{Key, KeyMap, SegmentDefinition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::mpsc;

/// Event time in epoch milliseconds.
pub type Time = u64;

/// What a handler asks of the workers. Sequenced as JSON through the control input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Install a segment (its definition JSON, validated by the handler).
    InstallSegment {
        /// The definition as JSON.
        definition: serde_json::Value,
    },
    /// Replace an installed segment's definition.
    ReplaceSegment {
        /// The new definition as JSON.
        definition: serde_json::Value,
    },
    /// Install (publish) a journey, ongoing from the request's time.
    InstallJourney {
        /// The definition as JSON.
        definition: serde_json::Value,
        /// Its version.
        version: u32,
    },
    /// Publish a new version of a running journey: its users are handed over as of the
    /// request's time and placed as `migrate` says.
    PublishVersion {
        /// The new version's definition as JSON.
        definition: serde_json::Value,
        /// The new version number.
        version: u32,
        /// Where users at the running version's nodes go.
        migrate: journeyflow_types::Migration,
    },
    /// Pause, resume or end an installed journey.
    JourneyCommand {
        /// Journey id.
        id: String,
        /// `pause`, `resume` or `end`.
        command: String,
    },
    /// Remove a segment.
    RemoveSegment {
        /// Segment id.
        id: String,
    },
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
}

impl Request {
    /// Whether it changes what runs (and so goes to the control log), rather than asks.
    pub fn is_change(&self) -> bool {
        !matches!(self, Request::Members { .. } | Request::UserSegments { .. })
    }

    /// How many answers the request gets: one per worker for membership, else one.
    pub fn answers(&self, workers: usize) -> usize {
        match self {
            Request::Members { .. } | Request::UserSegments { .. } => workers,
            _ => 1,
        }
    }
}

/// What the workers answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// Installed as of this time.
    Installed(Time),
    /// Removed as of this time.
    Removed(Time),
    /// One worker's members as of a time.
    Members(Time, Vec<Key>),
    /// One worker's share of a user's segments as of a time.
    Segments(Time, Vec<String>),
    /// The request could not be applied.
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
}

/// The shared side of the engine, cloned into every handler.
#[derive(Clone)]
pub struct EngineHandle {
    requests: std::sync::mpsc::Sender<Ticket>,
    workers: usize,
    /// User ids by key, filled as events are read.
    pub names: Arc<RwLock<KeyMap<Arc<str>>>>,
    /// Installed segments by id.
    pub segments: Arc<Mutex<BTreeMap<String, SegmentDefinition>>>,
    /// Counters.
    pub progress: Arc<Progress>,
    /// Journeys by id: definition, version, status.
    pub journeys: Arc<Mutex<BTreeMap<String, JourneyEntry>>>,
    /// Journey reports (as `journey_stats.json` shows them), kept current by the workers.
    pub journey_reports: Arc<Mutex<BTreeMap<String, serde_json::Value>>>,
    /// The latest transitions of each user in each journey (at most `HISTORY` each).
    pub journey_users: Arc<Mutex<JourneyUsers>>,
}

/// The latest transitions (as written) by `(journey, user id)`.
pub type JourneyUsers = HashMap<(String, Arc<str>), VecDeque<serde_json::Value>>;

/// How many transitions per user and journey are kept for the progress endpoint.
pub const HISTORY: usize = 100;

/// A journey as the control API keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JourneyEntry {
    /// The definition as written.
    pub definition: serde_json::Value,
    /// The version running (or, for a draft, to be published).
    pub version: u32,
    /// `draft`, `ongoing`, `paused` or `ended`.
    pub status: String,
    /// When it (its current version) was published (event time), if it was.
    pub published_at: Option<Time>,
    /// The next version, written with `PUT` and not yet published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<serde_json::Value>,
}

impl EngineHandle {
    /// A handle for `workers` workers, and the receiving end worker 0 reads requests from.
    pub fn new(workers: usize) -> (EngineHandle, std::sync::mpsc::Receiver<Ticket>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = EngineHandle {
            requests: tx,
            workers,
            names: Arc::default(),
            segments: Arc::default(),
            progress: Arc::default(),
            journeys: Arc::default(),
            journey_reports: Arc::default(),
            journey_users: Arc::default(),
        };
        (handle, rx)
    }

    /// Sends a request and waits (up to `timeout`) for all its answers.
    pub async fn call(&self, request: Request, timeout: std::time::Duration) -> Result<Vec<Answer>, CallError> {
        self.submit(request)?.wait(timeout).await
    }

    /// Sends a request without waiting: requests are applied in the order they are submitted.
    pub fn submit(&self, request: Request) -> Result<Pending, CallError> {
        self.submit_at(request, None)
    }

    /// Sends a request to apply as of `at` (or the watermark, if later), without waiting.
    pub fn submit_at(&self, request: Request, at: Option<Time>) -> Result<Pending, CallError> {
        let expected = request.answers(self.workers);
        let (reply, answers) = mpsc::unbounded_channel();
        self.requests.send(Ticket { request, reply, at }).map_err(|_| CallError::Stopped)?;
        Ok(Pending { expected, answers })
    }

    /// The user id of a key, if seen.
    pub fn name(&self, key: &Key) -> Option<Arc<str>> {
        self.names.read().ok()?.get(key).cloned()
    }

    /// The lowest worker watermark.
    pub fn watermark(&self) -> Time {
        self.progress.watermark.load(Ordering::Relaxed)
    }
}

/// A submitted request whose answers are still to come.
pub struct Pending {
    expected: usize,
    answers: mpsc::UnboundedReceiver<Answer>,
}

impl Pending {
    /// Waits (up to `timeout`) for all the answers.
    pub async fn wait(mut self, timeout: std::time::Duration) -> Result<Vec<Answer>, CallError> {
        let mut out = Vec::with_capacity(self.expected);
        let deadline = tokio::time::Instant::now() + timeout;
        while out.len() < self.expected {
            match tokio::time::timeout_at(deadline, self.answers.recv()).await {
                Ok(Some(a)) => out.push(a),
                Ok(None) => return Err(CallError::Stopped),
                Err(_) => return Err(CallError::Timeout),
            }
        }
        Ok(out)
    }
}

/// Why a call to the workers got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The workers have stopped.
    #[error("the workers have stopped")]
    Stopped,
    /// No answer in time.
    #[error("the workers did not answer in time")]
    Timeout,
}
