//! Shared test harness: runs the engine over in-memory lines with a chosen split into
//! workers and batches, and compares its change log with the reference evaluator at
//! every time where either could change.

#![allow(dead_code)]

pub mod funnels;
pub mod journey_gen;
pub mod journey_reference;
pub mod kafka;
pub mod outputs;
pub mod reference;
pub mod scenario;
pub mod server;
pub mod sse;
pub mod webhook;

use journeyflow::admission::{IngestConfig, LatePolicy};
use journeyflow::cluster::Cluster;
use journeyflow::replay::{run, Change, JourneyEntries, Progress, RunConfig, RunOutput, SourceItem};
use journeyflow_connectors::ndjson::RawRecord;
use journeyflow_operators::journey::plan::JourneyPlan;
use journeyflow_operators::journey::record::Command;
use journeyflow_types::{parse_journeys, parse_segments};
use serde_json::Value as J;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// How input lines reach the workers.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Worker threads.
    pub workers: usize,
    /// For each line (in arrival order), the worker that reads it.
    pub worker_of: Vec<usize>,
    /// For each line, whether a batch boundary follows it on its worker.
    pub boundary_after: Vec<bool>,
}

impl Plan {
    /// One worker, one batch per `batch` lines.
    pub fn simple(lines: usize, workers: usize, batch: usize) -> Plan {
        Plan {
            workers,
            worker_of: (0..lines).map(|i| i % workers).collect(),
            boundary_after: (0..lines).map(|i| (i + 1) % batch == 0).collect(),
        }
    }
}

/// Runs the engine for definitions (JSON text) over lines.
pub fn run_lines(defs: &str, lines: &[String], plan: &Plan, ingest: IngestConfig, as_of: Option<u64>) -> RunOutput {
    run_journeys(defs, "[]", &[], lines, plan, ingest, as_of)
}

/// Runs segments and journeys (JSON text) with lifecycle commands `(time, journey index, command)`.
pub fn run_journeys(
    defs: &str,
    journeys: &str,
    commands: &[(u64, u32, Command)],
    lines: &[String],
    plan: &Plan,
    ingest: IngestConfig,
    as_of: Option<u64>,
) -> RunOutput {
    run_deleting(defs, journeys, commands, &[], lines, plan, ingest, as_of)
}

/// As `run_journeys`, deleting users `(time, user id)`.
#[allow(clippy::too_many_arguments)]
pub fn run_deleting(
    defs: &str,
    journeys: &str,
    commands: &[(u64, u32, Command)],
    deletions: &[(u64, String)],
    lines: &[String],
    plan: &Plan,
    ingest: IngestConfig,
    as_of: Option<u64>,
) -> RunOutput {
    let snapshots = Snapshots::default();
    run_snapshotting(defs, journeys, commands, deletions, &[], lines, plan, ingest, as_of, snapshots)
}

/// As `run_journeys`, with entries from outside.
#[allow(clippy::too_many_arguments)]
pub fn run_entering(
    defs: &str,
    journeys: &str,
    commands: &[(u64, u32, Command)],
    entries: &[JourneyEntries],
    lines: &[String],
    plan: &Plan,
    ingest: IngestConfig,
    as_of: Option<u64>,
) -> RunOutput {
    run_snapshotting(defs, journeys, commands, &[], entries, lines, plan, ingest, as_of, Snapshots::default())
}

/// Journey snapshots for a run to take (under `.0`, as of `.1`) and to start from.
#[derive(Clone, Debug, Default)]
pub struct Snapshots {
    /// Take one.
    pub take: Option<(std::path::PathBuf, u64)>,
    /// Start from one.
    pub restore: Option<(std::path::PathBuf, journeyflow::journey_snapshot::SnapshotRef)>,
}

/// As `run_deleting`, taking or starting from journey snapshots.
#[allow(clippy::too_many_arguments)]
pub fn run_snapshotting(
    defs: &str,
    journeys: &str,
    commands: &[(u64, u32, Command)],
    deletions: &[(u64, String)],
    entries: &[JourneyEntries],
    lines: &[String],
    plan: &Plan,
    ingest: IngestConfig,
    as_of: Option<u64>,
    snapshots: Snapshots,
) -> RunOutput {
    let defs = parse_segments(defs).expect("valid definitions");
    let known = defs.iter().map(|d| d.id.clone()).collect();
    let plans: Vec<JourneyPlan> = parse_journeys(journeys, &known)
        .unwrap_or_else(|e| panic!("invalid journeys: {e}\n{journeys}"))
        .into_iter()
        .map(|j| JourneyPlan::new(j, 1))
        .collect();
    let parts = parts(lines, plan);
    let config = RunConfig {
        cluster: Cluster::single(plan.workers),
        ingest,
        as_of,
        max_record_bytes: 1 << 20,
        commands: commands.to_vec(),
        deletions: deletions.iter().map(|(t, u)| (*t, journeyflow_types::Key::of(u))).collect(),
        entries: entries.to_vec(),
        max_future_skew: 3_600_000,
        snapshot: snapshots.take,
        restore_journeys: snapshots.restore,
        analyses: Vec::new(),
        reports: Vec::new(),
    };
    run(defs, plans, config, Arc::new(Progress::default()), move |index, _| {
        Ok(parts[index].clone().into_iter().map(Ok))
    })
    .expect("run succeeds")
}

