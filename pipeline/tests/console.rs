//! The web console in a real browser (headless Chromium from Debian's packages, driven by
//! Playwright for Python; both installed by `scripts/test.sh`), against `journeyflow run`
//! with an API token and the bundled sample: see `python/console_check.py` (the token and the
//! overview) and `python/console_pages_check.py` (segments, journeys, users, the editor) for
//! what they check. The screenshots go to a scratch directory, or to `docs/` (which the README
//! shows) with `JOURNEYFLOW_UPDATE_SHOTS=1`.

mod common;

use common::repo;
use common::server::Server;
use reqwest::blocking::Client;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A server with the sample and its events sent (kept: they are from 2024, and event time
/// follows the wall clock once they are in); returns it and how many it accepted.
fn sample_server(dir: &Path) -> (Server, u64) {
    let server = common::server::sample_server(1, &dir.join("data"), "s3cret", &["--retention-events", "forever"]);
    let sent = common::server::send_sample(&Client::new(), &server);
    (server, sent)
}

/// Where the screenshots go.
fn shots(scratch: &Path) -> PathBuf {
    let dir = match std::env::var_os("JOURNEYFLOW_UPDATE_SHOTS") {
        Some(_) => repo("docs"),
        None => scratch.join("shots"),
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a browser check script with `args`; fails the test with its output if it fails.
fn browser_check(script: &str, args: &[&str]) {
    let python = std::env::var("JOURNEYFLOW_PYTHON").expect("JOURNEYFLOW_PYTHON names a Python with Playwright");
    std::env::var("JOURNEYFLOW_CHROMIUM").expect("JOURNEYFLOW_CHROMIUM names Debian's chromium (scripts/test.sh)");
    let out = Command::new(python).arg(repo(&format!("pipeline/tests/python/{script}"))).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "the browser check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_console_asks_for_the_token_and_shows_the_overview_live() {
    let dir = tempfile::tempdir().unwrap();
    let (server, sent) = sample_server(dir.path());
    let events = repo("datasets/sample/events.ndjson");
    let shots = shots(dir.path());
    browser_check(
        "console_check.py",
        &[&server.base, "s3cret", "wk", &sent.to_string(), events.to_str().unwrap(), shots.to_str().unwrap()],
    );
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn the_console_shows_segments_journeys_and_users_and_edits_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = sample_server(dir.path());
    let events = repo("datasets/sample/events.ndjson");
    let shots = shots(dir.path());
    browser_check(
        "console_pages_check.py",
        &[&server.base, "s3cret", "wk", events.to_str().unwrap(), shots.to_str().unwrap()],
    );
    assert_eq!(server.stop().code(), Some(0));
}
