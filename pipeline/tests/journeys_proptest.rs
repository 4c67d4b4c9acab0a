//! Property test: random events and random journeys over every node kind (waits, awaited
//! events, branches on conditions, splits, actions under quiet hours and caps, exits), with
//! goals, exit rules, re-entry modes, schedules and lifecycle commands, fed in random batches
//! to 1 and 2 workers, with events retained forever or for a random span. Transitions and
//! actions must equal the sequential reference interpreter's, and the journey reports must
//! equal counts taken from those transitions.

mod common;

use common::journey_gen::{api_entries, draft, journey, render, JITTER, LATENESS, SEGMENTS, T0};
use common::journey_reference::{interpret_entering, without_notes, ApiEntry, Cmd};
use common::reference::{accepted, Reference};
use common::{command_name, durations, ingest, run_entering, run_snapshotting, Plan, Snapshots};
use journeyflow::admission::IngestConfig;
use journeyflow::replay::JourneyEntries;
use journeyflow_operators::journey::record::Command;
use journeyflow_operators::journey::stats::{Flow, Stat};
use proptest::prelude::*;
use serde_json::{json, Value as J};
use std::collections::{BTreeMap, BTreeSet};

fn commands() -> impl Strategy<Value = Vec<(u64, u32, Command)>> {
    prop::collection::vec(
        (
            0u64..300,
            0u32..2,
            prop::sample::select(vec![
                Command::Pause,
                Command::Resume,
                Command::Resume,
                Command::End,
                Command::Publish,
            ]),
        )
            .prop_map(|(m, j, c)| (T0 + m * 60_000, j, c)),
        0..4,
    )
}

#[derive(Debug, Clone)]
struct Case {
    lines: Vec<String>,
    journeys: Vec<J>,
    commands: Vec<(u64, u32, Command)>,
    workers: usize,
    worker_of: Vec<usize>,
    boundary_after: Vec<bool>,
    /// How long events count (at least the longest window, 1 h), or forever.
    retention: Option<u64>,
    /// Entries from outside.
    entries: Vec<JourneyEntries>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(draft(), 1..60),
        prop::collection::vec(0u64..JITTER, 1..8),
        journey("ja"),
        journey("jb"),
        commands(),
        1usize..3,
        prop::option::weighted(0.5, 3_600_000u64..14_400_000),
        api_entries(),
    )
        .prop_flat_map(|(drafts, jitters, ja, jb, commands, workers, retention, entries)| {
            let lines = render(&drafts, &jitters);
            let n = lines.len();
            let entries: Vec<JourneyEntries> = entries
                .into_iter()
                .map(|(minute, j, users, context)| JourneyEntries {
                    time: T0 + minute * 60_000,
                    journey: ["ja", "jb"][j].to_string(),
                    users,
                    context: context.map(|c| c.to_string().into()),
                })
                .collect();
            (
                Just(lines),
                Just(vec![ja, jb]),
                Just(commands),
                Just((workers, retention, entries)),
                prop::collection::vec(0..workers, n),
                prop::collection::vec(prop::bool::weighted(0.3), n),
            )
        })
        .prop_map(|(lines, journeys, commands, (workers, retention, entries), worker_of, boundary_after)| Case {
            lines,
            journeys,
            commands,
            workers,
            worker_of,
            boundary_after,
            retention,
            entries,
        })
}

