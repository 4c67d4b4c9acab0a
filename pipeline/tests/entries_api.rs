//! Entries from outside over HTTP, on `journeyflow run` as a real process: users named by
//! `POST /v1/journeys/{id}/entries` enter at the request's time with its context, the action
//! webhook receives the payload rendered from their traits and that context, a user missing
//! a value gets `failed_missing_data`, and every client mistake gets its 4xx.

mod common;

use common::server::{output_lines, Server};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value as J};
use std::time::{Duration, Instant};

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn entries_enter_with_their_context_and_the_webhook_gets_the_rendered_payload() {
    let (hooks, seen, _) = common::webhook::receiver();
    let dir = tempfile::tempdir().unwrap();
    let webhook = format!("email={hooks}/hook/email");
    let server = Server::start_with(2, dir.path(), &["--webhook", &webhook]);
    let client = Client::new();
    let journey = json!({"id": "promo", "entry": {"event": "Signup"}, "start": "mail", "nodes": {
        "mail": {"action": {"channel": "email", "template": "promo", "payload": {
            "to": "{{ traits.email }}", "coupon": "{{ context.coupon }}",
            "name": "{{ traits.name | default('friend') }}", "tier": "{{ context.tier }}"}}, "next": "done"},
        "done": {"exit": {}}}});
    assert_eq!(client.post(server.url("/v1/journeys")).json(&journey).send().unwrap().status(), StatusCode::CREATED);
    // Entries into a draft are refused: nobody can enter it yet.
    let entries = json!({"users": ["ann"], "context": {"coupon": "SPRING", "tier": 2}});
    let r = client.post(server.url("/v1/journeys/promo/entries")).json(&entries).send().unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let published: J = client.post(server.url("/v1/journeys/promo/publish")).send().unwrap().json().unwrap();
    let at = published["at"].as_u64().unwrap();
    // Ann's address, known before the entry.
    let identify = json!({"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com"},
        "timestamp": now_ms().max(at + 1)});
    assert_eq!(client.post(server.url("/v1/identify")).json(&identify).send().unwrap().status(), StatusCode::OK);
    // Ann and a user never seen (no address: the action fails for missing data).
    let entries = json!({"users": ["ann", "zed"], "context": {"coupon": "SPRING", "tier": 2}});
    let r = client.post(server.url("/v1/journeys/promo/entries")).json(&entries).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body: J = r.json().unwrap();
    assert_eq!((body["journey"].as_str(), body["users"].as_u64()), (Some("promo"), Some(2)), "{body}");
    let entered_at = body["time"].as_u64().unwrap();
    assert!(entered_at >= at, "{body}");
    // Mistakes.
    for (body, path) in [
        (json!({"users": []}), "$.users"),
        (json!({"users": ["a", 7]}), "$.users[1]"),
        (json!({"users": ["a"], "context": "x"}), "$.context"),
        (json!({"users": ["a"], "extra": 1}), "$.extra"),
    ] {
        let r = client.post(server.url("/v1/journeys/promo/entries")).json(&body).send().unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let problem: J = r.json().unwrap();
        assert!(problem.to_string().contains(path), "{body}: {problem}");
    }
    let r = client.post(server.url("/v1/journeys/promo/entries")).body("{not json").send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = client.post(server.url("/v1/journeys/nope/entries")).json(&json!({"users": ["a"]})).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The email is delivered (refused once, then taken) with the payload rendered.
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "the webhook got nothing: {:?}", seen.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let delivered = seen.lock().unwrap()[1].2.clone();
    assert_eq!(delivered["user_id"], "ann", "{delivered}");
    assert_eq!(
        delivered["payload"],
        json!({"to": "ann@example.com", "coupon": "SPRING", "name": "friend", "tier": 2}),
        "{delivered}"
    );
    // Ann's history says how she came in.
    let ann: J = client.get(server.url("/v1/journeys/promo/users/ann")).send().unwrap().json().unwrap();
    assert_eq!(ann["history"][0]["reason"], "api", "{ann}");
    assert_eq!(ann["history"][0]["time"], entered_at, "{ann}");
    // Paused: nobody enters.
    assert_eq!(client.post(server.url("/v1/journeys/promo/pause")).send().unwrap().status(), StatusCode::OK);
    let r = client.post(server.url("/v1/journeys/promo/entries")).json(&json!({"users": ["bob"]})).send().unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(server.stop().code(), Some(0));
    let actions = output_lines(dir.path(), "journey_actions");
    let zed = actions.iter().find(|a| a["user_id"] == "zed").expect("zed's action");
    assert_eq!((zed["status"].as_str(), zed["error"].as_str()), (Some("failed_missing_data"), Some("traits.email")));
    assert!(zed["payload"].is_null(), "{zed}");
    // Only the sent action went to the webhook.
    assert!(seen.lock().unwrap().iter().all(|(_, _, b)| b["user_id"] == "ann"));
}
