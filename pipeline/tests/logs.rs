//! What `journeyflow run` logs at its default level: never what an event or an action holds.
//! Events carrying a marker in every field (user ids, message ids, event names, properties,
//! traits) go through every path that makes the server complain: malformed bodies, events too
//! large, from a wrong clock, late, repeated, and actions to a webhook endpoint that refuses
//! them. The server must have complained (the test would prove nothing otherwise), and the
//! marker must appear nowhere in what it wrote to stderr.

mod common;

use common::server::{output_lines, Server};
use common::wait_until;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value as J};
use std::time::Duration;

const MARKER: &str = "pii-7f3a9c";

#[test]
fn the_default_log_level_shows_no_event_content() {
    // Nothing listens on a port bound and dropped: every delivery fails at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("journeyflow.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\nmax_event_bytes = 2000\n\
             [webhooks]\nurls = {{ email = \"http://{closed}/hook\" }}\nmax_attempts = 1\ntimeout = \"2s\"\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(1, &data, &["--config", config.to_str().unwrap()]);
    let client = Client::new();
    let journey = json!({"id": "welcome", "entry": {"event": format!("Signup {MARKER}")}, "start": "mail",
        "nodes": {"mail": {"action": {"channel": "email", "template": "hello", "payload": {"note": MARKER}}, "next": "done"},
                  "done": {"exit": {}}}});
    assert_eq!(client.post(server.url("/v1/journeys")).json(&journey).send().unwrap().status(), StatusCode::CREATED);
    let published: J = client.post(server.url("/v1/journeys/welcome/publish")).send().unwrap().json().unwrap();
    // Events at the publish time are history to the journey: these come after it.
    let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let now = clock.max(published["at"].as_u64().unwrap() + 1);
    let event = |i: usize, ts: u64| {
        json!({"type": "track", "event": format!("Signup {MARKER}"), "userId": format!("{MARKER}-user-{i}"),
               "messageId": format!("{MARKER}-m{i}"), "timestamp": ts,
               "properties": {"email": format!("{MARKER}@example.com"), "nested": {"secret": MARKER}}})
    };
    let batch = |events: Vec<J>| client.post(server.url("/v1/batch")).json(&json!({ "batch": events })).send().unwrap();
    let track = |event: J| client.post(server.url("/v1/track")).json(&event).send().unwrap().status();
    // Accepted events (and, through the journey, actions the endpoint refuses).
    assert_eq!(batch((0..10).map(|i| event(i, now)).collect()).status(), StatusCode::OK);
    // Repeats of the same messages.
    assert_eq!(batch((0..10).map(|i| event(i, now)).collect()).status(), StatusCode::OK);
    // From a wrong clock: a day ahead.
    assert_eq!(track(event(100, now + 86_400_000)), StatusCode::BAD_REQUEST);
    // Late: an hour behind the events before (clamped to the watermark).
    assert_eq!(track(event(101, now - 3_600_000)), StatusCode::OK);
    // Too large (stored, it would take more than 2,000 bytes), and malformed.
    let mut large = event(102, now);
    large["properties"]["blob"] = json!(MARKER.repeat(250));
    assert_eq!(track(large), StatusCode::BAD_REQUEST);
    let mut larger = event(103, now);
    larger["properties"]["blob"] = json!(MARKER.repeat(1000));
    assert_eq!(track(larger), StatusCode::PAYLOAD_TOO_LARGE);
    let mut in_batch = event(104, now + 86_400_000);
    in_batch["properties"]["blob"] = json!(MARKER.repeat(250));
    assert_eq!(batch(vec![in_batch]).status(), StatusCode::OK, "a batch answers each event apart");
    let malformed = client
        .post(server.url("/v1/track"))
        .header("content-type", "application/json")
        .body(format!("{{\"userId\": \"{MARKER}\", \"event\": "))
        .send()
        .unwrap();
    assert!(malformed.status().is_client_error());
    // The users' memberships and journey progress, asked by user id.
    let _ = client.get(server.url(&format!("/v1/users/{MARKER}-user-1/segments"))).send().unwrap();
    let _ = client.get(server.url(&format!("/v1/journeys/welcome/users/{MARKER}-user-1"))).send().unwrap();
    wait_until("the actions of the accepted events", Duration::from_secs(30), || {
        output_lines(&data, "journey_actions").len() >= 10
    });
    wait_until("the server to give up on the refused deliveries", Duration::from_secs(30), || {
        server.said.lock().unwrap().iter().any(|l| l.contains("giving up"))
    });
    let said = server.said.lock().unwrap().clone();
    assert_eq!(server.stop().code(), Some(0));
    let leaks: Vec<&String> = said.iter().filter(|l| l.contains(MARKER)).collect();
    assert!(leaks.is_empty(), "event content in the log: {leaks:#?}");
}