/// Journey reports counted directly from transition and action lines.
fn counted(journeys: &[J], transitions: &[J], actions: &[J]) -> J {
    let mut out = Vec::new();
    for j in journeys {
        let id = j["id"].as_str().unwrap();
        let valued = j["goal"].get("value").is_some();
        let exits = exits_of(j);
        let mut c: BTreeMap<&str, i64> = BTreeMap::new();
        let mut nodes: BTreeMap<String, (i64, i64, BTreeMap<String, i64>)> = BTreeMap::new();
        // Conversions per node and per split branch: (count, value in millionths).
        let mut converted_at: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        let mut branches: BTreeMap<(String, u64), (i64, i64, i64)> = BTreeMap::new();
        let mut value = 0i64;
        for t in transitions.iter().filter(|t| t["journey"] == id) {
            let reason = t["reason"].as_str().unwrap();
            if let (Some(b), Some(from)) = (reason.strip_prefix("split:"), t["from"].as_str()) {
                branches.entry((from.to_string(), b.parse().unwrap())).or_default().0 += 1;
            }
            if reason == "goal" {
                let v = t["_value"].as_i64().unwrap();
                value += v;
                let at = converted_at.entry(t["from"].as_str().unwrap().to_string()).or_default();
                (at.0, at.1) = (at.0 + 1, at.1 + v);
                for s in t["_splits"].as_array().unwrap() {
                    let b = branches.entry((s[0].as_str().unwrap().to_string(), s[1].as_u64().unwrap())).or_default();
                    (b.1, b.2) = (b.1 + 1, b.2 + v);
                }
            }
            *c.entry("entered").or_default() += i64::from(["entry", "scheduled", "api"].contains(&reason));
            match (t["from"].as_str(), t["to"].as_str()) {
                (from, Some(to)) => {
                    nodes.entry(to.into()).or_default().0 += 1;
                    if let Some(f) = from {
                        nodes.entry(f.into()).or_default().1 += 1;
                    } else {
                        *c.entry("in_progress").or_default() += 1;
                    }
                    if exits.contains(to) {
                        *c.entry("completed").or_default() += 1;
                        *c.entry("in_progress").or_default() -= 1;
                    }
                }
                (Some(f), None) => {
                    nodes.entry(f.into()).or_default().1 += 1;
                    *c.entry("in_progress").or_default() -= 1;
                    let key = match reason {
                        "goal" => "converted",
                        "exit_when" => "exited",
                        "ended" => "canceled",
                        other => panic!("left with reason {other}"),
                    };
                    *c.entry(key).or_default() += 1;
                }
                (None, None) => panic!("empty transition {t}"),
            }
        }
        for a in actions.iter().filter(|a| a["journey"] == id) {
            *nodes
                .entry(a["node"].as_str().unwrap().into())
                .or_default()
                .2
                .entry(a["status"].as_str().unwrap().into())
                .or_default() += 1;
        }
        let node_reports: serde_json::Map<String, J> = j["nodes"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, n)| {
                let (entered, exited, acts) = nodes.get(k).cloned().unwrap_or_default();
                let kind = n.as_object().unwrap().keys().find(|x| *x != "next" && *x != "if_missing").unwrap().clone();
                let mut r = json!({"kind": kind, "entered": entered, "current": entered - exited, "exited": exited});
                if !acts.is_empty() {
                    r["actions"] = json!(acts);
                }
                let (n, v) = converted_at.get(k).copied().unwrap_or_default();
                if n != 0 {
                    r["converted"] = json!(n);
                }
                if valued {
                    r["converted_value"] = json!(v as f64 / 1e6);
                }
                (k.clone(), r)
            })
            .collect();
        let get = |k: &str| c.get(k).copied().unwrap_or(0);
        let mut report = json!({"journey": id, "version": 1, "entered": get("entered"), "in_progress": get("in_progress"),
            "converted": get("converted"), "exited": get("exited"), "completed": get("completed"), "canceled": get("canceled"),
            "migrated_in": 0, "migrated_out": 0,
            "nodes": node_reports});
        if valued {
            report["converted_value"] = json!(value as f64 / 1e6);
        }
        let splits: serde_json::Map<String, J> = j["nodes"]
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(k, n)| Some((k, n.get("split")?["branches"].as_array()?)))
            .map(|(k, bs)| {
                let rows = bs.iter().enumerate().map(|(i, b)| {
                    let (entered, converted, v) = branches.get(&(k.clone(), i as u64)).copied().unwrap_or_default();
                    let mut row = json!({"branch": i, "next": b["next"], "entered": entered, "converted": converted});
                    if valued {
                        row["converted_value"] = json!(v as f64 / 1e6);
                    }
                    row
                });
                (k.clone(), J::Array(rows.collect()))
            })
            .collect();
        if !splits.is_empty() {
            report["splits"] = J::Object(splits);
        }
        out.push(report);
    }
    J::Array(out)
}