/// Each worker's share of `lines` as `plan` splits and batches them.
pub fn parts(lines: &[String], plan: &Plan) -> Arc<Vec<Vec<SourceItem>>> {
    let mut parts: Vec<Vec<SourceItem>> = vec![Vec::new(); plan.workers];
    let mut offset = 0;
    for (i, line) in lines.iter().enumerate() {
        let w = plan.worker_of[i];
        parts[w].push(SourceItem::Record(RawRecord::Line {
            line: Some(i as u64 + 1),
            offset,
            bytes: line.as_bytes().to_vec(),
        }));
        offset += line.len() as u64 + 1;
        if plan.boundary_after[i] {
            parts[w].push(SourceItem::EndOfBatch);
        }
    }
    Arc::new(parts)
}

/// Runs analyses (no segments, no journeys) over lines and makes the reports asked:
/// `(as of, analysis index, range)`.
pub fn run_analyses(
    analyses: &[journeyflow::analysis::Analysis],
    reports: &[(u64, u32, journeyflow_control_api::buckets::Buckets)],
    lines: &[String],
    plan: &Plan,
    ingest: IngestConfig,
) -> RunOutput {
    let parts = parts(lines, plan);
    let config = RunConfig {
        cluster: Cluster::single(plan.workers),
        ingest,
        as_of: None,
        max_record_bytes: 1 << 20,
        commands: Vec::new(),
        deletions: Vec::new(),
        entries: Vec::new(),
        max_future_skew: 3_600_000,
        snapshot: None,
        restore_journeys: None,
        analyses: analyses.to_vec(),
        reports: reports.to_vec(),
    };
    run(Vec::new(), Vec::new(), config, Arc::new(Progress::default()), move |index, _| {
        Ok(parts[index].clone().into_iter().map(Ok))
    })
    .expect("run succeeds")
}

/// A path in the repository.
pub fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Every line the ingest log under `data` (a run's data directory) still holds: each
/// partition's segments in offset order, partitions in turn.
pub fn ingest_log(data: &std::path::Path) -> String {
    let mut text = String::new();
    for p in (0..).take_while(|p| data.join(format!("ingest/part-{p}")).is_dir()) {
        let part = data.join(format!("ingest/part-{p}"));
        let mut segments: Vec<std::path::PathBuf> =
            std::fs::read_dir(&part).unwrap().map(|e| e.unwrap().path()).collect();
        segments.sort();
        for segment in segments {
            text.push_str(&std::fs::read_to_string(segment).unwrap());
        }
    }
    text
}

/// A lifecycle command as the reference interpreter names it.
pub fn command_name(c: Command) -> &'static str {
    match c {
        Command::Publish => "publish",
        Command::Pause => "pause",
        Command::Resume => "resume",
        Command::End => "end",
        Command::Retire => unreachable!("versions are given to the interpreter as upgrades"),
        Command::Snapshot => unreachable!("snapshots are no lifecycle change"),
    }
}

/// Ingest settings for tests: a lateness that admits the test's jitter, dead-lettering the rest.
/// Events are retained forever.
pub fn ingest(lateness: Option<u64>, dedup_window: u64) -> IngestConfig {
    IngestConfig { allowed_lateness: lateness, late_policy: LatePolicy::DeadLetter, dedup_window, retention: None }
}

/// Membership per segment id as a function of time, from a change log; checks that it is a set
/// at every time (no double enter, no exit of a non-member).
pub fn membership_at(defs: &[J], changes: &[Change], t: u64) -> BTreeMap<String, BTreeSet<String>> {
    let mut order: Vec<String> = parse_ids(defs);
    order.sort();
    let mut acc: BTreeMap<(u32, &str), isize> = BTreeMap::new();
    for c in changes.iter().filter(|c| c.time <= t) {
        let n = acc.entry((c.segment, c.user.as_str())).or_default();
        *n += c.diff;
        assert!(*n == 0 || *n == 1, "membership multiplicity {n} for {c:?}");
    }
    let ids = parsed_order(defs);
    let mut out: BTreeMap<String, BTreeSet<String>> = ids.iter().map(|id| (id.clone(), BTreeSet::new())).collect();
    for ((seg, user), n) in acc {
        if n == 1 {
            out.get_mut(&ids[seg as usize]).unwrap().insert(user.to_string());
        }
    }
    out
}

fn parse_ids(defs: &[J]) -> Vec<String> {
    defs.iter().map(|d| d["id"].as_str().unwrap().to_string()).collect()
}

/// Segment ids in the order the engine numbers them (dependency order from the parser).
pub fn parsed_order(defs: &[J]) -> Vec<String> {
    parse_segments(&J::Array(defs.to_vec()).to_string()).unwrap().into_iter().map(|d| d.id).collect()
}

