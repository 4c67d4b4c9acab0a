//! `journeyflow run` as a real process, through a real socket: events sent over the
//! Segment-compatible API, segments installed mid-stream whose members (as of the time the
//! answer states) equal the from-scratch reference over the events sent, removal rules, the
//! error codes, and a clean exit on SIGTERM.

mod common;

use common::server::{output_lines, Server};

use common::reference::{accepted, Reference};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value as J};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Events of the last hour (the newest a minute old), deterministic in `seed`.
fn events(seed: u64, n: u64) -> Vec<J> {
    let base = now_ms() - 3_600_000;
    (0..n)
        .map(|i| {
            let k = seed * 1000 + i;
            let user = format!("user{}", (k * 7) % 23);
            let ts = base + i * (3_540_000 / n);
            if k.is_multiple_of(5) {
                let plan = if k.is_multiple_of(3) { "pro" } else { "free" };
                json!({"type": "identify", "userId": user, "messageId": format!("m{k}"), "timestamp": ts, "traits": {"plan": plan}})
            } else {
                let name = ["A", "B", "C"][(k % 3) as usize];
                json!({"type": "track", "event": name, "userId": user, "messageId": format!("m{k}"), "timestamp": ts, "properties": {"n": k % 10}})
            }
        })
        .collect()
}

fn members(client: &Client, server: &Server, id: &str) -> (u64, BTreeSet<String>) {
    common::server::members(client, server, id, 5, None)
}

const SEGMENTS: [&str; 3] = [
    r#"{"id": "a_twice", "condition": {"performed": {"event": "A", "within": "2h", "at_least": 2}}}"#,
    r#"{"id": "pro", "condition": {"trait": {"name": "plan", "op": "eq", "value": "pro"}}}"#,
    r#"{"id": "pro_without_c", "condition": {"all": [{"in_segment": "pro"}, {"not": {"performed": {"event": "C", "within": "30m"}}}]}}"#,
];

fn check_against_reference(client: &Client, server: &Server, sent: &[J]) {
    let defs: Vec<J> = SEGMENTS.iter().map(|s| serde_json::from_str(s).unwrap()).collect();
    check_definitions(client, server, sent, &defs);
}

fn check_definitions(client: &Client, server: &Server, sent: &[J], defs: &[J]) {
    let lines: Vec<String> = sent.iter().map(J::to_string).collect();
    let events = accepted(&lines, 86_400_000);
    let reference = Reference::new(defs, &events);
    for d in defs {
        let id = d["id"].as_str().unwrap();
        let (as_of, got) = members(client, server, id);
        assert!(as_of >= events.iter().map(|e| e.ts).max().unwrap(), "{id}: as_of {as_of} before the events sent");
        assert_eq!(got, reference.members(id, as_of), "{id} as of {as_of}");
    }
}

/// Sends `sent` in one batch, installs `SEGMENTS` over it, and checks the members.
fn send_and_install(client: &Client, server: &Server, sent: &[J]) {
    let r = client.post(server.url("/v1/batch")).json(&json!({"batch": sent})).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for s in SEGMENTS {
        let r = client.post(server.url("/v1/segments")).body(s).send().unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    }
    check_against_reference(client, server, sent);
}

