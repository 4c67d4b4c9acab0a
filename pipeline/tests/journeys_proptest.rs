//! Property test: random events and random journeys over every node kind (waits, awaited
//! events, branches on conditions, splits, actions under quiet hours and caps, exits), with
//! goals, exit rules, re-entry modes, schedules and lifecycle commands, fed in random batches
//! to 1 and 2 workers. Transitions and actions must equal the sequential reference
//! interpreter's, and the journey reports must equal counts taken from those transitions.

mod common;

use common::journey_reference::{interpret, Cmd};
use common::reference::{accepted, Reference};
use common::{durations, ingest, run_journeys, Plan};
use journeyflow_operators::journey::record::Command;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Value as J};
use std::collections::{BTreeMap, BTreeSet};

/// 2024-01-01T00:00:00Z: quiet hours are written against this day.
const T0: u64 = 1_704_067_200_000;
const STEP: u64 = 300_000;
const JITTER: u64 = 120_000;
const LATENESS: u64 = 1_800_000;
const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
const NAMES: [&str; 3] = ["A", "B", "C"];

const SEGMENTS: &str = r#"[
  {"id": "sa", "condition": {"performed": {"event": "A", "within": "30m", "at_least": 2}}},
  {"id": "sp", "condition": {"trait": {"name": "plan", "op": "eq", "value": "pro"}}}
]"#;

#[derive(Clone, Debug)]
enum Draft {
    Track { user: usize, name: usize },
    Identify { user: usize, pro: bool },
    Copy { back: usize },
}

fn draft() -> impl Strategy<Value = Draft> {
    prop_oneof![
        7 => (0..USERS.len(), 0..NAMES.len()).prop_map(|(user, name)| Draft::Track { user, name }),
        2 => (0..USERS.len(), prop::bool::ANY).prop_map(|(user, pro)| Draft::Identify { user, pro }),
        1 => (1..4usize).prop_map(|back| Draft::Copy { back }),
    ]
}

/// Lines in arrival order, five minutes apart with up to two minutes of jitter.
fn render(drafts: &[Draft], jitters: &[u64]) -> Vec<String> {
    let mut values: Vec<J> = Vec::new();
    for (i, d) in drafts.iter().enumerate() {
        let ts = T0 + STEP * i as u64 + jitters[i % jitters.len()] % JITTER;
        let v = match d {
            Draft::Track { user, name } => {
                json!({"type": "track", "event": NAMES[*name], "userId": USERS[*user], "messageId": format!("m{i}"), "timestamp": ts})
            }
            Draft::Identify { user, pro } => {
                json!({"type": "identify", "userId": USERS[*user], "messageId": format!("m{i}"), "timestamp": ts, "traits": {"plan": if *pro { "pro" } else { "free" }}})
            }
            // A copy of a recent event (a copy of an old copy would be late).
            Draft::Copy { back }
                if *back <= values.len()
                    && values[values.len() - back]["timestamp"].as_u64().unwrap() + LATENESS / 2 >= ts =>
            {
                values[values.len() - back].clone()
            }
            Draft::Copy { .. } => {
                json!({"type": "track", "event": "A", "userId": USERS[i % USERS.len()], "messageId": format!("m{i}"), "timestamp": ts})
            }
        };
        values.push(v);
    }
    values.iter().map(J::to_string).collect()
}

fn condition() -> impl Strategy<Value = J> {
    prop::sample::select(vec![
        json!({"performed": {"event": "B", "within": "1h"}}),
        json!({"in_segment": "sp"}),
        json!({"not": {"performed": {"event": "C", "within": "30m"}}}),
        json!({"in_segment": "sa"}),
        json!({"performed": {"event": "C", "at_least": 2}}),
        json!({"all": [{"in_segment": "sp"}, {"performed": {"event": "A", "within": "1h"}}]}),
    ])
}

fn wait_duration() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["10m", "30m", "1h", "2h"])
}

