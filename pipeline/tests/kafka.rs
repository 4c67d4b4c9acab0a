//! `journeyflow run` against a real Kafka-protocol broker (tansu, started by `scripts/test.sh`,
//! its address in `JOURNEYFLOW_TEST_KAFKA`). Events are produced, and outputs read back, with
//! confluent-kafka from Python, not journeyflow's client. The outputs equal `journeyflow
//! replay` over the same events, ids included; malformed messages reach the dead-letter
//! topic with their reason; killed with SIGKILL at random points while it consumes and
//! restarted, the union of what it wrote equals an uninterrupted run, no id standing for two
//! different records.

mod common;

use common::kafka::{broker, client, config, consume, processed, produce, start, start_with, unique, Topics};
use common::outputs::{assert_union_equals, read_archive, replay, wait_durable_past, walk, KINDS};
use common::server::{output_lines, Server};
use rand::{Rng, SeedableRng};
use serde_json::Value as J;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn outputs_read_back_from_kafka_equal_replay_and_bad_messages_reach_the_dead_letter_topic() {
    let scratch = tempfile::tempdir().unwrap();
    let events = common::repo("datasets/sample/events.ndjson");
    let expected = replay(&events, &scratch.path().join("replay"));
    let topics = Topics::new("roundtrip");
    let lines = std::fs::read_to_string(&events).unwrap().lines().count() as u64;
    assert_eq!(produce(&topics.events, 3, &events), lines);
    let data = scratch.path().join("data");
    let archive = scratch.path().join("archive");
    let flags = ["--archive", archive.to_str().unwrap(), "--archive-interval", "300ms"];
    let server = start_with(2, &data, &config(scratch.path(), &topics), &flags);
    wait_durable_past(&data, expected.as_of);
    assert_eq!(processed(&server), lines);
    let metrics = reqwest::blocking::get(server.url("/metrics")).unwrap().text().unwrap();
    for p in 0..3 {
        let lag = format!(
            "journeyflow_source_lag_messages{{source=\"kafka\",topic=\"{}\",partition=\"{p}\"}} 0",
            topics.events
        );
        assert!(metrics.contains(&lag), "no {lag} in {metrics}");
    }
    assert_eq!(server.stop().code(), Some(0));
    // Everything read had its outputs in every sink: the group's offsets are at the end.
    let committed: J =
        serde_json::from_str(&client(&["committed", &broker(), &topics.prefix, &topics.events])).unwrap();
    let total: i64 = committed.as_object().unwrap().values().map(|o| o.as_i64().unwrap()).sum();
    assert_eq!(total, lines as i64, "committed offsets {committed}");
    for kind in KINDS {
        assert!(!expected.records[kind].is_empty(), "{kind}: nothing to compare");
        let records = consume(&topics.output(kind), scratch.path());
        for r in &records {
            assert_eq!(r["key"], r["value"]["user_id"], "{kind}: keyed by user id");
            assert_eq!(r["headers"]["journeyflow.id"], r["value"]["id"], "{kind}: the id is also a header");
        }
        let values: Vec<J> = records.iter().map(|r| r["value"].clone()).collect();
        assert_union_equals(kind, &values, &expected.records[kind], expected.as_of);
        // No restart, so nothing was written twice.
        let ids: std::collections::BTreeSet<&str> = values.iter().map(|v| v["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), values.len(), "{kind}: a record written twice without a restart");
        // The files say the same.
        assert_union_equals(kind, &output_lines(&data, kind), &expected.records[kind], expected.as_of);
    }
    // The archive holds the same records (pyarrow reads them, DuckDB counts them), and every
    // accepted event once, in files partitioned by day and hour, none left half-written.
    for kind in KINDS {
        let (mut rows, (count, ids, _)) = read_archive(&archive, kind, scratch.path());
        assert_eq!((count, ids), (rows.len() as u64, rows.len() as u64), "{kind}: DuckDB and pyarrow disagree");
        if kind == "journey_actions" {
            for r in &mut rows {
                if let Some(p) = r["payload"].as_str().map(|p| serde_json::from_str::<J>(p).unwrap()) {
                    r["payload"] = p;
                }
                // A column for every row; the lines leave `error` out unless an action failed.
                if r["error"].is_null() {
                    r.as_object_mut().unwrap().remove("error");
                }
            }
        }
        assert_union_equals(kind, &rows, &expected.records[kind], expected.as_of);
    }
    let (archived, (count, ids, days)) = read_archive(&archive, "events", scratch.path());
    let accepted = lines - expected.malformed;
    // Every accepted event, repeats of a message id included (the dataflow drops those).
    assert_eq!((archived.len() as u64, count, ids), (accepted, accepted, accepted - expected.duplicates));
    assert!(days > 30, "the sample spans weeks, archived in {days} days");
    let bad: Vec<&J> = archived.iter().filter(|e| e["message_id"].as_str().unwrap().starts_with("bad-")).collect();
    assert!(bad.is_empty(), "malformed events archived: {bad:?}");
    let leftovers = walk(&archive).into_iter().filter(|p| !p.to_string_lossy().ends_with(".parquet")).count();
    assert_eq!(leftovers, 0, "files other than Parquet in the archive");
    let dead = consume(&topics.output("dead_letter"), scratch.path());
    assert_eq!(dead.len() as u64, expected.malformed, "{dead:?}");
    for d in &dead {
        let reason = d["headers"]["journeyflow.error"].as_str().unwrap();
        assert!(!reason.is_empty(), "{d}");
        let source = d["headers"]["journeyflow.source"].as_str().unwrap();
        assert!(source.starts_with(&format!("{}/", topics.events)), "{d}");
    }
}

#[test]
fn killed_at_random_points_while_consuming_and_restarted_the_outputs_are_an_uninterrupted_runs() {
    let scratch = tempfile::tempdir().unwrap();
    let events = scratch.path().join("events.ndjson");
    let generated = Command::new(env!("CARGO_BIN_EXE_journeyflow"))
        .args(["generate", "--users", "5000", "--events", "300000", "--seed", "11", "--out"])
        .arg(&events)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let expected = replay(&events, &scratch.path().join("replay"));
    let topics = Topics::new("crash");
    let n = produce(&topics.events, 4, &events);
    let config = config(scratch.path(), &topics);
    let data = scratch.path().join("data");
    let seed: u64 = rand::random();
    eprintln!("kill points from seed {seed}");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    // Each run reads the topic again from where the first began: kill it at a random point of
    // that, after it has read between 5% and 80% of the events (it reads in steps of up to
    // 20,000).
    let mut points: Vec<u64> = (0..5).map(|_| rng.gen_range(n / 20..n * 4 / 5)).collect();
    points.sort_unstable();
    for (i, point) in points.iter().enumerate() {
        let server = start(1 + i % 2, &data, &config);
        let deadline = Instant::now() + Duration::from_secs(120);
        while processed(&server) < *point {
            assert!(Instant::now() < deadline, "run {i} never read {point} events");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(processed(&server) < n, "run {i} read everything before it was killed");
        server.kill();
    }
    let server = start(2, &data, &config);
    wait_durable_past(&data, expected.as_of);
    assert_eq!(server.stop().code(), Some(0));
    for kind in KINDS {
        let values: Vec<J> =
            consume(&topics.output(kind), scratch.path()).into_iter().map(|r| r["value"].clone()).collect();
        assert_union_equals(kind, &values, &expected.records[kind], expected.as_of);
        assert_union_equals(kind, &output_lines(&data, kind), &expected.records[kind], expected.as_of);
    }
}

/// Waits (up to a minute) for a complete checkpoint whose Kafka positions add up to `events`.
fn wait_checkpoint_covering(data: &Path, events: i64) -> J {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let newest = std::fs::read_dir(data.join("checkpoints"))
            .into_iter()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("manifest.json")).ok())
            .map(|text| serde_json::from_str::<J>(&text).unwrap())
            .max_by_key(|m| m["seq"].as_u64().unwrap());
        if let Some(m) = newest {
            let covered: i64 = m["positions"]["kafka"].as_array().unwrap().iter().map(|p| p[2].as_i64().unwrap()).sum();
            if covered == events {
                return m;
            }
        }
        assert!(Instant::now() < deadline, "no checkpoint covers the {events} events produced");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_checkpoint_restores_the_state_when_the_topic_no_longer_holds_what_it_covers() {
    let scratch = tempfile::tempdir().unwrap();
    let events = common::repo("datasets/sample/events.ndjson");
    let expected = replay(&events, &scratch.path().join("replay"));
    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (head, tail) = lines.split_at(5_000);
    let (head_file, tail_file) = (scratch.path().join("head.ndjson"), scratch.path().join("tail.ndjson"));
    std::fs::write(&head_file, head.join("\n") + "\n").unwrap();
    std::fs::write(&tail_file, tail.join("\n") + "\n").unwrap();
    let topics = Topics::new("truncated");
    produce(&topics.events, 2, &head_file);
    let (data, config) = (scratch.path().join("data"), config(scratch.path(), &topics));
    // The head is all the first run gets. Partitions read to their end let event time follow
    // the wall clock after the idle timeout, which would make every lapse of 2024 come out
    // before the tail that prevents some: the first run's watermark trails by years instead,
    // so it takes checkpoints of the head and emits nothing.
    let flags = ["--checkpoint-interval", "300ms"];
    let server = start_with(2, &data, &config, &[&flags[..], &["--allowed-lateness", "1500d"]].concat());
    let manifest = wait_checkpoint_covering(&data, head.len() as i64);
    server.kill();
    // Retention takes every message the checkpoint covers; the rest of the events come after.
    let mut counts = vec![0; 2];
    for p in manifest["positions"]["kafka"].as_array().unwrap() {
        counts[p[1].as_u64().unwrap() as usize] = p[2].as_i64().unwrap();
    }
    client(&["truncate", &broker(), &topics.events, &serde_json::to_string(&counts).unwrap()]);
    produce(&topics.events, 0, &tail_file);
    let server = start_with(2, &data, &config, &flags);
    wait_durable_past(&data, expected.as_of);
    assert_eq!(processed(&server), tail.len() as u64, "the restarted run reads only what the checkpoint does not hold");
    assert_eq!(server.stop().code(), Some(0));
    for kind in KINDS {
        assert!(!expected.records[kind].is_empty(), "{kind}: nothing to compare");
        let values: Vec<J> =
            consume(&topics.output(kind), scratch.path()).into_iter().map(|r| r["value"].clone()).collect();
        assert_union_equals(kind, &values, &expected.records[kind], expected.as_of);
        assert_union_equals(kind, &output_lines(&data, kind), &expected.records[kind], expected.as_of);
    }
    let fillers = consume(&topics.output("dead_letter"), scratch.path())
        .into_iter()
        .filter(|d| d["value"].as_str().is_some_and(|v| v.starts_with("truncated-")))
        .count();
    assert_eq!(fillers, 0, "the restarted run read below the checkpoint");
}

#[test]
fn definitions_reach_a_new_process_through_the_compacted_topic() {
    let scratch = tempfile::tempdir().unwrap();
    let topics = Topics::new("definitions");
    produce(&topics.events, 1, &common::repo("datasets/sample/events.ndjson"));
    let config = config(scratch.path(), &topics);
    // Answers come once the watermark passes the time of the call: not a minute late here.
    let flags = ["--config", config.to_str().unwrap(), "--allowed-lateness", "1s"];
    let first = Server::start_with(1, &scratch.path().join("a"), &flags);
    let client = reqwest::blocking::Client::new();
    let segments: Vec<J> =
        serde_json::from_str(&std::fs::read_to_string(common::repo("datasets/sample/segments.json")).unwrap()).unwrap();
    for s in &segments[..2] {
        let status = client.post(first.url("/v1/segments")).json(s).send().unwrap().status();
        assert_eq!(status, reqwest::StatusCode::CREATED);
    }
    let (kept, removed) = (segments[0]["id"].as_str().unwrap(), segments[1]["id"].as_str().unwrap());
    let status = client.delete(first.url(&format!("/v1/segments/{removed}"))).send().unwrap().status();
    assert!(status.is_success(), "{status}");
    assert_eq!(first.stop().code(), Some(0));
    // The topic: the kept segment's definition; the removed one not held (never written, as
    // the topic follows the catalog a moment later, or a tombstone last).
    let records = consume(&topics.output("definitions"), scratch.path());
    let last =
        |key: &str| records.iter().rev().find(|r| r["key"] == format!("segment/{key}")).map(|r| r["value"].clone());
    assert_eq!(last(kept).unwrap()["id"], kept);
    assert!(matches!(last(removed), None | Some(J::Null)), "{records:?}");
    // A process with a data directory of its own starts with what the topic holds.
    let second = Server::start_with(1, &scratch.path().join("b"), &flags);
    let listed: J = client.get(second.url("/v1/segments")).send().unwrap().json().unwrap();
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![kept]);
    let members = client.get(second.url(&format!("/v1/segments/{kept}/members"))).send().unwrap();
    assert!(members.status().is_success(), "{}", members.status());
    assert_eq!(second.stop().code(), Some(0));
}

#[test]
fn generate_paces_events_into_a_topic_that_another_client_reads() {
    let scratch = tempfile::tempdir().unwrap();
    let topic = unique("generated");
    let generate = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_journeyflow"))
            .args(["generate", "--users", "200", "--events", "3000", "--seed", "5"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let file = scratch.path().join("events.ndjson");
    generate(&["--out", file.to_str().unwrap()]);
    let started = Instant::now();
    generate(&["--format", "kafka", "--brokers", &broker(), "--topic", &topic, "--partitions", "2", "--rate", "2000"]);
    // Paced by schedule: the last hundred events are not due before 1.45 s.
    assert!(started.elapsed() >= Duration::from_millis(1_450), "3,000 events at 2,000/s took {:?}", started.elapsed());
    let expected: Vec<J> =
        std::fs::read_to_string(&file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut got: Vec<J> = consume(&topic, scratch.path())
        .into_iter()
        .map(|r| {
            let value = r["value"].clone();
            assert_eq!(r["key"], value["userId"], "keyed by user id");
            value
        })
        .collect();
    let order = |v: &J| v["messageId"].as_str().unwrap()[3..].parse::<u64>().unwrap();
    got.sort_by_key(order);
    assert_eq!(got, expected);
}

/// A message too large for any dead-letter topic (2 MB of malformed JSON) is dead-lettered by
/// reference, its value cut to 1 KiB, and reading goes on: every event around it is taken.
#[test]
fn an_oversized_poison_message_is_dead_lettered_by_reference_and_reading_goes_on() {
    let scratch = tempfile::tempdir().unwrap();
    let topics = Topics::new("poison");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let mut lines: Vec<String> = (0..50)
        .map(|i| {
            let event = serde_json::json!({"type": "track", "event": "Visit", "userId": format!("u{i}"),
                                           "messageId": format!("m{i}"), "timestamp": now - 60_000 + i});
            event.to_string()
        })
        .collect();
    let poison = format!("{{\"type\": \"track\", \"junk\": \"{}", "x".repeat(2_000_000));
    lines.insert(25, poison.clone());
    let file = scratch.path().join("events.ndjson");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    assert_eq!(produce(&topics.events, 1, &file), 51);
    let segments = scratch.path().join("segments.json");
    std::fs::write(&segments, r#"[{"id": "visited", "condition": {"performed": {"event": "Visit"}}}]"#).unwrap();
    let config = config(scratch.path(), &topics);
    // Answers come once the watermark passes the time of the call: not a minute late here.
    let flags =
        ["--config", config.to_str().unwrap(), "--segments", segments.to_str().unwrap(), "--allowed-lateness", "1s"];
    let server = Server::start_with(1, &scratch.path().join("data"), &flags);
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page: J = client.get(server.url("/v1/segments/visited/members")).send().unwrap().json().unwrap();
        if page["members"].as_array().is_some_and(|m| m.len() == 50) {
            break;
        }
        assert!(Instant::now() < deadline, "not every event around the poison message was taken: {page}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let dead = consume(&topics.output("dead_letter"), scratch.path());
    assert_eq!(dead.len(), 1, "{:?}", dead.iter().map(|d| &d["headers"]).collect::<Vec<_>>());
    let headers = &dead[0]["headers"];
    assert_eq!(headers["journeyflow.truncated"], "true");
    assert_eq!(headers["journeyflow.size"], poison.len().to_string());
    assert!(headers["journeyflow.error"].as_str().unwrap().contains("exceeds the limit"), "{headers}");
    assert!(headers["journeyflow.source"].as_str().unwrap().ends_with("/0/25"), "{headers}");
    assert_eq!(dead[0]["value"].as_str().map(str::len), Some(1024));
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn a_deletion_is_announced_on_every_output_topic_keyed_by_the_user_id() {
    let scratch = tempfile::tempdir().unwrap();
    let topics = Topics::new("deletion");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let events = scratch.path().join("events.ndjson");
    let lines: String = ["ann", "bob"]
        .iter()
        .map(|u| {
            let traits = serde_json::json!({"plan": "pro", "country": "US"});
            let e = serde_json::json!({"type": "identify", "userId": u, "messageId": format!("{u}-1"), "timestamp": now, "traits": traits});
            format!("{e}\n")
        })
        .collect();
    std::fs::write(&events, lines).unwrap();
    assert_eq!(produce(&topics.events, 1, &events), 2);
    let data = scratch.path().join("data");
    // Event time follows the wall clock less the lateness once the partition is idle: queries
    // and the deletion, as of now, complete within a second or so.
    let flags = ["--allowed-lateness", "200ms", "--idle-timeout", "200ms"];
    let server = start_with(1, &data, &config(scratch.path(), &topics), &flags);
    let client = reqwest::blocking::Client::new();
    let members =
        || -> J { client.get(server.url("/v1/segments/s1_pro_north_america/members")).send().unwrap().json().unwrap() };
    let deadline = Instant::now() + Duration::from_secs(60);
    while members()["members"].as_array().map_or(0, Vec::len) < 2 {
        assert!(Instant::now() < deadline, "the two users never entered: {}", members());
        std::thread::sleep(Duration::from_millis(50));
    }
    let answer: J = client.delete(server.url("/v1/users/ann")).send().unwrap().json().unwrap();
    let at = answer["as_of"].clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: J = client.get(server.url("/v1/deletions/1")).send().unwrap().json().unwrap();
        if status["outputs_durable"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the deletion's outputs never became durable");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.stop().code(), Some(0));
    for kind in KINDS {
        let records = consume(&topics.output(kind), scratch.path());
        let announced: Vec<&J> = records.iter().filter(|r| r["value"]["deleted"] == true).collect();
        assert_eq!(announced.len(), 1, "{kind}: {records:?}");
        let r = announced[0];
        assert_eq!((&r["key"], &r["value"]["user_id"], &r["value"]["time"]), (&J::from("ann"), &J::from("ann"), &at));
        assert_eq!(r["headers"]["journeyflow.id"], r["value"]["id"], "{kind}: the id is also a header");
    }
    let changes = consume(&topics.output("segment_changes"), scratch.path());
    assert!(
        changes.iter().any(|r| r["value"]["user_id"] == "ann"
            && r["value"]["change"] == "exit"
            && r["value"]["reason"] == "deleted"
            && r["value"]["time"] == at),
        "{changes:?}"
    );
}
