//! A worker's Kafka partitions as event input: decodes messages into events, sends malformed
//! ones to the dead-letter topic (the reason in header `journeyflow.error`, where it was read
//! in `journeyflow.source`; one over the size limit by reference, its value cut to 1 KiB),
//! remembers which offsets are covered once outputs before a time are durable, commits those
//! to the group, and publishes each partition's lag. The message's timestamp is its receive
//! time for the future-skew check.

use crate::config::KafkaConfig;
use crate::entry::Entry;
use journeyflow_connectors::kafka::{owner, Sink, Source};
use journeyflow_control_api::handle::Progress;
use journeyflow_operators::Time;
use journeyflow_types::time::now_ms;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Where each partition of the event topics is read from: `(topic, partition) -> offset`.
pub type Origins = BTreeMap<(String, i32), i64>;

/// One worker's share of the event topics.
pub struct KafkaInput {
    source: Source,
    sink: Arc<Sink>,
    dead_letter: String,
    /// Index of this input's first partition among the worker's watermarks.
    base: usize,
    /// Per partition: `(offset, largest time entered up to it)`, kept when that time grows.
    times: Vec<VecDeque<(i64, Time)>>,
    /// Per partition: the offset last committed.
    committed: Vec<i64>,
    /// A message over this many bytes is dead-lettered by reference.
    max_message_bytes: usize,
    /// Dead letters that could not be queued, reported at most every few seconds.
    complain: crate::throttle::Throttled,
}

/// A dead letter's value up to this size is sent whole; a larger one is cut to `CUT` bytes.
const WHOLE: usize = 64 << 10;
const CUT: usize = 1 << 10;

/// A malformed message on its way to the dead-letter topic.
struct DeadLetter {
    reason: String,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    /// `topic/partition/offset`.
    at: String,
}

impl KafkaInput {
    /// The partitions worker `index` of `peers` reads, each from its origin; `None` when it
    /// reads none. Its partitions are watermarks `base..` of the worker.
    pub fn open(
        config: &KafkaConfig,
        origins: &Origins,
        index: usize,
        peers: usize,
        sink: Arc<Sink>,
        base: usize,
    ) -> anyhow::Result<Option<KafkaInput>> {
        let assigned: Vec<(String, i32, i64)> = origins
            .iter()
            .filter(|((topic, partition), _)| owner(topic, *partition, peers) == index)
            .map(|((topic, partition), offset)| (topic.clone(), *partition, *offset))
            .collect();
        if assigned.is_empty() {
            return Ok(None);
        }
        // This worker's share of the process's fetch budget.
        let budget = config.max_in_flight_bytes / peers.max(1);
        let source = Source::open(&config.settings, &config.group, &assigned, budget)?;
        let committed = assigned.iter().map(|a| a.2).collect();
        Ok(Some(KafkaInput {
            source,
            sink,
            dead_letter: config.dead_letter.clone(),
            base,
            times: vec![VecDeque::new(); assigned.len()],
            committed,
            max_message_bytes: config.max_message_bytes,
            complain: crate::throttle::Throttled::every(std::time::Duration::from_secs(10)),
        }))
    }

    /// How many partitions this input reads.
    pub fn len(&self) -> usize {
        self.source.partitions().len()
    }