/// What a node is before its targets are chosen.
#[derive(Clone, Debug)]
enum Shape {
    Wait(&'static str),
    WaitUntil(usize, &'static str),
    Branch(Vec<J>),
    Split(u32),
    Action(usize),
    Exit,
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        3 => wait_duration().prop_map(Shape::Wait),
        3 => (1..NAMES.len(), wait_duration()).prop_map(|(n, d)| Shape::WaitUntil(n, d)),
        2 => prop::collection::vec(condition(), 1..3).prop_map(Shape::Branch),
        2 => (1u32..100).prop_map(Shape::Split),
        3 => (0..3usize).prop_map(Shape::Action),
        1 => Just(Shape::Exit),
    ]
}

/// Nodes `n0..nk`, the last an exit; pass-through nodes point forward only and an awaited
/// event may lead back, so every node reaches an exit and every cycle has a wait. Nodes the
/// start cannot reach are dropped.
fn graph(shapes: &[Shape], picks: &[usize]) -> serde_json::Map<String, J> {
    let k = shapes.len() + 1;
    let mut pick = picks.iter().cycle();
    let mut forward = |i: usize| format!("n{}", i + 1 + pick.next().unwrap() % (k - 1 - i));
    let mut nodes = serde_json::Map::new();
    for (i, s) in shapes.iter().enumerate() {
        let node = match s {
            Shape::Wait(d) => json!({"wait": {"duration": d}, "next": forward(i)}),
            Shape::WaitUntil(n, d) => {
                let back = format!("n{}", picks[i % picks.len()] % k);
                json!({"wait_until": {"event": NAMES[*n], "timeout": d, "on_event": back, "on_timeout": forward(i)}})
            }
            Shape::Branch(cases) => {
                let cases: Vec<J> = cases.iter().map(|c| json!({"when": c, "next": forward(i)})).collect();
                json!({"branch": {"cases": cases, "else": forward(i)}})
            }
            Shape::Split(p) => json!({"split": {"branches": [
                {"percent": *p as f64 / 4.0 + 0.25, "next": forward(i)},
                {"percent": 100.0 - (*p as f64 / 4.0 + 0.25), "next": forward(i)}]}}),
            Shape::Action(c) => {
                let channel = ["email", "sms", "webhook"][*c];
                let mut a = json!({"channel": channel});
                if *c != 2 {
                    a["template"] = json!(format!("t{c}"));
                }
                if *c == 1 {
                    a["payload"] = json!({"n": i});
                }
                json!({"action": a, "next": forward(i)})
            }
            Shape::Exit => json!({"exit": {}}),
        };
        nodes.insert(format!("n{i}"), node);
    }
    nodes.insert(format!("n{}", k - 1), json!({"exit": {}}));
    // Keep what the start reaches.
    let mut seen = BTreeSet::from(["n0".to_string()]);
    let mut stack = vec!["n0".to_string()];
    while let Some(id) = stack.pop() {
        let mut targets = Vec::new();
        collect_targets(&nodes[&id], &mut targets);
        for t in targets {
            if seen.insert(t.clone()) {
                stack.push(t);
            }
        }
    }
    nodes.retain(|id, _| seen.contains(id));
    nodes
}

fn collect_targets(v: &J, out: &mut Vec<String>) {
    if let J::Object(o) = v {
        for (k, x) in o {
            match (k.as_str(), x) {
                ("next" | "else" | "on_event" | "on_timeout", J::String(s)) => out.push(s.clone()),
                _ => collect_targets(x, out),
            }
        }
    } else if let J::Array(xs) = v {
        xs.iter().for_each(|x| collect_targets(x, out));
    }
}

fn journey(id: &'static str) -> impl Strategy<Value = J> {
    (
        prop::collection::vec(shape(), 1..6),
        prop::collection::vec(0usize..100, 1..8),
        prop::sample::select(vec![
            json!({"event": "A"}),
            json!({"event": {"event": "B"}}),
            json!({"segment_enter": "sa"}),
            json!({"segment_exit": "sa"}),
            json!({"segment_enter": "sp"}),
        ]),
        prop::option::of(prop::sample::select(vec![json!({"event": "C"}), json!({"event": "B"})])),
        prop::option::weighted(0.3, condition()),
        prop::option::of((0..3usize, prop::option::of(1u64..4), prop::option::of(wait_duration()))),
        (prop::option::weighted(0.25, 0u64..100), prop::option::weighted(0.25, 100u64..300)),
        prop::option::weighted(
            0.4,
            prop::sample::select(vec![("01:00", "02:00"), ("00:30", "01:10"), ("02:00", "00:40")]),
        ),
        prop::option::weighted(0.4, (1u64..3, prop::sample::select(vec!["30m", "1h", "3h"]))),
    )
        .prop_map(move |(shapes, picks, entry, goal, exit_when, re_entry, (start, end), quiet, cap)| {
            let mut j = json!({"id": id, "entry": entry, "start": "n0", "nodes": graph(&shapes, &picks)});
            if let Some(g) = goal {
                j["goal"] = g;
            }
            if let Some(c) = exit_when {
                j["exit_when"] = c;
            }
            if let Some((mode, max, cooldown)) = re_entry {
                let mode = ["once", "after_exit", "always"][mode];
                let mut r = json!({"mode": mode});
                if mode != "once" {
                    if let Some(m) = max {
                        r["max_times"] = json!(m);
                    }
                    if let Some(c) = cooldown {
                        r["cooldown"] = json!(c);
                    }
                }
                j["re_entry"] = r;
            }
            if start.is_some() || end.is_some() {
                let mut s = json!({});
                if let Some(m) = start {
                    s["start_at"] = json!(T0 + m * 60_000);
                }
                if let Some(m) = end {
                    s["end_at"] = json!(T0 + m * 60_000);
                }
                j["schedule"] = s;
            }
            if let Some((s, e)) = quiet {
                j["quiet_hours"] = json!({"start": s, "end": e});
            }
            if let Some((max, per)) = cap {
                j["frequency_cap"] = json!({"max_actions": max, "per": per});
            }
            j
        })
}

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
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(draft(), 1..60),
        prop::collection::vec(0u64..JITTER, 1..8),
        journey("ja"),
        journey("jb"),
        commands(),
        1usize..3,
    )
        .prop_flat_map(|(drafts, jitters, ja, jb, commands, workers)| {
            let lines = render(&drafts, &jitters);
            let n = lines.len();
            (
                Just(lines),
                Just(vec![ja, jb]),
                Just(commands),
                Just(workers),
                prop::collection::vec(0..workers, n),
                prop::collection::vec(prop::bool::weighted(0.3), n),
            )
        })
        .prop_map(|(lines, journeys, commands, workers, worker_of, boundary_after)| Case {
            lines,
            journeys,
            commands,
            workers,
            worker_of,
            boundary_after,
        })
}

