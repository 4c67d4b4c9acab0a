//! `journeyflow replay` end to end on real files: the bundled sample, every kind of bad
//! record, invalid definitions, and the real CDNOW purchase history, each checked against
//! the reference evaluator from the files the command wrote.

mod common;

use common::repo;

use common::journey_reference::interpret;
use common::reference::{accepted, Reference};
use journeyflow::admission::{LatePolicy, DEFAULT_RETENTION};
use journeyflow::cli::import_cdnow::{self, ImportCdnowArgs};
use journeyflow::cli::replay::{execute, ReplayArgs, Summary};
use journeyflow::cli::Lateness;
use journeyflow::config::Kept;
use serde_json::{json, Value as J};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn args(events: &Path, segments: &Path, out: &Path, workers: usize) -> ReplayArgs {
    ReplayArgs {
        events: events.to_path_buf(),
        segments: segments.to_path_buf(),
        journeys: None,
        as_of: None,
        workers,
        out: out.to_path_buf(),
        allowed_lateness: Lateness(Some(3_600_000)),
        late_policy: LatePolicy::DeadLetter,
        dedup_window: 86_400_000,
        retention_events: Kept(Some(DEFAULT_RETENTION)),
        max_record_bytes: 1 << 20,
        max_future_skew: 3_600_000,
        batch_size: 500,
        cluster: Default::default(),
        deletions: None,
        entries: None,
        funnels: None,
        cohorts: None,
        paths: None,
        report_from: None,
        report_to: None,
        report_step: None,
    }
}

/// With `--as-of`, events timed more than the future skew after it (a wrong clock) are counted
/// apart; replay still treats them as it always did (after the as-of time: not processed).
#[test]
fn events_far_after_the_as_of_time_are_counted_apart() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    let mut text = std::fs::read_to_string(repo("datasets/sample/events.ndjson")).unwrap();
    text.push_str(r#"{"type": "track", "event": "X", "userId": "clock", "messageId": "far", "timestamp": "2999-01-01T00:00:00Z"}"#);
    text.push('\n');
    std::fs::write(&events, &text).unwrap();
    let as_of = journeyflow_types::time::parse_instant_str("2024-01-20T00:00:00Z").unwrap();
    let timestamps: Vec<u64> =
        text.lines().filter_map(|l| journeyflow_types::decode_line(l.as_bytes()).ok()).map(|e| e.ts).collect();
    let after = timestamps.iter().filter(|t| **t > as_of).count() as u64;
    let far = timestamps.iter().filter(|t| **t > as_of + 3_600_000).count() as u64;
    let mut a = args(&events, &repo("datasets/sample/segments.json"), &dir.path().join("out"), 1);
    a.as_of = Some(as_of);
    let summary = execute(&a).unwrap();
    assert_eq!((summary.after_as_of, summary.far_future), (after, far));
    assert!(far > 1 && far < after, "{far} of {after}");
}

/// The records of an NDJSON file; output records lose their `id` after it is checked: 32 hex
/// digits, no two records of the file with the same id.
fn read_ndjson(path: &Path) -> Vec<J> {
    let mut ids = BTreeSet::new();
    let text = std::fs::read_to_string(path).unwrap();
    let mut records: Vec<J> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for r in records.iter_mut().filter(|r| r.get("id").is_some()) {
        let id = r.as_object_mut().unwrap().remove("id").unwrap();
        let id = id.as_str().unwrap().to_string();
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "bad id {id} in {}", path.display());
        assert!(ids.insert(id.clone()), "id {id} twice in {}", path.display());
    }
    records
}

/// Checks `segment_changes.ndjson` and `members.ndjson` in `out` against the reference at
/// `times`, events retained for `retention`.
fn check_outputs(out: &Path, defs: &[J], lines: &[String], times: &[u64], retention: Option<u64>) {
    let events = accepted(lines, 86_400_000);
    let reference = Reference::new(defs, &events).retained_for(retention);
    let changes = read_ndjson(&out.join("segment_changes.ndjson"));
    let mut last = 0;
    for c in &changes {
        let t = c["time"].as_u64().unwrap();
        assert!(t >= last, "changes out of time order at {c}");
        last = t;
    }
    for &t in times {
        let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut acc: BTreeMap<(String, String), i64> = BTreeMap::new();
        for c in changes.iter().filter(|c| c["time"].as_u64().unwrap() <= t) {
            let d = if c["change"] == "enter" { 1 } else { -1 };
            *acc.entry((c["segment"].as_str().unwrap().into(), c["user_id"].as_str().unwrap().into())).or_default() +=
                d;
        }
        for ((seg, user), n) in acc {
            assert!(n == 0 || n == 1, "{seg} {user} multiplicity {n}");
            if n == 1 {
                got.entry(seg).or_default().insert(user);
            }
        }
        for d in defs {
            let id = d["id"].as_str().unwrap();
            assert_eq!(got.remove(id).unwrap_or_default(), reference.members(id, t), "segment {id} at {t}");
        }
    }
    // members.ndjson is the membership at the last time.
    let as_of = *times.last().unwrap();
    let mut members: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in read_ndjson(&out.join("members.ndjson")) {
        members.entry(m["segment"].as_str().unwrap().into()).or_default().insert(m["user_id"].as_str().unwrap().into());
    }
    for d in defs {
        let id = d["id"].as_str().unwrap();
        assert_eq!(members.remove(id).unwrap_or_default(), reference.members(id, as_of), "members.ndjson {id}");
    }
}

