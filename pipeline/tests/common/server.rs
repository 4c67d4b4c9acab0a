//! `journeyflow run` as a child process: started over a data directory, reached through the
//! address it prints, stopped with SIGTERM (or killed).

use serde_json::Value as J;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: this build's, or the one `JOURNEYFLOW_TEST_BIN` names (to show a
/// test failing on an older build).
pub fn binary() -> String {
    std::env::var("JOURNEYFLOW_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_journeyflow").to_string())
}

pub struct Server {
    pub child: Child,
    pub base: String,
    /// What the server wrote to stderr after it started listening.
    pub said: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start(workers: usize) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::start_in(workers, dir.path());
        server._dir = Some(dir);
        server
    }

    /// A server over an existing data directory.
    pub fn start_in(workers: usize, dir: &std::path::Path) -> Server {
        Server::start_with(workers, dir, &[])
    }

    /// A server with extra arguments.
    pub fn start_with(workers: usize, dir: &std::path::Path, extra: &[&str]) -> Server {
        Server::spawn_with(workers, dir, extra).listening()
    }

    /// Starts the process without waiting for it to listen (a process of a cluster listens
    /// only once every process is up).
    pub fn spawn_with(workers: usize, dir: &std::path::Path, extra: &[&str]) -> Starting {
        let child = Command::new(binary())
            .args(["run", "--listen", "127.0.0.1:0", "--workers", &workers.to_string(), "--max-body-bytes", "100000"])
            .args(extra)
            .arg("--data-dir")
            .arg(dir)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Starting { child: Some(child) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The exit status, once the server exits on its own (within `limit`).
    pub fn wait_exit(mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit status within a deadline.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A server process that may not listen yet.
pub struct Starting {
    child: Option<Child>,
}

impl Starting {
    /// Waits (up to a minute) for the server to say where it listens.
    pub fn listening(mut self) -> Server {
        let mut child = self.child.take().expect("not taken");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut before = Vec::new();
        let base = loop {
            assert!(Instant::now() < deadline, "the server did not start: {before:?}");
            let Some(line) = lines.next() else { panic!("the server exited before listening: {before:?}") };
            let line = line.unwrap();
            if let Some(addr) = line.strip_prefix("journeyflow listening on ") {
                break addr.to_string();
            }
            before.push(line);
        };
        // Forwarded so that a failing test shows what the server said, and kept.
        let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = said.clone();
        std::thread::spawn(move || {
            lines.map_while(Result::ok).for_each(|l| {
                eprintln!("server: {l}");
                keep.lock().unwrap().push(l);
            })
        });
        Server { child, base, said, _dir: None }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

impl Server {
    /// SIGKILL: no chance to flush or clean up.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Every output line of one kind (`journey_transitions`, `journey_actions`) a server wrote:
/// each worker's log (`out/<kind>-<worker>/`, segments in order).
pub fn output_lines(dir: &std::path::Path, kind: &str) -> Vec<J> {
    let mut out = Vec::new();
    for f in std::fs::read_dir(dir.join("out")).unwrap() {
        let log = f.unwrap().path();
        if !log.is_dir() || !log.file_name().unwrap().to_string_lossy().starts_with(kind) {
            continue;
        }
        let mut segments: Vec<_> = std::fs::read_dir(&log).unwrap().map(|e| e.unwrap().path()).collect();
        segments.sort();
        for path in segments {
            let text = std::fs::read_to_string(path).unwrap();
            // Blank lines are records of deleted users.
            out.extend(text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str::<J>(l).unwrap()));
        }
    }
    out
}

/// Every member of segment `id` through the paged listing (`limit` a page, with `token` if
/// given), checking that every page is of one answer: `(as_of, user ids)`.
pub fn members(
    client: &reqwest::blocking::Client,
    server: &Server,
    id: &str,
    limit: usize,
    token: Option<&str>,
) -> (u64, std::collections::BTreeSet<String>) {
    let mut out = std::collections::BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut as_of = None;
    loop {
        let mut url = server.url(&format!("/v1/segments/{id}/members?limit={limit}"));
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let mut request = client.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let page: J = request.send().unwrap().error_for_status().unwrap().json().unwrap();
        let t = page["as_of"].as_u64().unwrap();
        assert!(as_of.is_none_or(|a| a == t), "pages of one listing as of {as_of:?} and {t}");
        as_of = Some(t);
        out.extend(page["members"].as_array().unwrap().iter().map(|m| m["user_id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return (t, out),
        }
    }
}

/// A server with the bundled sample's segments and journeys, the API token `token`, the write
/// key `wk`, and the flags `extra`, on `workers` workers, its data in `data`.
pub fn sample_server(workers: usize, data: &std::path::Path, token: &str, extra: &[&str]) -> Server {
    let sample = super::repo("datasets/sample");
    let (segments, journeys) = (sample.join("segments.json"), sample.join("journeys.json"));
    let mut flags = vec!["--api-token", token, "--write-key", "wk"];
    flags.extend(["--segments", segments.to_str().unwrap(), "--journeys", journeys.to_str().unwrap()]);
    flags.extend(extra);
    Server::start_with(workers, data, &flags)
}

/// Sends the bundled sample's events (its malformed lines left out) through `/v1/batch` with
/// the write key `wk`; returns how many were accepted.
pub fn send_sample(client: &reqwest::blocking::Client, server: &Server) -> u64 {
    let events: Vec<J> = std::fs::read_to_string(super::repo("datasets/sample/events.ndjson"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut accepted = 0;
    for chunk in events.chunks(300) {
        let batch = serde_json::json!({ "batch": chunk });
        let r = client.post(server.url("/v1/batch")).basic_auth("wk", None::<&str>).json(&batch).send().unwrap();
        let answer: J = r.error_for_status().unwrap().json().unwrap();
        accepted += answer["accepted"].as_u64().unwrap();
    }
    accepted
}
