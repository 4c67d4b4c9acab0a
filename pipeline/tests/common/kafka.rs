//! Kafka for the tests: the broker `scripts/test.sh` starts (tansu, its address in
//! `JOURNEYFLOW_TEST_KAFKA`), confluent-kafka from Python as the outside client, topic names
//! of their own per test, and `journeyflow run` configured to read and write them.

use super::server::Server;
use serde_json::Value as J;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn broker() -> String {
    std::env::var("JOURNEYFLOW_TEST_KAFKA")
        .expect("JOURNEYFLOW_TEST_KAFKA names a Kafka-protocol broker (scripts/test.sh starts tansu)")
}

pub fn python() -> String {
    std::env::var("JOURNEYFLOW_PYTHON")
        .expect("JOURNEYFLOW_PYTHON names a Python with confluent-kafka (scripts/test.sh)")
}

/// A name no other test (or earlier run against the same broker) uses.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

pub fn client(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/kafka_client.py");
    let out = Command::new(python()).arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "kafka_client.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Produces the lines of `file` to a new topic of `partitions` partitions, keyed by user id.
pub fn produce(topic: &str, partitions: usize, file: &Path) -> u64 {
    client(&["produce", &broker(), topic, &partitions.to_string(), file.to_str().unwrap()]).trim().parse().unwrap()
}

/// Every record of `topic`: `{"key", "value", "headers"}`.
pub fn consume(topic: &str, scratch: &Path) -> Vec<J> {
    let out = scratch.join(format!("{topic}.ndjson"));
    client(&["consume", &broker(), topic, out.to_str().unwrap()]);
    std::fs::read_to_string(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The topic names of one test.
pub struct Topics {
    pub events: String,
    pub prefix: String,
}

impl Topics {
    pub fn new(test: &str) -> Topics {
        let prefix = unique(test);
        Topics { events: format!("{prefix}.events"), prefix }
    }

    pub fn output(&self, kind: &str) -> String {
        format!("{}.{kind}", self.prefix)
    }
}

/// A config file reading `topics.events` and writing the test's own output topics.
pub fn config(dir: &Path, topics: &Topics) -> PathBuf {
    let path = dir.join("journeyflow.toml");
    let text = format!(
        "[kafka]\nbrokers = \"{}\"\ntopics = [\"{}\"]\ngroup = \"{}\"\nsegment_changes_topic = \"{}\"\n\
         journey_transitions_topic = \"{}\"\njourney_actions_topic = \"{}\"\ndead_letter_topic = \"{}\"\n\
         definitions_topic = \"{}\"\noutput_partitions = 2\n[ingest]\nallowed_lateness = \"1m\"\n",
        broker(),
        topics.events,
        topics.prefix,
        topics.output("segment_changes"),
        topics.output("journey_transitions"),
        topics.output("journey_actions"),
        topics.output("dead_letter"),
        topics.output("definitions"),
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub fn start(workers: usize, data: &Path, config: &Path) -> Server {
    start_with(workers, data, config, &[])
}

pub fn start_with(workers: usize, data: &Path, config: &Path, extra: &[&str]) -> Server {
    let sample = super::repo("datasets/sample");
    let (segments, journeys) = (sample.join("segments.json"), sample.join("journeys.json"));
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--segments",
        segments.to_str().unwrap(),
        "--journeys",
        journeys.to_str().unwrap(),
    ];
    Server::start_with(workers, data, &[&args[..], extra].concat())
}

/// Events the run has read so far (from `/metrics`).
pub fn processed(server: &Server) -> u64 {
    let text = reqwest::blocking::get(server.url("/metrics")).and_then(|r| r.text()).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("journeyflow_events_processed "))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}
