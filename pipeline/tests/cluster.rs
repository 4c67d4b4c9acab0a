//! journeyflow on timely's cluster mode, processes talking over loopback TCP. `replay` writes
//! the same files as 1 process x 1 worker, 1 x 2 and 2 x 1. `run` as two processes takes
//! HTTP events on both and Kafka partitions spread over both; its outputs (the union of both
//! processes' files) equal `replay`'s, ids included, and the control API of process 0 answers
//! for the whole cluster (members, journey reports, each user's journey history). A killed
//! process takes the other down with a clear error; the restarted cluster resumes from its
//! checkpoints and committed offsets without loss, each user's journey history included.

mod common;

use common::kafka::{config, consume, processed, produce, Topics};
use common::outputs::{assert_union_equals, replay, replay_command, wait_durable_past, KINDS};
use common::server::{output_lines, Server};
use reqwest::blocking::Client;
use serde_json::{json, Value as J};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A hostfile naming `n` loopback ports free right now.
fn hostfile(dir: &Path, n: usize) -> PathBuf {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let text: String = listeners.iter().map(|l| format!("{}\n", l.local_addr().unwrap())).collect();
    let path = dir.join(format!("hosts-{}", rand::random::<u32>()));
    std::fs::write(&path, text).unwrap();
    path
}

fn cluster_flags(hosts: &Path, processes: usize, id: usize) -> Vec<String> {
    vec![
        "--processes".into(),
        processes.to_string(),
        "--process-id".into(),
        id.to_string(),
        "--hostfile".into(),
        hosts.to_str().unwrap().into(),
    ]
}

