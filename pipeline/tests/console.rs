//! The web console in a real browser (headless Chromium from Debian's packages, driven by
//! Playwright for Python; both installed by `scripts/test.sh`), against `journeyflow run`
//! with an API token: see `python/console_check.py` for what it checks. The screenshots go
//! to `docs/` (the README shows them).

mod common;

use common::repo;
use common::server::Server;
use reqwest::blocking::Client;
use serde_json::{json, Value as J};
use std::process::Command;

#[test]
fn the_console_asks_for_the_token_and_shows_the_overview_live() {
    let python = std::env::var("JOURNEYFLOW_PYTHON").expect("JOURNEYFLOW_PYTHON names a Python with Playwright");
    std::env::var("JOURNEYFLOW_CHROMIUM").expect("JOURNEYFLOW_CHROMIUM names Debian's chromium (scripts/test.sh)");
    let dir = tempfile::tempdir().unwrap();
    let sample = repo("datasets/sample");
    let server = Server::start_with(
        1,
        &dir.path().join("data"),
        &[
            "--api-token",
            "s3cret",
            "--write-key",
            "wk",
            "--segments",
            sample.join("segments.json").to_str().unwrap(),
            "--journeys",
            sample.join("journeys.json").to_str().unwrap(),
        ],
    );
    let client = Client::new();
    let events: Vec<J> = std::fs::read_to_string(sample.join("events.ndjson"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut sent = 0;
    for chunk in events.chunks(300) {
        let r = client.post(server.url("/v1/batch")).basic_auth("wk", None::<&str>).json(&json!({"batch": chunk}));
        let answer: J = r.send().unwrap().error_for_status().unwrap().json().unwrap();
        sent += answer["accepted"].as_u64().unwrap();
    }
    let shots = repo("docs");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new(python)
        .arg(repo("pipeline/tests/python/console_check.py"))
        .args([&server.base, "s3cret", "wk", &sent.to_string()])
        .arg(sample.join("events.ndjson"))
        .arg(&shots)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the browser check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.stop().code(), Some(0));
}
