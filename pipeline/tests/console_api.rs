//! The endpoints the web console reads, through the real binary over HTTP: member listings
//! searched by the start of an id equal the full listing filtered; the segments' size
//! history and size stream end at the listed sizes; the streams of a segment's changes and a
//! journey's transitions carry records of the outputs, of that segment or journey only; a
//! definition is checked without being installed (every error at its path); a pending
//! version's migration preview counts the users the report has at each node.

mod common;

use common::server::{members, output_lines, sample_server, send_sample, Server};
use common::sse::Events;
use common::wait_until;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value as J};
use std::collections::BTreeSet;
use std::time::Duration;

const TOKEN: &str = "s3cret";

fn get(client: &Client, server: &Server, path: &str) -> J {
    client.get(server.url(path)).bearer_auth(TOKEN).send().unwrap().error_for_status().unwrap().json().unwrap()
}

fn post(client: &Client, server: &Server, path: &str, body: &str) -> (StatusCode, J) {
    let r = client
        .post(server.url(path))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string());
    let r = r.send().unwrap();
    (r.status(), r.json().unwrap_or(J::Null))
}

/// The ids of the output records of `kind` (every worker's log).
fn output_ids(dir: &std::path::Path, kind: &str, field: &str, value: &str) -> BTreeSet<String> {
    output_lines(dir, kind)
        .into_iter()
        .filter(|l| l[field] == value)
        .filter_map(|l| l["id"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_consoles_endpoints_answer_what_the_engine_holds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = sample_server(2, &data, TOKEN, &["--retention-events", "forever"]);
    let client = Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let mut changes = Events::open(&client, &server.url("/v1/segments/s2_frequent_viewer/changes"), Some(TOKEN));
    let mut transitions = Events::open(&client, &server.url("/v1/journeys/j1_abandoned_cart/transitions"), Some(TOKEN));
    let mut sizes = Events::open(&client, &server.url("/v1/streams/segments"), Some(TOKEN));

    let accepted = send_sample(&client, &server);

    // The streams of changes and transitions: records of the outputs, of what they follow.
    let seen = changes.take(&["change"], 5);
    assert!(seen.iter().all(|(_, c)| c["segment"] == "s2_frequent_viewer"), "{seen:?}");
    let ids: BTreeSet<String> = seen.iter().map(|(_, c)| c["id"].as_str().unwrap().to_string()).collect();
    wait_until("the streamed changes are in the outputs", Duration::from_secs(30), || {
        ids.is_subset(&output_ids(&data, "segment_changes", "segment", "s2_frequent_viewer"))
    });
    let seen = transitions.take(&["transition", "action"], 3);
    assert!(seen.iter().all(|(_, t)| t["journey"] == "j1_abandoned_cart"), "{seen:?}");
    let ids: BTreeSet<String> = seen.iter().map(|(_, t)| t["id"].as_str().unwrap().to_string()).collect();
    wait_until("the streamed transitions are in the outputs", Duration::from_secs(30), || {
        let mut all = output_ids(&data, "journey_transitions", "journey", "j1_abandoned_cart");
        all.extend(output_ids(&data, "journey_actions", "journey", "j1_abandoned_cart"));
        ids.is_subset(&all)
    });

    // Sizes: a trait segment's stays once every event is in; the stream of every segment's
    // sizes and the sampled history end at the listed size.
    let mut overview = Events::open(&client, &server.url("/v1/streams/overview"), Some(TOKEN));
    overview.until("overview", |o| o["events_processed"] == accepted);
    drop(overview);
    let listed = members(&client, &server, "s1_pro_north_america", 1000, Some(TOKEN)).1.len();
    assert!(listed > 0);
    loop {
        let (name, document) = sizes.next().expect("the sizes stream ended");
        if name == "sizes" && document["sizes"]["s1_pro_north_america"] == listed {
            assert_eq!(document["sizes"].as_object().unwrap().len(), 6, "{document}");
            break;
        }
    }
    let history = get(&client, &server, "/v1/segment-sizes?hours=1&segment=s1_pro_north_america");
    let series = history["sizes"]["s1_pro_north_america"].as_array().unwrap();
    assert_eq!(series.last().unwrap()[1], listed, "{history}");
    assert_eq!(history["sizes"].as_object().unwrap().len(), 1, "one segment asked for");
    let bad = client.get(server.url("/v1/segment-sizes?hours=7")).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // Members searched by the start of an id: the full listing filtered, paged alike.
    let (_, all) = members(&client, &server, "s1_pro_north_america", 1000, Some(TOKEN));
    let wanted: BTreeSet<String> = all.iter().filter(|u| u.starts_with("u1")).cloned().collect();
    assert!(!wanted.is_empty() && wanted.len() < all.len(), "{all:?}");
    let mut found = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/segments/s1_pro_north_america/members?limit=3&prefix=u1".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = get(&client, &server, &path);
        assert_eq!(page["total"], wanted.len(), "{page}");
        found.extend(page["members"].as_array().unwrap().iter().map(|m| m["user_id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(found, wanted);

    // Checking a definition installs nothing and names every error's path.
    let (status, answer) = post(
        &client,
        &server,
        "/v1/validate/segment",
        r#"{"id": "x", "condition": {"performed": {"event": "A", "within": "forever"}}}"#,
    );
    assert_eq!((status, &answer["valid"]), (StatusCode::OK, &json!(false)), "{answer}");
    assert_eq!(answer["errors"][0]["path"], "$.condition.performed.within", "{answer}");
    let (_, answer) = post(
        &client,
        &server,
        "/v1/validate/segment",
        r#"{"id": "x", "condition": {"performed": {"event": "A", "within": "1d"}}}"#,
    );
    assert_eq!(answer, json!({"valid": true, "errors": [], "conflict": null}));
    // A segment in use by a journey: its replacement would be refused, and the check says so.
    let (_, answer) = post(
        &client,
        &server,
        "/v1/validate/segment",
        r#"{"id": "s3_lapsed_buyer", "condition": {"performed": {"event": "A", "within": "1d"}}}"#,
    );
    assert_eq!(answer["valid"], true, "{answer}");
    assert!(answer["conflict"].as_str().is_some_and(|why| why.contains("j2_win_back")), "{answer}");
    let broken = json!({"id": "j", "entry": {"event": "A"}, "start": "a", "nodes": {"a": {"wait": {"duration": "1h"}, "next": "nowhere"}}});
    let (_, answer) = post(&client, &server, "/v1/validate/journey", &broken.to_string());
    assert_eq!(answer["valid"], false, "{answer}");
    assert!(answer["errors"].as_array().unwrap().iter().any(|e| e["path"] == "$.nodes.a.next"), "{answer}");
    assert_eq!(post(&client, &server, "/v1/validate/segment", "{").0, StatusCode::BAD_REQUEST);
    assert_eq!(post(&client, &server, "/v1/validate/nonsense", "{}").0, StatusCode::NOT_FOUND);
    let (status, answer) = post(&client, &server, "/v1/validate/funnel", "{}");
    assert_eq!((status, answer["valid"].as_bool()), (StatusCode::OK, Some(false)), "{answer}");
    let ids: Vec<J> =
        get(&client, &server, "/v1/segments").as_array().unwrap().iter().map(|s| s["id"].clone()).collect();
    assert!(!ids.contains(&json!("x")), "a checked definition was installed");

    // The migration preview: no next version, 409; with one, the report's users per node.
    // Three users view a cart now: they wait for an order (an hour of the wall clock).
    let (status, _) = post(&client, &server, "/v1/journeys/j1_abandoned_cart/migration", "");
    assert_eq!(status, StatusCode::CONFLICT);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let carts: Vec<J> = (0..3)
        .map(|i| json!({"type": "track", "event": "Cart Viewed", "userId": format!("waiting-{i}"), "messageId": format!("cart-{i}"), "timestamp": now}))
        .collect();
    let r = client
        .post(server.url("/v1/batch"))
        .basic_auth("wk", None::<&str>)
        .json(&json!({"batch": carts}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let mut stats = J::Null;
    wait_until("three users wait in J1", Duration::from_secs(30), || {
        stats = get(&client, &server, "/v1/journeys/j1_abandoned_cart/stats");
        stats["nodes"]["wait_order"]["current"].as_i64() >= Some(3)
    });
    let mut next = get(&client, &server, "/v1/journeys/j1_abandoned_cart")["definition"].clone();
    next["nodes"]["wait_order"]["wait_until"]["timeout"] = json!("2h");
    let r = client.put(server.url("/v1/journeys/j1_abandoned_cart")).bearer_auth(TOKEN).json(&next).send().unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let (status, plan) = post(&client, &server, "/v1/journeys/j1_abandoned_cart/migration", "");
    assert_eq!(status, StatusCode::OK, "{plan}");
    let here: BTreeSet<(String, i64)> = stats["nodes"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(node, n)| *node != "done" && n["current"].as_i64() > Some(0))
        .map(|(node, n)| (node.clone(), n["current"].as_i64().unwrap()))
        .collect();
    let moved: BTreeSet<(String, i64)> = plan["moves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["from"].as_str().unwrap().to_string(), m["users"].as_i64().unwrap()))
        .collect();
    assert_eq!(moved, here, "{plan} against {stats}");
    let waiting = |plan: &J| {
        let m = plan["moves"].as_array().unwrap().iter().find(|m| m["from"] == "wait_order").cloned().unwrap();
        (m["placement"].clone(), m["to"].clone())
    };
    assert_eq!(waiting(&plan), (json!("stay"), json!("wait_order")));
    let mapped = r#"{"migrate": {"node_map": {"wait_order": "remind"}}}"#;
    let (_, mapped) = post(&client, &server, "/v1/journeys/j1_abandoned_cart/migration", mapped);
    assert_eq!(waiting(&mapped), (json!("move"), json!("remind")));
    let wrong = r#"{"migrate": {"node_map": {"wait_order": "gone"}}}"#;
    let (status, refused) = post(&client, &server, "/v1/journeys/j1_abandoned_cart/migration", wrong);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    drop((changes, transitions, sizes));
    assert_eq!(server.stop().code(), Some(0));
}