#[test]
fn bundled_sample_replays_end_to_end_with_one_and_two_workers() {
    let events = repo("datasets/sample/events.ndjson");
    let segments = repo("datasets/sample/segments.json");
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let s1 = execute(&args(&events, &segments, &one, 1)).unwrap();
    let s2 = execute(&args(&events, &segments, &two, 2)).unwrap();
    for f in ["segment_changes.ndjson", "members.ndjson", "dead_letter.ndjson"] {
        assert_eq!(
            std::fs::read(one.join(f)).unwrap(),
            std::fs::read(two.join(f)).unwrap(),
            "{f} differs between 1 and 2 workers"
        );
    }
    assert_eq!((s1.records, s1.malformed, s1.duplicates, s1.late_rejected), (8005, 4, 1, 0));
    assert_eq!(s1.segment_sizes, s2.segment_sizes);
    let dead: Vec<u64> =
        read_ndjson(&one.join("dead_letter.ndjson")).iter().map(|d| d["line"].as_u64().unwrap()).collect();
    assert_eq!(dead, vec![1002, 2503, 4005, 5506]);

    let lines: Vec<String> = std::fs::read_to_string(&events).unwrap().lines().map(String::from).collect();
    let defs: Vec<J> = serde_json::from_str(&std::fs::read_to_string(&segments).unwrap()).unwrap();
    let as_of = s1.as_of.unwrap();
    let start = 1_704_067_200_000u64;
    let mut times: Vec<u64> = (0..40).map(|k| start + (as_of - start) * k / 40).collect();
    times.push(as_of);
    check_outputs(&one, &defs, &lines, &times, Some(DEFAULT_RETENTION));
    // Every segment has members at the end, so the comparison above compared something.
    assert!(s1.segment_sizes.values().all(|&n| n > 0), "{:?}", s1.segment_sizes);
}

/// Replays the sample with the journeys of `journeys` on one worker and on two (in batches of
/// `batch`), checks the journey files agree, and returns the one-worker run's summary and
/// directory with what the interpreter computes for the same journeys:
/// `(summary, directory, transitions, actions)`.
fn sample_journeys(journeys: &Path, batch: usize, dir: &Path) -> (Summary, PathBuf, Vec<J>, Vec<J>) {
    let events = repo("datasets/sample/events.ndjson");
    let segments = repo("datasets/sample/segments.json");
    let (one, two) = (dir.join("one"), dir.join("two"));
    let mut a1 = args(&events, &segments, &one, 1);
    a1.journeys = Some(journeys.to_path_buf());
    let mut a2 = args(&events, &segments, &two, 2);
    a2.journeys = Some(journeys.to_path_buf());
    a2.batch_size = batch;
    let s1 = execute(&a1).unwrap();
    execute(&a2).unwrap();
    for f in ["journey_transitions.ndjson", "journey_actions.ndjson", "journey_stats.json"] {
        assert_eq!(std::fs::read(one.join(f)).unwrap(), std::fs::read(two.join(f)).unwrap(), "{f} differs");
    }
    let lines: Vec<String> = std::fs::read_to_string(&events).unwrap().lines().map(String::from).collect();
    let defs: Vec<J> = serde_json::from_str(&std::fs::read_to_string(&segments).unwrap()).unwrap();
    let js: Vec<J> = serde_json::from_str(&std::fs::read_to_string(journeys).unwrap()).unwrap();
    let reference = Reference::new(&defs, &accepted(&lines, 86_400_000)).retained_for(Some(DEFAULT_RETENTION));
    let mut spans = BTreeSet::new();
    common::durations(&J::Array(defs.clone()), &mut spans);
    common::durations(&J::Array(js.clone()), &mut spans);
    let (transitions, actions) = interpret(&js, &reference, &spans, &[], s1.as_of.unwrap(), None);
    (s1, one, transitions, actions)
}