fn scenario(workers: usize) {
    let server = Server::start(workers);
    let client = Client::new();
    let mut sent = events(1, 120);
    // Installed over what was sent before: members at once.
    send_and_install(&client, &server, &sent);
    // More events after the install, one at a time through /v1/track and /v1/identify.
    for e in events(2, 40) {
        let (path, mut body) = (format!("/v1/{}", e["type"].as_str().unwrap()), e.clone());
        body.as_object_mut().unwrap().remove("type");
        assert_eq!(client.post(server.url(&path)).json(&body).send().unwrap().status(), StatusCode::OK);
        sent.push(e);
    }
    check_against_reference(&client, &server, &sent);
    // A user's segments, as of the time the answer states.
    let lines: Vec<String> = sent.iter().map(J::to_string).collect();
    let defs: Vec<J> = SEGMENTS.iter().map(|s| serde_json::from_str(s).unwrap()).collect();
    let reference = Reference::new(&defs, &accepted(&lines, 86_400_000));
    for user in ["user0", "user3", "user7"] {
        let r: J = client.get(server.url(&format!("/v1/users/{user}/segments"))).send().unwrap().json().unwrap();
        let as_of = r["as_of"].as_u64().unwrap();
        let got: BTreeSet<&str> = r["segments"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        let want: BTreeSet<&str> = defs
            .iter()
            .map(|d| d["id"].as_str().unwrap())
            .filter(|id| reference.members(id, as_of).contains(user))
            .collect();
        assert_eq!(got, want, "{user} as of {as_of}");
    }
    let r = client.get(server.url("/v1/users/nobody/segments")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Metrics: what was sent, and segment sizes (the trait segment does not move with time).
    assert_eq!(client.get(server.url("/readyz")).send().unwrap().status(), StatusCode::OK);
    let (_, pro) = members(&client, &server, "pro");
    let text = client.get(server.url("/metrics")).send().unwrap().text().unwrap();
    let value = |name: &str| -> Option<f64> {
        text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
    };
    assert_eq!(value("journeyflow_events_in_total"), Some(sent.len() as f64), "{text}");
    assert_eq!(value("journeyflow_segment_members{segment=\"pro\"}"), Some(pro.len() as f64), "{text}");
    assert!(value("journeyflow_watermark_lag_seconds").is_some(), "{text}");
    // The arrangements hold at least every event sent (one copy in the events arrangement).
    assert!(value("journeyflow_arranged_records").is_some_and(|n| n >= sent.len() as f64), "{text}");
    // Every event sent was read before the answers: no source lags.
    let lags: Vec<&str> =
        text.lines().filter(|l| l.starts_with("journeyflow_source_lag_bytes{source=\"http\"")).collect();
    assert!(!lags.is_empty() && lags.iter().all(|l| l.ends_with(" 0")), "{text}");
    // Ten events sent again, an hour late: dropped as duplicates, after being moved up to the watermark.
    let again = json!({"batch": sent[..10]});
    assert_eq!(client.post(server.url("/v1/batch")).json(&again).send().unwrap().status(), StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = client.get(server.url("/metrics")).send().unwrap().text().unwrap();
        let value = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok());
        if value("journeyflow_events_duplicate ") == Some(10.0) {
            assert!(value("journeyflow_events_late ").is_some_and(|late| late >= 10.0), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "the copies were not counted as duplicates: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Removal: refused while used, then allowed in order.
    let r = client.delete(server.url("/v1/segments/pro")).send().unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(
        client.delete(server.url("/v1/segments/pro_without_c")).send().unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(client.delete(server.url("/v1/segments/pro")).send().unwrap().status(), StatusCode::NO_CONTENT);
    let listed: J = client.get(server.url("/v1/segments")).send().unwrap().json().unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(server.stop().code(), Some(0), "clean exit on SIGTERM");
}

#[test]
fn members_equal_the_reference_over_http_with_one_worker() {
    scenario(1);
}

#[test]
fn members_equal_the_reference_over_http_with_two_workers() {
    scenario(2);
}

#[test]
fn client_mistakes_get_the_right_4xx_as_problem_documents() {
    let server = Server::start(1);
    let client = Client::new();
    let problem = |r: reqwest::blocking::Response, status: StatusCode| -> J {
        assert_eq!(r.status(), status);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        r.json().unwrap()
    };
    let doc: J = client.get(server.url("/v1/openapi.json")).send().unwrap().json().unwrap();
    // Every control and ingest route is documented.
    for (path, method) in [
        ("/v1/track", "post"),
        ("/v1/batch", "post"),
        ("/v1/segments", "post"),
        ("/v1/segments", "get"),
        ("/v1/segments/{id}", "get"),
        ("/v1/segments/{id}", "put"),
        ("/v1/segments/{id}", "delete"),
        ("/v1/segments/{id}/members", "get"),
        ("/v1/users/{user_id}/segments", "get"),
        ("/v1/journeys", "post"),
        ("/v1/journeys", "get"),
        ("/v1/journeys/{id}", "get"),
        ("/v1/journeys/{id}", "put"),
        ("/v1/journeys/{id}/stats", "get"),
        ("/v1/journeys/{id}/users/{user_id}", "get"),
        ("/v1/journeys/{id}/{action}", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not documented");
    }
    let p = problem(client.post(server.url("/v1/segments")).body("{not json").send().unwrap(), StatusCode::BAD_REQUEST);
    assert!(p["detail"].as_str().unwrap().contains("malformed JSON"), "{p}");
    let bad = r#"{"id": "Bad Id", "condition": {"performed": {"event": "A", "within": "3 days"}}, "colour": 1}"#;
    let p =
        problem(client.post(server.url("/v1/segments")).body(bad).send().unwrap(), StatusCode::UNPROCESSABLE_ENTITY);
    let paths: BTreeSet<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, BTreeSet::from(["$.id", "$.condition.performed.within", "$.colour"]), "{p}");
    let unknown_ref = r#"{"id": "x", "condition": {"in_segment": "nowhere"}}"#;
    problem(
        client.post(server.url("/v1/segments")).body(unknown_ref).send().unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    problem(client.get(server.url("/v1/segments/nowhere")).send().unwrap(), StatusCode::NOT_FOUND);
    problem(client.get(server.url("/v1/segments/nowhere/members")).send().unwrap(), StatusCode::NOT_FOUND);
    problem(client.delete(server.url("/v1/segments/nowhere")).send().unwrap(), StatusCode::NOT_FOUND);
    assert_eq!(client.post(server.url("/v1/segments")).body(SEGMENTS[1]).send().unwrap().status(), StatusCode::CREATED);
    problem(client.post(server.url("/v1/segments")).body(SEGMENTS[1]).send().unwrap(), StatusCode::CONFLICT);
    problem(client.get(server.url("/v1/segments/pro/members?limit=0")).send().unwrap(), StatusCode::BAD_REQUEST);
    // A bad event alone is a 400 naming the problem; in a batch it is reported by index.
    let p = problem(
        client.post(server.url("/v1/track")).json(&json!({"userId": "u", "timestamp": 5})).send().unwrap(),
        StatusCode::BAD_REQUEST,
    );
    assert!(p["detail"].as_str().unwrap().contains("event"), "{p}");
    let r: J = client
        .post(server.url("/v1/batch"))
        .json(&json!({"batch": [{"type": "track", "event": "A", "userId": "u"}, {"type": "track", "userId": "u"}]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!((r["accepted"].as_u64(), r["rejected"][0]["index"].as_u64()), (Some(1), Some(1)), "{r}");
    // Bodies over the limit (100 kB here).
    let big =
        json!({"batch": [{"type": "track", "event": "A", "userId": "u", "properties": {"pad": "x".repeat(200_000)}}]});
    let r = client.post(server.url("/v1/batch")).json(&big).send().unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn a_restart_finds_every_definition_and_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new();
    let sent = events(3, 80);
    let server = Server::start_in(2, dir.path());
    send_and_install(&client, &server, &sent);
    assert_eq!(server.stop().code(), Some(0));
    // Same data directory, new process: definitions reinstalled, the log read again.
    let server = Server::start_in(2, dir.path());
    let listed: J = client.get(server.url("/v1/segments")).send().unwrap().json().unwrap();
    let ids: BTreeSet<&str> = listed.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, BTreeSet::from(["a_twice", "pro", "pro_without_c"]));
    check_against_reference(&client, &server, &sent);
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn replacing_a_segment_recomputes_it_and_emits_only_the_differences() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(2, dir.path());
    let client = Client::new();
    let sent = events(4, 100);
    send_and_install(&client, &server, &sent);
    // Used by pro_without_c: refused.
    let r = client.put(server.url("/v1/segments/pro")).body(SEGMENTS[1]).send().unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let replacement = json!({"condition": {"performed": {"event": "A", "within": "2h", "at_least": 3}}});
    let r = client.put(server.url("/v1/segments/a_twice")).json(&replacement).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let at = r.json::<J>().unwrap()["installed_at"].as_u64().unwrap();
    let new_def = json!({"id": "a_twice", "condition": replacement["condition"]});
    check_definitions(&client, &server, &sent, std::slice::from_ref(&new_def));
    assert_eq!(server.stop().code(), Some(0));
    // The change log: at the replace time, exits only (at least 3 implies at least 2), and
    // the log adds up to the new membership.
    let log: Vec<J> =
        output_lines(dir.path(), "segment_changes").into_iter().filter(|c| c["segment"] == "a_twice").collect();
    let at_replace: Vec<&J> = log.iter().filter(|c| c["time"] == at).collect();
    assert!(!at_replace.is_empty(), "replacing dropped someone, so there are exits at {at}");
    assert!(at_replace.iter().all(|c| c["change"] == "exit"), "{at_replace:?}");
    let mut acc: std::collections::BTreeMap<String, i64> = Default::default();
    for c in &log {
        *acc.entry(c["user_id"].as_str().unwrap().to_string()).or_default() +=
            if c["change"] == "enter" { 1 } else { -1 };
    }
    let lines: Vec<String> = sent.iter().map(J::to_string).collect();
    let defs = [new_def];
    let events = accepted(&lines, 86_400_000);
    let reference = Reference::new(&defs, &events);
    let members: BTreeSet<String> = acc.into_iter().filter(|(_, n)| *n == 1).map(|(u, _)| u).collect();
    let last = log.iter().map(|c| c["time"].as_u64().unwrap()).max().unwrap();
    assert_eq!(members, reference.members("a_twice", last));
}

#[test]
fn with_credentials_configured_calls_without_them_get_401() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(1, dir.path(), &["--api-token", "s3cret", "--write-key", "wk1"]);
    let client = Client::new();
    let event = json!({"event": "A", "userId": "u1"});
    let r = client.post(server.url("/v1/track")).json(&event).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let r = client.post(server.url("/v1/track")).basic_auth("nope", Some("")).json(&event).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client.post(server.url("/v1/track")).basic_auth("wk1", Some("")).json(&event).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(client.get(server.url("/v1/segments")).send().unwrap().status(), StatusCode::UNAUTHORIZED);
    let r = client.get(server.url("/v1/segments")).bearer_auth("wrong").send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(client.get(server.url("/v1/segments")).bearer_auth("s3cret").send().unwrap().status(), StatusCode::OK);
    assert_eq!(client.get(server.url("/healthz")).send().unwrap().status(), StatusCode::OK);
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn an_open_server_on_a_public_address_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_journeyflow"))
        .args(["run", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("JOURNEYFLOW_API_TOKEN")
        .env_remove("JOURNEYFLOW_WRITE_KEYS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"), "{}", String::from_utf8_lossy(&out.stderr));
    // A config file with a misspelt key is refused, naming the key.
    let config = dir.path().join("journeyflow.toml");
    std::fs::write(&config, "workers = 1\n[api]\ntokn = \"x\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_journeyflow")).args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokn"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn events_from_segments_own_python_library_reach_the_segments() {
    let python = std::env::var("JOURNEYFLOW_PYTHON")
        .expect("JOURNEYFLOW_PYTHON names a Python with segment-analytics-python (scripts/test.sh installs one)");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(1, dir.path(), &["--write-key", "wk-python"]);
    let client = Client::new();
    for s in SEGMENTS {
        assert_eq!(client.post(server.url("/v1/segments")).body(s).send().unwrap().status(), StatusCode::CREATED);
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/segment_client.py");
    let out = Command::new(python).arg(script).args([&server.base, "wk-python"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The answers are as of a time after the events were acknowledged.
    let segments = |user: &str| -> BTreeSet<String> {
        let r: J = client.get(server.url(&format!("/v1/users/{user}/segments"))).send().unwrap().json().unwrap();
        r["segments"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    assert_eq!(segments("py-user-1"), BTreeSet::from(["a_twice".to_string(), "pro".into(), "pro_without_c".into()]));
    assert_eq!(segments("py-user-2"), BTreeSet::new());
    // And the changes came out: py-user-1 entered the three segments.
    assert_eq!(server.stop().code(), Some(0));
    let entered: BTreeSet<String> = output_lines(dir.path(), "segment_changes")
        .iter()
        .filter(|c| c["user_id"] == "py-user-1" && c["change"] == "enter")
        .map(|c| c["segment"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(entered.len(), 3, "{entered:?}");
}

#[test]
fn journeys_through_the_api_run_report_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(2, dir.path());
    let client = Client::new();
    let journey = json!({"id": "cart", "entry": {"event": "Cart Viewed"}, "start": "wait", "nodes": {
        "wait": {"wait_until": {"event": "Order Completed", "timeout": "2s", "on_event": "done", "on_timeout": "mail"}},
        "mail": {"action": {"channel": "email", "template": "cart"}, "next": "done"},
        "done": {"exit": {}}}});
    let r = client.post(server.url("/v1/journeys")).json(&journey).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<J>().unwrap()["status"], "draft");
    let bad = json!({"id": "bad", "entry": {"segment_enter": "nowhere"}, "start": "x", "nodes": {"x": {"exit": {}}}});
    let r = client.post(server.url("/v1/journeys")).json(&bad).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(client.post(server.url("/v1/journeys/cart/resume")).send().unwrap().status(), StatusCode::CONFLICT);
    assert_eq!(client.post(server.url("/v1/journeys/nope/publish")).send().unwrap().status(), StatusCode::NOT_FOUND);
    let r: J = client.post(server.url("/v1/journeys/cart/publish")).send().unwrap().json().unwrap();
    assert_eq!(r["status"], "ongoing");
    let published = r["at"].as_u64().unwrap();
    // After the publish time: one user orders within the timeout, one does not.
    let now = now_ms().max(published + 1);
    let batch = json!({"batch": [
        {"type": "track", "event": "Cart Viewed", "userId": "ann", "timestamp": now},
        {"type": "track", "event": "Cart Viewed", "userId": "bob", "timestamp": now},
        {"type": "track", "event": "Order Completed", "userId": "bob", "timestamp": now + 500},
    ]});
    assert_eq!(client.post(server.url("/v1/batch")).json(&batch).send().unwrap().status(), StatusCode::OK);
    // Both finish once the 2 s timeout has passed in event time (the watermark follows the clock).
    let deadline = Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let stats: J = client.get(server.url("/v1/journeys/cart/stats")).send().unwrap().json().unwrap();
        if stats["completed"] == 2 {
            break stats;
        }
        assert!(Instant::now() < deadline, "the journey did not finish: {stats}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!((stats["entered"].as_i64(), stats["in_progress"].as_i64()), (Some(2), Some(0)), "{stats}");
    assert_eq!(stats["nodes"]["mail"]["entered"], 1, "{stats}");
    assert_eq!(stats["nodes"]["mail"]["actions"]["sent"], 1, "{stats}");
    let text = client.get(server.url("/metrics")).send().unwrap().text().unwrap();
    assert!(text.lines().any(|l| l == "journeyflow_journey_completed{journey=\"cart\"} 2"), "{text}");
    // Each user's progress, from their transitions.
    let ann: J = client.get(server.url("/v1/journeys/cart/users/ann")).send().unwrap().json().unwrap();
    assert_eq!((ann["status"].as_str(), ann["outcome"].as_str()), (Some("ended"), Some("completed")), "{ann}");
    let reasons: Vec<&str> = ann["history"].as_array().unwrap().iter().map(|t| t["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["entry", "timeout", "next"], "{ann}");
    let bob: J = client.get(server.url("/v1/journeys/cart/users/bob")).send().unwrap().json().unwrap();
    assert_eq!(bob["history"][1]["reason"], "event", "{bob}");
    let r = client.get(server.url("/v1/journeys/cart/users/nobody")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(client.post(server.url("/v1/journeys/cart/pause")).send().unwrap().status(), StatusCode::OK);
    assert_eq!(server.stop().code(), Some(0));
    // The action went to the output file, for ann.
    let actions = output_lines(dir.path(), "journey_actions");
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!((actions[0]["user_id"].as_str(), actions[0]["status"].as_str()), (Some("ann"), Some("sent")));
    // A restart keeps the journey and its status.
    let server = Server::start_in(2, dir.path());
    let j: J = client.get(server.url("/v1/journeys/cart")).send().unwrap().json().unwrap();
    assert_eq!(j["status"], "paused", "{j}");
    assert_eq!(client.post(server.url("/v1/journeys/cart/resume")).send().unwrap().status(), StatusCode::OK);
    assert_eq!(client.post(server.url("/v1/journeys/cart/end")).send().unwrap().status(), StatusCode::OK);
    assert_eq!(client.post(server.url("/v1/journeys/cart/pause")).send().unwrap().status(), StatusCode::CONFLICT);
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn definitions_given_at_start_are_installed_and_published() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let segments = root.join("datasets/sample/segments.json");
    let journeys = root.join("datasets/sample/journeys.json");
    let server = Server::start_with(
        2,
        dir.path(),
        &["--segments", segments.to_str().unwrap(), "--journeys", journeys.to_str().unwrap()],
    );
    let client = Client::new();
    let listed: J = client.get(server.url("/v1/segments")).send().unwrap().json().unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 6);
    let listed: J = client.get(server.url("/v1/journeys")).send().unwrap().json().unwrap();
    let statuses: BTreeSet<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["id"].as_str().unwrap().to_string(), j["status"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        statuses,
        BTreeSet::from([
            ("j1_abandoned_cart".to_string(), "ongoing".to_string()),
            ("j2_win_back".to_string(), "ongoing".to_string())
        ])
    );
    assert_eq!(server.stop().code(), Some(0));
}

/// Polls a user's progress in a journey until `done` holds for it.
fn progress_until(client: &Client, server: &Server, journey: &str, user: &str, done: impl Fn(&J) -> bool) -> J {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client.get(server.url(&format!("/v1/journeys/{journey}/users/{user}"))).send().unwrap();
        let body: J = if r.status() == StatusCode::OK { r.json().unwrap() } else { J::Null };
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{user} did not get there: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_new_version_takes_over_users_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(2, dir.path());
    let client = Client::new();
    let v1 = json!({"id": "onboard", "entry": {"event": "Signup"}, "start": "ask", "nodes": {
        "ask": {"wait_until": {"event": "Reply", "timeout": "60s", "on_event": "hold", "on_timeout": "done"}},
        "hold": {"wait": {"duration": "20s"}, "next": "mail"},
        "mail": {"action": {"channel": "email", "template": "welcome"}, "next": "done"},
        "done": {"exit": {}}}});
    assert_eq!(client.post(server.url("/v1/journeys")).json(&v1).send().unwrap().status(), StatusCode::CREATED);
    // A draft's definition is replaced in place; a journey with nothing new cannot be republished.
    let r: J = client.put(server.url("/v1/journeys/onboard")).json(&v1).send().unwrap().json().unwrap();
    assert_eq!((r["version"].as_u64(), r.get("next_version")), (Some(1), None), "{r}");
    let published: J = client.post(server.url("/v1/journeys/onboard/publish")).send().unwrap().json().unwrap();
    let r = client.post(server.url("/v1/journeys/onboard/publish")).send().unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let now = now_ms().max(published["at"].as_u64().unwrap() + 1);
    let batch = json!({"batch": [
        {"type": "track", "event": "Signup", "userId": "ann", "timestamp": now},
        {"type": "track", "event": "Signup", "userId": "bob", "timestamp": now},
        {"type": "track", "event": "Reply", "userId": "ann", "timestamp": now + 100},
    ]});
    assert_eq!(client.post(server.url("/v1/batch")).json(&batch).send().unwrap().status(), StatusCode::OK);
    progress_until(&client, &server, "onboard", "ann", |p| p["node"] == "hold");
    progress_until(&client, &server, "onboard", "bob", |p| p["node"] == "ask");
    // Version 2: `ask` is gone (its users go to the new `greet`), `hold` stays, sms instead of email.
    let v2 = json!({"id": "onboard", "entry": {"event": "Signup"}, "start": "greet", "nodes": {
        "greet": {"wait_until": {"event": "Reply", "timeout": "1s", "on_event": "hold", "on_timeout": "sms"}},
        "hold": {"wait": {"duration": "30s"}, "next": "sms"},
        "sms": {"action": {"channel": "sms", "template": "welcome"}, "next": "done"},
        "done": {"exit": {}}}});
    let r = client.put(server.url("/v1/journeys/other")).json(&v2).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let mut wrong = v2.clone();
    wrong["id"] = json!("renamed");
    let r = client.put(server.url("/v1/journeys/onboard")).json(&wrong).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r: J = client.put(server.url("/v1/journeys/onboard")).json(&v2).send().unwrap().json().unwrap();
    assert_eq!((r["version"].as_u64(), r["next_version"]["version"].as_u64()), (Some(1), Some(2)), "{r}");
    // A migration naming nodes that do not exist is refused with every mistake, and nothing changes.
    let bad = json!({"migrate": {"node_map": {"nope": "greet", "ask": "gone"}, "default": "elsewhere"}});
    let r = client.post(server.url("/v1/journeys/onboard/publish")).json(&bad).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: J = r.json().unwrap();
    let paths: BTreeSet<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, BTreeSet::from(["$.migrate.node_map.nope", "$.migrate.node_map.ask", "$.migrate.default"]));
    let migrate = json!({"migrate": {"node_map": {"ask": "greet"}, "default": "exit"}});
    let r: J = client.post(server.url("/v1/journeys/onboard/publish")).json(&migrate).send().unwrap().json().unwrap();
    assert_eq!((r["status"].as_str(), r["version"].as_u64()), (Some("ongoing"), Some(2)), "{r}");
    let at = r["at"].as_u64().unwrap();
    // Both finish in version 2: bob through `greet`, ann when her version-1 wait ends (20 s:
    // time enough for the calls above on a loaded machine; 8 s was not always).
    for user in ["ann", "bob"] {
        progress_until(&client, &server, "onboard", user, |p| p["outcome"] == "completed");
    }
    // The report follows the records once every worker's counters are in.
    let deadline = Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let stats: J = client.get(server.url("/v1/journeys/onboard/stats")).send().unwrap().json().unwrap();
        if stats["nodes"]["sms"]["actions"]["sent"] == 2 || Instant::now() > deadline {
            break stats;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!((stats["version"].as_u64(), stats["migrated_in"].as_i64()), (Some(2), Some(2)), "{stats}");
    assert_eq!(stats["nodes"]["sms"]["actions"]["sent"], 2, "{stats}");
    assert_eq!(server.stop().code(), Some(0));
    let transitions = output_lines(dir.path(), "journey_transitions");
    let of = |user: &str| -> Vec<(String, u64, u64)> {
        transitions
            .iter()
            .filter(|t| t["user_id"] == user)
            .map(|t| {
                let step = format!(
                    "{}>{}:{}",
                    t["from"].as_str().unwrap_or("-"),
                    t["to"].as_str().unwrap_or("-"),
                    t["reason"].as_str().unwrap()
                );
                (step, t["version"].as_u64().unwrap(), t["time"].as_u64().unwrap())
            })
            .collect()
    };
    let ann = of("ann");
    let steps: Vec<(&str, u64)> = ann.iter().map(|(s, v, _)| (s.as_str(), *v)).collect();
    assert_eq!(
        steps,
        [
            ("->ask:entry", 1),
            ("ask>hold:event", 1),
            ("hold>hold:migrated", 2),
            ("hold>sms:next", 2),
            ("sms>done:next", 2)
        ]
    );
    assert_eq!(ann[2].2, at, "migrated at the publish time");
    assert_eq!(ann[3].2, now + 100 + 20_000, "ann kept her version-1 timer");
    let bob = of("bob");
    let steps: Vec<(&str, u64)> = bob.iter().map(|(s, v, _)| (s.as_str(), *v)).collect();
    assert_eq!(steps, [("->ask:entry", 1), ("ask>greet:migrated", 2), ("greet>sms:timeout", 2), ("sms>done:next", 2)]);
    assert_eq!(bob[2].2, at + 1_000, "bob waits at greet from the publish time");
    let actions = output_lines(dir.path(), "journey_actions");
    let sent: BTreeSet<(&str, &str, u64)> = actions
        .iter()
        .map(|a| (a["user_id"].as_str().unwrap(), a["channel"].as_str().unwrap(), a["version"].as_u64().unwrap()))
        .collect();
    assert_eq!(sent, BTreeSet::from([("ann", "sms", 2), ("bob", "sms", 2)]));
    // A restart finds version 2 running.
    let server = Server::start_in(1, dir.path());
    let j: J = client.get(server.url("/v1/journeys/onboard")).send().unwrap().json().unwrap();
    assert_eq!((j["version"].as_u64(), j["status"].as_str()), (Some(2), Some("ongoing")), "{j}");
    assert_eq!(j["definition"], v2);
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn sent_actions_are_posted_to_the_channel_webhook_with_their_id_as_idempotency_key() {
    let (hooks, seen, _) = common::webhook::receiver();
    let dir = tempfile::tempdir().unwrap();
    let webhook = format!("email={hooks}/hook/email");
    let server = Server::start_with(2, dir.path(), &["--webhook", &webhook]);
    let client = Client::new();
    let journey = json!({"id": "hello", "entry": {"event": "Signup"}, "start": "mail", "nodes": {
        "mail": {"action": {"channel": "email", "template": "welcome"}, "next": "text"},
        "text": {"action": {"channel": "sms", "template": "welcome"}, "next": "done"},
        "done": {"exit": {}}}});
    assert_eq!(client.post(server.url("/v1/journeys")).json(&journey).send().unwrap().status(), StatusCode::CREATED);
    let published: J = client.post(server.url("/v1/journeys/hello/publish")).send().unwrap().json().unwrap();
    let now = now_ms().max(published["at"].as_u64().unwrap() + 1);
    let users = ["ann", "bob", "cat"];
    let batch: Vec<J> =
        users.iter().map(|u| json!({"type": "track", "event": "Signup", "userId": u, "timestamp": now})).collect();
    let r = client.post(server.url("/v1/batch")).json(&json!({"batch": batch})).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Each email action is refused once (503), then delivered; sms has no webhook.
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < 2 * users.len() {
        assert!(Instant::now() < deadline, "webhooks did not arrive: {:?}", seen.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.stop().code(), Some(0));
    let actions = output_lines(dir.path(), "journey_actions");
    let emails: BTreeSet<(String, String)> = actions
        .iter()
        .filter(|a| a["channel"] == "email")
        .map(|a| (a["action_id"].as_str().unwrap().to_string(), a["user_id"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(emails.len(), users.len());
    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|(channel, _, _)| channel == "email"), "{seen:?}");
    let delivered: BTreeSet<(String, String)> = seen
        .iter()
        .map(|(_, key, body)| {
            assert_eq!(body["action_id"].as_str(), Some(key.as_str()), "the key is the action's id");
            (key.clone(), body["user_id"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(delivered, emails, "every email action, each tried twice under one key");
    assert_eq!(seen.len(), 2 * users.len());
}
