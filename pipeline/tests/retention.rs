//! Retention through the real binary: the archive keeps its hour partitions for
//! `--retention-archive` behind the durable output frontier, and deletes older ones; the
//! output logs begin new segments and delete sealed ones past `--retention-outputs` once
//! durable and delivered by the webhooks; user ids not seen for a retention are forgotten,
//! except those a journey still holds.

mod common;

use common::server::Server;
use common::wait_until;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

const HOUR: u64 = 3_600_000;
const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn archive_hours_older_than_the_retention_behind_the_durable_frontier_go() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let partition = |kind: &str, t: u64| {
        let start = chrono::DateTime::from_timestamp_millis(t as i64).unwrap();
        let day = format!("dt={}", start.format("%Y-%m-%d"));
        archive.join(kind).join(day).join(format!("hour={}", start.format("%H")))
    };
    // What an earlier run archived, an hour ago and three to six hours ago.
    for h in [1, 3, 4, 5, 6] {
        std::fs::create_dir_all(partition("events", now - h * HOUR)).unwrap();
        std::fs::write(partition("events", now - h * HOUR).join("part-0of1-0.parquet"), b"").unwrap();
    }
    let flags = ["--archive", archive.to_str().unwrap(), "--archive-interval", "200ms", "--retention-archive", "2h"];
    let server = Server::start_with(1, &dir.path().join("data"), &flags);
    let client = Client::new();
    let event = json!({"type": "track", "event": "Visit", "userId": "u", "timestamp": now});
    assert_eq!(client.post(server.url("/v1/track")).json(&event).send().unwrap().status(), StatusCode::OK);
    // Once the durable frontier passes the event, the archive holds its hour; the hours that
    // ended two hours or more before the frontier go, the hour before stays.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let written = partition("events", now).exists();
        let old_gone = (3..=6).all(|h| !partition("events", now - h * HOUR).exists());
        if written && old_gone {
            break;
        }
        assert!(Instant::now() < deadline, "after 30 s: this hour archived {written}, hours -3 to -6 gone {old_gone}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.stop().code(), Some(0));
    assert!(partition("events", now - HOUR).exists(), "the hour before, within the retention, was deleted");
}