#[test]
fn sample_journeys_write_what_the_interpreter_computes_with_one_and_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let (s1, one, transitions, actions) = sample_journeys(&repo("datasets/sample/journeys.json"), 77, dir.path());
    assert_eq!(read_ndjson(&one.join("journey_transitions.ndjson")), transitions);
    assert_eq!(read_ndjson(&one.join("journey_actions.ndjson")), actions);
    // Both journeys did something: entries, timeouts, branches, actions, a conversion.
    let reasons: BTreeSet<&str> = transitions.iter().map(|t| t["reason"].as_str().unwrap()).collect();
    for r in ["entry", "timeout", "next", "else", "goal"] {
        assert!(reasons.contains(r), "no {r} transition in the sample: {reasons:?}");
    }
    assert_eq!(s1.actions as usize, actions.len());
}

#[test]
fn a_daily_campaign_over_a_month_of_the_sample_writes_what_the_interpreter_computes() {
    // Every day at 09:00 UTC the lapsed buyers then (S3) get an email rendered from their
    // traits; an order within two days converts, worth its revenue.
    let campaign = json!([{"id": "daily_lapsed", "entry": {"segment": "s3_lapsed_buyer", "every": "1d", "at": "09:00"},
        "re_entry": {"mode": "after_exit"}, "goal": {"event": "Order Completed", "value": "revenue"}, "start": "mail",
        "nodes": {
            "mail": {"action": {"channel": "email", "template": "we_miss_you",
                "payload": {"plan": "{{ traits.plan | default('none') }}", "from": "{{ journey.id }}/{{ node }}"}}, "next": "wait"},
            "wait": {"wait": {"duration": "2d"}, "next": "done"},
            "done": {"exit": {}}}}]);
    let dir = tempfile::tempdir().unwrap();
    let journeys = dir.path().join("campaign.json");
    std::fs::write(&journeys, campaign.to_string()).unwrap();
    let (_, one, transitions, actions) = sample_journeys(&journeys, 97, dir.path());
    assert_eq!(read_ndjson(&one.join("journey_transitions.ndjson")), transitions);
    assert_eq!(read_ndjson(&one.join("journey_actions.ndjson")), actions);
    // Entries at 09:00 UTC on days across the month (S3 has members in its last weeks; a
    // user comes back at most every three days), and the campaign converted some.
    let days: BTreeSet<u64> = transitions
        .iter()
        .filter(|t| t["reason"] == "scheduled")
        .map(|t| t["time"].as_u64().unwrap())
        .inspect(|t| assert_eq!(t % 86_400_000, 9 * 3_600_000, "an entry at {t}, not 09:00"))
        .collect();
    let span = days.last().unwrap_or(&0) - days.first().unwrap_or(&0);
    assert!(days.len() >= 5 && span >= 7 * 86_400_000, "entries on {} days over {span} ms", days.len());
    assert!(transitions.iter().any(|t| t["reason"] == "goal"), "no conversion");
    assert!(actions.iter().all(|a| a["payload"]["from"] == "daily_lapsed/mail"), "rendered payloads");
}

#[test]
fn invalid_journeys_report_every_error_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journeys = dir.path().join("journeys.json");
    std::fs::write(
        &journeys,
        r#"[{"id": "j", "entry": {"segment_enter": "no_such_segment"}, "start": "a",
             "nodes": {"a": {"wait": {"duration": "1d"}, "next": "b"}, "b": {"split": {"branches": [{"percent": 70, "next": "a"}, {"percent": 20, "next": "c"}]}}}}]"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut a = args(&repo("datasets/sample/events.ndjson"), &repo("datasets/sample/segments.json"), &out, 1);
    a.journeys = Some(journeys);
    let err = execute(&a).unwrap_err().to_string();
    for fragment in [
        "$[0].entry.segment_enter: unknown segment",
        "$[0].nodes.b.split.branches[1].next: unknown node \"c\"",
        "$[0].nodes.b.split.branches: percents sum to 90",
    ] {
        assert!(err.contains(fragment), "{fragment:?} missing from: {err}");
    }
    assert!(!out.join("segment_changes.ndjson").exists());
}