/// Every duration (ms) written in the definitions.
pub fn durations(v: &J, out: &mut BTreeSet<u64>) {
    match v {
        J::String(s) => {
            if let Ok(d) = journeyflow_types::Duration::parse(s) {
                out.insert(d.0);
            }
        }
        J::Array(xs) => xs.iter().for_each(|x| durations(x, out)),
        J::Object(o) => o.values().for_each(|x| durations(x, out)),
        _ => {}
    }
}

/// Compares the change log with the reference at every time where either may change, up to `as_of`.
/// (Events count for `ingest.retention`.)
pub fn assert_matches_reference(defs_text: &str, lines: &[String], ingest: IngestConfig, output: &RunOutput) {
    assert_matches_reference_deleting(defs_text, lines, ingest, &[], output)
}

/// As `assert_matches_reference`, with users deleted `(time, user id)`: at `t`, a user's
/// events timed at or before a deletion of theirs at or before `t` are gone (every event of
/// these runs enters at its own timestamp). Exits at a deletion's time are marked deleted, and
/// no other change is.
pub fn assert_matches_reference_deleting(
    defs_text: &str,
    lines: &[String],
    ingest: IngestConfig,
    deletions: &[(u64, String)],
    output: &RunOutput,
) {
    let defs: Vec<J> = serde_json::from_str(defs_text).unwrap();
    let all = reference::accepted(lines, ingest.dedup_window);
    let visible = |t: u64| -> Vec<reference::RefEvent> {
        let gone = |e: &reference::RefEvent| deletions.iter().any(|(d, u)| *u == e.user && e.ts <= *d && *d <= t);
        all.iter().filter(|e| !gone(e)).cloned().collect()
    };
    let as_of = output.as_of.expect("some events");
    for c in &output.changes {
        let by_deletion = c.diff < 0 && deletions.iter().any(|(d, u)| *d == c.time && *u == c.user);
        assert_eq!(c.deleted, by_deletion, "the deletion mark of {c:?}");
    }
    assert!(output.changes.iter().all(|c| c.time <= as_of), "change after as-of");
    let mut spans = BTreeSet::new();
    durations(&J::Array(defs.clone()), &mut spans);
    spans.insert(0);
    spans.extend(ingest.retention);
    let mut times: BTreeSet<u64> = output.changes.iter().map(|c| c.time).collect();
    for e in &all {
        for d in &spans {
            for t in [e.ts + d, (e.ts + d).saturating_sub(1)] {
                times.insert(t);
            }
        }
    }
    times.insert(as_of);
    for (d, _) in deletions {
        times.extend([*d, d.saturating_sub(1)]);
    }
    for &t in times.range(..=as_of) {
        let got = membership_at(&defs, &output.changes, t);
        let events = visible(t);
        let reference = reference::Reference::new(&defs, &events).retained_for(ingest.retention);
        for (id, members) in &got {
            let want = reference.members(id, t);
            assert_eq!(members, &want, "segment {id} at time {t}");
        }
    }
}

/// Event `i` of a live test, stamped now, with ids `<tag>-<i>`: a new user every ten events
/// (`<tag initial><i / 10>`), who gets traits, views carts, orders and views products, so
/// users enter the sample segments and the abandoned-cart journey all through the test.
pub fn live_event(tag: &str, i: u64) -> J {
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let user = format!("{}{}", &tag[..1], i / 10);
    let id = format!("{tag}-{i}");
    match i % 10 {
        0 => serde_json::json!({"type": "identify", "userId": user, "messageId": id, "timestamp": ts,
                    "traits": {"plan": if i.is_multiple_of(20) { "pro" } else { "free" }, "country": "US"}}),
        1 | 2 => {
            serde_json::json!({"type": "track", "event": "Cart Viewed", "userId": user, "messageId": id, "timestamp": ts})
        }
        3 => {
            serde_json::json!({"type": "track", "event": "Order Completed", "userId": user, "messageId": id, "timestamp": ts,
                     "properties": {"revenue": (i % 7) as f64 * 90.0, "currency": "USD"}})
        }
        _ => {
            serde_json::json!({"type": "track", "event": "Product Viewed", "userId": user, "messageId": id, "timestamp": ts})
        }
    }
}

/// The property tests' settings: `cases` random cases, shrinking for at most a minute (so a
/// failure is reported, shrunk, before the test timeout), failures kept in `regressions`.
pub fn proptest_config(cases: u32, regressions: &'static str) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        max_shrink_iters: 2000,
        max_shrink_time: 60_000,
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(regressions))),
        ..proptest::test_runner::Config::default()
    }
}

/// Runs `work` on `workers` threads of one process and gathers what every worker returns.
pub fn on_workers<T, F>(workers: usize, work: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(&mut timely::worker::Worker) -> Vec<T> + Send + Sync + 'static,
{
    timely::execute(timely::Config::process(workers), work)
        .expect("the workers start")
        .join()
        .into_iter()
        .flat_map(|r| r.expect("a worker finished"))
        .collect()
}

/// Waits for `ready` to hold, looking every 50 ms, up to `limit`; panics with `what` otherwise.
pub fn wait_until(what: &str, limit: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "after {limit:?}, still not: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
