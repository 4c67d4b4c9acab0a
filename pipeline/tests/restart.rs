//! `journeyflow run` on its embedded default (HTTP ingest into the write-ahead log) killed
//! with SIGKILL at random points, between batches and while one is being sent, and started
//! again over the same data directory (with one or two workers): the union of the outputs it
//! wrote (to its files and to the Parquet archive) equals `journeyflow replay` over every
//! event the log accepted, no record missing, no id standing for two different records.

mod common;

use common::outputs::{assert_union_equals, read_archive, replay, wait_durable_past, KINDS};
use common::server::{output_lines, Server};
use rand::{Rng, SeedableRng};
use reqwest::blocking::Client;
use serde_json::{json, Value as J};
use std::io::Write;
use std::time::Duration;

/// A run of the sample segments and journeys over `dir/data`, with `extra` flags.
fn start_with(workers: usize, dir: &std::path::Path, extra: &[&str]) -> Server {
    let sample = common::repo("datasets/sample");
    let (segments, journeys) = (sample.join("segments.json"), sample.join("journeys.json"));
    let mut args = vec!["--segments", segments.to_str().unwrap(), "--journeys", journeys.to_str().unwrap()];
    args.extend(extra);
    Server::start_with(workers, &dir.join("data"), &args)
}

/// A run over `dir/data`, archiving to `dir/archive`.
fn start(workers: usize, dir: &std::path::Path) -> Server {
    let archive = dir.join("archive");
    start_with(workers, dir, &["--archive", archive.to_str().unwrap(), "--archive-interval", "500ms"])
}

fn send(client: &Client, server: &Server, batch: &[J]) -> bool {
    client.post(server.url("/v1/batch")).json(&json!({ "batch": batch })).send().is_ok_and(|r| r.status().is_success())
}

#[test]
fn killed_at_random_points_and_restarted_the_outputs_are_an_uninterrupted_runs() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let seed: u64 = rand::random();
    eprintln!("kill points from seed {seed}");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    // Batches paced over 12 seconds, so that runs last long enough for outputs to become
    // durable; five kill points, one in each 14-batch stretch after the first, each landing
    // after its batch was acknowledged or while it is being sent.
    let (batches, per_batch) = (80u64, 50u64);
    let kills: Vec<u64> = (1..=5).map(|k| k * 14 + rng.gen_range(0..10)).collect();
    let mut server = start(2, scratch.path());
    let mut acknowledged = 0;
    let mut runs = 1;
    let mut durable_at_kill = 0;
    for b in 0..batches {
        std::thread::sleep(Duration::from_millis(150));
        let batch: Vec<J> = (b * per_batch..(b + 1) * per_batch).map(|i| common::live_event("restart", i)).collect();
        if !kills.contains(&b) {
            assert!(send(&client, &server, &batch), "batch {b} refused");
            acknowledged += per_batch;
            continue;
        }
        if rng.gen_bool(0.5) {
            assert!(send(&client, &server, &batch), "batch {b} refused");
            acknowledged += per_batch;
            server.kill();
        } else {
            // Killed while the batch is on its way: it may or may not be in the log.
            let url = server.url("/v1/batch");
            let sender = {
                let client = client.clone();
                std::thread::spawn(move || {
                    client.post(url).json(&json!({ "batch": batch })).send().is_ok_and(|r| r.status().is_success())
                })
            };
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..20)));
            server.kill();
            acknowledged += per_batch * u64::from(sender.join().unwrap());
        }
        durable_at_kill += u64::from(data.join("out/flushed.json").exists());
        runs += 1;
        server = start(1 + runs % 2, scratch.path());
    }
    // Restarts skipped what earlier runs had made durable (not only wrote everything again).
    assert!(durable_at_kill >= 3, "outputs were durable at only {durable_at_kill} of the kills");
    // The events the log accepted (acknowledged ones and maybe some of a batch cut short).
    let events = scratch.path().join("accepted.ndjson");
    let mut all = std::fs::File::create(&events).unwrap();
    let text = common::ingest_log(&data);
    let accepted = text.lines().count() as u64;
    all.write_all(text.as_bytes()).unwrap();
    drop(all);
    assert!(accepted >= acknowledged, "{accepted} events in the log, {acknowledged} acknowledged");
    let expected = replay(&events, &scratch.path().join("replay"));
    wait_durable_past(&data, expected.as_of);
    assert_eq!(server.stop().code(), Some(0));
    assert!(!expected.records["segment_changes"].is_empty() && !expected.records["journey_transitions"].is_empty());
    for kind in KINDS {
        assert_union_equals(kind, &output_lines(&data, kind), &expected.records[kind], expected.as_of);
        let (rows, _) = read_archive(&scratch.path().join("archive"), kind, scratch.path());
        assert_union_equals(kind, &rows, &expected.records[kind], expected.as_of);
    }
}