/// `journeyflow replay` of `events` with the sample's definitions on `processes` processes of
/// `workers` threads into `out`.
fn replay_on(events: &Path, out: &Path, processes: usize, workers: usize) {
    let hosts = hostfile(out.parent().unwrap(), processes);
    let children: Vec<std::process::Child> = (0..processes)
        .map(|id| {
            let mut command = replay_command(events, out);
            command
                .args(["--workers", &workers.to_string(), "--batch-size", "700"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            if processes > 1 {
                command.args(cluster_flags(&hosts, processes, id));
            }
            command.spawn().unwrap()
        })
        .collect();
    for (id, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "process {id}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn replay_writes_the_same_files_on_one_worker_two_workers_and_two_processes() {
    let scratch = tempfile::tempdir().unwrap();
    let generated = scratch.path().join("generated.ndjson");
    let out = Command::new(env!("CARGO_BIN_EXE_journeyflow"))
        .args(["generate", "--users", "800", "--events", "40000", "--seed", "3", "--out"])
        .arg(&generated)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (name, events) in [("sample", common::repo("datasets/sample/events.ndjson")), ("generated", generated)] {
        let dir = |shape: &str| scratch.path().join(format!("{name}-{shape}"));
        for (shape, processes, workers) in [("1x1", 1, 1), ("1x2", 1, 2), ("2x1", 2, 1), ("2x2", 2, 2)] {
            replay_on(&events, &dir(shape), processes, workers);
        }
        let files = [
            "segment_changes.ndjson",
            "members.ndjson",
            "journey_transitions.ndjson",
            "journey_actions.ndjson",
            "journey_members.ndjson",
            "journey_stats.json",
            "dead_letter.ndjson",
        ];
        for file in files {
            let single = std::fs::read_to_string(dir("1x1").join(file)).unwrap();
            assert!(single.len() > 100 || file == "dead_letter.ndjson", "{name}/{file}: nothing to compare");
            for shape in ["1x2", "2x1", "2x2"] {
                let other = std::fs::read_to_string(dir(shape).join(file)).unwrap();
                assert!(single == other, "{name}/{file}: {shape} differs from 1x1");
            }
        }
        // The summary counts every process's records.
        let summary = |shape: &str| -> J {
            serde_json::from_str(&std::fs::read_to_string(dir(shape).join("summary.json")).unwrap()).unwrap()
        };
        let (one, two) = (summary("1x1"), summary("2x2"));
        for key in ["records", "accepted", "malformed", "duplicates", "changes", "transitions", "segment_sizes"] {
            assert_eq!(one[key], two[key], "{name}: summary {key}");
        }
        assert_eq!((two["workers"].as_u64(), two["processes"].as_u64()), (Some(4), Some(2)));
    }
}

/// Starts a cluster of `processes` over `dir/data-<id>`, each with `extra` flags; process 0
/// installs the sample's segments and journeys.
fn start_cluster(dir: &Path, processes: usize, extra: &[&str]) -> Vec<Server> {
    let sample = common::repo("datasets/sample");
    let hosts = hostfile(dir, processes);
    let definitions = [
        "--segments".to_string(),
        sample.join("segments.json").to_str().unwrap().into(),
        "--journeys".into(),
        sample.join("journeys.json").to_str().unwrap().into(),
        // The generated events are from 2024, and event time follows the wall clock once the
        // input is quiet: a retention that keeps them, and so each user's journey records.
        "--retention-events".into(),
        "3650d".into(),
    ];
    let starting: Vec<_> = (0..processes)
        .map(|id| {
            let flags: Vec<String> = cluster_flags(&hosts, processes, id)
                .into_iter()
                .chain(definitions.iter().cloned())
                .chain(extra.iter().map(|s| s.to_string()))
                .collect();
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            Server::spawn_with(1, &dir.join(format!("data-{id}")), &flags)
        })
        .collect();
    starting.into_iter().map(|s| s.listening()).collect()
}

fn members(client: &Client, server: &Server, id: &str) -> BTreeSet<String> {
    common::server::members(client, server, id, 1000, None).1
}

/// The events every process's ingest log accepted, as one file.
fn accepted(dir: &Path, processes: usize) -> PathBuf {
    let path = dir.join("accepted.ndjson");
    let mut all = std::fs::File::create(&path).unwrap();
    for id in 0..processes {
        all.write_all(common::ingest_log(&dir.join(format!("data-{id}"))).as_bytes()).unwrap();
    }
    path
}

#[test]
fn two_processes_take_events_on_both_and_answer_for_the_cluster_like_replay() {
    let scratch = tempfile::tempdir().unwrap();
    let servers = start_cluster(scratch.path(), 2, &[]);
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    // Batches go to either process; each user's events reach the worker owning the user.
    for b in 0..24u64 {
        let batch: Vec<J> = (b * 50..(b + 1) * 50).map(|i| common::live_event("cluster", i)).collect();
        let to = &servers[(b % 2) as usize];
        let r = client.post(to.url("/v1/batch")).json(&json!({ "batch": batch })).send().unwrap();
        assert!(r.status().is_success(), "batch {b}: {}", r.status());
        std::thread::sleep(Duration::from_millis(40));
    }
    // Control calls belong to process 0.
    let segment = json!({"id": "carts", "condition": {"performed": {"event": "Cart Viewed", "within": "1d"}}});
    let r = client.post(servers[1].url("/v1/segments")).json(&segment).send().unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::MISDIRECTED_REQUEST);
    let events = accepted(scratch.path(), 2);
    let expected = replay(&events, &scratch.path().join("replay"));
    for id in 0..2 {
        wait_durable_past(&scratch.path().join(format!("data-{id}")), expected.as_of);
    }
    // Members as of now, from every worker of both processes, equal replay's.
    let replayed: Vec<J> = std::fs::read_to_string(scratch.path().join("replay/members.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sample_segments: Vec<J> =
        serde_json::from_str(&std::fs::read_to_string(common::repo("datasets/sample/segments.json")).unwrap()).unwrap();
    let mut compared = 0;
    for s in &sample_segments {
        let id = s["id"].as_str().unwrap();
        let want: BTreeSet<String> =
            replayed.iter().filter(|m| m["segment"] == id).map(|m| m["user_id"].as_str().unwrap().into()).collect();
        assert_eq!(members(&client, &servers[0], id), want, "segment {id}");
        compared += want.len();
    }
    assert!(compared > 0, "no members to compare");
    // Journey reports add up the counters of both processes.
    let stats: Vec<J> =
        serde_json::from_str(&std::fs::read_to_string(scratch.path().join("replay/journey_stats.json")).unwrap())
            .unwrap();
    for want in &stats {
        let id = want["journey"].as_str().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got: J =
                client.get(servers[0].url(&format!("/v1/journeys/{id}/stats"))).send().unwrap().json().unwrap();
            if got["entered"] == want["entered"] && got["completed"] == want["completed"] {
                break;
            }
            assert!(Instant::now() < deadline, "journey {id}: {got} against {want}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_histories(&client, &servers[0], &scratch.path().join("replay"), expected.as_of);
    // Process 0's live overview and segment sizes are the cluster's: both processes' counts.
    let taken: Vec<J> =
        std::fs::read_to_string(&events).unwrap().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let users: BTreeSet<&str> = taken.iter().filter_map(|e| e["userId"].as_str()).collect();
    let mut overview = common::sse::Events::open(&client, &servers[0].url("/v1/streams/overview"), None);
    let n = taken.len();
    // User ids are every process's (each holds them all): counted once.
    overview.until("overview", |o| {
        o["events_in"] == n && o["events_processed"] == n && o["processes"] == 2 && o["user_ids"] == users.len()
    });
    // The sizes a member listing has (each listed when a sizes event came: time may move them).
    let mut sizes = common::sse::Events::open(&client, &servers[0].url("/v1/streams/segments"), None);
    sizes.until("sizes", |d| {
        let sized = d["sizes"].as_object().unwrap();
        sized.values().any(|n| n.as_u64() > Some(0))
            && sized.iter().all(|(id, n)| n.as_u64() == Some(members(&client, &servers[0], id).len() as u64))
    });
    drop((overview, sizes));
    // Stopping one process stops the cluster cleanly.
    let mut servers = servers.into_iter();
    let (first, second) = (servers.next().unwrap(), servers.next().unwrap());
    assert_eq!(second.stop().code(), Some(0));
    assert_eq!(first.wait_exit(Duration::from_secs(30)).code(), Some(0));
    for kind in KINDS {
        let got: Vec<J> =
            (0..2).flat_map(|id| output_lines(&scratch.path().join(format!("data-{id}")), kind)).collect();
        assert_union_equals(kind, &got, &expected.records[kind], expected.as_of);
    }
}

/// Each user's journey history on process 0, whichever process's worker owns the user, is as
/// replay (which wrote into `replayed`) wrote it: the transitions through the as-of time (the
/// live run may have gone on since). The other process's come over the network: waited for.
fn assert_histories(client: &Client, server: &Server, replayed: &Path, as_of: u64) {
    let transitions: Vec<J> = std::fs::read_to_string(replayed.join("journey_transitions.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let users: BTreeSet<(String, String)> = transitions
        .iter()
        .map(|t| (t["journey"].as_str().unwrap().to_string(), t["user_id"].as_str().unwrap().to_string()))
        .collect();
    assert!(users.len() > 20, "{} users in journeys", users.len());
    // A thousand at most (each a request), of both processes' users.
    let every = users.len().div_ceil(1000);
    let without_id = |t: &J| {
        let mut t = t.clone();
        t.as_object_mut().unwrap().remove("id");
        t
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    for (journey, user) in users.iter().step_by(every) {
        let want: Vec<J> =
            transitions.iter().filter(|t| t["journey"] == *journey && t["user_id"] == *user).map(without_id).collect();
        loop {
            let got: J =
                client.get(server.url(&format!("/v1/journeys/{journey}/users/{user}"))).send().unwrap().json().unwrap();
            let history = got["history"].as_array().cloned().unwrap_or_default();
            let through: Vec<J> =
                history.iter().filter(|t| t["time"].as_u64() <= Some(as_of)).map(without_id).collect();
            // The API keeps the latest 100: of those through the as-of time, the last ones.
            let full = history.len() == 100;
            if through == want || full && !through.is_empty() && want.ends_with(&through) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{journey}/{user}: {} kept, {} through the as-of time, against {} (last {:?}, kept {:?})",
                history.len(),
                through.len(),
                want.len(),
                want.last(),
                through.last()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The time of the journey snapshot the newest checkpoint under `data` names.
fn named_snapshot(data: &Path) -> Option<u64> {
    let newest = std::fs::read_dir(data.join("checkpoints"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .filter(|seq| data.join(format!("checkpoints/{seq}/manifest.json")).exists())
        .max()?;
    let text = std::fs::read_to_string(data.join(format!("checkpoints/{newest}/manifest.json"))).ok()?;
    serde_json::from_str::<J>(&text).ok()?["journeys"]["time"].as_u64()
}

#[test]
fn a_killed_process_takes_the_cluster_down_and_the_restarted_cluster_loses_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let events = scratch.path().join("events.ndjson");
    let generated = Command::new(env!("CARGO_BIN_EXE_journeyflow"))
        .args(["generate", "--users", "5000", "--events", "300000", "--seed", "13", "--out"])
        .arg(&events)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let expected = replay(&events, &scratch.path().join("replay"));
    let topics = Topics::new("cluster");
    // Four partitions over two processes of one worker: two each.
    let n = produce(&topics.events, 4, &events);
    let config = config(scratch.path(), &topics);
    let flags = ["--config", config.to_str().unwrap(), "--checkpoint-interval", "300ms"];
    let servers = start_cluster(scratch.path(), 2, &flags);
    let deadline = Instant::now() + Duration::from_secs(120);
    let read = |servers: &[Server]| servers.iter().map(processed).collect::<Vec<u64>>();
    while read(&servers).iter().sum::<u64>() < n / 5 {
        assert!(Instant::now() < deadline, "the cluster never read a fifth of the {n} events");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Killed while the processes' newest checkpoints name journey snapshots of different times
    // (each restarts from its own), if that comes soon: what each user did between the two
    // times is then restored by one process and made again by none, or by both.
    let named = |id: usize| named_snapshot(&scratch.path().join(format!("data-{id}")));
    let apart = Instant::now() + Duration::from_secs(5);
    // Not past half of the events either: the kill must come before everything is read.
    let early = |servers: &[Server]| read(servers).iter().sum::<u64>() < n / 2;
    while Instant::now() < apart && early(&servers) && !matches!((named(0), named(1)), (Some(a), Some(b)) if a != b) {
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!("killed with snapshots {:?} and {:?} named", named(0), named(1));
    let counts = read(&servers);
    assert!(counts.iter().all(|c| *c > 0), "a process reads no partition: {counts:?}");
    assert!(counts.iter().sum::<u64>() < n, "the cluster read everything before the kill");
    // Process 1 dies; process 0 cannot go on without it and says so.
    let mut servers = servers.into_iter();
    let (first, second) = (servers.next().unwrap(), servers.next().unwrap());
    second.kill();
    let said = first.said.clone();
    let status = first.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "process 0 went on without process 1");
    let text = said.lock().unwrap().join("\n");
    assert!(text.contains("lost the connection to another process of the cluster"), "process 0 said: {text}");
    // Restarted, each process goes on from its last checkpoint and the committed offsets.
    let servers = start_cluster(scratch.path(), 2, &flags);
    for id in 0..2 {
        wait_durable_past(&scratch.path().join(format!("data-{id}")), expected.as_of);
    }
    // Each user's journey history too: process 0 restored its users' from its snapshot and
    // process 1 sent its users' from its own (each from its newest checkpoint's, whose times
    // differ), then both went on from there.
    assert_histories(&Client::new(), &servers[0], &scratch.path().join("replay"), expected.as_of);
    let mut servers = servers.into_iter();
    let (first, second) = (servers.next().unwrap(), servers.next().unwrap());
    assert_eq!(first.stop().code(), Some(0));
    assert_eq!(second.wait_exit(Duration::from_secs(30)).code(), Some(0));
    for kind in KINDS {
        let files: Vec<J> =
            (0..2).flat_map(|id| output_lines(&scratch.path().join(format!("data-{id}")), kind)).collect();
        assert_union_equals(kind, &files, &expected.records[kind], expected.as_of);
        let topic: Vec<J> =
            consume(&topics.output(kind), scratch.path()).into_iter().map(|r| r["value"].clone()).collect();
        assert_union_equals(kind, &topic, &expected.records[kind], expected.as_of);
    }
}
