//! The live streams (Server-Sent Events) through the real binary, as a browser's EventSource
//! or an API user reads them: the overview counts the events sent, a segment's stream reaches
//! the size its member listing has, a journey's stream the report `/stats` answers; they need
//! the API token, are limited in number, end with a `removed` event when what they follow is
//! removed, and end with the server (which stops at once, not after its drain time).

mod common;

use common::server::Server;
use common::sse::Events;
use common::wait_until;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::Value as J;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "s3cret";

fn members(client: &Client, server: &Server, id: &str) -> BTreeSet<String> {
    common::server::members(client, server, id, 1000, Some(TOKEN)).1
}

#[test]
fn live_streams_follow_the_overview_a_segment_and_a_journey_and_end_with_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("journeyflow.toml");
    std::fs::write(&config, "[api]\nmax_streams = 3\n").unwrap();
    // Events from 2024 kept (no retention): a trait segment's size stays once every event is
    // in, after event time has followed the wall clock (which member listings wait for).
    let flags = ["--config", config.to_str().unwrap(), "--retention-events", "forever"];
    let server = common::server::sample_server(2, &dir.path().join("data"), TOKEN, &flags);
    let client = Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let plain = client.get(server.url("/v1/streams/overview")).send().unwrap();
    assert_eq!(plain.status(), StatusCode::UNAUTHORIZED, "a stream without the token");
    let unknown = client.get(server.url("/v1/segments/nope/stream")).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let mut overview = Events::open(&client, &server.url("/v1/streams/overview"), Some(TOKEN));
    let mut segment = Events::open(&client, &server.url("/v1/segments/s1_pro_north_america/stream"), Some(TOKEN));
    let mut journey = Events::open(&client, &server.url("/v1/journeys/j1_abandoned_cart/stream"), Some(TOKEN));
    assert_eq!(overview.until("overview", |_| true)["events_in"], 0);
    assert_eq!(segment.until("size", |_| true)["size"], 0);
    assert_eq!(journey.until("stats", |_| true)["entered"], 0);
    // A fourth at once: refused, with when to try again.
    let fourth = client.get(server.url("/v1/streams/overview")).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(fourth.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(fourth.headers().contains_key("retry-after"));

    let accepted = common::server::send_sample(&client, &server);
    assert!(accepted > 7_000, "{accepted} of the sample's 8,000 accepted");

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