/// With checkpoints every 300 ms and ingest log segments of 4 KiB, the segments a complete
/// checkpoint covers are deleted as the run goes; killed and restarted from its newest
/// checkpoint, the run still writes what an uninterrupted run writes.
#[test]
fn ingest_log_segments_behind_a_checkpoint_go_and_a_restart_still_loses_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let flags = ["--checkpoint-interval", "300ms", "--log-segment-bytes", "4096"];
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut sent: Vec<J> = Vec::new();
    let first_segment_gone = || {
        std::fs::read_dir(data.join("ingest/part-0"))
            .map(|d| d.filter_map(|e| e.ok()).all(|e| e.file_name() != "00000000000000000000.ndjson"))
            .unwrap_or(false)
    };
    for (run, workers) in [(0u64, 2), (1, 1)] {
        let server = start_with(workers, scratch.path(), &flags);
        for b in 0..20 {
            let batch: Vec<J> = (0..50).map(|i| common::live_event("segments", run * 1000 + b * 50 + i)).collect();
            assert!(send(&client, &server, &batch), "batch {b} of run {run} refused");
            sent.extend(batch);
            std::thread::sleep(Duration::from_millis(50));
        }
        if run == 0 {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !first_segment_gone() {
                assert!(std::time::Instant::now() < deadline, "no ingest log segment was deleted within 60 s");
                std::thread::sleep(Duration::from_millis(50));
            }
            server.kill();
        } else {
            let events = scratch.path().join("sent.ndjson");
            let text: String = sent.iter().map(|e| format!("{e}\n")).collect();
            std::fs::write(&events, text).unwrap();
            let expected = replay(&events, &scratch.path().join("replay"));
            wait_durable_past(&data, expected.as_of);
            assert_eq!(server.stop().code(), Some(0));
            // The log holds less than was sent: what checkpoints covered went.
            let kept = common::ingest_log(&data).lines().count();
            assert!(kept < sent.len(), "the ingest log still holds {kept} of {} events", sent.len());
            for kind in KINDS {
                assert_union_equals(kind, &output_lines(&data, kind), &expected.records[kind], expected.as_of);
            }
        }
    }
}

/// The flags of a run with a 2-minute event retention, a 1-minute dedup window, a 5-minute
/// lateness and a checkpoint every 300 ms, over `definitions` (`--segments FILE` and so on).
fn short_retention<'a>(definitions: &[&'a str]) -> Vec<&'a str> {
    let mut flags = definitions.to_vec();
    flags.extend(["--retention-events", "2m", "--dedup-window", "1m", "--allowed-lateness", "5m"]);
    flags.extend(["--checkpoint-interval", "300ms"]);
    flags
}

/// What `journeyflow replay` writes over `sent` through `as_of` with the retention of
/// [`short_retention`] and `definitions`: each kind's records, as JSON text.
fn replay_short_retention(
    scratch: &std::path::Path,
    sent: &[J],
    definitions: &[&str],
    as_of: u64,
) -> std::collections::BTreeMap<&'static str, std::collections::BTreeSet<String>> {
    let events = scratch.join("sent.ndjson");
    std::fs::write(&events, sent.iter().map(|e| format!("{e}\n")).collect::<String>()).unwrap();
    let out = scratch.join("replay");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_journeyflow"))
        .args(["replay", "--events", events.to_str().unwrap()])
        .args(definitions)
        .args(["--retention-events", "2m", "--dedup-window", "1m", "--as-of", &as_of.to_string()])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let read = |kind: &str| {
        // Without journeys, replay writes no journey files.
        let text = std::fs::read_to_string(out.join(format!("{kind}.ndjson"))).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str::<J>(l).unwrap().to_string()).collect()
    };
    KINDS.iter().map(|kind| (*kind, read(kind))).collect()
}

/// Sends `visits` two a call, each call once the outputs before its last visit less the
/// lateness (5 min) are durable, adding them to `sent`.
fn send_two_at_a_time(client: &Client, server: &Server, data: &std::path::Path, visits: &[J], sent: &mut Vec<J>) {
    for call in visits.chunks(2) {
        assert!(send(client, server, call), "a call refused");
        sent.extend_from_slice(call);
        let last = call.last().unwrap()["timestamp"].as_u64().unwrap();
        wait_durable_past(data, last - 5 * 60_000 - 1);
    }
}

