//! Deleting a user through the real binary: a user waiting in a journey is deleted (and
//! suppressed): they leave their segment and the journey at the deletion, marked `deleted`,
//! no action of theirs is sent, their later events are refused, a restart after SIGKILL does
//! not bring them back, and lifting the suppression lets new events of theirs count.

mod common;

use common::server::{output_lines, Server};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value as J};
use std::path::Path;
use std::time::{Duration, Instant};

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Waits up to 60 s for `done`, saying `what` on failure.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "after 60 s, still not: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn track(user: &str, event: &str, id: &str) -> J {
    json!({"type": "track", "event": event, "userId": user, "messageId": id, "timestamp": now()})
}

fn send(client: &Client, server: &Server, events: &[J]) {
    let response = client.post(server.url("/v1/batch")).json(&json!({ "batch": events })).send().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// The members of `viewers` as of now.
fn members(client: &Client, server: &Server) -> Vec<String> {
    let page: J = client.get(server.url("/v1/segments/viewers/members")).send().unwrap().json().unwrap();
    page["members"].as_array().unwrap().iter().map(|m| m["user_id"].as_str().unwrap().to_string()).collect()
}

/// `(user, from, to, reason)` of every transition written.
fn moves(data: &Path) -> Vec<(String, J, J, String)> {
    output_lines(data, "journey_transitions")
        .into_iter()
        .map(|t| {
            (
                t["user_id"].as_str().unwrap().into(),
                t["from"].clone(),
                t["to"].clone(),
                t["reason"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn start(data: &Path, definitions: &Path) -> Server {
    let segments = definitions.join("segments.json");
    let journeys = definitions.join("journeys.json");
    Server::start_with(2, data, &["--segments", segments.to_str().unwrap(), "--journeys", journeys.to_str().unwrap()])
}

#[test]
fn a_deleted_user_leaves_everything_stays_out_across_a_restart_and_comes_back_once_unsuppressed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::write(
        dir.path().join("segments.json"),
        json!([{"id": "viewers", "condition": {"performed": {"event": "Product Viewed"}}}]).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("journeys.json"),
        json!([{"id": "cart", "entry": {"event": "Cart Viewed"}, "start": "wait", "nodes": {
            "wait": {"wait": {"duration": "1h"}, "next": "mail"},
            "mail": {"action": {"channel": "email"}, "next": "done"},
            "done": {"exit": {}}}}])
        .to_string(),
    )
    .unwrap();
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut server = start(&data, dir.path());
    let mut events = Vec::new();
    for user in ["ann", "bob"] {
        events.push(track(user, "Product Viewed", &format!("{user}-1")));
        events.push(track(user, "Cart Viewed", &format!("{user}-2")));
    }
    send(&client, &server, &events);
    wait_for("ann and bob wait in the journey", || {
        moves(&data).iter().filter(|(_, _, to, _)| to == "wait").count() == 2
    });
    assert_eq!(members(&client, &server), ["ann", "bob"]);

    // Deleted and suppressed: 202 with where to follow it.
    let response = client.delete(server.url("/v1/users/ann")).json(&json!({"suppress": true})).send().unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["location"], "/v1/deletions/1");
    let answer: J = response.json().unwrap();
    let at = answer["as_of"].as_u64().unwrap();
    assert_eq!(answer["suppress"], true);
    assert!(!answer.to_string().contains("ann"), "the answer names the user: {answer}");
    wait_for("the deletion completes", || {
        let status: J = client.get(server.url("/v1/deletions/1")).send().unwrap().json().unwrap();
        status["status"] == "complete"
    });
    let exits: Vec<J> = output_lines(&data, "segment_changes").into_iter().filter(|c| c["change"] == "exit").collect();
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(
        (&exits[0]["user_id"], &exits[0]["time"], &exits[0]["reason"]),
        (&json!("ann"), &json!(at), &json!("deleted"))
    );
    assert!(moves(&data).contains(&("ann".into(), json!("wait"), J::Null, "deleted".into())));
    assert_eq!(members(&client, &server), ["bob"]);
    let listed: J = client.get(server.url("/v1/suppressions")).send().unwrap().json().unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // Refused while suppressed: carl's later event counts, ann's does not.
    send(&client, &server, &[track("ann", "Product Viewed", "ann-3"), track("carl", "Product Viewed", "carl-1")]);
    wait_for("carl enters", || members(&client, &server).contains(&"carl".to_string()));
    assert_eq!(members(&client, &server), ["bob", "carl"]);

    // Killed and started again over the same log: ann does not come back.
    server.kill();
    server = start(&data, dir.path());
    send(&client, &server, &[track("dan", "Product Viewed", "dan-1")]);
    wait_for("dan enters after the restart", || members(&client, &server).contains(&"dan".to_string()));
    assert_eq!(members(&client, &server), ["bob", "carl", "dan"]);
    let ann: Vec<_> = moves(&data).into_iter().filter(|m| m.0 == "ann").collect();
    assert_eq!(ann.len(), 2, "ann moved again after the restart: {ann:?}");
    assert!(output_lines(&data, "journey_actions").is_empty(), "an action was sent");

    // Unsuppressed: a new event of ann's counts again, as a new user.
    let response = client.delete(server.url("/v1/suppressions/ann")).send().unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(client.delete(server.url("/v1/suppressions/ann")).send().unwrap().status(), StatusCode::NOT_FOUND);
    send(&client, &server, &[track("ann", "Product Viewed", "ann-4")]);
    wait_for("ann enters again", || members(&client, &server).contains(&"ann".to_string()));
    assert_eq!(server.stop().code(), Some(0));
}
