//! `journeyflow run`: the long-running pipeline. Starts the timely workers over the durable
//! ingest log in the data directory and the HTTP server (Segment-compatible ingest and the
//! control API); the catalog of definitions is the fold of the control log, and what
//! `--segments` and `--journeys` add (or, with an empty log, what the Kafka definitions topic
//! or an older `definitions.json` holds) is installed at start through the same checks as any
//! change. Stops cleanly on SIGINT/SIGTERM: stops accepting, lets the workers drain the log and
//! flush, exits 0.

use crate::admission::{IngestConfig, LatePolicy};
use crate::archive::Sweeper;
use crate::cluster::{Cluster, ClusterArgs};
use crate::config::{FileConfig, KafkaConfig, LiveConfig, Retention, StartPosition};
use crate::control_log::ControlLog;
use crate::live::{make_durable, run_worker, Checkpointer, Shared};
use crate::output_retention::OutputRetention;
use crate::sequencer::Sequencer;
use anyhow::Context;
use journeyflow_connectors::kafka::Sink;
use journeyflow_connectors::wal::Wal;
use journeyflow_connectors::webhook::{Outbox, Webhooks};
use journeyflow_control_api::auth::Auth;
use journeyflow_control_api::catalog::{status, Catalog, Change, JourneyEntry, Lifecycle};
use journeyflow_control_api::handle::{Answer, EngineHandle, Request};
use journeyflow_control_api::{router, AppState};
use journeyflow_types::cohort::validate_cohorts_with;
use journeyflow_types::funnel::validate_funnels_with;
use journeyflow_types::paths::validate_paths_with;
use journeyflow_types::{parse_journeys, parse_segments, validate_segments_with, Key, Limits};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Arguments of `journeyflow run`: each overrides the config file, which overrides the
/// defaults (see `LiveConfig`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// A TOML config file.
    #[arg(long, env = "JOURNEYFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the HTTP server [default: 127.0.0.1:8080].
    #[arg(long, env = "JOURNEYFLOW_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where the ingest log, definitions and outputs live [default: journeyflow-data].
    #[arg(long, env = "JOURNEYFLOW_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Segments to install at start (a JSON array of definitions).
    #[arg(long, env = "JOURNEYFLOW_SEGMENTS")]
    pub segments: Option<PathBuf>,
    /// Journeys to publish at start (a JSON array of definitions), unless already stored.
    #[arg(long, env = "JOURNEYFLOW_JOURNEYS")]
    pub journeys: Option<PathBuf>,
    /// Funnels to install at start (a JSON array of definitions), unless already stored.
    #[arg(long, env = "JOURNEYFLOW_FUNNELS")]
    pub funnels: Option<PathBuf>,
    /// Retention cohorts to install at start (a JSON array of definitions), unless already stored.
    #[arg(long, env = "JOURNEYFLOW_COHORTS")]
    pub cohorts: Option<PathBuf>,
    /// Path analyses to install at start (a JSON array of definitions), unless already stored.
    #[arg(long, env = "JOURNEYFLOW_PATHS")]
    pub paths: Option<PathBuf>,
    /// Timely worker threads (per process) [default: one per available core].
    #[arg(long, short = 'w', env = "JOURNEYFLOW_WORKERS")]
    pub workers: Option<usize>,
    /// The cluster this process is part of (see the README's deployment section).
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// How far the watermark trails the largest event time; later events are clamped to it [default: 1s].
    #[arg(long, env = "JOURNEYFLOW_ALLOWED_LATENESS", value_parser = super::parse_duration)]
    pub allowed_lateness: Option<u64>,
    /// With no new events for this long, event time follows the wall clock [default: 200ms].
    #[arg(long, env = "JOURNEYFLOW_IDLE_TIMEOUT", value_parser = super::parse_duration)]
    pub idle_timeout: Option<u64>,
    /// A repeat of an event's `messageId` within this long after it is dropped [default: 24h].
    #[arg(long, env = "JOURNEYFLOW_DEDUP_WINDOW", value_parser = super::parse_duration)]
    pub dedup_window: Option<u64>,
    /// Request bodies larger than this many bytes get 413 [default: 4194304].
    #[arg(long, env = "JOURNEYFLOW_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Events of one /v1/batch call, at most; more get 413 [default: 2500].
    #[arg(long, env = "JOURNEYFLOW_MAX_BATCH_EVENTS")]
    pub max_batch_events: Option<usize>,
    /// An event timed more than this after it was received is refused [default: 1h].
    #[arg(long, env = "JOURNEYFLOW_MAX_FUTURE_SKEW", value_parser = super::parse_duration)]
    pub max_future_skew: Option<u64>,
    /// Ingest answers 429 while the workers have more than this many bytes of the ingest log to
    /// read [default: 268435456].
    #[arg(long, env = "JOURNEYFLOW_MAX_INGEST_LAG_BYTES")]
    pub max_ingest_lag_bytes: Option<u64>,
    /// A request (its body included) taking longer gets 408 [default: 30s].
    #[arg(long, env = "JOURNEYFLOW_REQUEST_TIMEOUT", value_parser = super::parse_duration)]
    pub request_timeout: Option<u64>,
    /// How long a change waits for the workers before it is answered 202 [default: 10s].
    #[arg(long, env = "JOURNEYFLOW_CHANGE_WAIT", value_parser = super::parse_duration)]
    pub change_wait: Option<u64>,
    /// Bearer token every control call must carry (needed on a non-loopback address).
    #[arg(long, env = "JOURNEYFLOW_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// A file whose first line is the API token.
    #[arg(long, env = "JOURNEYFLOW_API_TOKEN_FILE", conflicts_with = "api_token")]
    pub api_token_file: Option<PathBuf>,
    /// A Segment write key ingest calls may use as Basic auth user name (repeatable).
    #[arg(long = "write-key", env = "JOURNEYFLOW_WRITE_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub write_keys: Vec<String>,
    /// A file of Segment write keys, one per line.
    #[arg(long, env = "JOURNEYFLOW_WRITE_KEYS_FILE")]
    pub write_keys_file: Option<PathBuf>,
    /// `/metrics` needs the API token too.
    #[arg(long, env = "JOURNEYFLOW_METRICS_AUTH")]
    pub metrics_auth: bool,
    /// Serve the control API without a token on a non-loopback address.
    #[arg(long, env = "JOURNEYFLOW_INSECURE")]
    pub insecure: bool,
    /// POST sent actions of CHANNEL to URL, as `CHANNEL=URL` (repeatable; adds to the config's).
    #[arg(long = "webhook", env = "JOURNEYFLOW_WEBHOOKS", value_delimiter = ',', value_parser = parse_webhook)]
    pub webhooks: Vec<(String, String)>,
    /// Kafka brokers to read events from and write outputs to, `HOST:PORT[,...]`.
    #[arg(long, env = "JOURNEYFLOW_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Event topics (comma-separated).
    #[arg(long, env = "JOURNEYFLOW_KAFKA_TOPICS", value_delimiter = ',')]
    pub kafka_topics: Vec<String>,
    /// Consumer group offsets are committed to [default: journeyflow].
    #[arg(long, env = "JOURNEYFLOW_KAFKA_GROUP")]
    pub kafka_group: Option<String>,
    /// Where the first start reads the topics from [default: earliest].
    #[arg(long, env = "JOURNEYFLOW_KAFKA_START")]
    pub kafka_start: Option<StartPosition>,
    /// Archive accepted events and every output as time-partitioned Parquet files here.
    #[arg(long, env = "JOURNEYFLOW_ARCHIVE")]
    pub archive: Option<PathBuf>,
    /// How often the archive is written [default: 10s].
    #[arg(long, env = "JOURNEYFLOW_ARCHIVE_INTERVAL", value_parser = super::parse_duration)]
    pub archive_interval: Option<u64>,
    /// How often a checkpoint is taken, or `off` [default: 60s].
    #[arg(long, env = "JOURNEYFLOW_CHECKPOINT_INTERVAL", value_parser = crate::config::parse_interval)]
    pub checkpoint_interval: Option<crate::config::Every>,
    /// The size at which the ingest log starts a new segment (segments a complete checkpoint
    /// covers are deleted) [default: 67108864].
    #[arg(long, env = "JOURNEYFLOW_LOG_SEGMENT_BYTES")]
    pub log_segment_bytes: Option<u64>,
    /// How long an event counts after its timestamp, or `forever`; definitions whose windows
    /// reach back further are refused [default: 90d].
    #[arg(long, env = "JOURNEYFLOW_RETENTION_EVENTS", value_parser = crate::config::parse_kept)]
    pub retention_events: Option<crate::config::Kept>,
    /// How long the archive keeps a record behind the durable frontier, or `forever` [default: forever].
    #[arg(long, env = "JOURNEYFLOW_RETENTION_ARCHIVE", value_parser = crate::config::parse_kept)]
    pub retention_archive: Option<crate::config::Kept>,
    /// How long a deleted user's records stay in the files (ingest log, checkpoints, outputs,
    /// archive) once the deletion's outputs are durable [default: 1h].
    #[arg(long, env = "JOURNEYFLOW_RETENTION_DELETED_USERS", value_parser = super::parse_duration)]
    pub retention_deleted_users: Option<u64>,
    /// How long the output logs keep a sealed segment once every record in it is durable and
    /// older than this (in event time), or `forever` [default: forever].
    #[arg(long, env = "JOURNEYFLOW_RETENTION_OUTPUTS", value_parser = crate::config::parse_kept)]
    pub retention_outputs: Option<crate::config::Kept>,
    /// The size at which an output log seals its segment and begins the next [default: 67108864].
    #[arg(long, env = "JOURNEYFLOW_OUTPUT_SEGMENT_BYTES")]
    pub output_segment_bytes: Option<u64>,
}

