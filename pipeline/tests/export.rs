//! A user's export through the real binary (two workers, so that a user's events, traits and
//! memberships may sit on different workers): `GET /v1/users/{user_id}` holds their traits
//! with when each got its value, first and last seen, counts by name, every retained event
//! once over the pages, their segments with since when, their journeys and their actions.

mod common;

use common::server::Server;
use common::wait_until;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value as J};
use std::time::Duration;

#[test]
fn an_export_holds_what_is_known_about_a_user_and_pages_through_every_event() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("segments.json"),
        json!([
            {"id": "viewers", "condition": {"performed": {"event": "Product Viewed"}}},
            {"id": "pro", "condition": {"trait": {"name": "plan", "op": "eq", "value": "pro"}}}
        ])
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("journeys.json"),
        json!([{"id": "welcome", "entry": {"event": "Signed Up"}, "start": "mail", "nodes": {
            "mail": {"action": {"channel": "email"}, "next": "wait"},
            "wait": {"wait": {"duration": "1d"}, "next": "done"},
            "done": {"exit": {}}}}])
        .to_string(),
    )
    .unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (segments, journeys) = (path("segments.json"), path("journeys.json"));
    let server = Server::start_with(2, &dir.path().join("data"), &["--segments", &segments, "--journeys", &journeys]);
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let t0 = now - 10_000;
    let event = |i: u64, body: J| {
        let mut e = body;
        e["userId"] = json!("ann");
        e["messageId"] = json!(format!("ann-{i}"));
        e["timestamp"] = json!(t0 + i * 100);
        e
    };
    let batch = vec![
        event(0, json!({"type": "identify", "traits": {"plan": "free", "country": "FR"}})),
        event(1, json!({"type": "track", "event": "Signed Up"})),
        event(2, json!({"type": "track", "event": "Product Viewed", "properties": {"sku": "a", "price": 3}})),
        event(3, json!({"type": "track", "event": "Product Viewed", "properties": {"sku": "b"}})),
        event(4, json!({"type": "identify", "traits": {"plan": "pro"}})),
        event(5, json!({"type": "page", "properties": {"path": "/"}})),
        json!({"type": "track", "event": "Product Viewed", "userId": "bob", "messageId": "bob-0", "timestamp": t0}),
    ];
    let response = client.post(server.url("/v1/batch")).json(&json!({ "batch": batch })).send().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let export = |query: &str| -> J {
        let response = client.get(server.url(&format!("/v1/users/ann{query}"))).send().unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{query}");
        response.json().unwrap()
    };
    wait_until("ann's export shows her six events, both segments and her journey", Duration::from_secs(60), || {
        let response = client.get(server.url("/v1/users/ann")).send().unwrap();
        response.status() == StatusCode::OK && {
            let doc: J = response.json().unwrap();
            doc["retained_events"] == 6
                && doc["segments"].as_array().unwrap().len() == 2
                && doc["journeys"] != json!([])
        }
    });
    let doc = export("");
    assert_eq!((doc["first_seen"].as_u64(), doc["last_seen"].as_u64()), (Some(t0), Some(t0 + 500)));
    assert_eq!(
        doc["traits"],
        json!({"plan": {"value": "pro", "set_at": t0 + 400}, "country": {"value": "FR", "set_at": t0}})
    );
    assert_eq!(doc["event_counts"], json!({"identify": 2, "Signed Up": 1, "Product Viewed": 2, "page": 1}));
    assert_eq!(doc["segments"], json!([{"id": "pro", "since": t0 + 400}, {"id": "viewers", "since": t0 + 200}]));
    let journey = &doc["journeys"][0];
    assert_eq!(
        (&journey["journey"], &journey["status"], &journey["node"]),
        (&json!("welcome"), &json!("waiting"), &json!("wait"))
    );
    let actions = doc["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!((&actions[0]["channel"], &actions[0]["status"]), (&json!("email"), &json!("sent")));
    assert_eq!(
        doc["events"][2],
        json!({"type": "track", "event": "Product Viewed", "messageId": "ann-2",
        "timestamp": t0 + 200, "properties": {"sku": "a", "price": 3.0}})
    );
    // Two at a time: every event once, in order, and the last page says so.
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_string();
    loop {
        let page = export(&query);
        assert!(page["events"].as_array().unwrap().len() <= 2);
        seen.extend(page["events"].as_array().unwrap().iter().map(|e| e["messageId"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, (0..6).map(|i| format!("ann-{i}")).collect::<Vec<_>>());
    // Newest first, three at a time: the same events the other way round.
    let mut seen = Vec::new();
    let mut query = "?limit=3&order=desc".to_string();
    loop {
        let page = export(&query);
        seen.extend(page["events"].as_array().unwrap().iter().map(|e| e["messageId"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=3&order=desc&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, (0..6).rev().map(|i| format!("ann-{i}")).collect::<Vec<_>>());
    for (query, status) in [
        ("/v1/users/ann?order=sideways", StatusCode::BAD_REQUEST),
        ("/v1/users/nobody", StatusCode::NOT_FOUND),
        ("/v1/users/ann?limit=0", StatusCode::BAD_REQUEST),
        ("/v1/users/ann?cursor=zz", StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(client.get(server.url(query)).send().unwrap().status(), status, "{query}");
    }
    assert_eq!(server.stop().code(), Some(0));
}