/// With a short event retention (2 min) and dedup window (1 min), checkpoint files whose
/// events have all expired before the durable frontier leave the chain and are deleted; killed
/// and restarted from such a chain, the run writes what `journeyflow replay` writes over
/// every event (which keeps them all).
#[test]
fn expired_checkpoint_files_go_and_a_restart_from_the_shorter_chain_writes_the_same() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let segments = scratch.path().join("segments.json");
    let definitions = json!([
        {"id": "recent", "condition": {"performed": {"event": "Visit", "within": "1m"}}},
        {"id": "retained", "condition": {"performed": {"event": "Visit", "at_least": 2}}}]);
    std::fs::write(&segments, definitions.to_string()).unwrap();
    let definitions = ["--segments", segments.to_str().unwrap()];
    let flags = short_retention(&definitions);
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    // 100 visits of 7 users 30 s apart, from within the lateness (5 min) of the wall clock to
    // within the future skew (1 h): event time runs ahead of the wall clock, so the run sees
    // 50 minutes of it.
    let visits: Vec<J> = (0..100u64)
        .map(|i| {
            json!({"type": "track", "event": "Visit", "userId": format!("u{}", i % 7), "messageId": format!("v{i}"),
                "timestamp": now - 4 * 60_000 + i * 30_000})
        })
        .collect();
    let mut sent: Vec<J> = Vec::new();
    let first_checkpoint_gone = || !data.join("checkpoints/1").exists();
    for (run, (workers, range)) in [(2, 0..50), (1, 50..100)].into_iter().enumerate() {
        let server = Server::start_with(workers, &data, &flags);
        // Two visits a call: a checkpoint file spans half a minute, so files expire finely (a
        // cut that ignored the retention would leave out visits whose exits are still due).
        send_two_at_a_time(&client, &server, &data, &visits[range], &mut sent);
        if run == 0 {
            common::wait_until("the first checkpoint's files gone", Duration::from_secs(60), first_checkpoint_gone);
            server.kill();
        } else {
            assert_eq!(server.stop().code(), Some(0));
        }
    }
    // Through the last event's time less the lateness: what the run completed.
    let as_of = now - 4 * 60_000 + 99 * 30_000 - 5 * 60_000 - 1;
    let expected = &replay_short_retention(scratch.path(), &sent, &definitions, as_of)["segment_changes"];
    assert!(expected.len() > 50, "{} changes", expected.len());
    assert_union_equals("segment_changes", &output_lines(&data, "segment_changes"), expected, as_of);
}

/// Changes the catalog through the API, leaving one journey behind (`idle`, at version 2,
/// paused, with a pending third version) and nothing else.
fn churn_the_catalog(client: &Client, server: &Server) {
    let call = |method: reqwest::Method, path: &str, body: Option<J>| {
        let request = client.request(method.clone(), server.url(path));
        let response = body.map_or(request.try_clone().unwrap(), |b| request.json(&b)).send().unwrap();
        assert!(response.status().is_success(), "{method} {path}: {}", response.text().unwrap());
    };
    use reqwest::Method;
    let segment =
        |within: &str| json!({"id": "gone", "condition": {"performed": {"event": "Never", "within": within}}});
    call(Method::POST, "/v1/segments", Some(segment("10s")));
    for within in ["20s", "30s", "40s", "50s", "60s"] {
        call(Method::PUT, "/v1/segments/gone", Some(segment(within)));
    }
    call(Method::DELETE, "/v1/segments/gone", None);
    let journey = |id: &str, template: &str| {
        json!({"id": id, "entry": {"event": {"event": "Never"}}, "start": "ping", "nodes": {
            "ping": {"action": {"channel": "email", "template": template}, "next": "done"},
            "done": {"exit": {}}}})
    };
    call(Method::POST, "/v1/journeys", Some(journey("temp", "t")));
    call(Method::DELETE, "/v1/journeys/temp", None);
    call(Method::POST, "/v1/journeys", Some(journey("idle", "draft0")));
    for template in ["draft1", "draft2", "draft3"] {
        call(Method::PUT, "/v1/journeys/idle", Some(journey("idle", template)));
    }
    call(Method::POST, "/v1/journeys/idle/publish", None);
    call(Method::PUT, "/v1/journeys/idle", Some(journey("idle", "second")));
    call(Method::POST, "/v1/journeys/idle/publish", None);
    for action in ["pause", "resume", "pause", "resume", "pause"] {
        call(Method::POST, &format!("/v1/journeys/idle/{action}"), None);
    }
    call(Method::PUT, "/v1/journeys/idle", Some(journey("idle", "third")));
}

/// The segments and journeys the API lists.
fn read_catalog(client: &Client, server: &Server) -> (J, J) {
    let get = |path: &str| client.get(server.url(path)).send().unwrap().json::<J>().unwrap();
    (get("/v1/segments"), get("/v1/journeys"))
}

