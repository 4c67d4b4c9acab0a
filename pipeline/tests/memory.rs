//! Removing a program gives its memory back: the live heap (counted by the allocator of this
//! test binary) grows when the six standard segments are installed over retained history, and
//! returns to where it was when they are removed, while the history itself stays loaded.

use journeyflow::admission::IngestConfig;
use journeyflow::programs::Programs;
use journeyflow_datasets::generator::{event_line, GeneratorConfig};
use journeyflow_types::{decode_line, parse_segments};
use std::alloc::System;
use std::path::Path;

#[global_allocator]
static HEAP: cap::Cap<System> = cap::Cap::new(System, usize::MAX);

#[test]
fn removing_segments_frees_the_memory_installing_them_took() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/sample/segments.json"))
        .unwrap();
    let defs = parse_segments(&text).unwrap();
    let config = GeneratorConfig { users: 20_000, events: 200_000, ..GeneratorConfig::default() };
    let events: Vec<_> = (0..config.events)
        .map(|i| {
            let mut line = String::new();
            event_line(&config, i, &mut line);
            decode_line(line.as_bytes()).unwrap()
        })
        .collect();
    let end = events.iter().map(|e| e.ts).max().unwrap() + 1;
    let (before, with, after) = timely::execute(timely::Config::thread(), move |worker| {
        let ingest = IngestConfig { allowed_lateness: None, dedup_window: 86_400_000, ..IngestConfig::default() };
        let mut programs = Programs::new(worker, ingest);
        for e in &events {
            programs.offer(e.clone()).unwrap();
        }
        let settle = |programs: &mut Programs, worker: &mut timely::worker::Worker, t: u64| {
            programs.advance(worker, Some(t), |_, _, _| {});
            programs.settle(worker, t - 1);
            // Let trace maintenance (merges, compaction) finish.
            for _ in 0..200 {
                worker.step();
            }
            HEAP.allocated()
        };
        let before = settle(&mut programs, worker, end);
        for def in &defs {
            programs.install_segment(worker, def, end).unwrap();
        }
        let with = settle(&mut programs, worker, end + 2);
        for def in defs.iter().rev() {
            programs.remove_segment(&def.id, end + 1).unwrap();
        }
        let after = settle(&mut programs, worker, end + 4);
        (before, with, after)
    })
    .unwrap()
    .join()
    .pop()
    .unwrap()
    .unwrap();
    let took = with as i64 - before as i64;
    let kept = after as i64 - before as i64;
    eprintln!("live heap: {before} bytes before installing, {with} with S1-S6, {after} after removing them");
    assert!(took > 1 << 20, "installing six segments over 200k events took only {took} bytes");
    assert!(kept < took / 10, "removing them kept {kept} of the {took} bytes they took");
}
