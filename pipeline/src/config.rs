//! Settings of `journeyflow run`: defaults for everything, overridden by a TOML file
//! (`--config`), then by `JOURNEYFLOW_*` environment variables and flags (clap reads both).
//! Unknown keys in the file are errors that name the key.

use journeyflow_connectors::webhook::WebhookConfig;
use journeyflow_control_api::config::HttpConfig;
use journeyflow_types::Limits;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The settings `journeyflow run` runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveConfig {
    /// HTTP address.
    pub listen: SocketAddr,
    /// Ingest log, definitions and outputs.
    pub data_dir: PathBuf,
    /// Segments to install at start.
    pub segments: Option<PathBuf>,
    /// Journeys to publish at start.
    pub journeys: Option<PathBuf>,
    /// Funnels to install at start.
    pub funnels: Option<PathBuf>,
    /// Retention cohorts to install at start.
    pub cohorts: Option<PathBuf>,
    /// Path analyses to install at start.
    pub paths: Option<PathBuf>,
    /// Timely worker threads (per process).
    pub workers: usize,
    /// The processes of the cluster (one by default).
    pub cluster: crate::cluster::Cluster,
    /// Watermark lag behind the largest event time, ms.
    pub allowed_lateness: u64,
    /// Quiet time after which event time follows the wall clock, ms.
    pub idle_timeout: u64,
    /// How long after an event a repeat of its `messageId` is dropped, ms.
    pub dedup_window: u64,
    /// How the HTTP server takes requests (sizes, skew, back-pressure, timeouts, limits).
    pub http: HttpConfig,
    /// Bearer token for control calls.
    pub api_token: Option<String>,
    /// Segment write keys for ingest.
    pub write_keys: Vec<String>,
    /// Allow an open non-loopback listener.
    pub insecure: bool,
    /// Where sent actions are POSTed, per channel, and how.
    pub webhooks: WebhookConfig,
    /// Kafka topics in and out, when brokers are given.
    pub kafka: Option<KafkaConfig>,
    /// The Parquet archive of accepted events and outputs, when a directory is given.
    pub archive: Option<PathBuf>,
    /// How often workers write the archive, ms.
    pub archive_interval: u64,
    /// How often a checkpoint is taken, ms (`None`: never).
    pub checkpoint_interval: Option<u64>,
    /// The size at which the ingest log starts a new segment.
    pub log_segment_bytes: u64,
    /// How long what grows with the stream is kept.
    pub retention: Retention,
}

/// `[retention]`: how long what grows with the stream is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// How long an event counts after its timestamp, ms (`None`: forever): windows, the
    /// universe, installs over the history. Definitions whose windows reach back further are
    /// refused.
    pub events: Option<u64>,
    /// How long the archive keeps a record behind the durable frontier, ms (`None`: forever).
    pub archive: Option<u64>,
    /// How long a deleted user's records stay in the files (the ingest log, checkpoints,
    /// outputs, the archive) once every output through the deletion is durable, ms: a grace
    /// for those reading the output files to see the deletion's own exits and cancellations.
    pub deleted_users: u64,
    /// How long the output logs (segment changes, transitions, actions, dead letters) keep a
    /// sealed segment once every record in it is durable and older than this, ms (`None`:
    /// forever).
    pub outputs: Option<u64>,
    /// The size at which an output log seals its segment and begins the next.
    pub output_segment_bytes: u64,
}

/// The default size of an output log's segment: 64 MiB.
pub const DEFAULT_OUTPUT_SEGMENT_BYTES: u64 = 64 << 20;

/// The default grace before a deleted user's records are removed from the files: 1 hour.
pub const DEFAULT_DELETED_USERS: u64 = 3_600_000;

impl Default for Retention {
    fn default() -> Self {
        Retention {
            events: Some(crate::admission::DEFAULT_RETENTION),
            archive: None,
            deleted_users: DEFAULT_DELETED_USERS,
            outputs: None,
            output_segment_bytes: DEFAULT_OUTPUT_SEGMENT_BYTES,
        }
    }
}