#[test]
fn every_bad_record_goes_to_the_dead_letter_file_and_nothing_else_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let good = |i: u64| {
        format!(r#"{{"type":"track","event":"A","userId":"u{i}","messageId":"g{i}","timestamp":{}}}"#, 1000 + i)
    };
    let bad = [
        ("{oops", "malformed JSON"),
        ("[1,2]", "record is an array"),
        (r#"{"userId":"u","messageId":"b3","timestamp":5}"#, "missing field `type`"),
        (r#"{"type":"group","userId":"u","messageId":"b4","timestamp":5}"#, "unsupported type \"group\""),
        (r#"{"type":"track","event":"A","messageId":"b5","timestamp":5}"#, "missing user"),
        (r#"{"type":"track","event":"A","userId":"u","timestamp":5}"#, "missing field `messageId`"),
        (r#"{"type":"track","event":"A","userId":"u","messageId":"b7"}"#, "missing field `timestamp`"),
        (r#"{"type":"track","event":"A","userId":"u","messageId":"b8","timestamp":-3}"#, "field `timestamp`"),
        (r#"{"type":"track","userId":"u","messageId":"b9","timestamp":5}"#, "missing field `event`"),
        (
            r#"{"type":"track","event":"A","userId":"u","messageId":"b10","timestamp":5,"properties":"x"}"#,
            "field `properties`",
        ),
        (r#"{"type":"identify","userId":"u","messageId":"b11","timestamp":5,"traits":[1]}"#, "field `traits`"),
        (
            &format!(
                r#"{{"type":"track","event":"A","userId":"u","messageId":"b12","timestamp":5,"properties":{{"pad":"{}"}}}}"#,
                "x".repeat(600)
            ),
            "exceeds the limit of 512 bytes",
        ),
    ];
    let mut text = String::new();
    let mut expected = Vec::new();
    for (i, (record, reason)) in bad.iter().enumerate() {
        text.push_str(&good(i as u64));
        text.push('\n');
        text.push_str(record);
        text.push('\n');
        expected.push((2 * i as u64 + 2, *reason));
    }
    text.push_str(&good(99));
    text.push('\n');
    let events = dir.path().join("events.ndjson");
    std::fs::write(&events, &text).unwrap();
    let segments = dir.path().join("segments.json");
    std::fs::write(&segments, r#"[{"id": "did_a", "condition": {"performed": {"event": "A"}}}]"#).unwrap();
    let out = dir.path().join("out");
    let mut a = args(&events, &segments, &out, 2);
    a.max_record_bytes = 512;
    let summary = execute(&a).unwrap();
    let dead = read_ndjson(&out.join("dead_letter.ndjson"));
    assert_eq!(dead.len(), expected.len(), "{dead:#?}");
    for (d, (line, reason)) in dead.iter().zip(&expected) {
        assert_eq!(d["line"].as_u64(), Some(*line), "{d}");
        assert!(d["reason"].as_str().unwrap().contains(reason), "line {line}: {d}");
    }
    // Every good record around them was processed.
    assert_eq!(summary.accepted, bad.len() as u64 + 1);
    assert_eq!(summary.segment_sizes["did_a"], bad.len() as u64 + 1);
}

#[test]
fn invalid_definitions_report_every_error_and_install_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let segments = dir.path().join("segments.json");
    std::fs::write(&segments, r#"[{"id": "OK?", "condition": {"performed": {"event": "A", "within": "3 days"}}}, {"id": "b", "condition": {"trait": {"name": "x", "op": "is"}}}]"#).unwrap();
    let out = dir.path().join("out");
    let err = execute(&args(&repo("datasets/sample/events.ndjson"), &segments, &out, 1)).unwrap_err().to_string();
    for fragment in ["$[0].id", "$[0].condition.performed.within", "$[1].condition.trait.op", "3 validation error(s)"] {
        assert!(err.contains(fragment), "{fragment:?} missing from: {err}");
    }
    assert!(!out.join("segment_changes.ndjson").exists());
}

/// Replays with the analyses `defs` of `kind` (`funnel`, `cohort` or `paths`; reports from `from` in
/// buckets of `step`) and checks the `<kind>_reports.json` written against DuckDB's
/// from-scratch reports over the events the engine accepted, events retained for `retention`.
fn check_reports(mut a: ReplayArgs, kind: &str, defs: &J, from: u64, step: u64, retention: Option<u64>) -> J {
    let file = a.out.with_extension(format!("{kind}s.json"));
    std::fs::write(&file, defs.to_string()).unwrap();
    match kind {
        "funnel" => a.funnels = Some(file),
        "cohort" => a.cohorts = Some(file),
        _ => a.paths = Some(file),
    }
    a.report_from = Some(from);
    a.report_step = (kind != "paths").then_some(step);
    a.retention_events = Kept(retention);
    let summary = execute(&a).unwrap();
    let written = std::fs::read_to_string(a.out.join(format!("{kind}_reports.json"))).unwrap();
    let got: J = serde_json::from_str(&written).unwrap();
    let lines: Vec<String> = std::fs::read_to_string(&a.events).unwrap().lines().map(String::from).collect();
    let rows = common::funnels::rows_of(&accepted(&lines, a.dedup_window));
    let as_of = summary.as_of.unwrap();
    // Paths take no buckets.
    let step = (kind != "paths").then_some(step);
    let query = journeyflow_control_api::buckets::Buckets { from, to: as_of + 1, step };
    let asked: Vec<_> = (0..defs.as_array().unwrap().len() as u32).map(|i| (as_of, i, query)).collect();
    let expected = match kind {
        "funnel" => common::funnels::duckdb_reports(&rows, defs, &asked, retention),
        "cohort" => common::funnels::duckdb_cohort_reports(&rows, defs, &asked, retention),
        _ => common::funnels::duckdb_paths_reports(&rows, defs, &asked, retention),
    };
    assert_eq!(got, expected);
    got
}

/// The sample's funnels (a strict checkout broken down by country, an any-order one with a
/// predicate), by week, equal DuckDB's on one worker and on two.
#[test]
fn sample_funnels_equal_duckdb_with_one_and_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let defs = json!([
        {"id": "checkout", "steps": [{"event": "Product Viewed"}, {"event": "Product Added"}, {"event": "Cart Viewed"},
            {"event": "Order Completed"}], "within": "3d", "breakdown": {"trait": "country"}},
        {"id": "pricey", "steps": [{"event": "Product Viewed", "where": [{"property": "price", "op": "gt", "value": 100}]},
            {"event": "Order Completed"}, {"event": "Email Opened"}], "within": "7d", "order": "any"}
    ]);
    let from = journeyflow_types::time::parse_instant_str("2024-01-01T00:00:00Z").unwrap();
    for workers in [1, 2] {
        let out = dir.path().join(format!("out{workers}"));
        let a = args(&repo("datasets/sample/events.ndjson"), &repo("datasets/sample/segments.json"), &out, workers);
        let report = check_reports(a, "funnel", &defs, from, 7 * 86_400_000, None);
        let first = &report[0]["buckets"][0]["steps"];
        assert!(first[0]["users"].as_u64().unwrap() > 50 && first[3]["users"].as_u64().unwrap() > 0, "{first}");
        assert!(report[0]["buckets"][0]["breakdown"].as_array().unwrap().len() > 3);
    }
    // The paths after a cart view (collapsed), and those leading to an order (of three names).
    let paths = json!([
        {"id": "after_cart", "start": {"event": "Cart Viewed"}, "depth": 3, "collapse": true, "top": 8,
            "events": ["Page Viewed", "Product Viewed", "Product Added", "Cart Viewed", "Order Completed", "Email Opened"]},
        {"id": "to_order", "end": {"event": "Order Completed"}, "depth": 4,
            "events": ["Product Viewed", "Product Added", "Cart Viewed"], "within": "1d"}
    ]);
    let out = dir.path().join("paths");
    let a = args(&repo("datasets/sample/events.ndjson"), &repo("datasets/sample/segments.json"), &out, 2);
    let report = check_reports(a, "paths", &paths, from, 0, None);
    assert!(report[0]["users"].as_u64().unwrap() > 50 && report[0]["top"].as_array().unwrap().len() == 8, "{report}");
    assert!(!report[1]["sankey"]["links"].as_array().unwrap().is_empty(), "{report}");
}

#[test]
fn real_cdnow_purchases_give_rfm_segments_equal_to_the_reference() {
    let input = std::env::var_os("JOURNEYFLOW_CDNOW")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo("datasets/cdnow/CDNOW_master.txt"));
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("cdnow.ndjson");
    import_cdnow::execute(&ImportCdnowArgs { input, out: events.clone() }).unwrap();
    let segments = dir.path().join("rfm.json");
    let defs = serde_json::json!([
        {"id": "repeat_buyer", "condition": {"performed": {"event": "Order Completed", "within": "90d", "at_least": 3}}},
        {"id": "big_spender", "condition": {"aggregate": {"event": "Order Completed", "property": "revenue", "fn": "sum", "within": "365d", "op": "gte", "value": 200}}},
        {"id": "lapsed", "condition": {"all": [{"performed": {"event": "Order Completed"}}, {"not": {"performed": {"event": "Order Completed", "within": "180d"}}}]}},
        {"id": "lapsed_big_spender", "condition": {"all": [{"in_segment": "lapsed"}, {"aggregate": {"event": "Order Completed", "property": "revenue", "fn": "max", "op": "gt", "value": 100}}]}}
    ]);
    std::fs::write(&segments, defs.to_string()).unwrap();
    let out = dir.path().join("out");
    // The windows reach back a year, and the history is 18 months: at the 90-day default the
    // definitions are refused; at 400 days the oldest purchases expire before the end.
    let mut a = args(&events, &segments, &out, 2);
    let err = execute(&a).unwrap_err().to_string();
    assert!(err.contains("$[1].condition.aggregate.within: 365d reaches back further"), "{err}");
    let retention = 400 * 86_400_000;
    a.retention_events = Kept(Some(retention));
    let summary = execute(&a).unwrap();
    assert_eq!((summary.records, summary.malformed), (69_659, 0));
    let lines: Vec<String> = std::fs::read_to_string(&events).unwrap().lines().map(String::from).collect();
    let as_of = summary.as_of.unwrap();
    // 1997-03-31, 1997-09-30, 1998-03-31, then the end of the data.
    let times = [859_809_600_000u64, 875_620_800_000, 891_345_600_000, as_of];
    check_outputs(&out, defs.as_array().unwrap(), &lines, &times, Some(retention));
    assert!(summary.segment_sizes.values().all(|&n| n > 0), "{:?}", summary.segment_sizes);
    // Repeat purchases, by month of the first: a third within 90 days, then one over 50 (the
    // months more than 400 days before the end have expired).
    let funnels = json!([{"id": "repeat", "steps": [{"event": "Order Completed"}, {"event": "Order Completed"},
        {"event": "Order Completed", "where": [{"property": "revenue", "op": "gt", "value": 50}]}], "within": "90d"}]);
    let start = journeyflow_types::time::parse_instant_str("1997-01-01T00:00:00Z").unwrap();
    let report = check_reports(a.clone(), "funnel", &funnels, start, 30 * 86_400_000, Some(retention));
    let users = |step: usize| -> u64 {
        report[0]["buckets"].as_array().unwrap().iter().map(|b| b["steps"][step]["users"].as_u64().unwrap()).sum()
    };
    assert!(users(0) > 5_000 && users(2) > 100, "{report}");
    // Retention of buyers by the month of their first purchase (within the retained history):
    // who bought again in each of the 12 months after it.
    let cohorts = json!([{"id": "buyers", "first": {"event": "Order Completed"}, "return": {"event": "Order Completed"},
        "period": "30d", "periods": 12}]);
    let report = check_reports(a, "cohort", &cohorts, start, 30 * 86_400_000, Some(retention));
    let retained: u64 =
        report[0]["cohorts"].as_array().unwrap().iter().map(|c| c["periods"][1]["retained"].as_u64().unwrap()).sum();
    assert!(retained > 100, "{report}");
}

/// `journeyflow generate` (the binary) into `out` with the given format.
fn generate(format: &str, out: &Path) {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_journeyflow"))
        .args(["generate", "--users", "300", "--events", "20000", "--seed", "9", "--days", "20", "--format", format])
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
}

#[test]
fn generated_parquet_is_read_by_pyarrow_and_replays_like_its_ndjson() {
    let dir = tempfile::tempdir().unwrap();
    let (ndjson, parquet) = (dir.path().join("events.ndjson"), dir.path().join("events.parquet"));
    generate("ndjson", &ndjson);
    generate("parquet", &parquet);
    let lines: Vec<J> =
        std::fs::read_to_string(&ndjson).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // Another reader: pyarrow sees one row per event, the timestamp as a UTC timestamp, and
    // properties / traits as JSON text.
    {
        let python = std::env::var("JOURNEYFLOW_PYTHON")
            .expect("JOURNEYFLOW_PYTHON names a Python with pyarrow (scripts/test.sh)");
        let script = "import json, sys, pyarrow.parquet as pq\n\
            t = pq.read_table(sys.argv[1])\n\
            rows = t.to_pylist()\n\
            print(json.dumps({'rows': len(rows), 'ts': str(t.schema.field('timestamp').type), \
            'first': {k: (v.timestamp() * 1000 if k == 'timestamp' else v) for k, v in rows[0].items()}}))";
        let out = std::process::Command::new(python).args(["-c", script]).arg(&parquet).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let seen: J = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(seen["rows"], lines.len());
        assert_eq!(seen["ts"], "timestamp[ms, tz=UTC]");
        let first = &seen["first"];
        assert_eq!(first["messageId"], lines[0]["messageId"]);
        assert_eq!(first["timestamp"].as_f64().unwrap() as u64, lines[0]["timestamp"].as_u64().unwrap());
        let props = first["properties"].as_str().or(first["traits"].as_str()).unwrap();
        let original = lines[0].get("properties").or(lines[0].get("traits")).unwrap();
        assert_eq!(&serde_json::from_str::<J>(props).unwrap(), original);
    }
    // The same outputs from either file, with one worker and with two.
    let sample = repo("datasets/sample");
    for workers in [1, 2] {
        let mut outs = Vec::new();
        for file in [&ndjson, &parquet] {
            let out = dir.path().join(format!("out-{workers}-{}", file.extension().unwrap().to_str().unwrap()));
            let mut a = args(file, &sample.join("segments.json"), &out, workers);
            a.journeys = Some(sample.join("journeys.json"));
            let summary = execute(&a).unwrap();
            assert_eq!((summary.records, summary.malformed), (lines.len() as u64, 0));
            outs.push(out);
        }
        for name in ["segment_changes.ndjson", "journey_transitions.ndjson", "journey_actions.ndjson", "members.ndjson"]
        {
            let (a, b) = (read_ndjson(&outs[0].join(name)), read_ndjson(&outs[1].join(name)));
            assert!(!a.is_empty(), "{name}: nothing to compare");
            assert_eq!(a, b, "{name} with {workers} worker(s)");
        }
    }
}

#[test]
fn replay_deletes_users_as_the_deletions_file_says() {
    let events = repo("datasets/sample/events.ndjson");
    let segments = repo("datasets/sample/segments.json");
    let dir = tempfile::tempdir().unwrap();
    execute(&args(&events, &segments, &dir.path().join("plain"), 1)).unwrap();
    let plain = read_ndjson(&dir.path().join("plain/segment_changes.ndjson"));
    // The user with the most changes, deleted a millisecond after they first entered.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for c in &plain {
        *counts.entry(c["user_id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    let user = counts.iter().max_by_key(|(_, n)| **n).unwrap().0.clone();
    let entered = plain.iter().find(|c| c["user_id"] == user.as_str()).unwrap()["time"].as_u64().unwrap();
    let at = entered + 1;
    let file = dir.path().join("deletions.ndjson");
    std::fs::write(&file, format!("{}\n", serde_json::json!({"user_id": user, "time": at}))).unwrap();
    let mut outputs = Vec::new();
    for workers in [1, 2] {
        let out = dir.path().join(format!("deleted-{workers}"));
        execute(&ReplayArgs { deletions: Some(file.clone()), ..args(&events, &segments, &out, workers) }).unwrap();
        outputs.push(std::fs::read(out.join("segment_changes.ndjson")).unwrap());
    }
    assert_eq!(outputs[0], outputs[1], "1 and 2 workers disagree");
    let deleted = read_ndjson(&dir.path().join("deleted-1/segment_changes.ndjson"));
    let others =
        |changes: &[J]| -> Vec<J> { changes.iter().filter(|c| c["user_id"] != user.as_str()).cloned().collect() };
    assert_eq!(others(&deleted), others(&plain), "other users' changes differ");
    let theirs: Vec<&J> = deleted.iter().filter(|c| c["user_id"] == user.as_str()).collect();
    let before: Vec<&J> =
        plain.iter().filter(|c| c["user_id"] == user.as_str() && c["time"].as_u64() < Some(at)).collect();
    assert_eq!(theirs[..before.len()], before[..], "their changes before the deletion differ");
    let at_deletion: Vec<&&J> = theirs.iter().filter(|c| c["time"] == at).collect();
    assert!(!at_deletion.is_empty());
    assert!(at_deletion.iter().all(|c| c["change"] == "exit" && c["reason"] == "deleted"), "{at_deletion:?}");
    // Out of every segment at the deletion.
    let mut member: BTreeMap<&str, i64> = BTreeMap::new();
    for c in theirs.iter().filter(|c| c["time"].as_u64() <= Some(at)) {
        *member.entry(c["segment"].as_str().unwrap()).or_default() += if c["change"] == "enter" { 1 } else { -1 };
    }
    assert!(member.values().all(|n| *n == 0), "{member:?}");
    // A line that is not a deletion is refused with its place.
    std::fs::write(&file, "{\"user_id\": \"a\", \"time\": 5}\n{\"user\": \"b\"}\n").unwrap();
    let args = ReplayArgs { deletions: Some(file.clone()), ..args(&events, &segments, &dir.path().join("bad"), 1) };
    let error = format!("{:#}", execute(&args).unwrap_err());
    assert!(error.contains("deletions.ndjson:2"), "{error}");
}

/// `journeyflow delete-user` (the binary) with `args`; its stderr, after asserting success
/// (or failure, when `ok` is false).
fn delete_user(args: &[&std::ffi::OsStr], ok: bool) -> String {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_journeyflow")).arg("delete-user").args(args).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.success(), ok, "{said}");
    said
}

/// Every line of every NDJSON output of `kind` in `out`, but blank ones.
fn output_set(out: &Path, kind: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(out.join(format!("{kind}.ndjson"))).unwrap();
    text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

/// Every string of a Parquet file's text columns, quoted, one per line.
fn parquet_strings(path: &Path) -> Vec<u8> {
    use arrow::array::{Array, StringArray};
    let mut out = Vec::new();
    for batch in journeyflow_connectors::parquet_file::read_batches(path).unwrap() {
        for column in batch.columns() {
            let Some(strings) = column.as_any().downcast_ref::<StringArray>() else { continue };
            for v in strings.iter().flatten() {
                out.extend_from_slice(format!("{}\n", J::from(v)).as_bytes());
            }
        }
    }
    out
}

#[test]
fn delete_user_removes_a_user_from_event_output_and_parquet_files() {
    let dir = tempfile::tempdir().unwrap();
    let (ndjson, parquet) = (dir.path().join("events.ndjson"), dir.path().join("events.parquet"));
    generate("ndjson", &ndjson);
    generate("parquet", &parquet);
    let text = std::fs::read_to_string(&ndjson).unwrap();
    let id = |l: &J| l.get("userId").or(l.get("anonymousId")).and_then(J::as_str).unwrap().to_string();
    let user = id(&serde_json::from_str(text.lines().next().unwrap()).unwrap());
    // Independently: the events without the user, and what a replay of them writes.
    let without: String = text
        .lines()
        .filter(|l| {
            let l: J = serde_json::from_str(l).unwrap();
            l["userId"] != user.as_str() && l["anonymousId"] != user.as_str()
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(without.len() < text.len());
    let never = dir.path().join("never.ndjson");
    std::fs::write(&never, &without).unwrap();
    let sample = repo("datasets/sample");
    let replay = |events: &Path, out: &Path| {
        let mut a = args(events, &sample.join("segments.json"), out, 2);
        a.journeys = Some(sample.join("journeys.json"));
        execute(&a).unwrap();
    };
    let (with_out, never_out) = (dir.path().join("out-with"), dir.path().join("out-never"));
    replay(&ndjson, &with_out);
    replay(&never, &never_out);
    let theirs = |out: &Path| output_set(out, "segment_changes").iter().any(|l| l.contains(&format!("\"{user}\"")));
    assert!(theirs(&with_out), "the user has outputs to delete");

    // The event file compacted, the Parquet file and the output directory in place.
    let said = delete_user(&["--user-id".as_ref(), user.as_ref(), "--compact".as_ref(), ndjson.as_os_str()], true);
    assert!(said.contains("deleted 1 users"), "{said}");
    assert_eq!(std::fs::read_to_string(&ndjson).unwrap(), without, "the compacted event file");
    let users = dir.path().join("users.ndjson");
    std::fs::write(&users, format!("{}\n", serde_json::json!({"user_id": user}))).unwrap();
    delete_user(&["--users".as_ref(), users.as_os_str(), parquet.as_os_str(), with_out.as_os_str()], true);
    for kind in ["segment_changes", "journey_transitions", "journey_actions"] {
        assert_eq!(output_set(&with_out, kind), output_set(&never_out, kind), "{kind}: the others' records");
    }
    // No file names the user any more (Parquet read back as rows).
    for file in common::outputs::walk(dir.path()) {
        let name = file.file_name().unwrap().to_str().unwrap();
        let bytes = match name {
            n if n.ends_with(".parquet") => parquet_strings(&file),
            n if n.ends_with(".ndjson") && n != "users.ndjson" => std::fs::read(&file).unwrap(),
            _ => continue,
        };
        let found = String::from_utf8_lossy(&bytes).contains(&format!("\"{user}\""));
        assert!(!found || file.starts_with(&never_out), "{} still names {user}", file.display());
    }
    // The scrubbed Parquet file replays as if the user had never been.
    let parquet_out = dir.path().join("out-parquet");
    replay(&parquet, &parquet_out);
    for kind in ["segment_changes", "journey_transitions", "journey_actions"] {
        assert_eq!(output_set(&parquet_out, kind), output_set(&never_out, kind), "{kind} from the scrubbed Parquet");
    }
    // A service's data directory is refused.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("control.ndjson"), "").unwrap();
    let said = delete_user(&["--user-id".as_ref(), user.as_ref(), data.as_os_str()], false);
    assert!(said.contains("DELETE /v1/users"), "{said}");
}
