//! Property test: a segment installed, replaced and removed at random times on the live
//! engine's workers ([`Programs`], what `run` and `replay` run), through the sequenced control
//! input like every change, among random events fed in random batches to 1 or 2 workers, which
//! retain them forever or for a random span.
//! While the segment is installed, its change log (reset at each install) must equal the
//! from-scratch reference evaluator (`tests/common/reference.rs`) of the definition in force,
//! at every time; after a removal it must say nothing more.

mod common;

use common::journey_gen::{condition, draft, feed, render, Deal, JITTER, SEGMENTS, STEP, T0};
use common::reference::{accepted, Reference};
use journeyflow::admission::IngestConfig;
use journeyflow::programs::Programs;
use journeyflow_types::{parse_segments, Key};
use proptest::prelude::*;
use serde_json::{json, Value as J};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The segment the test installs, replaces and removes.
const ID: &str = "x";

/// A change of the segment's definition: `Some(condition)` installs or replaces, `None` removes.
type Op = (u64, Option<J>);

#[derive(Clone, Debug)]
struct Case {
    lines: Vec<String>,
    ops: Vec<Op>,
    workers: usize,
    worker_of: Vec<usize>,
    boundary_after: Vec<bool>,
    /// How long events count (at least the longest window, 1 h), or forever.
    retention: Option<u64>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(draft(), 1..50),
        prop::collection::vec(0u64..JITTER, 1..8),
        prop::collection::vec((0u64..1000, prop::option::weighted(0.75, condition())), 1..6),
        1usize..3,
        prop::option::weighted(0.5, 3_600_000u64..14_400_000),
    )
        .prop_flat_map(|(drafts, jitters, ops, workers, retention)| {
            let lines = render(&drafts, &jitters);
            let n = lines.len() as u64;
            // Somewhere among the events (five minutes apart) or a little after, off the grid.
            let mut ops: Vec<Op> =
                ops.into_iter().map(|(at, c)| (T0 + at * (n + 6) * STEP / 1000 + 7_001, c)).collect();
            ops.sort_by_key(|op| op.0);
            ops.dedup_by_key(|op| op.0);
            let len = lines.len();
            (
                Just((lines, ops, workers, retention)),
                prop::collection::vec(0..workers, len),
                prop::collection::vec(prop::bool::weighted(0.3), len),
            )
        })
        .prop_map(|((lines, ops, workers, retention), worker_of, boundary_after)| Case {
            lines,
            ops,
            workers,
            worker_of,
            boundary_after,
            retention,
        })
}

/// The definition of `ID` with `condition`.
fn definition(condition: &J) -> J {
    json!({"id": ID, "condition": condition})
}

/// Runs the case; returns the segment's changes `(time, user, diff)` from every worker.
fn run(c: &Case) -> Vec<(u64, Key, isize)> {
    let c = Arc::new(c.clone());
    common::on_workers(c.workers, move |worker| {
        let ingest = IngestConfig { retention: c.retention, ..common::ingest(None, 86_400_000) };
        let mut programs = Programs::new(worker, ingest);
        let start = T0 - 1;
        programs.advance(worker, Some(start), |_, _, _| {});
        for def in parse_segments(SEGMENTS).unwrap() {
            programs.install_segment(worker, &def, start).unwrap();
        }
        if worker.index() == 0 {
            for (at, condition) in &c.ops {
                let text = condition.as_ref().map_or(String::new(), |c| definition(c).to_string());
                programs.submit_at(text, *at);
            }
        }
        let changes = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut apply = |p: &mut Programs, w: &mut timely::worker::Worker, s: journeyflow::programs::Sequenced| {
            if s.text.is_empty() {
                if p.has_segment(ID) {
                    p.remove_segment(ID, s.time).unwrap();
                }
                return;
            }
            let def = parse_segments(&format!("[{}, {}]", &SEGMENTS[1..SEGMENTS.len() - 1], s.text)).unwrap();
            let def = def.into_iter().find(|d| d.id == ID).unwrap();
            if p.has_segment(ID) {
                p.replace_segment(w, &def, s.time).unwrap();
            } else {
                p.install_segment(w, &def, s.time).unwrap();
            }
        };
        let deal = Deal { lines: &c.lines, worker_of: &c.worker_of, boundary_after: &c.boundary_after };
        let end = T0 + STEP * (c.lines.len() as u64 + 10);
        feed(&mut programs, worker, &deal, (start, end), &mut apply, |p| {
            changes.borrow_mut().extend(p.take_changes(ID));
        });
        programs.close(worker);
        let out: Vec<(u64, Key, isize)> = changes.borrow().iter().map(|c| (c.time, c.user, c.diff)).collect();
        out
    })
}

