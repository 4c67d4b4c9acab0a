//! Segments installed at runtime as new dataflows over the retained history: installed
//! midway through the bundled sample, their members at once equal the from-scratch
//! reference at the install time, and their change logs afterwards keep them equal to it
//! at every later time; removal is refused while another segment uses one, and frees the
//! dataflow. With one and with two workers.

mod common;

use common::repo;

use common::reference::{accepted, Reference};
use journeyflow::programs::{ProgramError, Programs};
use journeyflow_types::{decode_line, parse_segments, Key};
use serde_json::Value as J;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The bundled sample's event lines.
fn sample_lines() -> Vec<String> {
    std::fs::read_to_string(repo("datasets/sample/events.ndjson")).unwrap().lines().map(String::from).collect()
}

/// A worker's programs (an hour of allowed lateness) and its share of the lines, decoded.
fn begin(worker: &mut timely::worker::Worker, lines: &[String]) -> (Programs, Vec<journeyflow_types::Event>) {
    let programs = Programs::new(worker, common::ingest(Some(3_600_000), 86_400_000));
    let (index, peers) = (worker.index(), worker.peers());
    let mine = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| i % peers == index)
        .filter_map(|(_, l)| decode_line(l.as_bytes()).ok())
        .collect();
    (programs, mine)
}

/// Members per segment id.
type Members = Vec<(String, Vec<Key>)>;

/// Per worker: members at install, changes after, members at the end, dataflow counts
/// before and after removing two segments.
type Observed = (Members, Vec<(String, u64, Key, isize)>, Members, usize, usize);

fn run(workers: usize, lines: Arc<Vec<String>>, cut: u64, end: u64) -> Vec<Observed> {
    let text = std::fs::read_to_string(repo("datasets/sample/segments.json")).unwrap();
    let defs = parse_segments(&text).unwrap();
    timely::execute(timely::Config::process(workers), move |worker| {
        let (mut programs, mine) = begin(worker, &lines);
        for (i, e) in mine.iter().filter(|e| e.ts < cut).enumerate() {
            programs.offer(e.clone()).unwrap();
            if i % 500 == 499 {
                programs.advance(worker, None, |_, _, _| {});
            }
        }
        // Every worker's watermark at exactly `cut`: the install time.
        programs.advance(worker, Some(cut), |_, _, _| {});
        for def in &defs {
            programs.install_segment(worker, def, cut).unwrap();
        }
        // Nothing happens at `cut` itself (the test picks it so): complete it.
        programs.advance(worker, Some(cut + 1), |_, _, _| {});
        programs.settle(worker, cut);
        let at_install: Members =
            defs.iter().map(|d| (d.id.clone(), programs.members_at(&d.id, cut).unwrap())).collect();
        let mut changes = Vec::new();
        for d in &defs {
            changes.extend(programs.take_changes(&d.id).into_iter().map(|c| (d.id.clone(), c.time, c.user, c.diff)));
        }
        for (i, e) in mine.iter().filter(|e| e.ts > cut).enumerate() {
            programs.offer(e.clone()).unwrap();
            if i % 300 == 299 {
                programs.advance(worker, None, |_, _, _| {});
            }
        }
        // Answers as of `end` are wanted: keep the traces distinguishable there.
        programs.hold_compaction(Some(end));
        programs.advance(worker, Some(end + 1), |_, _, _| {});
        programs.advance(worker, Some(end + 2), |_, _, _| {});
        programs.settle(worker, end);
        for d in &defs {
            changes.extend(programs.take_changes(&d.id).into_iter().map(|c| (d.id.clone(), c.time, c.user, c.diff)));
        }
        let at_end: Members = defs.iter().map(|d| (d.id.clone(), programs.members_at(&d.id, end).unwrap())).collect();
        // s5 uses s2: s2 cannot go first.
        let refused = programs.remove_segment("s2_frequent_viewer", end);
        assert!(matches!(refused, Err(ProgramError::InUse(_, _))), "{refused:?}");
        let before = worker.installed_dataflows().len();
        programs.remove_segment("s5_window_shopper", end).unwrap();
        programs.remove_segment("s2_frequent_viewer", end).unwrap();
        // They are complete through `end`: they go at once.
        programs.settle(worker, end);
        let after = worker.installed_dataflows().len();
        (at_install, changes, at_end, before, after)
    })
    .unwrap()
    .join()
    .into_iter()
    .map(|r| r.unwrap())
    .collect()
}