/// The transitions and actions the interpreter gives for a case, through `as_of`.
fn interpreted(c: &Case, as_of: u64) -> (Vec<J>, Vec<J>) {
    let segments: Vec<J> = serde_json::from_str(SEGMENTS).unwrap();
    let events = accepted(&c.lines, 86_400_000);
    let reference = Reference::new(&segments, &events).retained_for(c.retention);
    let mut spans = BTreeSet::new();
    spans.extend(c.retention);
    durations(&J::Array(segments.clone()), &mut spans);
    durations(&J::Array(c.journeys.clone()), &mut spans);
    let cmds: Vec<Cmd> = c
        .commands
        .iter()
        .map(|(t, j, cmd)| Cmd { time: *t, journey: *j as usize, command: command_name(*cmd) })
        .collect();
    let entries: Vec<ApiEntry> = c
        .entries
        .iter()
        .map(|e| ApiEntry {
            time: e.time,
            journey: if e.journey == "ja" { 0 } else { 1 },
            users: e.users.clone(),
            context: e.context.as_deref().map(|c| serde_json::from_str(c).unwrap()),
        })
        .collect();
    interpret_entering(&c.journeys, &entries, &reference, &spans, &cmds, as_of)
}

fn check(c: &Case) -> Result<(), TestCaseError> {
    let plan = Plan { workers: c.workers, worker_of: c.worker_of.clone(), boundary_after: c.boundary_after.clone() };
    let journeys_text = J::Array(c.journeys.clone()).to_string();
    let ingest = IngestConfig { retention: c.retention, ..ingest(Some(LATENESS), 86_400_000) };
    let output = run_entering(SEGMENTS, &journeys_text, &c.commands, &c.entries, &c.lines, &plan, ingest, None);
    prop_assert!(output.dead_letters.is_empty());
    let as_of = output.as_of.expect("events");
    let (noted, actions) = interpreted(c, as_of);
    let transitions = without_notes(noted.clone());
    let got_t: Vec<J> = output.transitions.iter().map(|t| serde_json::to_value(t).unwrap()).collect();
    let got_a: Vec<J> = output.actions.iter().map(|a| serde_json::to_value(a).unwrap()).collect();
    prop_assert_eq!(&got_t, &transitions, "transitions differ; journeys {}", journeys_text);
    prop_assert_eq!(&got_a, &actions, "actions differ; journeys {}", journeys_text);
    let stats = reported(&output.journey_stats);
    prop_assert_eq!(stats, counted(&c.journeys, &noted, &actions));
    // Hours before the retention (counted back from the as-of time) are let go.
    let mut hours = hours_counted(&c.journeys, &noted, &actions);
    if let Some(keep) = c.retention {
        let oldest = as_of.saturating_sub(keep);
        hours.retain(|(_, hour, _), _| *hour >= oldest - oldest % 3_600_000);
    }
    prop_assert_eq!(engine_hours(&c.journeys, &output.journey_counters), hours);
    Ok(())
}

