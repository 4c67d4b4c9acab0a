//! Deleting a user through the real binary: a user waiting in a journey is deleted (and
//! suppressed): they leave their segment and the journey at the deletion, marked `deleted`,
//! no action of theirs is sent; once the deletion is complete no file under the data
//! directory or the archive holds their id or a messageId of theirs (Parquet read back), and
//! their export finds nothing;
//! their later events are refused; a restart after SIGKILL does not bring them back; and
//! lifting the suppression lets new events of theirs count.

mod common;

use common::server::{output_lines, Server};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value as J};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The user deleted: an id no other text in the files contains.
const ZOE: &str = "zoe-x7q";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Waits up to 60 s for `done`, saying `what` on failure.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "after 60 s, still not: {what}");
        std::thread::sleep(Duration::from_millis(20));
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

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The files under `dirs` whose text (Parquet read back as JSON rows) holds `needle`. A file
/// the running server removed between the listing and the reading (an old checkpoint swept)
/// holds nothing.
fn holding(dirs: &[&Path], needle: &str) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for dir in dirs {
        files(dir, &mut all);
    }
    all.into_iter()
        .filter(|path| {
            let read = match path.extension().and_then(|e| e.to_str()) {
                Some("parquet") => {
                    journeyflow_connectors::parquet_file::read_json_rows(path).map_err(|e| e.to_string())
                }
                _ => std::fs::read(path).map_err(|e| e.to_string()),
            };
            match read {
                Ok(bytes) => String::from_utf8_lossy(&bytes).contains(needle),
                Err(_) if !path.exists() => false,
                Err(e) => panic!("{}: {e}", path.display()),
            }
        })
        .collect()
}

fn start(dir: &Path) -> Server {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let (segments, journeys, archive) = (path("segments.json"), path("journeys.json"), path("archive"));
    let flags = [
        "--segments",
        &segments,
        "--journeys",
        &journeys,
        "--archive",
        &archive,
        "--archive-interval",
        "200ms",
        "--checkpoint-interval",
        "300ms",
        "--retention-deleted-users",
        "3s",
    ];
    Server::start_with(2, &dir.join("data"), &flags)
}

#[test]
fn a_deleted_user_leaves_everything_and_every_file_and_stays_out_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (data, archive) = (dir.path().join("data"), dir.path().join("archive"));
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
    let mut server = start(dir.path());
    let mut events = Vec::new();
    for user in [ZOE, "bob"] {
        events.push(track(user, "Product Viewed", &format!("{user}-m1")));
        events.push(track(user, "Cart Viewed", &format!("{user}-m2")));
    }
    send(&client, &server, &events);
    wait_for("both wait in the journey", || moves(&data).iter().filter(|(_, _, to, _)| to == "wait").count() == 2);
    assert_eq!(members(&client, &server), ["bob", ZOE]);
    wait_for("the archive and a checkpoint hold the user", || {
        let held = holding(&[&data, &archive], ZOE);
        held.iter().any(|p| p.starts_with(&archive)) && held.iter().any(|p| p.starts_with(data.join("checkpoints")))
    });

    // Deleted and suppressed: 202 with where to follow it.
    let response =
        client.delete(server.url(&format!("/v1/users/{ZOE}"))).json(&json!({"suppress": true})).send().unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["location"], "/v1/deletions/1");
    let answer: J = response.json().unwrap();
    let at = answer["as_of"].as_u64().unwrap();
    assert_eq!((&answer["suppress"], &answer["status"]), (&json!(true), &json!("pending")));
    assert!(!answer.to_string().contains(ZOE), "the answer names the user: {answer}");
    // The deletion's own records: an exit and a cancellation marked deleted (they stay in the
    // files for the grace, 3 s).
    wait_for("the exit and the cancellation are written", || {
        let exits: Vec<J> =
            output_lines(&data, "segment_changes").into_iter().filter(|c| c["change"] == "exit").collect();
        let canceled = moves(&data).contains(&(ZOE.into(), json!("wait"), J::Null, "deleted".into()));
        exits.len() == 1 && canceled && {
            let e = &exits[0];
            assert_eq!((&e["user_id"], &e["time"], &e["reason"]), (&json!(ZOE), &json!(at), &json!("deleted")));
            true
        }
    });
    assert_eq!(members(&client, &server), ["bob"]);
    wait_for("the deletion completes", || {
        let status: J = client.get(server.url("/v1/deletions/1")).send().unwrap().json().unwrap();
        status["status"] == "complete"
    });
    for needle in [ZOE.to_string(), format!("{ZOE}-m1"), format!("{ZOE}-m2")] {
        assert_eq!(holding(&[&data, &archive], &needle), Vec::<PathBuf>::new(), "files still holding {needle:?}");
    }
    assert!(!holding(&[&data, &archive], "bob-m1").is_empty(), "bob's records went too");
    let export = client.get(server.url(&format!("/v1/users/{ZOE}"))).send().unwrap();
    assert_eq!(export.status(), StatusCode::NOT_FOUND, "{:?}", export.text());
    let listed: J = client.get(server.url("/v1/suppressions")).send().unwrap().json().unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // Refused while suppressed: carl's later event counts, zoe's does not.
    send(&client, &server, &[track(ZOE, "Product Viewed", "zoe-m3"), track("carl", "Product Viewed", "carl-m1")]);
    wait_for("carl enters", || members(&client, &server).contains(&"carl".to_string()));
    assert_eq!(members(&client, &server), ["bob", "carl"]);

    // Killed and started again over the same data: zoe does not come back.
    server.kill();
    server = start(dir.path());
    send(&client, &server, &[track("dan", "Product Viewed", "dan-m1")]);
    wait_for("dan enters after the restart", || members(&client, &server).contains(&"dan".to_string()));
    assert_eq!(members(&client, &server), ["bob", "carl", "dan"]);
    assert!(moves(&data).iter().all(|m| m.0 != ZOE), "zoe moved again after the restart");
    assert!(output_lines(&data, "journey_actions").is_empty(), "an action was sent");

    // Unsuppressed: a new event of zoe's counts again, as a new user.
    let response = client.delete(server.url(&format!("/v1/suppressions/{ZOE}"))).send().unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let again = client.delete(server.url(&format!("/v1/suppressions/{ZOE}"))).send().unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    send(&client, &server, &[track(ZOE, "Product Viewed", "zoe-m4")]);
    wait_for("zoe enters again", || members(&client, &server).contains(&ZOE.to_string()));
    assert_eq!(server.stop().code(), Some(0));
}
