//! criterion micro-benchmarks of the hot paths, each over the same 50,000 generated events
//! (5,000 users, 60 days): decoding NDJSON into events and into the records the engine keeps,
//! testing a filter on each, and one worker's engine with a
//! single standard definition, so that the figure is that operator's (the window count of
//! S2, the aggregate of S4, the sequence of S6, the journey of J1), next to the engine with no
//! definition at all (the shared cost: deduplication and the input). A second group times
//! S2's count alone, as the `window` operator and as the temporal filter and `count` it
//! replaced, over the same matches in the same run. A third times installing one segment over
//! the retained events, for a segment reading half of them (`Product Viewed`) and one reading
//! 2% (`Order Completed`): an install reads only the event names its definition names, so the
//! second should cost a fraction of the first. Run with `cargo bench -p journeyflow-benches`.

#![allow(missing_docs)] // criterion_group! and criterion_main! generate undocumented functions.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use differential_dataflow::input::Input;
use differential_dataflow::AsCollection;
use journeyflow::admission::IngestConfig;
use journeyflow::programs::Programs;
use journeyflow_datasets::generator::{event_line, GeneratorConfig};
use journeyflow_operators::journey::plan::JourneyPlan;
use journeyflow_operators::window_count::window_count;
use journeyflow_operators::{Time, UserId};
use journeyflow_types::{
    decode_line, decode_record, parse_journeys, parse_segments, Condition, Event, Record, SegmentDefinition,
};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::{Duration, Instant};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

const EVENTS: u64 = 50_000;
const BATCH: usize = 10_000;

fn lines() -> Vec<String> {
    let config = GeneratorConfig { users: 5_000, events: EVENTS, ..GeneratorConfig::default() };
    (0..EVENTS)
        .map(|i| {
            let mut line = String::new();
            event_line(&config, i, &mut line);
            line
        })
        .collect()
}

/// Runs `events` through one worker's engine with `defs` and `plans` to the end.
fn run(events: Vec<Event>, defs: &[SegmentDefinition], plans: &[JourneyPlan]) -> usize {
    let (defs, plans) = (defs.to_vec(), plans.to_vec());
    timely::execute_directly(move |worker| {
        let mut programs = Programs::new(worker, IngestConfig::default());
        for def in &defs {
            programs.install_segment(worker, def, 0).expect("the standard definitions install");
        }
        for plan in &plans {
            programs.install_journey_first(worker, plan.clone()).expect("the standard journeys install");
        }
        let as_of = events.iter().map(|e| e.ts).max().unwrap_or(0);
        for (i, event) in events.into_iter().enumerate() {
            let _ = programs.offer(event);
            if (i + 1).is_multiple_of(BATCH) {
                programs.advance(worker, None, |_, _, _| {});
            }
        }
        programs.input_done();
        programs.run_to(worker, as_of);
        let changes: usize = defs.iter().map(|d| programs.take_changes(&d.id).len()).sum();
        let records: usize = plans.iter().map(|p| programs.take_journey_outputs(p.id()).len()).sum();
        programs.close(worker);
        changes + records
    })
}

fn segment(id: &str) -> Vec<SegmentDefinition> {
    let all = parse_segments(include_str!("../../datasets/sample/segments.json")).expect("valid");
    all.into_iter().filter(|d| d.id == id).collect()
}

fn benches(c: &mut Criterion) {
    let lines = lines();
    let events: Vec<Event> =
        lines.iter().map(|l| decode_line(l.as_bytes()).expect("generated events decode")).collect();
    let mut group = c.benchmark_group("hot paths");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    group.bench_function("decode", |b| {
        b.iter(|| lines.iter().filter(|l| decode_line(l.as_bytes()).is_ok()).count());
    });
    group.bench_function("decode into records", |b| {
        b.iter(|| {
            lines.iter().filter_map(|l| decode_record(l.as_bytes()).ok()).map(|(r, _)| r.encoded_len()).sum::<usize>()
        });
    });
    // What every segment does per event: test a filter (a name, a string and a number).
    let viewed = r#"[{"id": "f", "condition": {"performed": {"event": "Product Viewed", "at_least": 1, "where": [
        {"property": "category", "op": "eq", "value": "books"}, {"property": "price", "op": "gte", "value": 50}]}}}]"#;
    let filter = match parse_segments(viewed).expect("valid").pop().map(|d| d.condition) {
        Some(Condition::Performed(p)) => p.filter,
        other => panic!("a performed condition, found {other:?}"),
    };
    let records: Vec<Record> = events.iter().map(Record::new).collect();
    group.bench_function("filter on events", |b| b.iter(|| events.iter().filter(|e| filter.matches(*e)).count()));
    group.bench_function("filter on records", |b| b.iter(|| records.iter().filter(|r| filter.matches(*r)).count()));
    let journeys = parse_journeys(include_str!("../../datasets/sample/journeys.json"), &{
        let mut known = BTreeSet::new();
        known.insert("s3_lapsed_buyer".to_string());
        known
    })
    .expect("valid");
    let j1: Vec<JourneyPlan> =
        journeys.into_iter().filter(|j| j.id == "j1_abandoned_cart").map(|j| JourneyPlan::new(j, 1)).collect();
    let cases: [(&str, Vec<SegmentDefinition>, Vec<JourneyPlan>); 5] = [
        ("engine, no definitions", Vec::new(), Vec::new()),
        ("window count (S2)", segment("s2_frequent_viewer"), Vec::new()),
        ("aggregate (S4)", segment("s4_high_value"), Vec::new()),
        ("sequence (S6)", segment("s6_abandoned_cart"), Vec::new()),
        ("journey step (J1)", Vec::new(), j1),
    ];
    for (name, defs, plans) in &cases {
        group.bench_function(*name, |b| {
            b.iter_batched(|| events.clone(), |events| run(events, defs, plans), BatchSize::LargeInput);
        });
    }
    group.finish();
}

