//! The benchmark's from-scratch recomputation (which checks every benchmark run) agrees with
//! the tests' independent reference evaluator, member for member, at many times: on the
//! bundled sample (bad records included) and on generated data.

#[allow(dead_code)]
#[path = "../../pipeline/tests/common/reference.rs"]
mod reference;

use journeyflow_benches::recompute::History;
use journeyflow_benches::workload;
use journeyflow_datasets::generator::{event_line, GeneratorConfig};
use journeyflow_types::{decode_line, Key};
use std::collections::BTreeSet;

const DEDUP: u64 = 86_400_000;

fn compare(lines: &[String]) {
    let defs_json: Vec<serde_json::Value> = serde_json::from_str(workload::SEGMENTS).unwrap();
    let accepted = reference::accepted(lines, DEDUP);
    let oracle = reference::Reference::new(&defs_json, &accepted);
    let events = lines.iter().filter_map(|l| decode_line(l.as_bytes()).ok()).collect();
    let history = History::new(events, DEDUP);
    let defs = workload::segments();
    let mut times: Vec<u64> = accepted.iter().map(|e| e.ts).collect();
    times.sort_unstable();
    let mut checked = 0;
    for q in 1..=12 {
        let t = times[times.len() * q / 12 - 1] + q as u64 * 997;
        let members = history.members(&defs, t);
        for d in &defs {
            let expected: BTreeSet<Key> = oracle.members(&d.id, t).iter().map(|u| Key::of(u)).collect();
            let got: BTreeSet<Key> = members[&d.id].iter().copied().collect();
            assert_eq!(got, expected, "{} at {t}", d.id);
            checked += expected.len();
        }
    }
    assert!(checked > 100, "only {checked} memberships compared");
}

#[test]
fn agrees_with_the_reference_on_the_sample() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../datasets/sample/events.ndjson")).unwrap();
    compare(&text.lines().map(str::to_string).collect::<Vec<_>>());
}

#[test]
fn agrees_with_the_reference_on_generated_events() {
    let config = GeneratorConfig { users: 400, events: 16_000, seed: 7, ..GeneratorConfig::default() };
    let lines: Vec<String> = (0..config.events)
        .map(|i| {
            let mut line = String::new();
            event_line(&config, i, &mut line);
            line
        })
        .collect();
    compare(&lines);
}