/// The offsets the segments of a log start at.
fn bases(log: &std::path::Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(log)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".ndjson")?.parse().ok())
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn output_segments_past_the_retention_go_once_durable_and_delivered() {
    let (hooks, seen, open) = common::webhook::receiver();
    open.store(false, std::sync::atomic::Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("journeyflow.toml");
    let toml = format!(
        "[webhooks]\nurls = {{ email = \"{hooks}/hook/email\" }}\nmax_attempts = 1000\nmax_backoff = \"200ms\"\n"
    );
    std::fs::write(&config, toml).unwrap();
    let segments = dir.path().join("segments.json");
    std::fs::write(&segments, json!([{"id": "signed", "condition": {"performed": {"event": "Signup"}}}]).to_string())
        .unwrap();
    let journeys = dir.path().join("journeys.json");
    let journey = json!([{"id": "hello", "entry": {"event": {"event": "Signup"}}, "start": "mail", "nodes": {
        "mail": {"action": {"channel": "email", "template": "welcome"}, "next": "done"},
        "done": {"exit": {}}}}]);
    std::fs::write(&journeys, journey.to_string()).unwrap();
    let data = dir.path().join("data");
    let flags = [
        "--config",
        config.to_str().unwrap(),
        "--segments",
        segments.to_str().unwrap(),
        "--journeys",
        journeys.to_str().unwrap(),
        "--output-segment-bytes",
        "1000",
        "--retention-outputs",
        "20m",
        "--allowed-lateness",
        "5m",
    ];
    let server = Server::start_with(1, &data, &flags);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    // Forty sign-ups 72 s apart, from within the allowed lateness (5 min) of the wall clock
    // (earlier ones would count at the watermark) to within the hour the future skew allows,
    // then one more six minutes on, which brings event time past them all: records before
    // 20 min (the retention) before that expire.
    let minute = 60_000;
    let times: Vec<u64> = (0..40).map(|i| now - 4 * minute + i * 72_000).collect();
    let tick = times[39] + 6 * minute;
    let horizon = tick - 5 * minute - 20 * minute;
    let track = |user: &str, t: u64| json!({"type": "track", "event": "Signup", "userId": user, "timestamp": t});
    // In calls of five, each written out before the next: a round's records are not in time
    // order, and segments hold time ranges only as rounds follow one another.
    let indices: Vec<usize> = (0..times.len()).collect();
    for (k, calls) in indices.chunks(5).enumerate() {
        let mut batch: Vec<_> = calls.iter().map(|i| track(&format!("user-{i}"), times[*i])).collect();
        let last = match k {
            7 => {
                batch.push(track("tick", tick));
                tick
            }
            _ => times[*calls.last().unwrap()],
        };
        let r = Client::new().post(server.url("/v1/batch")).json(&json!({"batch": batch})).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        common::outputs::wait_durable_past(&data, last - 5 * minute - 1);
    }
    let out = data.join("out");
    let (changes, actions) = (out.join("segment_changes-0"), out.join("journey_actions-0"));
    wait_until("old segment changes deleted", MINUTE, || bases(&changes).first().is_some_and(|b| *b > 0));
    assert!(bases(&changes).len() > 1 || bases(&actions).len() > 1, "the logs began new segments");
    // The webhook refuses everything so far: no action segment may go.
    assert_eq!(bases(&actions).first(), Some(&0), "actions not delivered yet were deleted");
    open.store(true, std::sync::atomic::Ordering::Relaxed);
    // Distinct users whose email arrived (the tick's comes only once event time passes it).
    let delivered = || {
        let seen = seen.lock().unwrap();
        let users = seen.iter().filter_map(|(_, _, body)| body["user_id"].as_str().map(str::to_string));
        users.filter(|u| u != "tick").collect::<std::collections::BTreeSet<_>>().len()
    };
    wait_until("every action delivered", MINUTE, || delivered() == times.len());
    wait_until("delivered old actions deleted", MINUTE, || bases(&actions).first().is_some_and(|b| *b > 0));
    // Records within the retention are all kept; older ones only in a segment with a newer one.
    for kind in ["segment_changes", "journey_actions"] {
        let kept = common::server::output_lines(&data, kind);
        let users: std::collections::BTreeSet<&str> = kept.iter().map(|c| c["user_id"].as_str().unwrap()).collect();
        for (i, t) in times.iter().enumerate() {
            assert!(*t < horizon || users.contains(format!("user-{i}").as_str()), "{kind}: user-{i}'s is gone");
        }
        assert!(users.len() < times.len(), "{kind}: nothing was deleted");
    }
    assert_eq!(server.stop().code(), Some(0));
    // A restart over the shortened logs goes on after their ends.
    let server = Server::start_with(1, &data, &flags);
    let r = Client::new()
        .post(server.url("/v1/batch"))
        .json(&json!({"batch": [track("late-comer", tick + minute), track("tick-2", tick + 7 * minute)]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    wait_until("the late comer's email delivered", MINUTE, || delivered() == times.len() + 1);
    assert_eq!(server.stop().code(), Some(0));
}

/// The number a `/metrics` gauge shows.
fn gauge(client: &Client, server: &Server, name: &str) -> Option<f64> {
    let text = client.get(server.url("/metrics")).send().ok()?.text().ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Fifty users seen once, and one who enters a journey that waits ten minutes: with a
/// two-minute retention, the fifty ids are forgotten once event time is well past them, and
/// the waiting user's id is kept until the action names them (without the journey's users
/// kept named, the action would carry the user's key).
#[test]
fn user_ids_not_seen_for_a_retention_go_but_a_waiting_journey_keeps_its_users_named() {
    let dir = tempfile::tempdir().unwrap();
    let journeys = dir.path().join("journeys.json");
    let journey = json!([{"id": "later", "entry": {"event": {"event": "Join"}}, "start": "wait", "nodes": {
        "wait": {"wait": {"duration": "10m"}, "next": "mail"},
        "mail": {"action": {"channel": "email", "template": "hello"}, "next": "done"},
        "done": {"exit": {}}}}]);
    std::fs::write(&journeys, journey.to_string()).unwrap();
    let data = dir.path().join("data");
    let flags = ["--journeys", journeys.to_str().unwrap(), "--retention-events", "2m", "--dedup-window", "1m"];
    let flags = [&flags[..], &["--allowed-lateness", "1m", "--checkpoint-interval", "300ms"]].concat();
    let server = Server::start_with(1, &data, &flags);
    let client = Client::new();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let minute = 60_000;
    let track =
        |user: &str, event: &str, t: u64| json!({"type": "track", "event": event, "userId": user, "timestamp": t});
    let mut first: Vec<_> = (0..50).map(|i| track(&format!("once-{i}"), "Visit", now)).collect();
    first.push(track("waiting", "Join", now));
    let send = |batch: Vec<serde_json::Value>, last: u64| {
        let r = client.post(server.url("/v1/batch")).json(&json!({ "batch": batch })).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        common::outputs::wait_durable_past(&data, last - minute - 1);
    };
    send(first, now);
    wait_until("the ids noted", MINUTE, || gauge(&client, &server, "journeyflow_user_ids") == Some(51.0));
    // A clock ticking every 20 s of event time for 14 minutes: past the wait, and past the
    // fifty by far more than twice the retention.
    for k in 1..=42 {
        let t = now + k * 20_000;
        send(vec![track("clock", "Tick", t)], t);
    }
    wait_until("the fifty ids forgotten", MINUTE, || gauge(&client, &server, "journeyflow_user_ids") <= Some(2.0));
    let actions = common::server::output_lines(&data, "journey_actions");
    let users: Vec<&str> = actions.iter().filter_map(|a| a["user_id"].as_str()).collect();
    assert_eq!(users, vec!["waiting"], "{actions:?}");
}