fn check(workers: usize) {
    let lines = sample_lines();
    let defs: Vec<J> =
        serde_json::from_str(&std::fs::read_to_string(repo("datasets/sample/segments.json")).unwrap()).unwrap();
    let events = accepted(&lines, 86_400_000);
    let reference = Reference::new(&defs, &events);
    let names: BTreeMap<Key, String> = events.iter().map(|e| (Key::of(&e.user), e.user.clone())).collect();
    let start = events.first().unwrap().ts;
    let end = events.last().unwrap().ts;
    let mut cut = start + (end - start) / 2;
    while events.iter().any(|e| e.ts == cut) {
        cut += 1;
    }
    let observed = run(workers, Arc::new(lines), cut, end);
    let collect = |pick: &dyn Fn(&Observed) -> &Members| {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for o in &observed {
            for (id, users) in pick(o) {
                out.entry(id.clone()).or_default().extend(users.iter().map(|u| names[u].clone()));
            }
        }
        out
    };
    // Installed at `cut` over the retained history: as soon as `cut` is complete, the members
    // are those at `cut`.
    for (id, members) in collect(&|o| &o.0) {
        assert_eq!(members, reference.members(&id, cut), "{id} right after install");
    }
    for (id, members) in collect(&|o| &o.2) {
        assert_eq!(members, reference.members(&id, end), "{id} at the end");
    }
    // The change log: entries at `cut` for the initial members, then changes equal to the
    // reference's at every later time.
    let mut log: Vec<(String, u64, String, isize)> =
        observed.iter().flat_map(|o| o.1.iter().map(|(id, t, u, d)| (id.clone(), *t, names[u].clone(), *d))).collect();
    log.sort();
    let mut times: BTreeSet<u64> = log.iter().map(|c| c.1).collect();
    times.insert(end);
    assert!(log.iter().all(|c| c.1 >= cut), "a change before the install time");
    for d in &defs {
        let id = d["id"].as_str().unwrap();
        for &t in &times {
            let mut acc: BTreeMap<&str, isize> = BTreeMap::new();
            for c in log.iter().filter(|c| c.0 == id && c.1 <= t) {
                *acc.entry(&c.2).or_default() += c.3;
            }
            assert!(acc.values().all(|n| *n == 0 || *n == 1), "{id} at {t}: not a set");
            let got: BTreeSet<String> = acc.into_iter().filter(|(_, n)| *n == 1).map(|(u, _)| u.to_string()).collect();
            assert_eq!(got, reference.members(id, t), "{id} at {t}");
        }
    }
    for o in &observed {
        assert_eq!(o.3 - o.4, 2, "removing two segments drops two dataflows");
    }
}

#[test]
fn segments_installed_midstream_equal_the_reference_with_one_worker() {
    check(1);
}

#[test]
fn segments_installed_midstream_equal_the_reference_with_two_workers() {
    check(2);
}