/// How often expired output segments are looked for (a listing of the output logs).
const OUTPUTS_EVERY: Duration = Duration::from_secs(1);

/// How often the API's expired journey records are looked for (a walk over every user's).
const RECORDS_EVERY: Duration = Duration::from_secs(5);

fn parse_webhook(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((channel, url)) if !channel.is_empty() && (url.starts_with("http://") || url.starts_with("https://")) => {
            Ok((channel.to_string(), url.to_string()))
        }
        _ => Err(format!("expected CHANNEL=http(s)://..., found {s:?}")),
    }
}

impl RunArgs {
    /// Defaults, then the config file, then these arguments.
    pub fn resolve(&self) -> anyhow::Result<LiveConfig> {
        let mut file = match &self.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        let section = std::mem::take(&mut file.cluster);
        let base = file.over_defaults()?;
        let workers = self.workers.unwrap_or(base.workers).max(1);
        let mut http = base.http;
        http.max_body_bytes = self.max_body_bytes.unwrap_or(http.max_body_bytes);
        http.max_batch_events = self.max_batch_events.unwrap_or(http.max_batch_events);
        http.max_future_skew = self.max_future_skew.unwrap_or(http.max_future_skew);
        http.max_ingest_lag_bytes = self.max_ingest_lag_bytes.unwrap_or(http.max_ingest_lag_bytes);
        http.request_timeout = self.request_timeout.map_or(http.request_timeout, Duration::from_millis);
        http.change_wait = self.change_wait.map_or(http.change_wait, Duration::from_millis);
        http.metrics_need_token |= self.metrics_auth;
        let retention = Retention {
            events: self.retention_events.map_or(base.retention.events, |k| k.0),
            archive: self.retention_archive.map_or(base.retention.archive, |k| k.0),
            deleted_users: self.retention_deleted_users.unwrap_or(base.retention.deleted_users),
            outputs: self.retention_outputs.map_or(base.retention.outputs, |k| k.0),
            output_segment_bytes: self.output_segment_bytes.unwrap_or(base.retention.output_segment_bytes).max(1),
        };
        http.limits.retention = retention.events;
        let api_token = match &self.api_token_file {
            Some(path) => Some(crate::config::read_secret(path)?),
            None => self.api_token.clone().or(base.api_token),
        };
        let mut write_keys = if self.write_keys.is_empty() { base.write_keys } else { self.write_keys.clone() };
        if let Some(path) = &self.write_keys_file {
            write_keys.extend(crate::config::read_secrets(path)?);
        }
        Ok(LiveConfig {
            cluster: Cluster::resolve(&self.cluster, section, workers)?,
            listen: self.listen.unwrap_or(base.listen),
            data_dir: self.data_dir.clone().unwrap_or(base.data_dir),
            segments: self.segments.clone().or(base.segments),
            journeys: self.journeys.clone().or(base.journeys),
            funnels: self.funnels.clone().or(base.funnels),
            cohorts: self.cohorts.clone().or(base.cohorts),
            paths: self.paths.clone().or(base.paths),
            workers: self.workers.unwrap_or(base.workers).max(1),
            allowed_lateness: self.allowed_lateness.unwrap_or(base.allowed_lateness),
            idle_timeout: self.idle_timeout.unwrap_or(base.idle_timeout),
            dedup_window: self.dedup_window.unwrap_or(base.dedup_window),
            http,
            api_token,
            write_keys,
            insecure: self.insecure || base.insecure,
            webhooks: {
                let mut w = base.webhooks;
                w.urls.extend(self.webhooks.iter().cloned());
                w
            },
            kafka: self.kafka(base.kafka)?,
            archive: self.archive.clone().or(base.archive),
            archive_interval: self.archive_interval.unwrap_or(base.archive_interval).max(1),
            checkpoint_interval: self.checkpoint_interval.map_or(base.checkpoint_interval, |e| e.0),
            log_segment_bytes: self.log_segment_bytes.unwrap_or(base.log_segment_bytes).max(1),
            retention,
        })
    }