/// `[retention]` in the file: `events = "90d"` or `"forever"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// How long an event counts.
    pub events: Option<String>,
    /// How long the archive keeps records: `archive = "365d"` or `"forever"`.
    pub archive: Option<String>,
    /// How long a deleted user's records stay in the files: `deleted_users = "1h"`.
    pub deleted_users: Option<String>,
    /// How long the output logs keep records: `outputs = "30d"` or `"forever"`.
    pub outputs: Option<String>,
    /// `output_segment_bytes = 67108864`.
    pub output_segment_bytes: Option<u64>,
}

/// A span of time something is kept for, in ms, or forever (`None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kept(pub Option<u64>);

/// Parses a retention: a duration (at least 1 ms), or `forever`.
pub fn parse_kept(text: &str) -> Result<Kept, String> {
    if text == "forever" {
        return Ok(Kept(None));
    }
    match crate::cli::parse_duration(text)? {
        0 => Err(format!("{text:?}: a retention must be longer than 0 (or \"forever\")")),
        ms => Ok(Kept(Some(ms))),
    }
}

/// Where the first start reads a topic from (restarts read from where the first began).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum StartPosition {
    /// Every message the topic still holds.
    #[default]
    Earliest,
    /// Only messages produced after the first start.
    Latest,
}

/// `[kafka]`: the event topics read and the topics written.
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaConfig {
    /// Brokers and the librdkafka properties (security options) every client gets.
    pub settings: journeyflow_connectors::kafka::Settings,
    /// Event topics.
    pub topics: Vec<String>,
    /// The consumer group offsets are committed to.
    pub group: String,
    /// Where the first start begins.
    pub start: StartPosition,
    /// Bytes fetched ahead of the workers at most, over all partitions of a process.
    pub max_in_flight_bytes: usize,
    /// Segment changes topic.
    pub segment_changes: String,
    /// Journey transitions topic.
    pub journey_transitions: String,
    /// Journey actions topic.
    pub journey_actions: String,
    /// Malformed messages, with the reason in header `journeyflow.error`.
    pub dead_letter: String,
    /// Definitions and journey statuses (compacted).
    pub definitions: String,
    /// Partitions of output topics journeyflow creates.
    pub output_partitions: i32,
    /// A message over this many bytes is dead-lettered by reference.
    pub max_message_bytes: usize,
}

impl KafkaConfig {
    /// The defaults for `brokers` reading `topics`.
    pub fn new(brokers: String, topics: Vec<String>) -> KafkaConfig {
        KafkaConfig {
            settings: journeyflow_connectors::kafka::Settings { brokers, properties: BTreeMap::new() },
            topics,
            group: "journeyflow".into(),
            start: StartPosition::Earliest,
            max_in_flight_bytes: 64 << 20,
            segment_changes: "journeyflow.segment_changes".into(),
            journey_transitions: "journeyflow.journey_transitions".into(),
            journey_actions: "journeyflow.journey_actions".into(),
            dead_letter: "journeyflow.dead_letter".into(),
            definitions: "journeyflow.definitions".into(),
            output_partitions: 4,
            max_message_bytes: 1_000_000,
        }
    }
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("journeyflow-data"),
            segments: None,
            journeys: None,
            funnels: None,
            cohorts: None,
            paths: None,
            workers: crate::cluster::default_workers(),
            cluster: crate::cluster::Cluster::single(crate::cluster::default_workers()),
            allowed_lateness: 1_000,
            idle_timeout: 200,
            dedup_window: 86_400_000,
            http: HttpConfig {
                limits: Limits { retention: Retention::default().events, ..Limits::default() },
                ..HttpConfig::default()
            },
            api_token: None,
            write_keys: Vec::new(),
            insecure: false,
            webhooks: WebhookConfig::default(),
            kafka: None,
            archive: None,
            archive_interval: 10_000,
            checkpoint_interval: Some(60_000),
            log_segment_bytes: journeyflow_connectors::wal::SEGMENT_BYTES,
            retention: Retention::default(),
        }
    }
}

