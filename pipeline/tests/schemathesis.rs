//! The OpenAPI document driven by schemathesis (from PyPI, installed by `scripts/test.sh`)
//! against `journeyflow run` over a real socket: every operation, with generated and boundary
//! inputs, must answer without a server error, with a status the document lists for it, and a
//! body and headers that match the document (but the live streams, whose bodies never end:
//! `streams.rs` checks those). Bounded to a minute.

mod common;

use common::server::Server;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn every_operation_answers_as_the_openapi_document_says() {
    let python = std::env::var("JOURNEYFLOW_PYTHON")
        .expect("JOURNEYFLOW_PYTHON names a Python with schemathesis (scripts/test.sh)");
    let st = PathBuf::from(python).with_file_name("st");
    let dir = tempfile::tempdir().unwrap();
    let segments = common::repo("datasets/sample/segments.json");
    let server = Server::start_with(1, dir.path(), &["--segments", segments.to_str().unwrap()]);
    // Something for the generated calls to find: a journey draft, a funnel, a cohort, a path analysis and a user with events.
    let client = reqwest::blocking::Client::new();
    let journeys: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(common::repo("datasets/sample/journeys.json")).unwrap()).unwrap();
    assert!(client.post(server.url("/v1/journeys")).json(&journeys[0]).send().unwrap().status().is_success());
    let funnel = serde_json::json!({"id": "0", "steps": [{"event": "Cart Viewed"}, {"event": "Order Completed"}], "within": "1d"});
    assert!(client.post(server.url("/v1/funnels")).json(&funnel).send().unwrap().status().is_success());
    let cohort = serde_json::json!({"id": "0", "first": {"event": "Cart Viewed"}, "return": {"event": "Cart Viewed"}, "period": "1d", "periods": 4});
    assert!(client.post(server.url("/v1/cohorts")).json(&cohort).send().unwrap().status().is_success());
    let paths = serde_json::json!({"id": "0", "start": {"event": "Cart Viewed"}, "events": ["Cart Viewed"]});
    assert!(client.post(server.url("/v1/paths")).json(&paths).send().unwrap().status().is_success());
    let event = serde_json::json!({"event": "Cart Viewed", "userId": "0"});
    assert!(client.post(server.url("/v1/track")).json(&event).send().unwrap().status().is_success());
    let out = Command::new(&st)
        .current_dir(dir.path())
        .args(["run", &server.url("/v1/openapi.json")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,\
             response_headers_conformance",
            "--max-time",
            "60",
            "--workers",
            "2",
            "--seed",
            "20261129",
            "--request-timeout",
            "40",
            // A live stream's body never ends: its answers are checked by `streams.rs`.
            "--exclude-tag",
            "streams",
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", st.display()));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis found failures:\n{said}\n{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = client.get(server.url("/v1/openapi.json")).send().unwrap().json().unwrap();
    let operations = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p.as_object().unwrap().values())
        .filter(|op| op["tags"].as_array().is_none_or(|tags| !tags.iter().any(|t| t == "streams")))
        .count();
    assert!(said.contains(&format!("Tested: {operations}")), "not all {operations} operations were tested:\n{said}");
    assert_eq!(server.stop().code(), Some(0));
}