    /// The config file's `[kafka]` with these flags over it.
    fn kafka(&self, base: Option<KafkaConfig>) -> anyhow::Result<Option<KafkaConfig>> {
        let mut kafka = match (base, &self.kafka_brokers) {
            (Some(mut k), Some(brokers)) => {
                k.settings.brokers = brokers.clone();
                k
            }
            (Some(k), None) => k,
            (None, Some(brokers)) => KafkaConfig::new(brokers.clone(), Vec::new()),
            (None, None) if self.kafka_topics.is_empty() && self.kafka_group.is_none() => return Ok(None),
            (None, None) => anyhow::bail!("--kafka-topics and --kafka-group need --kafka-brokers"),
        };
        if !self.kafka_topics.is_empty() {
            kafka.topics = self.kafka_topics.clone();
        }
        kafka.group = self.kafka_group.clone().unwrap_or(kafka.group);
        kafka.start = self.kafka_start.unwrap_or(kafka.start);
        if kafka.topics.is_empty() {
            anyhow::bail!("Kafka brokers are given but no event topics: pass --kafka-topics or set kafka.topics");
        }
        Ok(Some(kafka))
    }
}

/// Runs until SIGINT or SIGTERM.
pub fn execute(args: &RunArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    let problems = config.problems();
    if !problems.is_empty() {
        anyhow::bail!("refusing to start:\n  {}", problems.join("\n  "));
    }
    let args = &config;
    let cluster = args.cluster.clone();
    // Process 0 sequences requests and serves the control API; every process takes events.
    let leader = cluster.process == 0;
    let workers = cluster.workers;
    let peers = cluster.peers();
    let wal_dir = args.data_dir.join("ingest");
    let wal = Arc::new(
        Wal::open(&wal_dir, workers, args.log_segment_bytes)
            .with_context(|| format!("opening {}", wal_dir.display()))?,
    );
    let (handle, requests) = EngineHandle::new(peers);
    let control_log = ControlLog::open(&args.data_dir)?;
    let logged = control_log.entries();
    let legacy_store = args.data_dir.join("definitions.json");
    // A fresh data directory: what is given at start applies from the beginning of time.
    let fresh = logged.is_empty() && control_log.compacted_through().is_none() && !legacy_store.exists();
    // Journeys published by the time the log was compacted through start from a snapshot.
    let compacted = control_log.compacted_through().filter(|through| {
        logged.iter().any(|e| e.time <= *through && matches!(e.change, Change::InstallJourney { .. }))
    });
    let sequencer = Sequencer::new(requests, control_log, handle.catalog.clone(), args.http.limits);
    let catalog = sequencer.catalog().clone();
    let out_dir = args.data_dir.join("out");
    let skip_before = crate::durable::load(&out_dir)?;
    let checkpoints = args.data_dir.join("checkpoints");
    let restore = crate::checkpoint::newest(&checkpoints)?;
    if let Some(m) = &restore {
        eprintln!("journeyflow: starting from checkpoint {} ({} event files)", m.seq, m.files.len());
    }
    if let Some(through) = compacted {
        let snapshot = restore.as_ref().and_then(|m| m.journeys.as_ref()).map(|s| s.time);
        if snapshot.is_none_or(|s| s < through) {
            anyhow::bail!(
                "the control log was compacted through {through}, and its journeys start from a checkpoint's \
                 snapshot at or after then; the newest checkpoint has {}: restore the checkpoint directory \
                 that was there",
                snapshot.map_or("none".into(), |s| format!("one as of {s}"))
            );
        }
    }
    let kafka = match &args.kafka {
        Some(config) => {
            let mut origins = crate::kafka_input::prepare(config, &args.data_dir.join("kafka"))
                .context("preparing the Kafka topics")?;
            // Messages below a checkpoint's positions are in the checkpoint.
            for (topic, partition, next) in restore.iter().flat_map(|m| m.positions.kafka.iter()) {
                origins.insert((topic.clone(), *partition), *next);
            }
            let sink = Arc::new(Sink::new(&config.settings)?);
            Some((config.clone(), origins, sink))
        }
        None => None,
    };
    // With Kafka, the catalog is kept in a compacted topic too; a process whose control log is
    // empty starts from what the topic holds (or from an older version's definitions.json).
    let (mut legacy, topic) = (read_legacy(&legacy_store)?, None);
    let topic = match (&kafka, leader) {
        (Some((config, _, sink)), true) => {
            let (held_doc, held) = crate::catalog_topic::read(&config.settings, &config.definitions)
                .with_context(|| format!("reading the definitions topic {}", config.definitions))?;
            if legacy.is_none() && catalog == Catalog::default() {
                legacy = held_doc;
            }
            Some((sink.clone(), config.definitions.clone(), held))
        }
        _ => topic,
    };
    let actions_synced: Vec<Arc<AtomicU64>> = (0..workers).map(|_| Arc::default()).collect();
    let shared = Arc::new(Shared {
        cluster: cluster.clone(),
        handle: handle.clone(),
        sequencer: Mutex::new(Some(sequencer)),
        kafka,
        output_frontiers: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        durable: AtomicU64::new(skip_before),
        skip_before,
        archive: args.archive.clone().map(|dir| (dir, Duration::from_millis(args.archive_interval))),
        checkpoints: args.checkpoint_interval.map(|every| (checkpoints.clone(), Duration::from_millis(every))),
        restore: restore.clone(),
        checkpoint_request: AtomicU64::new(0),
        checkpoint_parts: Mutex::default(),
        snapshot_request: AtomicU64::new(0),
        snapshot_parts: Mutex::default(),
        control_compaction: Mutex::default(),
        tickets: Mutex::default(),
        stop: AtomicBool::new(false),
        inputs_open: AtomicBool::new(false),
        watermarks: (0..peers).map(|_| AtomicU64::new(0)).collect(),
        durables: (0..peers).map(|_| AtomicU64::new(0)).collect(),
        erasures: Mutex::new(Vec::new()),
        scrubbed: AtomicU64::new(0),
        chain_files: Mutex::new(()),
        scrubbeds: (0..peers).map(|_| AtomicU64::new(0)).collect(),
        wal_dir,
        wal_committed: (0..wal.partitions()).map(|p| wal.committed(p)).collect(),
        out_dir: out_dir.clone(),
        output_segment_bytes: args.retention.output_segment_bytes,
        ingest: IngestConfig {
            allowed_lateness: Some(args.allowed_lateness),
            late_policy: LatePolicy::Clamp,
            dedup_window: args.dedup_window,
            retention: args.retention.events,
        },
        idle: Duration::from_millis(args.idle_timeout),
        max_future_skew: args.http.max_future_skew,
        journey_counts: Mutex::default(),
        webhooks: match args.webhooks.urls.is_empty() {
            true => None,
            false => {
                let outboxes = outboxes(&out_dir, &cluster, &actions_synced)?;
                // Deleted users' actions are not sent (the workers add those deleted from now on).
                let deleted = catalog.deletions.iter().filter_map(|d| Some((Key::parse(&d.user)?, d.at))).collect();
                let hooks = Webhooks::start(args.webhooks.clone(), &out_dir, outboxes, deleted)
                    .context("starting the webhooks")?;
                Some(Arc::new(hooks))
            }
        },
        actions_synced,
    });
    let worker_shared = shared.clone();
    // Each worker says when it exits (returning, failing or panicking): an exit before a stop
    // was asked for takes the server down.
    let (exited_tx, mut exited_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, String)>();
    if cluster.is_distributed() {
        eprintln!(
            "journeyflow: process {} of {}, {workers} worker(s) each; connecting to {}",
            cluster.process,
            cluster.processes,
            cluster.addresses.join(", ")
        );
    }
    remember_panics(cluster.is_distributed());
    let guards = timely::execute(cluster.timely(), move |worker| {
        let mut exit = ExitNotice { index: worker.index(), why: "panicked".into(), tx: exited_tx.clone() };
        let progress = &worker_shared.handle.progress;
        if !crate::arrangement_sizes::count(worker, progress.arranged_records.clone(), progress.batched_records.clone())
        {
            tracing::warn!("worker {}: no logging registry: arranged records are not counted", worker.index());
        }
        let result = run_worker(worker, &worker_shared).map_err(|e| format!("{e:#}"));
        exit.why = match &result {
            Ok(()) => "stopped".into(),
            Err(e) => e.clone(),
        };
        result
    })
    .map_err(|e| anyhow::anyhow!("starting workers: {e}"))?;

    // Moves the durable output frontier as the workers sync their outputs.
    let durable_shared = shared.clone();
    let mut checkpointer = durable_shared.checkpoints.clone().map(|(root, every)| {
        // An event matters to a restart for its retention, and for the dedup window.
        let keep = args.retention.events.map(|events| events.max(args.dedup_window));
        Checkpointer::new(root, every, keep, restore)
    });
    let mut sweeper = args.archive.as_ref().zip(args.retention.archive).map(|(dir, keep)| Sweeper::new(dir, keep));
    let mut outputs = args.retention.outputs.map(|keep| OutputRetention::new(&out_dir, keep));
    let mut outputs_checked = Instant::now();
    let committer = std::thread::Builder::new().name("durable".into()).spawn(move || {
        let mut complain = crate::throttle::Throttled::every(Duration::from_secs(60));
        while !durable_shared.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if let Some(outputs) = outputs.as_mut().filter(|_| outputs_checked.elapsed() >= OUTPUTS_EVERY) {
                outputs_checked = Instant::now();
                let watermark = durable_shared.handle.progress.watermark.load(Ordering::Relaxed);
                if let Err(e) = outputs.step(watermark, durable_shared.durable.load(Ordering::Relaxed)) {
                    complain.warn(format_args!("expired output segments are not deleted yet: {e:#}"));
                }
            }
            if let Err(e) = make_durable(&durable_shared) {
                tracing::warn!("outputs not made durable yet: {e:#}");
            }
            if let Some(checkpointer) = checkpointer.as_mut() {
                checkpointer.step(&durable_shared);
            }
            if let Some(sweeper) = sweeper.as_mut() {
                sweeper.step(durable_shared.durable.load(Ordering::Relaxed));
            }
        }
    })?;
    // Carries out deletions in this process's files, behind the durable frontier.
    // The archive writes a record within its interval of the record becoming durable: the
    // grace lasts at least two intervals, so none of the user's comes after the scrubbing.
    let archived = args.archive.as_ref().map_or(0, |_| 2 * args.archive_interval);
    let grace = args.retention.deleted_users.max(archived);
    let mut scrubber = crate::scrub::Scrubber::open(&args.data_dir, args.archive.as_deref(), grace)?;
    let scrub_shared = shared.clone();
    let events_retention = args.retention.events;
    let mut expired_checked = Instant::now();
    let scrub = std::thread::Builder::new().name("scrub".into()).spawn(move || {
        let mut complain = crate::throttle::Throttled::every(Duration::from_secs(60));
        let mut forgotten = 0;
        while !scrub_shared.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let applied = crate::live::lock(&scrub_shared.erasures).clone();
            let durable = scrub_shared.cluster_durable();
            let due = applied[forgotten..].partition_point(|(_, at)| *at < durable);
            crate::live::forget_deleted(&scrub_shared, &applied[forgotten..forgotten + due]);
            // A walk over every user's records: not every round.
            if expired_checked.elapsed() >= RECORDS_EVERY {
                expired_checked = Instant::now();
                crate::live::forget_expired(&scrub_shared, events_retention);
            }
            forgotten += due;
            let rewriting = crate::live::lock(&scrub_shared.chain_files);
            let stepped = scrubber.step(&applied, scrub_shared.cluster_durable());
            drop(rewriting);
            match stepped {
                Ok(n) => scrub_shared.scrubbed.store(n as u64, Ordering::Relaxed),
                Err(e) => complain.warn(format_args!("deleted users are not removed from the files yet: {e:#}")),
            }
        }
    })?;
    let mirror_stop = Arc::new(AtomicBool::new(false));
    let mirror = match topic {
        Some((sink, name, held)) => {
            let (view, stop) = (handle.catalog.clone(), mirror_stop.clone());
            let run = move || crate::catalog_topic::mirror(sink, name, held, view, stop);
            Some(std::thread::Builder::new().name("definitions-topic".into()).spawn(run)?)
        }
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let served = runtime.block_on(async {
        let pulse = journeyflow_control_api::pulse::Pulse::start(handle.clone(), wal.clone());
        let state = AppState {
            engine: handle.clone(),
            wal,
            config: Arc::new(args.http.clone()),
            answers: Arc::default(),
            metrics: Some(journeyflow_control_api::metrics::install()?),
            auth: Arc::new(Auth { api_token: args.api_token.clone(), write_keys: args.write_keys.clone() }),
            streams: Arc::new(journeyflow_control_api::streams::Streams::new(args.http.max_streams, pulse)),
        };
        if leader {
            let changes = start_changes(args, &catalog, legacy)?;
            install_at_start(
                &handle,
                changes,
                fresh,
                args.http.change_wait.max(Duration::from_secs(60)),
                &shared.inputs_open,
            )
            .await?;
            if legacy_store.exists() {
                let imported = legacy_store.with_extension("json.imported");
                std::fs::rename(&legacy_store, &imported).context("moving the imported definitions.json away")?;
            }
        } else {
            // Other processes read as soon as process 0 says so (see `listen`).
        }
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let signalled = shutdown_signal().context("installing the SIGINT and SIGTERM handlers")?;
        eprintln!("journeyflow listening on http://{}", listener.local_addr()?);
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
        let stop = shared.clone();
        let progress = handle.progress.clone();
        let stopping = async move {
            // Live streams end with the server (they would hold its shutdown otherwise).
            let _closing = Closing(progress);
            tokio::select! {
                _ = signalled => {}
                // Another process of the cluster is stopping: so does this one.
                _ = stop_requested(&stop) => {}
                exited = exited_rx.recv() => {
                    let (index, why) = exited.unwrap_or((0, "gone".into()));
                    if !(why == "stopped" && stop.stop.load(Ordering::Relaxed)) {
                        let _ = failed_tx.send(exit_error(index, &why, stop.cluster.is_distributed()));
                    }
                }
            }
        };
        let routes = match leader {
            true => router(state),
            false => journeyflow_control_api::peer_router(state),
        };
        let connections = journeyflow_control_api::serve::Connections {
            max: args.http.max_connections,
            header_timeout: args.http.header_timeout,
            drain: args.http.request_timeout,
        };
        journeyflow_control_api::serve::serve(listener, routes, connections, stopping).await.context("serving HTTP")?;
        match failed_rx.await {
            Ok(why) => Err(anyhow::anyhow!(why)),
            Err(_) => Ok(()),
        }
    });
    shared.stop.store(true, Ordering::Relaxed);
    if let Err(e) = served {
        // A failed worker can leave the others waiting on it (and a lost peer process fails
        // every one): do not wait for them.
        std::mem::forget(guards);
        return Err(e);
    }
    for result in guards.join() {
        result.map_err(|e| anyhow::anyhow!("worker failed: {e}"))?.map_err(anyhow::Error::msg)?;
    }
    committer.join().map_err(|_| anyhow::anyhow!("the durable thread panicked"))?;
    scrub.join().map_err(|_| anyhow::anyhow!("the scrub thread panicked"))?;
    make_durable(&shared).context("making the last outputs durable")?;
    mirror_stop.store(true, Ordering::Relaxed);
    if let Some(mirror) = mirror {
        mirror.join().map_err(|_| anyhow::anyhow!("the definitions topic thread panicked"))?;
    }
    // Deliver (or dead-letter) the actions still queued.
    if let Some(webhooks) = &shared.webhooks {
        webhooks.close();
    }
    Ok(())
}