/// S2's window: at least 5 matches in 7 days.
const WEEK: Time = 7 * 24 * 3_600_000;

/// Runs matches `(user, ts)` (sorted by time) through "at least 5 in 7 days", as the `window`
/// operator or as a temporal filter and `count`, in batches, to the end; returns the changes.
fn count_alone(matches: &[(UserId, Time)], temporal: bool) -> usize {
    let matches = matches.to_vec();
    timely::execute_directly(move |worker| {
        let changes = Rc::new(Cell::new(0));
        let seen = changes.clone();
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<Time, _, _>(|scope| {
            let (input, matches) = scope.new_collection::<(UserId, Time), isize>();
            let members = if temporal {
                // Materialize's temporal filter: each match and, a week ahead, its retraction.
                let present =
                    matches.inner.flat_map(|((user, ts), t, r)| [(user, t.max(ts), r), (user, ts + WEEK, -r)]);
                present
                    .as_collection()
                    .count()
                    .filter(|(_, n)| *n >= 5)
                    .map(|(user, _)| user)
                    // The count's output changes at every match; members change less often.
                    .consolidate()
            } else {
                window_count(matches, Some(WEEK), 5, None)
            };
            members.inner.inspect(move |_| seen.set(seen.get() + 1)).probe_with(&probe);
            input
        });
        for chunk in matches.chunks(BATCH) {
            for &(user, ts) in chunk {
                input.update_at((user, ts), ts, 1);
            }
            let next = chunk.last().map_or(0, |(_, ts)| ts + 1);
            input.advance_to(next);
            input.flush();
            worker.step_while(|| probe.less_than(&next));
        }
        drop(input);
        worker.step_while(|| !probe.done());
        changes.get()
    })
}

fn windows(c: &mut Criterion) {
    let events: Vec<Event> =
        lines().iter().map(|l| decode_line(l.as_bytes()).expect("generated events decode")).collect();
    let mut matches: Vec<(UserId, Time)> =
        events.iter().filter(|e| e.name == "Product Viewed").map(|e| (e.user, e.ts)).collect();
    matches.sort_by_key(|(_, ts)| *ts);
    assert_eq!(count_alone(&matches, true), count_alone(&matches, false), "the two forms disagree");
    let mut group = c.benchmark_group("window count alone");
    group.throughput(Throughput::Elements(matches.len() as u64));
    group.sample_size(10);
    group.bench_function("temporal filter and count (before)", |b| b.iter(|| count_alone(&matches, true)));
    group.bench_function("window operator", |b| b.iter(|| count_alone(&matches, false)));
    group.finish();
}

/// Segments installed over the retained events: one reading `Product Viewed` (half of the
/// events) and one reading `Order Completed` (2%), each with a trait condition.
const INSTALLS: [(&str, &str); 2] = [
    (
        "install over history, reads half of the events",
        r#"[{"id": "engaged_paid", "condition": {"all": [
            {"trait": {"name": "plan", "op": "in", "value": ["pro", "enterprise"]}},
            {"performed": {"event": "Product Viewed", "within": "30d", "at_least": 3}}]}}]"#,
    ),
    (
        "install over history, reads 2% of the events",
        r#"[{"id": "buying_paid", "condition": {"all": [
            {"trait": {"name": "plan", "op": "in", "value": ["pro", "enterprise"]}},
            {"performed": {"event": "Order Completed", "within": "30d", "at_least": 1}}]}}]"#,
    ),
];

/// Loads `events` into one worker's engine with no definitions, then installs `def` past them
/// and steps until its membership is complete; returns the time the install took and its size.
fn install(events: Vec<Event>, def: SegmentDefinition) -> (Duration, usize) {
    timely::execute_directly(move |worker| {
        let mut programs = Programs::new(worker, IngestConfig::default());
        let as_of = events.iter().map(|e| e.ts).max().unwrap_or(0);
        for event in events {
            let _ = programs.offer(event);
        }
        programs.advance(worker, Some(as_of + 1), |_, _, _| {});
        programs.settle(worker, as_of);
        let started = Instant::now();
        programs.install_segment(worker, &def, as_of + 1).expect("the segment installs");
        programs.advance(worker, Some(as_of + 2), |_, _, _| {});
        programs.settle(worker, as_of + 1);
        let took = started.elapsed();
        let members = programs.members_at(&def.id, as_of + 1).map_or(0, |m| m.len());
        programs.close(worker);
        (took, members)
    })
}

fn installs(c: &mut Criterion) {
    let events: Vec<Event> =
        lines().iter().map(|l| decode_line(l.as_bytes()).expect("generated events decode")).collect();
    let mut group = c.benchmark_group("install");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(10);
    for (name, text) in INSTALLS {
        let def = parse_segments(text).expect("valid").remove(0);
        assert!(install(events.clone(), def.clone()).1 > 0, "{name}: the segment has members");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| install(events.clone(), def.clone()).0).sum());
        });
    }
    group.finish();
}

criterion_group!(operators, benches, windows, installs);
criterion_main!(operators);