/// The TOML file: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `listen = "127.0.0.1:8080"`.
    pub listen: Option<SocketAddr>,
    /// `data_dir = "journeyflow-data"`.
    pub data_dir: Option<PathBuf>,
    /// `segments = "segments.json"`.
    pub segments: Option<PathBuf>,
    /// `journeys = "journeys.json"`.
    pub journeys: Option<PathBuf>,
    /// `funnels = "funnels.json"`.
    pub funnels: Option<PathBuf>,
    /// `cohorts = "cohorts.json"`.
    pub cohorts: Option<PathBuf>,
    /// `paths = "paths.json"`.
    pub paths: Option<PathBuf>,
    /// `workers = 2` (default: one per available core).
    pub workers: Option<usize>,
    /// `[ingest]`.
    #[serde(default)]
    pub ingest: IngestSection,
    /// `[api]`.
    #[serde(default)]
    pub api: ApiSection,
    /// `[webhooks]`.
    #[serde(default)]
    pub webhooks: WebhooksSection,
    /// `[kafka]`.
    pub kafka: Option<KafkaSection>,
    /// `[archive]`.
    #[serde(default)]
    pub archive: ArchiveSection,
    /// `[checkpoint]`.
    #[serde(default)]
    pub checkpoint: CheckpointSection,
    /// `[limits]`: what one definition may hold, and how many there may be.
    #[serde(default)]
    pub limits: Limits,
    /// `[cluster]`.
    #[serde(default)]
    pub cluster: crate::cluster::ClusterSection,
    /// `[retention]`.
    #[serde(default)]
    pub retention: RetentionSection,
}

/// `[checkpoint]`: `interval = "60s"`, or `"off"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSection {
    /// How often a checkpoint is taken.
    pub interval: Option<String>,
}

/// An interval in ms, or never (`None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Every(pub Option<u64>);

/// Parses an interval: a duration, or `off`.
pub fn parse_interval(text: &str) -> Result<Every, String> {
    if text == "off" {
        return Ok(Every(None));
    }
    crate::cli::parse_duration(text).map(|ms| Every(Some(ms.max(1))))
}

/// `[archive]`: `dir = "archive"`, `interval = "10s"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSection {
    /// Where the Parquet files go.
    pub dir: Option<PathBuf>,
    /// How often workers write them.
    pub interval: Option<String>,
}

/// `[kafka]`: `brokers = "host:9092"`, `topics = ["events"]`, and `[kafka.properties]` passed
/// to librdkafka as they are (`"security.protocol" = "SASL_SSL"`, `"sasl.mechanism"`, ...).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// `brokers = "127.0.0.1:9092"`.
    pub brokers: Option<String>,
    /// `topics = ["events"]`.
    pub topics: Option<Vec<String>>,
    /// `group = "journeyflow"`.
    pub group: Option<String>,
    /// `start = "earliest"` or `"latest"`.
    pub start: Option<StartPosition>,
    /// `max_in_flight_bytes = 67108864`.
    pub max_in_flight_bytes: Option<usize>,
    /// `segment_changes_topic = "journeyflow.segment_changes"`.
    pub segment_changes_topic: Option<String>,
    /// `journey_transitions_topic = "journeyflow.journey_transitions"`.
    pub journey_transitions_topic: Option<String>,
    /// `journey_actions_topic = "journeyflow.journey_actions"`.
    pub journey_actions_topic: Option<String>,
    /// `dead_letter_topic = "journeyflow.dead_letter"`.
    pub dead_letter_topic: Option<String>,
    /// `definitions_topic = "journeyflow.definitions"` (compacted).
    pub definitions_topic: Option<String>,
    /// `output_partitions = 4`.
    pub output_partitions: Option<i32>,
    /// `max_message_bytes = 1000000`.
    pub max_message_bytes: Option<usize>,
    /// `[kafka.properties]`.
    pub properties: Option<BTreeMap<String, String>>,
}