/// What the engine counted per hour, `(journey, hour, what)`: `entered`, `node:<id>:entered`,
/// `node:<id>:<action status>` and the like.
fn engine_hours(journeys: &[J], counters: &BTreeMap<(u32, Stat), isize>) -> BTreeMap<(usize, u64, String), i64> {
    let mut out = BTreeMap::new();
    for ((j, stat), value) in counters {
        let Stat::Hourly(hour, flow) = stat else { continue };
        let nodes: Vec<&String> = journeys[*j as usize]["nodes"].as_object().unwrap().keys().collect();
        let node = |n: &u32| nodes[*n as usize].clone();
        let what = match flow {
            Flow::Entered => "entered".to_string(),
            Flow::Converted => "converted".to_string(),
            Flow::Exited => "exited".to_string(),
            Flow::Completed => "completed".to_string(),
            Flow::Canceled => "canceled".to_string(),
            Flow::ConvertedValue => "converted_value".to_string(),
            Flow::NodeEntered(n) => format!("node:{}:entered", node(n)),
            Flow::NodeExited(n) => format!("node:{}:exited", node(n)),
            Flow::NodeConverted(n) => format!("node:{}:converted", node(n)),
            Flow::NodeActions(n, status) => format!("node:{}:{}", node(n), status.name()),
        };
        *out.entry((*j as usize, *hour, what)).or_default() += *value as i64;
    }
    out.retain(|_, v| *v != 0);
    out
}

/// A journey's exit nodes.
fn exits_of(j: &J) -> BTreeSet<&str> {
    j["nodes"].as_object().unwrap().iter().filter(|(_, n)| n.get("exit").is_some()).map(|(k, _)| k.as_str()).collect()
}

/// The same, counted from the interpreter's transitions (with their notes) and actions.
fn hours_counted(journeys: &[J], transitions: &[J], actions: &[J]) -> BTreeMap<(usize, u64, String), i64> {
    let mut out: BTreeMap<(usize, u64, String), i64> = BTreeMap::new();
    for (j, journey) in journeys.iter().enumerate() {
        let id = journey["id"].as_str().unwrap();
        let exits = exits_of(journey);
        let mut add =
            |time: u64, what: String, n: i64| *out.entry((j, time - time % 3_600_000, what)).or_default() += n;
        for t in transitions.iter().filter(|t| t["journey"] == id) {
            let (time, reason) = (t["time"].as_u64().unwrap(), t["reason"].as_str().unwrap());
            if ["entry", "scheduled", "api"].contains(&reason) {
                add(time, "entered".into(), 1);
            }
            if let Some(from) = t["from"].as_str() {
                add(time, format!("node:{from}:exited"), 1);
            }
            match t["to"].as_str() {
                Some(to) => {
                    add(time, format!("node:{to}:entered"), 1);
                    if exits.contains(to) {
                        add(time, "completed".into(), 1);
                    }
                }
                None => match reason {
                    "goal" => {
                        add(time, "converted".into(), 1);
                        add(time, format!("node:{}:converted", t["from"].as_str().unwrap()), 1);
                        add(time, "converted_value".into(), t["_value"].as_i64().unwrap());
                    }
                    "exit_when" => add(time, "exited".into(), 1),
                    _ => add(time, "canceled".into(), 1),
                },
            }
        }
        for a in actions.iter().filter(|a| a["journey"] == id) {
            let (node, status) = (a["node"].as_str().unwrap(), a["status"].as_str().unwrap());
            add(a["time"].as_u64().unwrap(), format!("node:{node}:{status}"), 1);
        }
    }
    out.retain(|_, v| *v != 0);
    out
}

/// The reports as JSON, each split branch's rate and interval checked and taken off (they
/// follow from its counts).
fn reported(reports: &[journeyflow::journey_output::JourneyReport]) -> J {
    let mut stats = serde_json::to_value(reports).unwrap();
    for r in stats.as_array_mut().unwrap() {
        for branches in r.get_mut("splits").and_then(J::as_object_mut).into_iter().flat_map(|s| s.values_mut()) {
            for b in branches.as_array_mut().unwrap() {
                let b = b.as_object_mut().unwrap();
                let (rate, interval) = (b.remove("conversion_rate").unwrap(), b.remove("interval_95").unwrap());
                match rate.as_f64() {
                    Some(rate) => {
                        let (lo, hi) = (interval[0].as_f64().unwrap(), interval[1].as_f64().unwrap());
                        assert!(lo <= rate && rate <= hi && 0.0 <= lo && hi <= 1.0, "{rate} outside {interval}");
                    }
                    None => assert!(interval.is_null() && b["entered"] == 0),
                }
            }
        }
    }
    stats
}