/// Install commands submitted on worker 0 midway: every worker applies them at the same
/// agreed time, and the change logs from then on equal the reference.
fn sequenced(workers: usize) {
    let lines = sample_lines();
    let text = std::fs::read_to_string(repo("datasets/sample/segments.json")).unwrap();
    let defs_json: Vec<J> = serde_json::from_str(&text).unwrap();
    let events = accepted(&lines, 86_400_000);
    let reference = Reference::new(&defs_json, &events);
    let names: BTreeMap<Key, String> = events.iter().map(|e| (Key::of(&e.user), e.user.clone())).collect();
    let end = events.last().unwrap().ts;
    let lines = Arc::new(lines);
    let results = timely::execute(timely::Config::process(workers), move |worker| {
        let defs = parse_segments(&text).unwrap();
        let (mut programs, mine) = begin(worker, &lines);
        let mut applied: Vec<(u64, String)> = Vec::new();
        let mut apply = |p: &mut Programs, w: &mut timely::worker::Worker, c: journeyflow::programs::Sequenced| {
            let def = defs.iter().find(|d| d.id == c.text).unwrap();
            p.install_segment(w, def, c.time).unwrap();
            applied.push((c.time, c.text));
        };
        for (i, e) in mine.iter().enumerate() {
            if worker.index() == 0 && i == mine.len() / 2 {
                for d in &defs {
                    programs.submit(d.id.clone());
                }
            }
            programs.offer(e.clone()).unwrap();
            if i % 200 == 199 {
                programs.advance(worker, None, &mut apply);
            }
        }
        programs.advance(worker, Some(end + 1), &mut apply);
        programs.advance(worker, Some(end + 2), &mut apply);
        programs.settle(worker, end);
        let mut changes = Vec::new();
        for d in &defs {
            changes.extend(programs.take_changes(&d.id).into_iter().map(|c| (d.id.clone(), c.time, c.user, c.diff)));
        }
        (applied, changes)
    })
    .unwrap()
    .join()
    .into_iter()
    .map(|r| r.unwrap())
    .collect::<Vec<_>>();
    // Same commands, same order, same time on every worker.
    let applied = &results[0].0;
    assert_eq!(applied.len(), defs_json.len());
    assert!(results.iter().all(|r| &r.0 == applied), "workers disagree: {results:?}");
    let at = applied[0].0;
    assert!(applied.iter().all(|(t, _)| *t == at));
    let log: Vec<(String, u64, String, isize)> =
        results.iter().flat_map(|r| r.1.iter().map(|(id, t, u, d)| (id.clone(), *t, names[u].clone(), *d))).collect();
    assert!(log.iter().all(|c| c.1 >= at), "a change before the install time");
    let mut times: BTreeSet<u64> = log.iter().map(|c| c.1).collect();
    times.extend([at, end]);
    for d in &defs_json {
        let id = d["id"].as_str().unwrap();
        for &t in &times {
            let mut acc: BTreeMap<&str, isize> = BTreeMap::new();
            for c in log.iter().filter(|c| c.0 == id && c.1 <= t) {
                *acc.entry(&c.2).or_default() += c.3;
            }
            let got: BTreeSet<String> = acc.into_iter().filter(|(_, n)| *n == 1).map(|(u, _)| u.to_string()).collect();
            assert_eq!(got, reference.members(id, t), "{id} at {t}");
        }
    }
}

#[test]
fn submitted_installs_apply_at_one_agreed_time_with_one_worker() {
    sequenced(1);
}

#[test]
fn submitted_installs_apply_at_one_agreed_time_with_two_workers() {
    sequenced(2);
}

