//! Property test: a journey runs on the live engine's workers ([`Programs`]); midway, a second
//! version (an independently drawn journey with the same id) is published with a random
//! migration (`node_map`, `default`), among random pause/resume/end commands, with the
//! watermark moved in random steps on 1 or 2 workers. Every transition and action, of both
//! versions, must equal the sequential interpreter's, which migrates each user by the
//! documented rules (`tests/common/journey_reference.rs`).

mod common;

use common::journey_gen::{draft, feed, journey, render, Deal, JITTER, SEGMENTS, STEP, T0};
use common::journey_reference::{interpret_versions, Cmd, Upgrade};
use common::reference::{accepted, Reference};
use journeyflow::journey_output::{ActionLine, JourneyNames, TransitionLine};
use journeyflow::programs::Programs;
use journeyflow_operators::journey::plan::JourneyPlan;
use journeyflow_operators::journey::record::{Command, JourneyOutput, Status};
use journeyflow_types::{parse_segments, validate_journey, validate_migration, Key};
use proptest::prelude::*;
use serde_json::{json, Value as J};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Clone, Debug)]
struct Case {
    lines: Vec<String>,
    v1: J,
    v2: J,
    migrate: J,
    upgrade_at: u64,
    commands: Vec<(u64, Command)>,
    workers: usize,
    worker_of: Vec<usize>,
    boundary_after: Vec<bool>,
}

/// The next version: another journey altogether (`how` 0), the same graph with other waits
/// (1: users at waits stay, with their timers), or the same with one node renamed (2: users
/// there move as the migration says).
fn next_version(v1: &J, other: J, how: usize, pick: usize) -> J {
    match how {
        0 => other,
        1 => {
            let text = v1.to_string();
            let text = ["10m", "30m", "1h", "2h"].iter().fold(text, |t, d| t.replace(&format!("\"{d}\""), "\"45m\""));
            serde_json::from_str(&text).unwrap()
        }
        _ => {
            // A node users wait at, if there is one.
            let nodes = v1["nodes"].as_object().unwrap();
            let waits = |n: &J| ["wait", "wait_until", "action"].iter().any(|k| n.get(*k).is_some());
            let mut ids: Vec<&String> = nodes.iter().filter(|(_, n)| waits(n)).map(|(id, _)| id).collect();
            if ids.is_empty() {
                ids = nodes.keys().collect();
            }
            let id = ids[pick % ids.len()];
            let renamed = format!("m{}", &id[1..]);
            serde_json::from_str(&v1.to_string().replace(&format!("\"{id}\""), &format!("\"{renamed}\""))).unwrap()
        }
    }
}

/// A `migrate` object: some of v1's nodes mapped to v2's, and a default.
fn migrate(v1: &J, v2: &J, picks: &[usize], default: usize) -> J {
    let old: Vec<&String> = v1["nodes"].as_object().unwrap().keys().collect();
    let new: Vec<&String> = v2["nodes"].as_object().unwrap().keys().collect();
    let mut map = serde_json::Map::new();
    for (i, p) in picks.iter().enumerate() {
        if p.is_multiple_of(3) {
            map.insert(old[i % old.len()].clone(), json!(new[p % new.len()]));
        }
    }
    let default = if default.is_multiple_of(2) { "exit".to_string() } else { new[default % new.len()].clone() };
    json!({"node_map": map, "default": default})
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(draft(), 1..50),
        prop::collection::vec(0u64..JITTER, 1..8),
        journey("ja"),
        (journey("ja"), 0usize..3, 0usize..100),
        (prop::collection::vec(0usize..100, 0..6), 0usize..100),
        0u64..60,
        prop::collection::vec(
            (0u64..300, prop::sample::select(vec![Command::Pause, Command::Resume, Command::Resume, Command::End])),
            0..3,
        ),
        1usize..3,
    )
        .prop_flat_map(|(drafts, jitters, v1, (other, how, pick), (picks, default), at, commands, workers)| {
            let v2 = next_version(&v1, other, how, pick);
            let lines = render(&drafts, &jitters);
            let n = lines.len();
            let migrate = migrate(&v1, &v2, &picks, default);
            // Publish somewhere among the events (five minutes apart), off the minute grid.
            let upgrade_at = T0 + at * n as u64 * STEP / 60 + 7_001;
            let commands = commands.into_iter().map(|(m, c)| (T0 + m * 60_000, c)).collect();
            (
                Just((lines, v1, v2, migrate, upgrade_at, commands, workers)),
                prop::collection::vec(0..workers, n),
                prop::collection::vec(prop::bool::weighted(0.3), n),
            )
        })
        .prop_map(|((lines, v1, v2, migrate, upgrade_at, commands, workers), worker_of, boundary_after)| Case {
            lines,
            v1,
            v2,
            migrate,
            upgrade_at,
            commands,
            workers,
            worker_of,
            boundary_after,
        })
}

/// A sequenced request of the test: publish the next version, or a lifecycle command.
#[derive(serde::Serialize, serde::Deserialize)]
enum Request {
    Publish,
    Command(Command),
}

