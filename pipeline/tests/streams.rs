//! The live streams (Server-Sent Events) through the real binary, as a browser's EventSource
//! or an API user reads them: the overview counts the events sent, a segment's stream reaches
//! the size its member listing has, a journey's stream the report `/stats` answers; they need
//! the API token, are limited in number, end with a `removed` event when what they follow is
//! removed, and end with the server (which stops at once, not after its drain time).

mod common;

use common::server::Server;
use common::{repo, wait_until};
use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;
use serde_json::{json, Value as J};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Lines};
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "s3cret";

/// The events of one stream, read as they come.
struct Events(Lines<BufReader<Response>>);

impl Events {
    fn open(client: &Client, server: &Server, path: &str) -> Events {
        let r = client.get(server.url(path)).bearer_auth(TOKEN).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let kind = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(kind.starts_with("text/event-stream"), "{path}: {kind}");
        Events(BufReader::new(r).lines())
    }

    /// The next event `(name, document)`; `None` once the stream ends.
    fn next(&mut self) -> Option<(String, J)> {
        let (mut name, mut data) = (String::new(), String::new());
        for line in &mut self.0 {
            let line = line.ok()?;
            if line.is_empty() {
                if !data.is_empty() {
                    return Some((name, serde_json::from_str(&data).unwrap()));
                }
            } else if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim());
            }
        }
        None
    }

    /// Reads events until one named `name` satisfies `wanted` (the client's read timeout is
    /// the deadline).
    fn until(&mut self, name: &str, mut wanted: impl FnMut(&J) -> bool) -> J {
        loop {
            let (got, document) = self.next().unwrap_or_else(|| panic!("the stream ended before a {name} event"));
            if got == name && wanted(&document) {
                return document;
            }
        }
    }
}

fn members(client: &Client, server: &Server, id: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = server.url(&format!("/v1/segments/{id}/members?limit=1000"));
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: J = client.get(url).bearer_auth(TOKEN).send().unwrap().error_for_status().unwrap().json().unwrap();
        out.extend(page["members"].as_array().unwrap().iter().map(|m| m["user_id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

#[test]
fn live_streams_follow_the_overview_a_segment_and_a_journey_and_end_with_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("journeyflow.toml");
    std::fs::write(&config, "[api]\nmax_streams = 3\n").unwrap();
    let sample = repo("datasets/sample");
    let (segments, journeys) = (sample.join("segments.json"), sample.join("journeys.json"));
    // Events from 2024 kept (no retention): a trait segment's size stays once every event is
    // in, after event time has followed the wall clock (which member listings wait for).
    let server = Server::start_with(
        2,
        &dir.path().join("data"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--api-token",
            TOKEN,
            "--write-key",
            "wk",
            "--segments",
            segments.to_str().unwrap(),
            "--journeys",
            journeys.to_str().unwrap(),
            "--retention-events",
            "forever",
        ],
    );
    let client = Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let plain = client.get(server.url("/v1/streams/overview")).send().unwrap();
    assert_eq!(plain.status(), StatusCode::UNAUTHORIZED, "a stream without the token");
    let unknown = client.get(server.url("/v1/segments/nope/stream")).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let mut overview = Events::open(&client, &server, "/v1/streams/overview");
    let mut segment = Events::open(&client, &server, "/v1/segments/s1_pro_north_america/stream");
    let mut journey = Events::open(&client, &server, "/v1/journeys/j1_abandoned_cart/stream");
    assert_eq!(overview.until("overview", |_| true)["events_in"], 0);
    assert_eq!(segment.until("size", |_| true)["size"], 0);
    assert_eq!(journey.until("stats", |_| true)["entered"], 0);
    // A fourth at once: refused, with when to try again.
    let fourth = client.get(server.url("/v1/streams/overview")).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(fourth.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(fourth.headers().contains_key("retry-after"));

    let lines: Vec<J> = std::fs::read_to_string(sample.join("events.ndjson"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut accepted = 0;
    for chunk in lines.chunks(300) {
        let r =
            client.post(server.url("/v1/batch")).basic_auth("wk", None::<&str>).json(&json!({"batch": chunk})).send();
        let answer: J = r.unwrap().error_for_status().unwrap().json().unwrap();
        accepted += answer["accepted"].as_u64().unwrap();
    }
    assert!(accepted > 7_000, "{accepted} of {} accepted", lines.len());

    // The overview counts them in, then processed.
    let seen = overview.until("overview", |o| o["events_in"] == accepted && o["events_processed"] == accepted);
    assert!(seen["watermark"].as_u64() > Some(0), "{seen}");
    // The segment's stream reaches the size its member listing has (a trait segment: once
    // every event is in, it stays).
    let mut listed = 0;
    segment.until("size", |s| {
        listed = members(&client, &server, "s1_pro_north_america").len();
        listed > 0 && s["size"] == listed
    });
    // The journey's stream reaches the report `/stats` answers.
    journey.until("stats", |s| {
        let stats: J = client
            .get(server.url("/v1/journeys/j1_abandoned_cart/stats"))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        stats["entered"].as_u64() > Some(0) && *s == stats
    });

    // The segment removed: its stream says so and ends, and its permit is free again.
    let removed = client.delete(server.url("/v1/segments/s1_pro_north_america")).bearer_auth(TOKEN).send().unwrap();
    assert!(removed.status().is_success(), "{}", removed.status());
    segment.until("removed", |_| true);
    assert!(segment.next().is_none(), "the stream went on after removed");
    drop(segment);
    let opened = || {
        let r = client.get(server.url("/v1/segments/s2_frequent_viewer/stream")).bearer_auth(TOKEN).send().unwrap();
        (r.status() == StatusCode::OK).then_some(r)
    };
    let mut again = None;
    wait_until("a stream opens once one ended", Duration::from_secs(30), || {
        again = opened();
        again.is_some()
    });

    // SIGTERM with three streams open: the server stops at once (its drain time is 30 s).
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    // What the overview sent before is still to read; then it ends.
    let mut left = 0;
    while overview.next().is_some() {
        left += 1;
        assert!(left < 100, "the overview went on after the stop");
    }
    drop((journey, again));
}
