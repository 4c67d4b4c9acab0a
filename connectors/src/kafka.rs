//! Kafka through librdkafka (the rdkafka crate): a worker's share of the event topics'
//! partitions, read from given offsets, with offsets committed to the group on request; one
//! idempotent producer for the output and dead-letter topics; and the topic administration
//! journeyflow does at start. Every client gets the same settings, so SASL and TLS options
//! pass through to librdkafka unchanged.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A Kafka error, with what journeyflow was doing.
#[derive(Debug, thiserror::Error)]
#[error("kafka: {what}: {source}")]
pub struct Error {
    what: String,
    source: KafkaError,
}

fn context(what: impl Into<String>) -> impl FnOnce(KafkaError) -> Error {
    let what = what.into();
    move |source| Error { what, source }
}

/// What every client of one deployment shares: the brokers and the librdkafka properties
/// given in the config (`security.protocol`, `sasl.*`, `ssl.*`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// `host:port,...`.
    pub brokers: String,
    /// Passed to librdkafka as they are.
    pub properties: BTreeMap<String, String>,
}

impl Settings {
    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }
}

/// The worker (of `workers`, over every process) that reads a partition: the same everywhere.
/// A topic's partitions go to consecutive workers from one its name picks, so a topic with at
/// least as many partitions as workers keeps every worker reading.
pub fn owner(topic: &str, partition: i32, workers: usize) -> usize {
    let start = xxhash_rust::xxh3::xxh3_64(topic.as_bytes());
    (start.wrapping_add(partition.max(0) as u64) % workers.max(1) as u64) as usize
}

/// The partitions of `topics`, in topic and partition order.
pub fn partitions(settings: &Settings, topics: &[String], timeout: Duration) -> Result<Vec<(String, i32)>, Error> {
    let client: BaseConsumer = settings.config().create().map_err(context("creating a metadata client"))?;
    let mut out = Vec::new();
    for topic in topics {
        let metadata = client.fetch_metadata(Some(topic), timeout).map_err(context(format!("metadata of {topic}")))?;
        for t in metadata.topics() {
            if let Some(e) = t.error() {
                return Err(Error { what: format!("topic {topic}"), source: KafkaError::MetadataFetch(e.into()) });
            }
            let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            out.extend(ids.into_iter().map(|p| (topic.clone(), p)));
        }
    }
    Ok(out)
}

/// The offsets a partition holds: `(low, high)`; the next message gets `high`.
pub fn watermarks(settings: &Settings, topic: &str, partition: i32, timeout: Duration) -> Result<(i64, i64), Error> {
    let client: BaseConsumer = settings.config().create().map_err(context("creating a metadata client"))?;
    client.fetch_watermarks(topic, partition, timeout).map_err(context(format!("offsets of {topic}/{partition}")))
}

/// A topic journeyflow writes.
#[derive(Clone, Debug)]
pub struct TopicSpec {
    /// Name.
    pub name: String,
    /// Partitions.
    pub partitions: i32,
    /// Keep only the latest record per key (`cleanup.policy=compact`).
    pub compacted: bool,
}

/// Creates the topics that do not exist yet.
pub fn ensure_topics(settings: &Settings, topics: &[TopicSpec]) -> Result<(), Error> {
    let admin: AdminClient<_> = settings.config().create().map_err(context("creating an admin client"))?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            let topic = NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(1));
            if t.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results =
        futures_executor::block_on(admin.create_topics(&new, &options)).map_err(context("creating topics"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error { what: format!("creating topic {name}"), source: KafkaError::AdminOp(code) })
            }
        }
    }
    Ok(())
}

/// What librdkafka's statistics last said of each `(topic, partition)`: its high offset and
/// the offset the application read up to, at the same moment (when known).
#[derive(Default)]
struct Highs(Mutex<HashMap<(String, i32), Snapshot>>);

/// A partition's high offset, and the offset read up to (when known), at one moment.
type Snapshot = (i64, Option<i64>);

