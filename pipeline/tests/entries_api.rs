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
    // Per-hour counts: both entries and both actions in the buckets around the entry's time.
    let url = format!("/v1/journeys/promo/stats?from={}&to={}&step=1h", entered_at - 3_600_000, entered_at + 3_600_000);
    let hours: J = client.get(server.url(&url)).send().unwrap().json().unwrap();
    assert_eq!(hours["step"], "1h", "{hours}");
    let buckets = hours["buckets"].as_array().unwrap();
    assert!(buckets.len() >= 2 && buckets.len() <= 3, "{hours}");
    let sum = |f: &dyn Fn(&J) -> i64| buckets.iter().map(f).sum::<i64>();
    assert_eq!(sum(&|b| b["entered"].as_i64().unwrap()), 2, "{hours}");
    assert_eq!(sum(&|b| b["nodes"]["mail"]["actions"]["sent"].as_i64().unwrap_or(0)), 1, "{hours}");
    assert_eq!(sum(&|b| b["nodes"]["mail"]["actions"]["failed_missing_data"].as_i64().unwrap_or(0)), 1, "{hours}");
    let hour = entered_at - entered_at % 3_600_000;
    let holding = buckets.iter().find(|b| b["start"] == hour).expect("the entry's hour");
    assert_eq!(holding["nodes"]["done"]["entered"], 2, "{hours}");
    for bad in
        ["step=90m", "step=0h", "from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z", "from=soon", "step=1h&from=0"]
    {
        let r = client.get(server.url(&format!("/v1/journeys/promo/stats?{bad}"))).send().unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
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