/// The first panic's message in this process (a worker's, or timely's network threads').
static FIRST_PANIC: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Keeps the first panic's message for the error the process exits with. In a cluster, a
/// lost connection to another process (timely's network threads panic with "timely
/// communication error") ends this process at once with that error: timely cannot go on
/// without the peer, and unwinding workers whose channels are poisoned would only abort.
fn remember_panics(distributed: bool) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        if distributed && text.contains("timely communication error") {
            eprintln!("error: {}", exit_error(0, &format!("panicked: {text}"), true));
            std::process::exit(1);
        }
        let _ = FIRST_PANIC.set(text);
        default(info);
    }));
}

/// Why a worker's exit takes the process down, in words an operator can act on.
fn exit_error(index: usize, why: &str, distributed: bool) -> String {
    let cause = match (why, FIRST_PANIC.get()) {
        ("panicked", Some(first)) => format!("panicked: {first}"),
        _ => why.to_string(),
    };
    if distributed && cause.contains("timely communication error") {
        format!(
            "lost the connection to another process of the cluster ({cause}); timely cannot go on \
             without it: restart every process of the cluster, each resumes from its last checkpoint \
             and the committed Kafka offsets"
        )
    } else {
        format!("worker {index} exited: {cause}")
    }
}

/// Tells the live streams that the server is stopping, once dropped.
struct Closing(Arc<journeyflow_control_api::handle::Progress>);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0.stopping.store(true, Ordering::Relaxed);
    }
}