/// The consumer's context: keeps the high offsets its statistics report.
struct SourceContext {
    highs: Arc<Highs>,
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // Reaching a partition's end is how the source learns it has caught up.
        if !matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::error!("kafka: {error}: {reason}");
        }
    }

    fn stats(&self, statistics: Statistics) {
        let mut highs = self.highs.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (name, topic) in statistics.topics {
            for (id, p) in topic.partitions {
                if id >= 0 && p.hi_offset >= 0 {
                    highs.insert((name.clone(), id), (p.hi_offset, (p.app_offset >= 0).then_some(p.app_offset)));
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {}

/// One partition as a source reads it.
#[derive(Clone, Debug)]
pub struct PartitionState {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The offset of the next message to read.
    pub next: i64,
    /// Since when the partition has been read to its end (and nothing came since).
    pub at_end: Option<Instant>,
}

/// One message read.
pub struct Received<'a> {
    /// Index of the partition in [`Source::partitions`].
    pub part: usize,
    /// Offset.
    pub offset: i64,
    /// Key, if any.
    pub key: Option<&'a [u8]>,
    /// Payload, if any.
    pub payload: Option<&'a [u8]>,
    /// The message's timestamp (epoch ms: the producer's, or the broker's append time), if it
    /// has one.
    pub timestamp: Option<u64>,
}

/// How many offsets before its origin a partition is fetched from, the messages before the
/// origin dropped here. A broker may answer a fetch from the middle of a producer's batch with
/// the batches that start at or after that offset (tansu 0.6 does), silently skipping the
/// rest of the batch; fetching from before the batch and dropping what comes before the
/// origin reads every message. Producer batches hold fewer messages than this.
const REWIND: i64 = 16_384;

/// A worker's share of the event topics.
pub struct Source {
    consumer: BaseConsumer<SourceContext>,
    parts: Vec<PartitionState>,
    highs: Arc<Highs>,
    /// Consumer errors seen, and when one was last reported.
    errors: u64,
    reported: Option<Instant>,
}

impl Source {
    /// Reads `assigned` partitions, each from its offset, as member of `group` (which offsets
    /// are committed to). librdkafka fetches ahead at most `in_flight_bytes` in all: when the
    /// worker falls behind, fetching pauses.
    pub fn open(
        settings: &Settings,
        group: &str,
        assigned: &[(String, i32, i64)],
        in_flight_bytes: usize,
    ) -> Result<Source, Error> {
        let highs = Arc::new(Highs::default());
        let per_partition_kb = (in_flight_bytes / assigned.len().max(1) / 1024).max(64);
        let consumer: BaseConsumer<SourceContext> = settings
            .config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            // A rewound offset before the log's start reads from its start, not its end.
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "1000")
            .set("queued.max.messages.kbytes", per_partition_kb.to_string())
            .set("fetch.max.bytes", (per_partition_kb * 1024).min(52_428_800).to_string())
            .create_with_context(SourceContext { highs: highs.clone() })
            .map_err(context("creating a consumer"))?;
        let mut list = TopicPartitionList::new();
        for (topic, partition, offset) in assigned {
            list.add_partition_offset(topic, *partition, Offset::Offset(offset.saturating_sub(REWIND).max(0)))
                .map_err(context(format!("assigning {topic}/{partition}")))?;
        }
        consumer.assign(&list).map_err(context("assigning partitions"))?;
        let parts: Vec<PartitionState> = assigned
            .iter()
            .map(|(topic, partition, offset)| PartitionState {
                topic: topic.clone(),
                partition: *partition,
                next: *offset,
                at_end: None,
            })
            .collect();
        Ok(Source { consumer, parts, highs, errors: 0, reported: None })
    }

    /// The partitions read, in the order given to `open`.
    pub fn partitions(&self) -> &[PartitionState] {
        &self.parts
    }

    /// Reads up to `max` messages (without waiting), handing each to `f`; returns how many.
    pub fn poll(&mut self, max: usize, mut f: impl FnMut(Received<'_>)) -> Result<usize, Error> {
        let mut n = 0;
        while n < max {
            match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(message)) => {
                    let (topic, partition) = (message.topic(), message.partition());
                    let Some(part) = self.parts.iter().position(|p| p.partition == partition && p.topic == topic)
                    else {
                        continue;
                    };
                    let state = &mut self.parts[part];
                    if message.offset() < state.next {
                        // Fetched again from before the origin (see REWIND), or a repeat.
                        continue;
                    }
                    state.next = message.offset() + 1;
                    state.at_end = None;
                    n += 1;
                    let timestamp = message.timestamp().to_millis().and_then(|t| u64::try_from(t).ok());
                    let (key, payload) = (message.key(), message.payload());
                    f(Received { part, offset: message.offset(), key, payload, timestamp });
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    // The error names only the partition: mark every topic's partition with
                    // that number that has nothing more to read.
                    let highs = self.highs.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    for p in self.parts.iter_mut().filter(|p| p.partition == partition && p.at_end.is_none()) {
                        let high = highs.get(&(p.topic.clone(), p.partition)).map(|h| h.0);
                        if high.is_none_or(|h| p.next >= h) {
                            p.at_end = Some(Instant::now());
                        }
                    }
                }
                // librdkafka reconnects and refetches by itself: a consumer error (a broker
                // gone, a timeout) is reported and reading goes on from where it was.
                Some(Err(e)) => {
                    self.errors += 1;
                    if self.reported.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!("kafka: reading: {e} ({} error(s) so far); retrying", self.errors);
                        self.reported = Some(Instant::now());
                    }
                    metrics::counter!("journeyflow_kafka_consumer_errors_total").increment(1);
                    break;
                }
            }
        }
        Ok(n)
    }

    /// Messages not read yet in a partition, as of librdkafka's last statistics (high offset
    /// and read position of one moment, at most a second old).
    pub fn lag(&self, part: usize) -> Option<i64> {
        let p = &self.parts[part];
        let (high, read) = *self
            .highs
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(p.topic.clone(), p.partition))?;
        Some((high - read.unwrap_or(p.next)).max(0))
    }

    /// Commits `(partition index, next offset)` pairs to the group (waiting for the broker's
    /// answer when `wait`).
    pub fn commit(&self, offsets: &[(usize, i64)], wait: bool) -> Result<(), Error> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for (part, offset) in offsets {
            let p = &self.parts[*part];
            list.add_partition_offset(&p.topic, p.partition, Offset::Offset(*offset)).map_err(context("committing"))?;
        }
        let mode = if wait { CommitMode::Sync } else { CommitMode::Async };
        self.consumer.commit(&list, mode).map_err(context("committing offsets"))
    }
}