impl KafkaSection {
    /// The section over the defaults; `None` without brokers.
    fn resolve(self) -> anyhow::Result<Option<KafkaConfig>> {
        let Some(brokers) = self.brokers else {
            if self.topics.is_some() {
                anyhow::bail!("kafka.topics: given without kafka.brokers");
            }
            return Ok(None);
        };
        let mut c = KafkaConfig::new(brokers, self.topics.unwrap_or_default());
        c.group = self.group.unwrap_or(c.group);
        c.start = self.start.unwrap_or(c.start);
        c.max_in_flight_bytes = self.max_in_flight_bytes.unwrap_or(c.max_in_flight_bytes);
        c.segment_changes = self.segment_changes_topic.unwrap_or(c.segment_changes);
        c.journey_transitions = self.journey_transitions_topic.unwrap_or(c.journey_transitions);
        c.journey_actions = self.journey_actions_topic.unwrap_or(c.journey_actions);
        c.dead_letter = self.dead_letter_topic.unwrap_or(c.dead_letter);
        c.definitions = self.definitions_topic.unwrap_or(c.definitions);
        c.output_partitions = self.output_partitions.unwrap_or(c.output_partitions).max(1);
        c.max_message_bytes = self.max_message_bytes.unwrap_or(c.max_message_bytes).max(1);
        c.settings.properties = self.properties.unwrap_or_default();
        Ok(Some(c))
    }
}

/// `[webhooks]`: `urls = { email = "https://..." }` and how deliveries are retried.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksSection {
    /// URL per action channel.
    pub urls: Option<BTreeMap<String, String>>,
    /// `max_attempts = 8`.
    pub max_attempts: Option<u32>,
    /// `initial_backoff = "200ms"`, doubled per attempt.
    pub initial_backoff: Option<String>,
    /// `max_backoff = "30s"`.
    pub max_backoff: Option<String>,
    /// `queue = 10000` actions waiting at most.
    pub queue: Option<usize>,
    /// `concurrency = 4` deliveries in flight.
    pub concurrency: Option<usize>,
    /// `timeout = "10s"` per request.
    pub timeout: Option<String>,
}

/// `[ingest]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    /// `allowed_lateness = "1s"`.
    pub allowed_lateness: Option<String>,
    /// `idle_timeout = "200ms"`.
    pub idle_timeout: Option<String>,
    /// `dedup_window = "24h"`.
    pub dedup_window: Option<String>,
    /// `max_body_bytes = 4194304`.
    pub max_body_bytes: Option<usize>,
    /// `max_batch_events = 2500`.
    pub max_batch_events: Option<usize>,
    /// `max_event_bytes = 32768`.
    pub max_event_bytes: Option<usize>,
    /// `max_future_skew = "1h"`.
    pub max_future_skew: Option<String>,
    /// `max_lag_bytes = 268435456`.
    pub max_lag_bytes: Option<u64>,
    /// `log_segment_bytes = 67108864`.
    pub log_segment_bytes: Option<u64>,
    /// `write_keys = ["..."]`.
    pub write_keys: Option<Vec<String>>,
    /// `write_keys_file = "write-keys.txt"`: one key per line.
    pub write_keys_file: Option<PathBuf>,
}

/// `[api]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// `token = "..."`.
    pub token: Option<String>,
    /// `token_file = "api-token"`: the token, on the file's first line.
    pub token_file: Option<PathBuf>,
    /// `insecure = false`.
    pub insecure: Option<bool>,
    /// `request_timeout = "30s"`.
    pub request_timeout: Option<String>,
    /// `change_wait = "10s"`.
    pub change_wait: Option<String>,
    /// `query_wait = "20s"`.
    pub query_wait: Option<String>,
    /// `concurrency = 512`: ingest requests at once.
    pub concurrency: Option<usize>,
    /// `control_concurrency = 64`: control requests at once.
    pub control_concurrency: Option<usize>,
    /// `max_connections = 4096`: connections held at once.
    pub max_connections: Option<usize>,
    /// `max_streams = 64`: live streams (Server-Sent Events) open at once.
    pub max_streams: Option<usize>,
    /// `header_timeout = "10s"`: time a client has to send a request's headers.
    pub header_timeout: Option<String>,
    /// `metrics_auth = true`: `/metrics` needs the API token.
    pub metrics_auth: Option<bool>,
}