/// A run snapshots the journeys as of `minute`; a second run (on `workers` workers) starts
/// them from that snapshot, as a restart from a checkpoint does: inputs through the snapshot's
/// time only set condition memberships again. The first run's records through that time and
/// the second's after it are the interpreter's, and the second run's reports (counters carried
/// in the snapshot, and counted on) are counts of all of them.
fn check_restored(c: &Case, minute: u64, workers: usize) -> Result<(), TestCaseError> {
    let scratch = tempfile::tempdir().unwrap();
    let at = T0 + minute * 60_000;
    let plan = Plan { workers: c.workers, worker_of: c.worker_of.clone(), boundary_after: c.boundary_after.clone() };
    let journeys_text = J::Array(c.journeys.clone()).to_string();
    let ingest = IngestConfig { retention: c.retention, ..ingest(Some(LATENESS), 86_400_000) };
    let take = Snapshots { take: Some((scratch.path().to_path_buf(), at)), restore: None };
    let first =
        run_snapshotting(SEGMENTS, &journeys_text, &c.commands, &[], &c.entries, &c.lines, &plan, ingest, None, take);
    let as_of = first.as_of.expect("events");
    prop_assume!(at < as_of);
    let files = (0..c.workers).map(|w| format!("journeys/{at}/{w}.parquet")).collect();
    let ids = c.journeys.iter().map(|j| j["id"].as_str().unwrap().to_string()).collect();
    let snapshot = journeyflow::journey_snapshot::SnapshotRef { time: at, files, journeys: ids };
    // The second run reads the same events the same way (the same admission), on its own workers.
    let worker_of: Vec<usize> = c.worker_of.iter().map(|w| w % workers).collect();
    let plan = Plan { workers, worker_of, boundary_after: c.boundary_after.clone() };
    let restore = Snapshots { take: None, restore: Some((scratch.path().to_path_buf(), snapshot)) };
    let second = run_snapshotting(
        SEGMENTS,
        &journeys_text,
        &c.commands,
        &[],
        &c.entries,
        &c.lines,
        &plan,
        ingest,
        Some(as_of),
        restore,
    );
    let time = |r: &J| r["time"].as_u64().unwrap();
    let (first_t, first_a, second_t, second_a) =
        (json(&first.transitions), json(&first.actions), json(&second.transitions), json(&second.actions));
    prop_assert!(second_t.iter().chain(&second_a).all(|r| time(r) > at), "the restored run redid what was done");
    let joined = |a: &[J], b: &[J]| -> Vec<J> { a.iter().filter(|r| time(r) <= at).chain(b).cloned().collect() };
    let (noted, actions) = interpreted(c, as_of);
    let transitions = without_notes(noted.clone());
    prop_assert_eq!(&joined(&first_t, &second_t), &transitions, "transitions differ; journeys {}", journeys_text);
    prop_assert_eq!(&joined(&first_a, &second_a), &actions, "actions differ; journeys {}", journeys_text);
    let stats = reported(&second.journey_stats);
    prop_assert_eq!(stats, counted(&c.journeys, &noted, &actions));
    Ok(())
}

fn json<T: serde::Serialize>(records: &[T]) -> Vec<J> {
    records.iter().map(|r| serde_json::to_value(r).unwrap()).collect()
}

proptest! {
    #![proptest_config(common::proptest_config(128, "tests/proptest-regressions/journeys_proptest.txt"))]

    #[test]
    fn journeys_equal_the_sequential_interpreter(c in case()) {
        check(&c)?;
    }
}

proptest! {
    #![proptest_config(common::proptest_config(64, "tests/proptest-regressions/journeys_proptest.txt"))]

    #[test]
    fn journeys_restored_from_a_snapshot_equal_the_sequential_interpreter(
        c in case(), minute in 0u64..300, workers in 1usize..3,
    ) {
        check_restored(&c, minute, workers)?;
    }
}