fn check(c: &Case) -> Result<(), TestCaseError> {
    let changes = run(c);
    let events = accepted(&c.lines, 86_400_000);
    let names: BTreeMap<Key, String> = events.iter().map(|e| (Key::of(&e.user), e.user.clone())).collect();
    let end = T0 + STEP * (c.lines.len() as u64 + 10);
    let base: Vec<J> = serde_json::from_str(SEGMENTS).unwrap();
    let mut spans = BTreeSet::from([0]);
    spans.extend(c.retention);
    common::durations(&J::Array(base.clone()), &mut spans);
    for (_, condition) in &c.ops {
        common::durations(&J::Array(condition.iter().cloned().collect()), &mut spans);
    }
    let mut times: BTreeSet<u64> = changes.iter().map(|c| c.0).collect();
    for e in &events {
        for d in &spans {
            times.extend([e.ts + d, (e.ts + d).saturating_sub(1)]);
        }
    }
    times.extend(c.ops.iter().map(|op| op.0));
    // The definition in force from each change's time until the next (none: not installed).
    let mut epochs: Vec<(u64, u64, Option<&J>)> = Vec::new();
    for (i, (at, condition)) in c.ops.iter().enumerate() {
        let until = c.ops.get(i + 1).map_or(end + 1, |next| next.0);
        epochs.push((*at, until, condition.as_ref()));
    }
    let before = c.ops[0].0;
    let early: Vec<_> = changes.iter().filter(|ch| ch.0 < before).collect();
    prop_assert!(early.is_empty(), "changes before the first install at {before}: {early:?}");
    // An install (a change while not installed) starts the log afresh.
    let mut installed = false;
    let mut since = 0;
    for (from, until, condition) in epochs {
        let Some(condition) = condition else {
            installed = false;
            let after: Vec<_> = changes.iter().filter(|ch| ch.0 > from && ch.0 < until).collect();
            prop_assert!(after.is_empty(), "changes after the removal at {from}: {after:?}");
            continue;
        };
        if !installed {
            (installed, since) = (true, from);
        }
        let mut defs = base.clone();
        defs.push(definition(condition));
        let reference = Reference::new(&defs, &events).retained_for(c.retention);
        for &t in times.range(from..until.min(end + 1)) {
            let mut count: BTreeMap<Key, isize> = BTreeMap::new();
            for ch in changes.iter().filter(|ch| ch.0 >= since && ch.0 <= t) {
                *count.entry(ch.1).or_default() += ch.2;
            }
            prop_assert!(count.values().all(|n| *n == 0 || *n == 1), "membership multiplicity at {t}: {count:?}");
            let got: BTreeSet<String> =
                count.into_iter().filter(|(_, n)| *n == 1).map(|(k, _)| names[&k].clone()).collect();
            let want = reference.members(ID, t);
            prop_assert_eq!(&got, &want, "{} at {} (installed at {}): {}", ID, t, since, definition(condition));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(common::proptest_config(128, "tests/proptest-regressions/installs_proptest.txt"))]

    #[test]
    fn a_segment_changed_at_random_times_equals_the_reference(c in case()) {
        check(&c)?;
    }
}