impl FileConfig {
    /// Reads a file; errors name the file, the key and the position.
    pub fn read(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// The defaults overridden by this file.
    pub fn over_defaults(self) -> anyhow::Result<LiveConfig> {
        let d = LiveConfig::default();
        let duration = |key: &str, v: Option<String>, default: u64| -> anyhow::Result<u64> {
            v.map_or(Ok(default), |s| crate::cli::parse_duration(&s).map_err(|e| anyhow::anyhow!("{key}: {e}")))
        };
        let span = |key: &str, v: Option<String>, default: std::time::Duration| {
            duration(key, v, default.as_millis() as u64).map(std::time::Duration::from_millis)
        };
        let kept = |key: &str, v: Option<String>, default: Option<u64>| -> anyhow::Result<Option<u64>> {
            v.map_or(Ok(default), |s| parse_kept(&s).map(|k| k.0).map_err(|e| anyhow::anyhow!("{key}: {e}")))
        };
        let retention = Retention {
            events: kept("retention.events", self.retention.events, d.retention.events)?,
            archive: kept("retention.archive", self.retention.archive, d.retention.archive)?,
            deleted_users: duration(
                "retention.deleted_users",
                self.retention.deleted_users,
                d.retention.deleted_users,
            )?,
            outputs: kept("retention.outputs", self.retention.outputs, d.retention.outputs)?,
            output_segment_bytes: self
                .retention
                .output_segment_bytes
                .unwrap_or(d.retention.output_segment_bytes)
                .max(1),
        };
        let (w, dw) = (self.webhooks, d.webhooks);
        let (i, a, dh) = (&self.ingest, &self.api, &d.http);
        let http = HttpConfig {
            max_body_bytes: i.max_body_bytes.unwrap_or(dh.max_body_bytes),
            max_batch_events: i.max_batch_events.unwrap_or(dh.max_batch_events),
            max_event_bytes: i.max_event_bytes.unwrap_or(dh.max_event_bytes),
            max_future_skew: duration("ingest.max_future_skew", i.max_future_skew.clone(), dh.max_future_skew)?,
            max_ingest_lag_bytes: i.max_lag_bytes.unwrap_or(dh.max_ingest_lag_bytes),
            request_timeout: span("api.request_timeout", a.request_timeout.clone(), dh.request_timeout)?,
            change_wait: span("api.change_wait", a.change_wait.clone(), dh.change_wait)?,
            query_wait: span("api.query_wait", a.query_wait.clone(), dh.query_wait)?,
            concurrency: a.concurrency.unwrap_or(dh.concurrency),
            control_concurrency: a.control_concurrency.unwrap_or(dh.control_concurrency),
            max_connections: a.max_connections.unwrap_or(dh.max_connections),
            max_streams: a.max_streams.unwrap_or(dh.max_streams),
            header_timeout: span("api.header_timeout", a.header_timeout.clone(), dh.header_timeout)?,
            // Validation refuses windows that reach back past the retention.
            limits: Limits { retention: retention.events, ..self.limits },
            metrics_need_token: a.metrics_auth.unwrap_or(dh.metrics_need_token),
        };
        let api_token = match (&a.token, &a.token_file) {
            (Some(_), Some(_)) => anyhow::bail!("api.token and api.token_file: give one of them"),
            (Some(t), None) => Some(t.clone()),
            (None, Some(path)) => Some(read_secret(path).map_err(|e| anyhow::anyhow!("api.token_file: {e}"))?),
            (None, None) => d.api_token,
        };
        let mut write_keys = i.write_keys.clone().unwrap_or(d.write_keys);
        if let Some(path) = &i.write_keys_file {
            write_keys.extend(read_secrets(path).map_err(|e| anyhow::anyhow!("ingest.write_keys_file: {e}"))?);
        }
        let webhooks = WebhookConfig {
            urls: w.urls.unwrap_or(dw.urls),
            max_attempts: w.max_attempts.unwrap_or(dw.max_attempts).max(1),
            initial_backoff: span("webhooks.initial_backoff", w.initial_backoff, dw.initial_backoff)?,
            max_backoff: span("webhooks.max_backoff", w.max_backoff, dw.max_backoff)?,
            queue: w.queue.unwrap_or(dw.queue),
            concurrency: w.concurrency.unwrap_or(dw.concurrency),
            timeout: span("webhooks.timeout", w.timeout, dw.timeout)?,
        };
        Ok(LiveConfig {
            listen: self.listen.unwrap_or(d.listen),
            data_dir: self.data_dir.unwrap_or(d.data_dir),
            segments: self.segments.or(d.segments),
            journeys: self.journeys.or(d.journeys),
            funnels: self.funnels.or(d.funnels),
            cohorts: self.cohorts.or(d.cohorts),
            paths: self.paths.or(d.paths),
            workers: self.workers.unwrap_or(d.workers).max(1),
            cluster: crate::cluster::Cluster::single(self.workers.unwrap_or(d.workers)),
            allowed_lateness: duration("ingest.allowed_lateness", self.ingest.allowed_lateness, d.allowed_lateness)?,
            idle_timeout: duration("ingest.idle_timeout", self.ingest.idle_timeout, d.idle_timeout)?,
            dedup_window: duration("ingest.dedup_window", self.ingest.dedup_window, d.dedup_window)?,
            http,
            api_token,
            write_keys,
            insecure: self.api.insecure.unwrap_or(d.insecure),
            webhooks,
            kafka: self.kafka.map(KafkaSection::resolve).transpose()?.flatten(),
            archive: self.archive.dir.or(d.archive),
            archive_interval: duration("archive.interval", self.archive.interval, d.archive_interval)?,
            checkpoint_interval: match self.checkpoint.interval {
                Some(text) => parse_interval(&text).map_err(|e| anyhow::anyhow!("checkpoint.interval: {e}"))?.0,
                None => d.checkpoint_interval,
            },
            log_segment_bytes: self.ingest.log_segment_bytes.unwrap_or(d.log_segment_bytes).max(1),
            retention,
        })
    }
}

/// A secret kept in a file: its first line, without surrounding whitespace.
pub fn read_secret(path: &Path) -> anyhow::Result<String> {
    read_secrets(path)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("{}: holds no secret (its first line is empty)", path.display()))
}