/// A record's key and value (`None`: a tombstone).
pub type KeyValue = (Vec<u8>, Option<Vec<u8>>);

/// Every record of `topic` from its start to its end: `(key, value)`, a `None` value for a
/// tombstone.
pub fn read_topic(settings: &Settings, topic: &str, timeout: Duration) -> Result<Vec<KeyValue>, Error> {
    let parts = partitions(settings, &[topic.to_string()], timeout)?;
    let assigned: Vec<(String, i32, i64)> = parts
        .iter()
        .map(|(t, p)| Ok((t.clone(), *p, watermarks(settings, t, *p, timeout)?.0)))
        .collect::<Result<_, Error>>()?;
    let mut source = Source::open(settings, &format!("journeyflow-reader-{topic}"), &assigned, 1 << 20)?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while source.partitions().iter().any(|p| p.at_end.is_none()) {
        if Instant::now() > deadline {
            return Err(Error { what: format!("reading {topic} to its end"), source: KafkaError::Canceled });
        }
        let n =
            source.poll(10_000, |m| out.push((m.key.unwrap_or_default().to_vec(), m.payload.map(<[u8]>::to_vec))))?;
        if n == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(out)
}

/// A record to send again: its delivery failed.
struct Failed {
    topic: String,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    error: String,
}

/// Keeps what failed to be delivered, to send it again.
struct DeliveryContext {
    failed: Arc<Mutex<Vec<Failed>>>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, message)) = result {
            use rdkafka::message::Headers;
            let headers = message
                .headers()
                .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
                .unwrap_or_default();
            let failed = Failed {
                topic: message.topic().to_string(),
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().map(<[u8]>::to_vec),
                headers,
                error: e.to_string(),
            };
            metrics::counter!("journeyflow_kafka_delivery_failures_total").increment(1);
            self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(failed);
        }
    }
}