/// A journey whose users re-enter (at most three times, six minutes apart) holds the state a
/// retention of 2 minutes cannot rebuild: checkpoints carry each journey's user states as of a
/// snapshot time, so the chain still drops the files that expired before it; killed and
/// restarted from such a checkpoint, the run writes what `journeyflow replay` writes over
/// every event (entries, waits, actions, and the entries refused after the third).
///
/// Changes made through the API meanwhile (a journey drafted, revised, published twice and
/// paused, a segment installed, replaced and removed, a draft removed) go from the control log
/// once a snapshot is after them: the log is compacted, and the restart shows the same catalog.
#[test]
fn a_journey_restarts_from_its_snapshot_after_the_chain_dropped_what_it_saw() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let (segments, journeys) = (scratch.path().join("segments.json"), scratch.path().join("journeys.json"));
    let definitions = json!([{"id": "recent", "condition": {"performed": {"event": "Visit", "within": "1m"}}}]);
    std::fs::write(&segments, definitions.to_string()).unwrap();
    let journey = json!([{"id": "nudge", "entry": {"event": {"event": "Visit"}},
        "re_entry": {"mode": "after_exit", "max_times": 3, "cooldown": "6m"},
        "start": "wait", "nodes": {
            "wait": {"wait": {"duration": "2m"}, "next": "ping"},
            "ping": {"action": {"channel": "email", "template": "nudge"}, "next": "done"},
            "done": {"exit": {}}}}]);
    std::fs::write(&journeys, journey.to_string()).unwrap();
    let definitions = ["--segments", segments.to_str().unwrap(), "--journeys", journeys.to_str().unwrap()];
    let flags = short_retention(&definitions);
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut sent: Vec<J> = Vec::new();
    let mut visits: Vec<J> = Vec::new();
    let mut catalog = None;
    let first_checkpoint_gone = || !data.join("checkpoints/1").exists();
    let newest_has_journeys = || {
        let root = data.join("checkpoints");
        let newest = std::fs::read_dir(&root)
            .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok()).max())
            .ok()
            .flatten();
        newest
            .and_then(|seq| std::fs::read(root.join(seq.to_string()).join("manifest.json")).ok())
            .and_then(|bytes| serde_json::from_slice::<J>(&bytes).ok())
            .is_some_and(|m| m["journeys"]["journeys"].as_array().is_some_and(|j| !j.is_empty()))
    };
    for (run, (workers, range)) in [(2, 0..60usize), (1, 60..120)].into_iter().enumerate() {
        let server = Server::start_with(workers, &data, &flags);
        if run == 0 {
            // Every event after the journey's installation: it runs them all, as replay does.
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
            // 120 visits of 5 users 20 s apart (40 minutes of event time, ahead of the wall
            // clock within the future skew), each user every 100 s: entries, waits, actions,
            // re-entries after the cooldown, then (after the third) no more.
            visits = (0..120u64)
                .map(|i| {
                    json!({"type": "track", "event": "Visit", "userId": format!("u{}", i % 5),
                        "messageId": format!("v{i}"), "timestamp": now + 5_000 + i * 20_000})
                })
                .collect();
        }
        if run == 0 {
            churn_the_catalog(&client, &server);
        }
        send_two_at_a_time(&client, &server, &data, &visits[range], &mut sent);
        if run == 0 {
            common::wait_until("the first checkpoint's files gone", Duration::from_secs(60), first_checkpoint_gone);
            common::wait_until("a checkpoint with the journey's states", Duration::from_secs(60), newest_has_journeys);
            let compacted = || {
                let log = std::fs::read_to_string(data.join("control.ndjson")).unwrap_or_default();
                log.starts_with(r#"{"compacted_through":"#) && !log.contains("\"gone\"")
            };
            common::wait_until("the control log compacted", Duration::from_secs(60), compacted);
            catalog = Some(read_catalog(&client, &server));
            server.kill();
        } else {
            assert_eq!(read_catalog(&client, &server), catalog.take().unwrap(), "the catalog after the restart");
            assert_eq!(server.stop().code(), Some(0));
        }
    }
    let last = visits.last().unwrap()["timestamp"].as_u64().unwrap();
    let as_of = last - 5 * 60_000 - 1;
    let expected = replay_short_retention(scratch.path(), &sent, &definitions, as_of);
    for (kind, expected) in &expected {
        assert!(!expected.is_empty(), "replay wrote no {kind}");
        assert_union_equals(kind, &output_lines(&data, kind), expected, as_of);
    }
}