fn name(c: Command) -> &'static str {
    match c {
        Command::Publish => "publish",
        Command::Pause => "pause",
        Command::Resume => "resume",
        Command::End => "end",
    }
}

/// Journey reports counted directly from transition and action lines.
fn counted(journeys: &[J], transitions: &[J], actions: &[J]) -> J {
    let mut out = Vec::new();
    for j in journeys {
        let id = j["id"].as_str().unwrap();
        let exits: BTreeSet<&str> = j["nodes"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, n)| n.get("exit").is_some())
            .map(|(k, _)| k.as_str())
            .collect();
        let mut c: BTreeMap<&str, i64> = BTreeMap::new();
        let mut nodes: BTreeMap<String, (i64, i64, BTreeMap<String, i64>)> = BTreeMap::new();
        for t in transitions.iter().filter(|t| t["journey"] == id) {
            let reason = t["reason"].as_str().unwrap();
            *c.entry("entered").or_default() += i64::from(reason == "entry");
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
                let kind = n.as_object().unwrap().keys().find(|x| *x != "next").unwrap().clone();
                let mut r = json!({"kind": kind, "entered": entered, "current": entered - exited, "exited": exited});
                if !acts.is_empty() {
                    r["actions"] = json!(acts);
                }
                (k.clone(), r)
            })
            .collect();
        let get = |k: &str| c.get(k).copied().unwrap_or(0);
        out.push(json!({"journey": id, "version": 1, "entered": get("entered"), "in_progress": get("in_progress"),
            "converted": get("converted"), "exited": get("exited"), "completed": get("completed"), "canceled": get("canceled"),
            "nodes": node_reports}));
    }
    J::Array(out)
}

fn check(c: &Case) -> Result<(), TestCaseError> {
    let plan = Plan { workers: c.workers, worker_of: c.worker_of.clone(), boundary_after: c.boundary_after.clone() };
    let journeys_text = J::Array(c.journeys.clone()).to_string();
    let output =
        run_journeys(SEGMENTS, &journeys_text, &c.commands, &c.lines, &plan, ingest(Some(LATENESS), 86_400_000), None);
    prop_assert!(output.dead_letters.is_empty());
    let as_of = output.as_of.expect("events");
    let segments: Vec<J> = serde_json::from_str(SEGMENTS).unwrap();
    let events = accepted(&c.lines, 86_400_000);
    let reference = Reference::new(&segments, &events);
    let mut spans = BTreeSet::new();
    durations(&J::Array(segments.clone()), &mut spans);
    durations(&J::Array(c.journeys.clone()), &mut spans);
    let cmds: Vec<Cmd> =
        c.commands.iter().map(|(t, j, cmd)| Cmd { time: *t, journey: *j as usize, command: name(*cmd) }).collect();
    let (transitions, actions) = interpret(&c.journeys, &reference, &spans, &cmds, as_of, None);
    let got_t: Vec<J> = output.transitions.iter().map(|t| serde_json::to_value(t).unwrap()).collect();
    let got_a: Vec<J> = output.actions.iter().map(|a| serde_json::to_value(a).unwrap()).collect();
    prop_assert_eq!(&got_t, &transitions, "transitions differ; journeys {}", journeys_text);
    prop_assert_eq!(&got_a, &actions, "actions differ; journeys {}", journeys_text);
    let stats = serde_json::to_value(&output.journey_stats).unwrap();
    prop_assert_eq!(stats, counted(&c.journeys, &transitions, &actions));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        max_shrink_iters: 2000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/proptest-regressions/journeys_proptest.txt"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn journeys_equal_the_sequential_interpreter(c in case()) {
        check(&c)?;
    }
}