/// The producer for every topic journeyflow writes: idempotent, acknowledged by all
/// in-sync replicas, so a retried send is written once. A record whose delivery fails for
/// good (librdkafka gave up retrying) is kept and sent again at the next flush, and the flush
/// fails until every record is delivered: callers never count a record as written that is not.
/// A record sent again lands after later records of its key: consumers order by its `time`
/// and drop repeats by its `id`.
pub struct Sink {
    producer: ThreadedProducer<DeliveryContext>,
    failed: Arc<Mutex<Vec<Failed>>>,
    /// One flush at a time (the durable thread and the definitions topic's share the
    /// producer): a flush must see the records another one took to send again.
    flushing: Mutex<()>,
}

impl Sink {
    /// A producer with the deployment's settings.
    pub fn new(settings: &Settings) -> Result<Sink, Error> {
        let failed = Arc::new(Mutex::new(Vec::new()));
        let producer = settings
            .config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .create_with_context(DeliveryContext { failed: failed.clone() })
            .map_err(context("creating a producer"))?;
        Ok(Sink { producer, failed, flushing: Mutex::new(()) })
    }

    /// Queues a record; while librdkafka's queue is full, waits for it to drain
    /// (backpressure on whoever writes).
    pub fn send(&self, topic: &str, key: &[u8], payload: &[u8], headers: &[(&str, &[u8])]) -> Result<(), Error> {
        self.send_record(topic, Some(key), Some(payload), headers, None)
    }

    /// Queues a record, waiting while librdkafka's queue is full (until `deadline`, if any).
    fn send_record(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: &[(&str, &[u8])],
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            owned = owned.insert(Header { key: k, value: Some(*v) });
        }
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).headers(owned);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let full = KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull);
                        return Err(Error { what: format!("sending to {topic}"), source: full });
                    }
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(Error { what: format!("sending to {topic}"), source: e }),
            }
        }
    }

    /// Queues a record whose value may be null (a tombstone, in a compacted topic), and waits
    /// until it is acknowledged.
    pub fn put(&self, topic: &str, key: &[u8], value: Option<&[u8]>) -> Result<(), Error> {
        self.send_record(topic, Some(key), value, &[], None)?;
        self.flush(Duration::from_secs(30))
    }

    /// Waits until every record queued so far is acknowledged, sending again those whose
    /// delivery failed; an error while some are still not delivered when `timeout` is up (they
    /// are kept for the next flush).
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        let _one = self.flushing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            self.producer.flush(left).map_err(context("flushing"))?;
            let failed = std::mem::take(&mut *self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
            if failed.is_empty() {
                return Ok(());
            }
            let last = failed.last().map(|f| f.error.clone()).unwrap_or_default();
            let count = failed.len();
            let mut unqueued = Vec::new();
            for f in failed {
                let headers: Vec<(&str, &[u8])> = f.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
                let sent = self.send_record(&f.topic, f.key.as_deref(), f.payload.as_deref(), &headers, Some(deadline));
                if let Err(e) = sent {
                    tracing::warn!("kafka: a record to {} could not be queued again: {e}", f.topic);
                    unqueued.push(f);
                }
            }
            // Kept for the next flush: nothing is dropped.
            self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(unqueued);
            if Instant::now() >= deadline {
                return Err(Error {
                    what: format!("{count} record(s) not delivered yet (sent again; last error: {last})"),
                    source: KafkaError::MessageProduction(RDKafkaErrorCode::Fail),
                });
            }
            std::thread::sleep(Duration::from_millis(100).min(left));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_that_cannot_be_delivered_keeps_every_flush_failing() {
        // A broker address nothing listens on, and librdkafka giving up on a record quickly.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let settings = Settings {
            brokers: format!("127.0.0.1:{port}"),
            properties: BTreeMap::from([("message.timeout.ms".to_string(), "300".to_string())]),
        };
        let sink = Sink::new(&settings).unwrap();
        sink.send("t", b"k", b"v", &[("h", b"1")]).unwrap();
        assert!(sink.flush(Duration::from_secs(2)).is_err(), "not delivered");
        // Sent again, still not delivered: a later flush must not count it as written.
        assert!(sink.flush(Duration::from_secs(2)).is_err(), "still not delivered");
        let kept = sink.failed.lock().unwrap();
        assert!(kept.len() <= 1, "{} copies kept", kept.len());
    }
}