/// Secrets kept in a file, one per line (blank lines and `#` comments skipped).
pub fn read_secrets(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect())
}

impl LiveConfig {
    /// What makes this config unsafe or impossible to run with, each naming its setting: an
    /// open control API on a non-loopback address, empty credentials, limits beyond what the
    /// engine takes.
    pub fn problems(&self) -> Vec<String> {
        let mut out = self.http.limits.problems();
        if self.api_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            out.push("--api-token: an empty token would let anyone in".into());
        }
        if self.write_keys.iter().any(|k| k.trim().is_empty()) {
            out.push("--write-key: an empty write key would let anyone send events".into());
        }
        if !self.listen.ip().is_loopback() && self.api_token.is_none() && !self.insecure {
            out.push(format!(
                "--listen {}: a non-loopback address needs --api-token (or --api-token-file): write keys ship \
                 inside SDKs and never open the control API; pass --insecure to serve it open anyway",
                self.listen
            ));
        }
        let timeout = self.http.request_timeout;
        if self.http.change_wait >= timeout || self.http.query_wait >= timeout {
            out.push(format!(
                "api.change_wait ({:?}) and api.query_wait ({:?}) must be shorter than api.request_timeout ({timeout:?}): \
                 a call must get its own answer (202, 503) before the request timeout cuts it off",
                self.http.change_wait, self.http.query_wait
            ));
        }
        let h = &self.http;
        if [
            h.max_batch_events,
            h.max_event_bytes,
            h.concurrency,
            h.control_concurrency,
            h.max_connections,
            h.max_streams,
        ]
        .contains(&0)
        {
            out.push(
                "ingest.max_batch_events, ingest.max_event_bytes, api.concurrency, api.control_concurrency, \
                 api.max_connections and api.max_streams must be at least 1"
                    .into(),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_defaults_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journeyflow.toml");
        std::fs::write(&path, "workers = 2\n[ingest]\nallowed_lateness = \"5s\"\n[api]\ntoken = \"t\"\n").unwrap();
        let c = FileConfig::read(&path).unwrap().over_defaults().unwrap();
        assert_eq!((c.workers, c.allowed_lateness, c.api_token.as_deref()), (2, 5_000, Some("t")));
        assert_eq!(c.listen, LiveConfig::default().listen);
        std::fs::write(&path, "[ingest]\nalowed_lateness = \"5s\"\n").unwrap();
        let err = FileConfig::read(&path).unwrap_err().to_string();
        assert!(err.contains("alowed_lateness") && err.contains("journeyflow.toml"), "{err}");
        std::fs::write(&path, "[webhooks]\nurls = { email = \"http://127.0.0.1:9/e\" }\nmax_backoff = \"5s\"\n")
            .unwrap();
        let c = FileConfig::read(&path).unwrap().over_defaults().unwrap();
        assert_eq!(c.webhooks.urls["email"], "http://127.0.0.1:9/e");
        assert_eq!(c.webhooks.max_backoff, std::time::Duration::from_secs(5));
        std::fs::write(&path, "[ingest]\nidle_timeout = \"soon\"\n").unwrap();
        let err = FileConfig::read(&path).unwrap().over_defaults().unwrap_err().to_string();
        assert!(err.contains("ingest.idle_timeout"), "{err}");
        std::fs::write(
            &path,
            "[kafka]\nbrokers = \"b:9092\"\ntopics = [\"e\"]\nstart = \"latest\"\n\
             [kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n",
        )
        .unwrap();
        let k = FileConfig::read(&path).unwrap().over_defaults().unwrap().kafka.unwrap();
        assert_eq!(
            (k.settings.brokers.as_str(), k.topics.clone(), k.start),
            ("b:9092", vec!["e".into()], StartPosition::Latest)
        );
        assert_eq!(k.settings.properties["security.protocol"], "SASL_SSL");
        assert_eq!(k.journey_actions, "journeyflow.journey_actions");
        std::fs::write(&path, "[kafka]\ntopics = [\"e\"]\n").unwrap();
        let err = FileConfig::read(&path).unwrap().over_defaults().unwrap_err().to_string();
        assert!(err.contains("kafka.topics"), "{err}");
    }

    #[test]
    fn retention_is_a_duration_or_forever_and_defaults_to_ninety_days() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journeyflow.toml");
        let read = |text: &str| {
            std::fs::write(&path, text).unwrap();
            FileConfig::read(&path).unwrap().over_defaults()
        };
        assert_eq!(read("").unwrap().retention.events, Some(90 * 86_400_000));
        assert_eq!(read("").unwrap().http.limits.retention, Some(90 * 86_400_000));
        assert_eq!(read("[retention]\nevents = \"30d\"\n").unwrap().retention.events, Some(30 * 86_400_000));
        assert_eq!(read("[retention]\nevents = \"forever\"\n").unwrap().retention.events, None);
        assert_eq!(read("").unwrap().retention.archive, None);
        assert_eq!(read("[retention]\narchive = \"365d\"\n").unwrap().retention.archive, Some(365 * 86_400_000));
        for bad in ["0d", "soon"] {
            let err = read(&format!("[retention]\nevents = \"{bad}\"\n")).unwrap_err().to_string();
            assert!(err.contains("retention.events"), "{err}");
        }
    }
}
