//! Settings of the HTTP surface: body, batch and event sizes, how far ahead of its receipt an
//! event may be timed, how far the workers may fall behind before ingest pushes back, request
//! timeouts, concurrency and connections, the definition limits, and who may read `/metrics`.

use journeyflow_types::Limits;
use std::time::Duration;

/// How the HTTP server takes requests.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpConfig {
    /// Request bodies larger than this get 413.
    pub max_body_bytes: usize,
    /// Events of one `/v1/batch` call, at most (more: 413).
    pub max_batch_events: usize,
    /// Bytes of one event as stored, at most (a larger one is refused with its reason).
    pub max_event_bytes: usize,
    /// An event timed (after clock-skew correction) more than this after it was received is
    /// refused, in ms.
    pub max_future_skew: u64,
    /// Ingest answers 429 while the workers have more than this many bytes of the ingest log
    /// still to read.
    pub max_ingest_lag_bytes: u64,
    /// A request (body included) that takes longer gets 408.
    pub request_timeout: Duration,
    /// How long a change waits for worker 0 before it is answered 202 (and goes on).
    pub change_wait: Duration,
    /// How long a membership query waits for the workers before 503.
    pub query_wait: Duration,
    /// Ingest requests handled at once; more get 503 at once.
    pub concurrency: usize,
    /// Control requests handled at once (apart from ingest, so that a flood of events does
    /// not lock operators out); more get 503 at once.
    pub control_concurrency: usize,
    /// Connections held at once; one more is closed at once.
    pub max_connections: usize,
    /// Live streams (Server-Sent Events) open at once; one more gets 503.
    pub max_streams: usize,
    /// Time a client has to send a request's headers (also the longest a kept-alive
    /// connection may idle).
    pub header_timeout: Duration,
    /// Limits on definitions.
    pub limits: Limits,
    /// Whether `/metrics` needs the API token too.
    pub metrics_need_token: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 4 << 20,
            max_batch_events: 2_500,
            max_event_bytes: 32 << 10,
            max_future_skew: 3_600_000,
            max_ingest_lag_bytes: 256 << 20,
            request_timeout: Duration::from_secs(30),
            change_wait: Duration::from_secs(10),
            query_wait: Duration::from_secs(20),
            concurrency: 512,
            control_concurrency: 64,
            max_connections: 4096,
            max_streams: 64,
            header_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            metrics_need_token: false,
        }
    }
}