/// Resolves once the workers are asked to stop (by another process of the cluster).
async fn stop_requested(shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Tells the server a worker has exited, however it exits (also when unwinding).
struct ExitNotice {
    index: usize,
    why: String,
    tx: tokio::sync::mpsc::UnboundedSender<(usize, String)>,
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let _ = self.tx.send((self.index, std::mem::take(&mut self.why)));
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: a SIGTERM right after the server said it listens (before the
/// accept loop first looked at the future) killed the process instead of stopping it.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let (mut term, mut interrupt) = {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?)
    };
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = term.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// The actions files the webhooks deliver from: this process's workers' (as far as each is
/// synced), and any a run with more workers left (whole).
fn outboxes(out_dir: &std::path::Path, cluster: &Cluster, synced: &[Arc<AtomicU64>]) -> anyhow::Result<Vec<Outbox>> {
    let path = |w: usize| crate::sinks::output_log(out_dir, "journey_actions", w);
    // Made now, with a first segment (an older single file, or empty): the webhooks start
    // before the workers open them.
    let adopt = |w: usize| crate::sinks::open_output_log(out_dir, "journey_actions", w, u64::MAX).map(drop);
    let ours = cluster.first_worker()..cluster.first_worker() + cluster.workers;
    ours.clone().try_for_each(adopt)?;
    let mut out: Vec<Outbox> =
        ours.clone().zip(synced).map(|(w, s)| Outbox { path: path(w), synced: s.clone() }).collect();
    // Logs of workers a run with more of them left, delivered to their ends.
    let mut w = ours.end;
    while path(w).is_dir() || path(w).with_extension("ndjson").is_file() {
        adopt(w)?;
        let end = journeyflow_connectors::ndjson::log_end(&path(w))?;
        out.push(Outbox { path: path(w), synced: Arc::new(AtomicU64::new(end)) });
        w += 1;
    }
    Ok(out)
}

/// An older version's `definitions.json` (`{"segments": [...], "journeys": {id: entry}}`),
/// if the data directory has one: what of it the control log lacks (drafts, next versions) is
/// imported at start, and the file is then renamed `definitions.json.imported`.
fn read_legacy(path: &std::path::Path) -> anyhow::Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

/// A change to make at start, what it is for the error message if it is refused, and whether
/// it brings over what was accepted before (checked under the hard ceilings, not the limits).
struct StartChange {
    change: Change,
    what: String,
    import: bool,
}

/// The changes that bring the catalog (the control log's fold) to what was given at start: a
/// catalog document of an older version or the definitions topic (what of it is missing), then
/// `--segments` (a segment stored with another definition is an error: change it through the
/// API) and `--journeys` (those not there yet, published). Each is checked here as worker 0
/// will check it, so a mistake stops the start with its reason.
fn start_changes(args: &LiveConfig, catalog: &Catalog, legacy: Option<Value>) -> anyhow::Result<Vec<StartChange>> {
    let mut planned = catalog.clone();
    let mut out = Vec::new();
    let mut plan = |change: Change, what: String, import: bool, planned: &mut Catalog| -> anyhow::Result<()> {
        let limits = if import { Limits::ceiling() } else { args.http.limits };
        planned.check(&change, &limits).map_err(|why| anyhow::anyhow!("{what}: {why}"))?;
        planned.apply(&change, 0);
        out.push(StartChange { change, what, import });
        Ok(())
    };
    if let Some(doc) = legacy {
        let segments = validate_segments_with(&doc["segments"], &BTreeSet::new(), &Limits::ceiling())
            .map_err(|e| anyhow::anyhow!("stored segments: {e}"))?;
        for def in segments {
            if planned.segments.contains_key(&def.id) {
                continue;
            }
            let what = format!("stored segment {:?}", def.id);
            plan(Change::InstallSegment { definition: def.to_json() }, what, true, &mut planned)?;
        }
        let journeys: std::collections::BTreeMap<String, JourneyEntry> =
            serde_json::from_value(doc["journeys"].clone()).context("stored journeys")?;
        for (id, entry) in journeys {
            let what = format!("stored journey {id:?}");
            let definition = entry.definition.clone();
            if !planned.journeys.contains_key(&id) {
                let change = match entry.status.as_str() {
                    status::DRAFT => Change::DraftJourney { definition },
                    _ => Change::InstallJourney { definition, version: entry.version },
                };
                plan(change, what.clone(), true, &mut planned)?;
                let command = match entry.status.as_str() {
                    status::PAUSED => Some(Lifecycle::Pause),
                    status::ENDED => Some(Lifecycle::End),
                    _ => None,
                };
                if let Some(command) = command {
                    plan(Change::JourneyCommand { id: id.clone(), command }, what.clone(), true, &mut planned)?;
                }
            }
            let lacks_next = planned.journeys.get(&id).is_some_and(|e| e.next.is_none() && e.status != status::ENDED);
            if let (Some(next), true) = (entry.next, lacks_next) {
                plan(Change::ReviseJourney { definition: next }, what, true, &mut planned)?;
            }
        }
        let stored = |key: &str| doc.get(key).cloned().unwrap_or_else(|| Value::Array(Vec::new()));
        let funnels = validate_funnels_with(&stored("funnels"), &Limits::ceiling())
            .map_err(|e| anyhow::anyhow!("stored funnels: {e}"))?;
        for def in funnels {
            if !planned.funnels.contains_key(&def.id) {
                let what = format!("stored funnel {:?}", def.id);
                plan(Change::InstallFunnel { definition: def.source }, what, true, &mut planned)?;
            }
        }
        let cohorts = validate_cohorts_with(&stored("cohorts"), &Limits::ceiling())
            .map_err(|e| anyhow::anyhow!("stored cohorts: {e}"))?;
        for def in cohorts {
            if !planned.cohorts.contains_key(&def.id) {
                let what = format!("stored cohort {:?}", def.id);
                plan(Change::InstallCohort { definition: def.source }, what, true, &mut planned)?;
            }
        }
        let paths = validate_paths_with(&stored("paths"), &Limits::ceiling())
            .map_err(|e| anyhow::anyhow!("stored path analyses: {e}"))?;
        for def in paths {
            if !planned.paths.contains_key(&def.id) {
                let what = format!("stored path analysis {:?}", def.id);
                plan(Change::InstallPaths { definition: def.source }, what, true, &mut planned)?;
            }
        }
    }
    if let Some(path) = &args.segments {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for def in parse_segments(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))? {
            match planned.segments.get(&def.id) {
                Some(stored) if *stored != def => anyhow::bail!(
                    "{}: segment {:?} differs from the one in {}; change it through the API",
                    path.display(),
                    def.id,
                    args.data_dir.display()
                ),
                Some(_) => {}
                None => {
                    let what = format!("{}: segment {:?}", path.display(), def.id);
                    plan(Change::InstallSegment { definition: def.to_json() }, what, false, &mut planned)?;
                }
            }
        }
    }
    if let Some(path) = &args.journeys {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let known = planned.segments.keys().cloned().collect();
        let parsed = parse_journeys(&text, &known).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for def in parsed {
            if planned.journeys.contains_key(&def.id) {
                continue;
            }
            let what = format!("{}: journey {:?}", path.display(), def.id);
            plan(Change::InstallJourney { definition: def.source, version: 1 }, what, false, &mut planned)?;
        }
    }
    // The analyses of the files given: each installed unless stored with the same definition.
    let limits = Limits { retention: args.retention.events, ..args.http.limits };
    let mut given: Vec<(&std::path::Path, &str, String, Value, Change)> = Vec::new();
    if let Some(path) = &args.funnels {
        for def in crate::cli::replay::read_funnels(path, &limits)? {
            let change = Change::InstallFunnel { definition: def.source.clone() };
            given.push((path, "funnel", def.id, def.source, change));
        }
    }
    if let Some(path) = &args.cohorts {
        for def in crate::cli::replay::read_cohorts(path, &limits)? {
            let change = Change::InstallCohort { definition: def.source.clone() };
            given.push((path, "cohort", def.id, def.source, change));
        }
    }
    if let Some(path) = &args.paths {
        for def in crate::cli::replay::read_paths(path, &limits)? {
            let change = Change::InstallPaths { definition: def.source.clone() };
            given.push((path, "path analysis", def.id, def.source, change));
        }
    }
    for (path, kind, id, source, change) in given {
        let stored = match kind {
            "funnel" => planned.funnels.get(&id).map(|d| &d.source),
            "cohort" => planned.cohorts.get(&id).map(|d| &d.source),
            _ => planned.paths.get(&id).map(|d| &d.source),
        };
        match stored {
            Some(stored) if *stored != source => anyhow::bail!(
                "{}: {kind} {id:?} differs from the one in {}; change it through the API",
                path.display(),
                args.data_dir.display()
            ),
            Some(_) => {}
            None => plan(change, format!("{}: {kind} {id:?}", path.display()), false, &mut planned)?,
        }
    }
    Ok(out)
}

/// Submits the start changes together before the inputs open (in a fresh data directory, as
/// of time 0, so they see every event), then awaits them.
async fn install_at_start(
    handle: &EngineHandle,
    changes: Vec<StartChange>,
    fresh: bool,
    timeout: Duration,
    inputs_open: &AtomicBool,
) -> anyhow::Result<()> {
    let at = fresh.then_some(0);
    let mut submitted = Vec::with_capacity(changes.len());
    for StartChange { change, what, import } in changes {
        let request = if import { Request::Import(change) } else { Request::Change(change) };
        let pending = loop {
            match handle.submit_at(request.clone(), at) {
                // Worker 0 takes requests while the inputs are closed: wait for room.
                Err(journeyflow_control_api::handle::CallError::Busy) => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                other => break other?,
            }
        };
        submitted.push((what, pending));
    }
    inputs_open.store(true, Ordering::Relaxed);
    for (what, pending) in submitted {
        match pending.wait(timeout).await?.first() {
            Some(Answer::Applied(_)) => {}
            other => anyhow::bail!("{what}: {other:?}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds(changes: &[StartChange]) -> Vec<&'static str> {
        changes
            .iter()
            .map(|c| match &c.change {
                Change::InstallSegment { .. } => "install_segment",
                Change::DraftJourney { .. } => "draft_journey",
                Change::ReviseJourney { .. } => "revise_journey",
                Change::InstallJourney { .. } => "install_journey",
                Change::JourneyCommand { .. } => "journey_command",
                Change::InstallFunnel { .. } => "install_funnel",
                Change::InstallCohort { .. } => "install_cohort",
                Change::InstallPaths { .. } => "install_paths",
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn an_older_definitions_json_brings_what_the_control_log_lacks() {
        let segment = json!({"id": "s", "condition": {"performed": {"event": "X"}}});
        let journey = |name: &str| json!({"id": "j", "name": name, "entry": {"segment_enter": "s"}, "start": "e", "nodes": {"e": {"exit": {}}}});
        let draft = json!({"id": "d", "entry": {"event": "X"}, "start": "e", "nodes": {"e": {"exit": {}}}});
        let doc = json!({"segments": [segment], "journeys": {
            "j": {"definition": journey("v1"), "version": 1, "status": "ongoing", "published_at": 5, "next": journey("v2")},
            "d": {"definition": draft, "version": 1, "status": "draft", "published_at": null}}});
        // The log had the segment and the published journey; drafts and next versions lived
        // only in definitions.json.
        let log = [
            (Change::InstallSegment { definition: segment.clone() }, 1),
            (Change::InstallJourney { definition: journey("v1"), version: 1 }, 5),
        ];
        let (catalog, refused) = Catalog::fold(log.iter().map(|(c, t)| (c, *t)));
        assert!(refused.is_empty());
        let changes = start_changes(&LiveConfig::default(), &catalog, Some(doc.clone())).unwrap();
        assert_eq!(kinds(&changes), ["draft_journey", "revise_journey"]);
        // With no log at all (an even older data directory), everything comes from the file,
        // statuses included.
        let mut paused = doc;
        paused["journeys"]["j"]["status"] = json!("paused");
        let changes = start_changes(&LiveConfig::default(), &Catalog::default(), Some(paused)).unwrap();
        assert_eq!(
            kinds(&changes),
            ["install_segment", "draft_journey", "install_journey", "journey_command", "revise_journey"]
        );
    }

    #[test]
    fn the_definitions_topic_brings_the_analyses_the_log_lacks() {
        let funnel = |id: &str| json!({"id": id, "steps": [{"event": "A"}, {"event": "B"}], "within": "1d"});
        let cohort =
            json!({"id": "c", "first": {"event": "A"}, "return": {"event": "B"}, "period": "1d", "periods": 2});
        let paths = json!({"id": "p", "end": {"event": "B"}, "events": ["A"]});
        let doc = json!({"segments": [], "journeys": {}, "funnels": [funnel("f"), funnel("g")], "cohorts": [cohort], "paths": [paths]});
        let log = [(Change::InstallFunnel { definition: funnel("f") }, 1)];
        let (catalog, _) = Catalog::fold(log.iter().map(|(c, t)| (c, *t)));
        let changes = start_changes(&LiveConfig::default(), &catalog, Some(doc)).unwrap();
        assert_eq!(kinds(&changes), ["install_funnel", "install_cohort", "install_paths"]);
        assert_eq!(changes[0].change.definition(), Some(&funnel("g")));
    }
}
