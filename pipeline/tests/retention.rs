//! Retention through the real binary: the archive keeps its hour partitions for
//! `--retention-archive` behind the durable output frontier, and deletes older ones.

mod common;

use common::server::Server;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

const HOUR: u64 = 3_600_000;

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