/// Journeys installed midway over the retained history: history moves nobody, and what happens
/// after equals the sequential interpreter started at the install time.
fn journeys_midstream(workers: usize) {
    use journeyflow::journey_output::{ActionLine, JourneyNames, TransitionLine};
    use journeyflow_operators::journey::plan::JourneyPlan;
    use journeyflow_operators::journey::record::{JourneyOutput, Status};
    let lines = sample_lines();
    let seg_text = std::fs::read_to_string(repo("datasets/sample/segments.json")).unwrap();
    let journeys_text = std::fs::read_to_string(repo("datasets/sample/journeys.json")).unwrap();
    let events = accepted(&lines, 86_400_000);
    let start = events.first().unwrap().ts;
    let end = events.last().unwrap().ts;
    let mut cut = start + (end - start) / 2;
    while events.iter().any(|e| e.ts == cut) {
        cut += 1;
    }
    let lines = Arc::new(lines);
    let (seg_text2, journeys_text2) = (seg_text.clone(), journeys_text.clone());
    let outputs: Vec<Vec<(usize, JourneyOutput)>> = timely::execute(timely::Config::process(workers), move |worker| {
        let defs = parse_segments(&seg_text2).unwrap();
        let known = defs.iter().map(|d| d.id.clone()).collect();
        let plans: Vec<JourneyPlan> = journeyflow_types::parse_journeys(&journeys_text2, &known)
            .unwrap()
            .into_iter()
            .map(|j| JourneyPlan::new(j, 1))
            .collect();
        let (mut programs, mine) = begin(worker, &lines);
        for (i, e) in mine.iter().filter(|e| e.ts < cut).enumerate() {
            programs.offer(e.clone()).unwrap();
            if i % 500 == 499 {
                programs.advance(worker, None, |_, _, _| {});
            }
        }
        programs.advance(worker, Some(cut), |_, _, _| {});
        for def in &defs {
            programs.install_segment(worker, def, cut).unwrap();
        }
        for plan in &plans {
            programs.install_journey(worker, plan.clone(), cut, Status::Ongoing).unwrap();
        }
        programs.advance(worker, Some(cut + 1), |_, _, _| {});
        for (i, e) in mine.iter().filter(|e| e.ts > cut).enumerate() {
            programs.offer(e.clone()).unwrap();
            if i % 300 == 299 {
                programs.advance(worker, None, |_, _, _| {});
            }
        }
        programs.advance(worker, Some(end + 1), |_, _, _| {});
        programs.settle(worker, end);
        let mut out = Vec::new();
        for (j, plan) in plans.iter().enumerate() {
            out.extend(programs.take_journey_outputs(plan.id()).into_iter().map(|o| (j, o)));
        }
        out
    })
    .unwrap()
    .join()
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    let defs = parse_segments(&seg_text).unwrap();
    let known = defs.iter().map(|d| d.id.clone()).collect();
    let plans: Vec<JourneyPlan> = journeyflow_types::parse_journeys(&journeys_text, &known)
        .unwrap()
        .into_iter()
        .map(|j| JourneyPlan::new(j, 1))
        .collect();
    let names: BTreeMap<Key, Arc<str>> =
        events.iter().map(|e| (Key::of(&e.user), Arc::from(e.user.as_str()))).collect();
    let journey_names: Vec<JourneyNames> = plans.iter().map(JourneyNames::new).collect();
    let mut records: Vec<(usize, JourneyOutput)> =
        outputs.into_iter().flatten().filter(|(_, o)| o.time() <= end).collect();
    records.sort_by_cached_key(|(j, o)| (o.time(), *j, names[&o.user()].clone()));
    let mut transitions = Vec::new();
    let mut actions = Vec::new();
    for (j, o) in &records {
        match o {
            JourneyOutput::Transition(t) => transitions.push(
                serde_json::to_value(TransitionLine::new(t, &journey_names[*j], names[&t.user].clone())).unwrap(),
            ),
            JourneyOutput::Action(a) => actions.push(
                serde_json::to_value(ActionLine::new(a, &journey_names[*j], a.user, names[&a.user].clone())).unwrap(),
            ),
            JourneyOutput::Conversion(_) => {}
        }
    }
    let seg_json: Vec<J> = serde_json::from_str(&seg_text).unwrap();
    let js: Vec<J> = serde_json::from_str(&journeys_text).unwrap();
    let reference = Reference::new(&seg_json, &events);
    let mut spans = BTreeSet::new();
    common::durations(&J::Array(seg_json.clone()), &mut spans);
    common::durations(&J::Array(js.clone()), &mut spans);
    let (want_t, want_a) = common::journey_reference::interpret(&js, &reference, &spans, &[], end, Some(cut));
    assert!(!want_t.is_empty(), "the interpreter moved nobody: nothing compared");
    assert!(want_t.iter().all(|t| t["time"].as_u64().unwrap() > cut));
    assert_eq!(transitions, want_t);
    assert_eq!(actions, want_a);
}

#[test]
fn journeys_installed_midstream_equal_the_interpreter_with_one_worker() {
    journeys_midstream(1);
}

#[test]
fn journeys_installed_midstream_equal_the_interpreter_with_two_workers() {
    journeys_midstream(2);
}