fn plan(json: &J, version: u32) -> JourneyPlan {
    let known = ["sa".to_string(), "sp".to_string()].into();
    JourneyPlan::new(validate_journey(json, &known).unwrap(), version)
}

/// Runs the case on the live engine; returns every record of the journey, by worker.
fn run(c: &Case) -> Vec<JourneyOutput> {
    let c = Arc::new(c.clone());
    common::on_workers(c.workers, move |worker| {
        let config = common::ingest(None, 86_400_000);
        let mut programs = Programs::new(worker, config);
        let (v1, v2) = (plan(&c.v1, 1), plan(&c.v2, 2));
        let migration = validate_migration(Some(&c.migrate), &v1.definition, &v2.definition).unwrap();
        let start = T0 - 1;
        programs.advance(worker, Some(start), |_, _, _| {});
        for def in parse_segments(SEGMENTS).unwrap() {
            programs.install_segment(worker, &def, start).unwrap();
        }
        programs.install_journey(worker, v1, start, Status::Ongoing).unwrap();
        if worker.index() == 0 {
            programs.submit_at(serde_json::to_string(&Request::Publish).unwrap(), c.upgrade_at);
            for (t, command) in &c.commands {
                programs.submit_at(serde_json::to_string(&Request::Command(*command)).unwrap(), *t);
            }
        }
        let mut apply = |p: &mut Programs, w: &mut timely::worker::Worker, s: journeyflow::programs::Sequenced| {
            match serde_json::from_str(&s.text).unwrap() {
                Request::Publish => p.publish_version(w, v2.clone(), migration.clone(), s.time).unwrap(),
                Request::Command(command) => p.journey_command("ja", command, s.time).unwrap(),
            }
        };
        let deal = Deal { lines: &c.lines, worker_of: &c.worker_of, boundary_after: &c.boundary_after };
        let end = T0 + STEP * c.lines.len() as u64 + 400 * 60_000;
        feed(&mut programs, worker, &deal, (start, end), &mut apply, |_| {});
        let out = programs.take_journey_outputs("ja");
        programs.close(worker);
        out
    })
}

fn check(c: &Case) -> Result<(), TestCaseError> {
    let records = run(c);
    let events = accepted(&c.lines, 86_400_000);
    let as_of = events.last().unwrap().ts.max(c.upgrade_at);
    let names: BTreeMap<Key, Arc<str>> =
        events.iter().map(|e| (Key::of(&e.user), Arc::from(e.user.as_str()))).collect();
    let (v1, v2) = (plan(&c.v1, 1), plan(&c.v2, 2));
    let versions = BTreeMap::from([(1, JourneyNames::new(&v1)), (2, JourneyNames::replacing(&v2, &v1))]);
    let mut lines: Vec<(u64, Arc<str>, J)> = Vec::new();
    let mut actions: Vec<(u64, Arc<str>, J)> = Vec::new();
    for o in &records {
        match o {
            JourneyOutput::Transition(t) if t.time <= as_of => {
                let line = TransitionLine::new(t, &versions[&t.version], names[&t.user].clone());
                lines.push((t.time, names[&t.user].clone(), serde_json::to_value(line).unwrap()));
            }
            JourneyOutput::Action(a) if a.time <= as_of => {
                let line = ActionLine::new(a, &versions[&a.version], a.user, names[&a.user].clone());
                actions.push((a.time, names[&a.user].clone(), serde_json::to_value(line).unwrap()));
            }
            _ => {}
        }
    }
    // Stable: records come out in the order they happened for each user.
    lines.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    actions.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let got_t: Vec<J> = lines.into_iter().map(|x| x.2).collect();
    let got_a: Vec<J> = actions.into_iter().map(|x| x.2).collect();
    let segments: Vec<J> = serde_json::from_str(SEGMENTS).unwrap();
    let reference = Reference::new(&segments, &events);
    let mut spans = BTreeSet::new();
    common::durations(&J::Array(segments.clone()), &mut spans);
    common::durations(&J::Array(vec![c.v1.clone(), c.v2.clone()]), &mut spans);
    let cmds: Vec<Cmd> =
        c.commands.iter().map(|(t, cmd)| Cmd { time: *t, journey: 0, command: common::command_name(*cmd) }).collect();
    let upgrade = Upgrade { at: c.upgrade_at, next: c.v2.clone(), migrate: c.migrate.clone() };
    let (want_t, want_a) =
        interpret_versions(std::slice::from_ref(&c.v1), &[Some(upgrade)], &reference, &spans, &cmds, as_of, None);
    prop_assert_eq!(&got_t, &want_t, "transitions differ; v1 {} v2 {} migrate {}", c.v1, c.v2, c.migrate);
    prop_assert_eq!(&got_a, &want_a, "actions differ; v1 {} v2 {} migrate {}", c.v1, c.v2, c.migrate);
    Ok(())
}

proptest! {
    #![proptest_config(common::proptest_config(256, "tests/proptest-regressions/versions_proptest.txt"))]

    #[test]
    fn versions_equal_the_sequential_interpreter(c in case()) {
        check(&c)?;
    }
}
