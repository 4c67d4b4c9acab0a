//! A reader of Server-Sent Events streams, as an API user reads them: each event's name and
//! JSON document as they come, within a deadline (a server's keep-alive comments come every
//! 15 s, so a read never waits much past it).

use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;
use serde_json::Value as J;
use std::io::{BufRead, BufReader, Lines};
use std::time::{Duration, Instant};

/// How long a stream is read for, at most.
const DEADLINE: Duration = Duration::from_secs(90);

/// The events of one stream.
pub struct Events(Lines<BufReader<Response>>, Instant);

impl Events {
    /// Opens the stream at `url` (with the API token, if given): 200 with `text/event-stream`.
    pub fn open(client: &Client, url: &str, token: Option<&str>) -> Events {
        let mut request = client.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let r = request.send().unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        let kind = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(kind.starts_with("text/event-stream"), "{url}: {kind}");
        Events(BufReader::new(r).lines(), Instant::now() + DEADLINE)
    }

    /// The next event `(name, document)`; `None` once the stream ends (the client's read
    /// timeout is the deadline).
    pub fn next(&mut self) -> Option<(String, J)> {
        let (mut name, mut data) = (String::new(), String::new());
        for line in &mut self.0 {
            assert!(Instant::now() < self.1, "a stream read for {DEADLINE:?} without finding what was wanted");
            let line = line.ok()?;
            if line.is_empty() {
                if !data.is_empty() {
                    return Some((name, serde_json::from_str(&data).unwrap()));
                }
            } else if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim());
            }
        }
        None
    }

    /// Reads events until one named `name` satisfies `wanted`.
    pub fn until(&mut self, name: &str, mut wanted: impl FnMut(&J) -> bool) -> J {
        loop {
            let (got, document) = self.next().unwrap_or_else(|| panic!("the stream ended before a {name} event"));
            if got == name && wanted(&document) {
                return document;
            }
        }
    }

    /// The next `n` events named one of `names` (others, such as `lagged`, skipped).
    pub fn take(&mut self, names: &[&str], n: usize) -> Vec<(String, J)> {
        let mut out = Vec::new();
        while out.len() < n {
            let (name, document) = self.next().expect("the stream ended");
            if names.contains(&name.as_str()) {
                out.push((name, document));
            }
        }
        out
    }
}
