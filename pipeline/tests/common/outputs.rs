//! Outputs of `journeyflow run` checked against `journeyflow replay` over the same events:
//! records compared whole (ids included), repeats allowed only as exact copies.

use serde_json::Value as J;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The output kinds, as files and topics name them.
pub const KINDS: [&str; 3] = ["segment_changes", "journey_transitions", "journey_actions"];

/// What `journeyflow replay` wrote.
pub struct Replayed {
    /// Its as-of time: outputs are complete through it.
    pub as_of: u64,
    /// Bad records it dead-lettered.
    pub malformed: u64,
    /// Repeated message ids it dropped.
    pub duplicates: u64,
    /// Records (as JSON text) per kind.
    pub records: BTreeMap<&'static str, BTreeSet<String>>,
}

/// `journeyflow replay` of `events` through the sample segments and journeys into `out`.
pub fn replay_command(events: &Path, out: &Path) -> Command {
    let sample = super::repo("datasets/sample");
    let mut command = Command::new(env!("CARGO_BIN_EXE_journeyflow"));
    command
        .arg("replay")
        .arg("--events")
        .arg(events)
        .arg("--segments")
        .arg(sample.join("segments.json"))
        .arg("--journeys")
        .arg(sample.join("journeys.json"))
        .arg("--out")
        .arg(out);
    command
}

/// Replays `events` through the sample segments and journeys into `out`.
pub fn replay(events: &Path, out: &Path) -> Replayed {
    let status = replay_command(events, out).output().unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let summary: J = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let records = KINDS
        .iter()
        .map(|kind| {
            let text = std::fs::read_to_string(out.join(format!("{kind}.ndjson"))).unwrap();
            (*kind, text.lines().map(|l| serde_json::from_str::<J>(l).unwrap().to_string()).collect())
        })
        .collect();
    Replayed {
        as_of: summary["as_of"].as_u64().unwrap(),
        malformed: summary["malformed"].as_u64().unwrap(),
        duplicates: summary["duplicates"].as_u64().unwrap(),
        records,
    }
}

/// Checks that `got` (records of `kind`, repeats allowed) holds exactly the `expected` ones up
/// to `as_of`: none missing, none extra, and an id never stands for two different records.
pub fn assert_union_equals(kind: &str, got: &[J], expected: &BTreeSet<String>, as_of: u64) {
    let mut by_id: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for r in got {
        let id = r["id"].as_str().unwrap_or_else(|| panic!("{kind}: a record without id: {r}"));
        by_id.entry(id).or_default().insert(r.to_string());
    }
    if let Some((id, records)) = by_id.iter().find(|(_, r)| r.len() > 1) {
        panic!("{kind}: id {id} stands for {} different records: {records:?}", records.len());
    }
    let union: BTreeSet<String> =
        got.iter().filter(|r| r["time"].as_u64().unwrap() <= as_of).map(|r| r.to_string()).collect();
    let missing: Vec<&String> = expected.difference(&union).take(3).collect();
    let extra: Vec<&String> = union.difference(expected).take(3).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{kind}: {} records missing, e.g. {missing:?}; {} extra, e.g. {extra:?}",
        expected.difference(&union).count(),
        union.difference(expected).count()
    );
}

/// Waits (up to two minutes) until the run in `dir` made its outputs durable past `time`.
pub fn wait_durable_past(dir: &Path, time: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let durable = std::fs::read_to_string(dir.join("out/flushed.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<J>(&t).ok())
            .and_then(|j| j["time"].as_u64())
            .unwrap_or(0);
        if durable > time {
            return;
        }
        assert!(Instant::now() < deadline, "outputs durable only through {durable}, not past {time}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The archive's rows of `kind` as pyarrow reads them, and DuckDB's count of (rows, distinct
/// ids, days) over the same files.
pub fn read_archive(dir: &Path, kind: &str, scratch: &Path) -> (Vec<J>, (u64, u64, u64)) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/archive_reader.py");
    let out_path = scratch.join(format!("archive-{kind}.ndjson"));
    let out = Command::new(
        std::env::var("JOURNEYFLOW_PYTHON")
            .expect("JOURNEYFLOW_PYTHON names a Python with pyarrow and duckdb (scripts/test.sh)"),
    )
    .arg(script)
    .arg(dir)
    .arg(kind)
    .arg(&out_path)
    .output()
    .unwrap();
    assert!(out.status.success(), "archive_reader.py {kind}: {}", String::from_utf8_lossy(&out.stderr));
    let counts: Vec<u64> =
        String::from_utf8(out.stdout).unwrap().split_whitespace().map(|n| n.parse().unwrap()).collect();
    let rows = std::fs::read_to_string(out_path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (rows, (counts[0], counts[1], counts[2]))
}

/// Every file under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
