//! Funnels, retention cohorts and path analyses over HTTP, on `journeyflow run` as a real process: one
//! installed before the events arrive and one after (over the retained history), their
//! reports equal DuckDB's from-scratch reports as of the answer's time; replaced, removed,
//! kept across a restart; every client mistake gets its 4xx.

mod common;

use common::funnels::{duckdb_cohort_reports, duckdb_paths_reports, duckdb_reports, rows_of};
use common::reference::accepted;
use common::server::{send_sample, Server};
use journeyflow_control_api::buckets::Buckets;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value as J};

const FROM: u64 = 1_704_067_200_000; // 2024-01-01
const WEEK: u64 = 7 * 86_400_000;

fn start(dir: &std::path::Path, extra: &[&str]) -> Server {
    // The sample is from 2024: kept forever, it does not expire as of now.
    let mut flags = vec!["--write-key", "wk", "--retention-events", "forever"];
    flags.extend(extra);
    Server::start_with(2, dir, &flags)
}

/// The report of funnel `id` by week from 2024-01-01 to 2024-03-01.
fn report(client: &Client, server: &Server, id: &str) -> J {
    let url = format!("/v1/funnels/{id}/report?from=2024-01-01T00:00:00Z&to=2024-03-01T00:00:00Z&step=7d");
    let r = client.get(server.url(&url)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().unwrap()
}

/// DuckDB's report of `def` as of `as_of` over the sample's events.
fn expected(def: &J, as_of: u64) -> J {
    let lines: Vec<String> = std::fs::read_to_string(common::repo("datasets/sample/events.ndjson"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let rows = rows_of(&accepted(&lines, 86_400_000));
    let to = journeyflow_types::time::parse_instant_str("2024-03-01T00:00:00Z").unwrap();
    let query = Buckets::new(FROM, to, Some(WEEK)).unwrap();
    duckdb_reports(&rows, &json!([def]), &[(as_of, 0, query)], None)[0].clone()
}

/// The report of funnel `def` once it equals DuckDB's as of its own time: the events sent are
/// acknowledged before the workers have read them all.
fn settled(client: &Client, server: &Server, def: &J) -> J {
    let id = def["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let got = report(client, server, id);
        let want = expected(def, got["as_of"].as_u64().unwrap());
        if got == want {
            return got;
        }
        assert!(std::time::Instant::now() < deadline, "{id}: {got}\nis not DuckDB's\n{want}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn funnels_are_installed_reported_replaced_removed_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new();
    let server = start(dir.path(), &[]);
    let pricey = json!({"id": "pricey", "steps": [{"event": "Product Viewed", "where": [{"property": "price", "op": "gt", "value": 100}]},
        {"event": "Order Completed"}, {"event": "Email Opened"}], "within": "7d", "order": "any"});
    let r = client.post(server.url("/v1/funnels")).json(&pricey).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    send_sample(&client, &server);
    // Installed after the events: computed over the retained history.
    let checkout = json!({"id": "checkout", "steps": [{"event": "Product Viewed"}, {"event": "Product Added"},
        {"event": "Cart Viewed"}, {"event": "Order Completed"}], "within": "3d", "breakdown": {"trait": "country"}});
    let r = client.post(server.url("/v1/funnels")).json(&checkout).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Reports as of the answer's time, once the workers have read every event acknowledged.
    let got = settled(&client, &server, &checkout);
    assert!(got["buckets"][0]["steps"][3]["users"].as_u64().unwrap() > 0, "{got}");
    settled(&client, &server, &pricey);
    // Listed and read back.
    let listed: J = client.get(server.url("/v1/funnels")).send().unwrap().json().unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let one: J = client.get(server.url("/v1/funnels/checkout")).send().unwrap().json().unwrap();
    assert_eq!(one["definition"], checkout);
    // Replaced: computed afresh.
    let strict = json!({"steps": pricey["steps"], "within": "1d"});
    let r = client.put(server.url("/v1/funnels/pricey")).json(&strict).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut replaced = strict.clone();
    replaced["id"] = json!("pricey");
    settled(&client, &server, &replaced);
    // Mistakes.
    for (body, path) in [
        (json!({"id": "x", "steps": [{"event": "A"}], "within": "1d"}), "$.steps"),
        (json!({"id": "x", "steps": [{"event": "A"}, {"event": "B"}], "within": "soon"}), "$.within"),
        (json!({"id": "x", "steps": [{"event": "A"}, {"event": "B"}], "within": "1d", "order": "up"}), "$.order"),
        (json!({"id": "x", "steps": [{"event": "A"}, {"nope": 1}], "within": "1d"}), "$.steps[1]"),
    ] {
        let r = client.post(server.url("/v1/funnels")).json(&body).send().unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let problem: J = r.json().unwrap();
        assert!(problem.to_string().contains(path), "{body}: {problem}");
    }
    let r = client.post(server.url("/v1/funnels")).json(&checkout).send().unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // The editor's check: errors at their paths, an installed id checked as a replacement.
    let bad = json!({"id": "x", "steps": [{"event": "A"}, {"event": "B"}], "within": "-1d"});
    let checked: J = client.post(server.url("/v1/validate/funnel")).json(&bad).send().unwrap().json().unwrap();
    assert_eq!((checked["valid"].as_bool(), checked["errors"][0]["path"].as_str()), (Some(false), Some("$.within")));
    let checked: J = client.post(server.url("/v1/validate/funnel")).json(&checkout).send().unwrap().json().unwrap();
    assert_eq!(checked, json!({"valid": true, "errors": [], "conflict": null}));
    let r = client.put(server.url("/v1/funnels/nope")).json(&strict).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    for query in ["from=10&to=5", "from=0&to=100000&step=1ms", "step=0d", "from=yesterday"] {
        let r = client.get(server.url(&format!("/v1/funnels/checkout/report?{query}"))).send().unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    let r = client.get(server.url("/v1/funnels/nope/report")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Removed.
    let r = client.delete(server.url("/v1/funnels/pricey")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = client.get(server.url("/v1/funnels/pricey/report")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let before = report(&client, &server, "checkout");
    assert!(server.stop().success());
    // After a restart: the same funnels, the same report; `--funnels` adds those not stored (and
    // refuses one stored with another definition).
    let file = dir.path().join("funnels.json");
    let repeat =
        json!({"id": "repeat", "steps": [{"event": "Order Completed"}, {"event": "Order Completed"}], "within": "30d"});
    std::fs::write(&file, json!([checkout, repeat]).to_string()).unwrap();
    let server = start(dir.path(), &["--funnels", file.to_str().unwrap()]);
    let listed: J = client.get(server.url("/v1/funnels")).send().unwrap().json().unwrap();
    assert_eq!(listed, json!([{"id": "checkout", "definition": checkout}, {"id": "repeat", "definition": repeat}]));
    settled(&client, &server, &repeat);
    let after = report(&client, &server, "checkout");
    assert_eq!(after["buckets"], before["buckets"]);
    assert!(server.stop().success());
}

/// DuckDB's cohort report of `def` as of `as_of` over the sample's events, by week.
fn expected_cohort(def: &J, as_of: u64) -> J {
    let lines: Vec<String> = std::fs::read_to_string(common::repo("datasets/sample/events.ndjson"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let rows = rows_of(&accepted(&lines, 86_400_000));
    let to = journeyflow_types::time::parse_instant_str("2024-03-01T00:00:00Z").unwrap();
    let query = Buckets::new(FROM, to, Some(WEEK)).unwrap();
    duckdb_cohort_reports(&rows, &json!([def]), &[(as_of, 0, query)], None)[0].clone()
}

#[test]
fn cohorts_are_installed_reported_replaced_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new();
    let server = start(dir.path(), &[]);
    let viewers = json!({"id": "viewers", "first": {"event": "Product Viewed"}, "return": {"event": "Order Completed"},
        "period": "7d", "periods": 4});
    assert_eq!(client.post(server.url("/v1/cohorts")).json(&viewers).send().unwrap().status(), StatusCode::CREATED);
    send_sample(&client, &server);
    let url = "/v1/cohorts/viewers/report?from=2024-01-01T00:00:00Z&to=2024-03-01T00:00:00Z&step=7d";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let settled = |def: &J| loop {
        let got: J = client.get(server.url(url)).send().unwrap().json().unwrap();
        let want = expected_cohort(def, got["as_of"].as_u64().unwrap());
        if got == want {
            return got;
        }
        assert!(std::time::Instant::now() < deadline, "{got}\nis not DuckDB's\n{want}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let got = settled(&viewers);
    assert!(got["cohorts"][0]["users"].as_u64().unwrap() > 50, "{got}");
    assert!(got["cohorts"][0]["periods"][0]["retained"].as_u64().unwrap() > 0, "{got}");
    // Replaced: computed afresh over the retained history.
    let buyers = json!({"first": {"event": "Order Completed"}, "return": {"event": "Order Completed"}, "period": "1d",
        "periods": 14});
    assert_eq!(client.put(server.url("/v1/cohorts/viewers")).json(&buyers).send().unwrap().status(), StatusCode::OK);
    let mut replaced = buyers.clone();
    replaced["id"] = json!("viewers");
    settled(&replaced);
    // Mistakes, the editor's check, removal.
    let bad = json!({"id": "x", "first": {"event": "A"}, "return": {"event": "B"}, "period": "1d", "periods": 99});
    let r = client.post(server.url("/v1/cohorts")).json(&bad).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().unwrap().contains("$.periods"));
    let checked: J = client.post(server.url("/v1/validate/cohort")).json(&replaced).send().unwrap().json().unwrap();
    assert_eq!(checked["valid"], json!(true));
    let r = client.get(server.url("/v1/cohorts/viewers/report?from=5&to=1")).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(client.delete(server.url("/v1/cohorts/viewers")).send().unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(client.get(server.url(url)).send().unwrap().status(), StatusCode::NOT_FOUND);
    assert!(server.stop().success());
}

#[test]
fn path_analyses_are_installed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new();
    let server = start(dir.path(), &[]);
    send_sample(&client, &server);
    let after_cart = json!({"id": "after_cart", "start": {"event": "Cart Viewed"}, "depth": 3, "collapse": true,
        "events": ["Product Viewed", "Cart Viewed", "Order Completed"]});
    assert_eq!(client.post(server.url("/v1/paths")).json(&after_cart).send().unwrap().status(), StatusCode::CREATED);
    let lines: Vec<String> = std::fs::read_to_string(common::repo("datasets/sample/events.ndjson"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let rows = rows_of(&accepted(&lines, 86_400_000));
    let to = journeyflow_types::time::parse_instant_str("2024-03-01T00:00:00Z").unwrap();
    let query = Buckets::new(FROM, to, None).unwrap();
    let url = "/v1/paths/after_cart/report?from=2024-01-01T00:00:00Z&to=2024-03-01T00:00:00Z";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let got = loop {
        let got: J = client.get(server.url(url)).send().unwrap().json().unwrap();
        let want =
            duckdb_paths_reports(&rows, &json!([after_cart]), &[(got["as_of"].as_u64().unwrap(), 0, query)], None)[0]
                .clone();
        if got == want {
            break got;
        }
        assert!(std::time::Instant::now() < deadline, "{got}\nis not DuckDB's\n{want}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(got["users"].as_u64().unwrap() > 50 && !got["sankey"]["links"].as_array().unwrap().is_empty(), "{got}");
    // The report as a live stream: the same document (but for `as_of`), then `removed` when
    // the analysis goes; a range it cannot take is a 400 before any stream.
    let mut stream = common::sse::Events::open(&client, &server.url(&url.replace("/report?", "/report/stream?")), None);
    let streamed = stream.until("report", |_| true);
    assert_eq!((&streamed["top"], &streamed["sankey"]), (&got["top"], &got["sankey"]));
    let r = client.get(server.url("/v1/paths/after_cart/report/stream?from=9&to=1")).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(client.delete(server.url("/v1/paths/after_cart")).send().unwrap().status(), StatusCode::NO_CONTENT);
    stream.until("removed", |_| true);
    let bad = json!({"id": "x", "start": {"event": "A"}, "end": {"event": "B"}, "depth": 9});
    let r = client.post(server.url("/v1/paths")).json(&bad).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().unwrap().contains("$.depth"));
    assert_eq!(client.get(server.url(url)).send().unwrap().status(), StatusCode::NOT_FOUND);
    assert!(server.stop().success());
}