    /// Whether it reads none (never: `open` gives `None` then).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads up to `max` messages into the worker; malformed ones go to the dead-letter topic.
    pub fn read(&mut self, max: usize, entry: &mut Entry<'_>) -> anyhow::Result<u64> {
        let mut read = 0;
        let mut dead: Vec<DeadLetter> = Vec::new();
        let mut failed = None;
        let (base, times) = (self.base, &mut self.times);
        let parts = self.source.partitions().to_vec();
        let limit = self.max_message_bytes;
        self.source.poll(max, |m| {
            read += 1;
            let payload = m.payload.unwrap_or_default();
            let p = &parts[m.part];
            let at = || format!("{}/{}/{}", p.topic, p.partition, m.offset);
            if payload.len() > limit {
                let reason = format!("a message of {} bytes exceeds the limit of {limit} bytes", payload.len());
                dead.push(DeadLetter { reason, key: m.key.map(<[u8]>::to_vec), payload: payload.to_vec(), at: at() });
                return;
            }
            // The broker's word (the message's timestamp), else now: never the payload's.
            match entry.enter(base + m.part, payload, Some(m.timestamp.unwrap_or_else(now_ms))) {
                Ok(Ok(Some(time))) => {
                    let kept = &mut times[m.part];
                    if kept.back().is_none_or(|(_, t)| time > *t) {
                        kept.push_back((m.offset, time));
                    }
                }
                Ok(Ok(None)) => {}
                Ok(Err(reason)) => {
                    dead.push(DeadLetter {
                        reason,
                        key: m.key.map(<[u8]>::to_vec),
                        payload: payload.to_vec(),
                        at: at(),
                    });
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        for DeadLetter { reason, key, payload, at } in dead {
            entry.progress.dead_letters.fetch_add(1, Ordering::Relaxed);
            let key = key.unwrap_or_default();
            let size = payload.len().to_string();
            let (value, cut) = match payload.len() > WHOLE {
                true => (&payload[..CUT], "true"),
                false => (&payload[..], "false"),
            };
            let headers = [
                ("journeyflow.error", reason.as_bytes()),
                ("journeyflow.source", at.as_bytes()),
                ("journeyflow.size", size.as_bytes()),
                ("journeyflow.truncated", cut.as_bytes()),
            ];
            // A dead letter that cannot be queued is reported (where it came from, not what it
            // holds: a reason may quote the record), not a reason to stop reading.
            if let Err(e) = self.sink.send(&self.dead_letter, &key, value, &headers) {
                self.complain.warn(format_args!("dead letter of {at} not sent: {e}"));
            }
        }
        let now = std::time::Instant::now();
        for (i, p) in self.source.partitions().iter().enumerate() {
            entry.marks.at_end(base + i, p.at_end.map(|t| t.min(now)));
        }
        Ok(read)
    }

    /// Each partition's name among the worker's partitions (`kafka/<topic>/<p>`), and where
    /// it stands: `(topic, partition, next offset)`.
    pub fn positions(&self) -> Vec<(String, (String, i32, i64))> {
        self.source
            .partitions()
            .iter()
            .map(|p| (format!("kafka/{}/{}", p.topic, p.partition), (p.topic.clone(), p.partition, p.next)))
            .collect()
    }

    /// Commits, per partition, the offsets below the first message whose outputs may come at
    /// or after `durable` (every output before `durable` is in every sink); `last`: the
    /// worker stops, so wait for the broker's answer.
    pub fn commit(&mut self, durable: Time, last: bool) -> anyhow::Result<()> {
        let mut offsets = Vec::new();
        for (i, p) in self.source.partitions().iter().enumerate() {
            let kept = &mut self.times[i];
            while kept.front().is_some_and(|(_, t)| *t < durable) {
                kept.pop_front();
            }
            let upto = kept.front().map_or(p.next, |(offset, _)| *offset);
            if upto > self.committed[i] {
                self.committed[i] = upto;
                offsets.push((i, upto));
            }
        }
        self.source.commit(&offsets, last)?;
        Ok(())
    }

    /// Publishes each partition's lag (messages not read yet).
    pub fn publish_lag(&self, progress: &Progress) {
        let mut lags = progress.kafka_lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (i, p) in self.source.partitions().iter().enumerate() {
            if let Some(lag) = self.source.lag(i) {
                lags.insert((p.topic.clone(), p.partition), lag);
            }
        }
    }
}

/// Creates the output topics (and the compacted definitions topic) that do not exist, and returns where each event partition is
/// read from: the first start resolves the start position to offsets and stores them in
/// `dir/origins.json`; later starts read from there again (partitions added since, from their
/// earliest offset), so a restart rebuilds the same state.
pub fn prepare(config: &KafkaConfig, dir: &std::path::Path) -> anyhow::Result<Origins> {
    use journeyflow_connectors::kafka::{ensure_topics, partitions, watermarks, TopicSpec};
    let timeout = std::time::Duration::from_secs(30);
    let outputs = [&config.segment_changes, &config.journey_transitions, &config.journey_actions, &config.dead_letter];
    let mut specs: Vec<TopicSpec> = outputs
        .iter()
        .map(|name| TopicSpec { name: name.to_string(), partitions: config.output_partitions, compacted: false })
        .collect();
    specs.push(TopicSpec { name: config.definitions.clone(), partitions: 1, compacted: true });
    ensure_topics(&config.settings, &specs)?;
    let path = dir.join("origins.json");
    let mut stored: Vec<(String, i32, i64)> = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    };
    let first = stored.is_empty();
    let mut origins: Origins = stored.iter().map(|(t, p, o)| ((t.clone(), *p), *o)).collect();
    let mut added = false;
    for (topic, partition) in partitions(&config.settings, &config.topics, timeout)? {
        if origins.contains_key(&(topic.clone(), partition)) {
            continue;
        }
        let (low, high) = watermarks(&config.settings, &topic, partition, timeout)?;
        let offset = if first && config.start == crate::config::StartPosition::Latest { high } else { low };
        origins.insert((topic.clone(), partition), offset);
        stored.push((topic, partition, offset));
        added = true;
    }
    if origins.is_empty() {
        anyhow::bail!("the Kafka topics {:?} have no partitions", config.topics);
    }
    if added {
        std::fs::create_dir_all(dir)?;
        journeyflow_connectors::files::write_atomic(&path, &serde_json::to_vec_pretty(&stored)?)?;
    }
    Ok(origins)
}
