//! The webhook sink for actions (bring your own integrations): POSTs each sent action's JSON
//! to the URL configured for its channel, with its deterministic `action_id` as the
//! `Idempotency-Key` header so a receiver can drop repeats.
//!
//! The action logs the workers write (`journey_actions-<worker>/`, segments) are the outbox:
//! each channel has a thread that follows them as far as they are synced, picks its channel's
//! sent actions, and hands them to that channel's delivery threads through a bounded queue; a
//! cursor per channel and file (`webhook_cursor-<channel>.json`), written at start and then
//! every second, says up to where every action is delivered or given up on. A restart goes on
//! from the cursors, so an action written before a crash is delivered after it (at least
//! once); a channel seen for the first time (a new URL, or the first start of this version)
//! starts at the files' ends, so actions of the past are not sent again. Nothing here waits
//! for the workers or makes them wait: a slow or hung endpoint only lets its own channel fall
//! behind.
//!
//! Connection errors, timeouts, 408, 429 and 5xx are retried with exponential backoff; an
//! action that still fails after the last attempt, or that the endpoint refuses (another
//! 4xx), is appended with the reason to a dead-letter file.

use crate::files::write_atomic;
use crate::wal::Tail;
use journeyflow_types::{Key, KeyMap};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where and how actions are delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// URL per channel; actions of other channels are not delivered.
    pub urls: BTreeMap<String, String>,
    /// Attempts per action, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub initial_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
    /// Actions of one channel handed to its delivery threads and not finished yet, at most.
    pub queue: usize,
    /// Deliveries of one channel in flight at once.
    pub concurrency: usize,
    /// Time limit of one request.
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            urls: BTreeMap::new(),
            max_attempts: 8,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            queue: 10_000,
            concurrency: 4,
            timeout: Duration::from_secs(10),
        }
    }
}

/// An action log to deliver from (a directory of segments, see [`crate::ndjson::Rolling`]),
/// and how far it is synced (what may be read).
#[derive(Clone, Debug)]
pub struct Outbox {
    /// The log's directory.
    pub path: PathBuf,
    /// Its synced end offset.
    pub synced: Arc<AtomicU64>,
}

/// Outcome counts, for metrics and tests.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Delivered (a 2xx answer).
    pub delivered: AtomicU64,
    /// Attempts that were retried.
    pub retried: AtomicU64,
    /// Given up on (written to the dead-letter file).
    pub failed: AtomicU64,
    /// Not delivered: the user was deleted.
    pub forgotten: AtomicU64,
}

/// Deleted users, each with the time of their deletion: their actions up to it are not sent.
type Forgotten = Arc<std::sync::RwLock<KeyMap<u64>>>;

/// The running sink: one follower thread per channel, with its delivery threads.
pub struct Webhooks {
    stop: Arc<AtomicBool>,
    forgotten: Forgotten,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Outcome counts.
    pub stats: Arc<WebhookStats>,
}

/// One action to deliver: where it is in the outbox, and what to send.
struct Job {
    file: usize,
    offset: u64,
    action_id: String,
    user: Key,
    time: u64,
    body: Vec<u8>,
}

/// The fields of an action line the sink reads.
#[derive(Deserialize)]
struct ActionFields<'a> {
    #[serde(borrow)]
    action_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    channel: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    status: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    user_id: std::borrow::Cow<'a, str>,
    time: u64,
}

/// Up to where each outbox file is handled, by file name.
#[derive(Default, Serialize, Deserialize)]
struct Cursor {
    files: BTreeMap<String, u64>,
}

/// A delivery that will not succeed as is.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// Worth another attempt.
    Transient(String),
    /// The endpoint refused it.
    Refused(String),
}

/// How long a closing sink keeps delivering what was synced before it stops (what is left is
/// delivered after the next start).
const CLOSING: Duration = Duration::from_secs(30);

impl Webhooks {
    /// Starts delivering the sent actions of `outboxes`, from where the cursors in `dir` say,
    /// except those of the `forgotten` users up to their deletions (see [`Webhooks::forget`]);
    /// actions given up on are appended to `dir/webhook_dead_letter.ndjson`.
    pub fn start(
        config: WebhookConfig,
        dir: &Path,
        outboxes: Vec<Outbox>,
        forgotten: Vec<(Key, u64)>,
    ) -> std::io::Result<Webhooks> {
        let forgotten: Forgotten = Arc::new(std::sync::RwLock::new(forgotten.into_iter().collect()));
        let client = reqwest::blocking::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| std::io::Error::other(format!("webhook client: {e}")))?;
        std::fs::create_dir_all(dir)?;
        let dead_path = dir.join("webhook_dead_letter.ndjson");
        let dead = Arc::new(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(&dead_path)?));
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(WebhookStats::default());
        // Each log whole (a line a crash cut short is cut off), and where it ends now.
        let mut ends = BTreeMap::new();
        for outbox in &outboxes {
            ends.insert(name_of(&outbox.path), crate::ndjson::log_end(&outbox.path)?);
        }
        let mut threads = Vec::new();
        for (channel, url) in &config.urls {
            let cursor_path = cursor_path(dir, channel);
            let from = start_cursor(&cursor_path, &ends)?;
            let follower = Follower {
                channel: channel.clone(),
                url: Arc::from(url.as_str()),
                cursor_path,
                from,
                outboxes: outboxes.clone(),
                config: config.clone(),
                client: client.clone(),
                dead: dead.clone(),
                stats: stats.clone(),
                stop: stop.clone(),
                forgotten: forgotten.clone(),
            };
            threads.push(std::thread::Builder::new().name(format!("webhook-{channel}")).spawn(move || {
                if let Err(e) = follower.run() {
                    tracing::error!("webhook channel stopped: {e}");
                }
            })?);
        }
        Ok(Webhooks { stop, forgotten, threads: Mutex::new(threads), stats })
    }

    /// The user was deleted as of `at`: their actions up to then that are not delivered yet
    /// are not (a delivery being retried stops at its next attempt).
    pub fn forget(&self, user: Key, at: u64) {
        let mut forgotten = self.forgotten.write().unwrap_or_else(PoisonError::into_inner);
        let t = forgotten.entry(user).or_insert(at);
        *t = (*t).max(at);
    }

    /// Delivers what is synced (for at most 30 s), saves the cursors, then stops.
    pub fn close(&self) {
        self.stop.store(true, Relaxed);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// A channel name as part of a file name: its safe characters, and a hash of the whole name
/// (so `a.b` and `a_b` do not share a cursor).
fn file_safe(channel: &str) -> String {
    let safe: String =
        channel.chars().take(64).map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    format!("{safe}-{:08x}", xxhash_rust::xxh3::xxh3_64(channel.as_bytes()) as u32)
}

/// The cursor file of `channel` in `dir`.
fn cursor_path(dir: &Path, channel: &str) -> PathBuf {
    dir.join(format!("{CURSOR_PREFIX}{}.json", file_safe(channel)))
}

/// How cursor files are named.
const CURSOR_PREFIX: &str = "webhook_cursor-";

/// Every channel's saved cursor in `dir` (outbox name → offset through which every action is
/// delivered or given up on): what may go from the outboxes.
pub fn saved_cursors(dir: &Path) -> std::io::Result<Vec<BTreeMap<String, u64>>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with(CURSOR_PREFIX) && name.ends_with(".json") {
            let cursor: Cursor = serde_json::from_slice(&std::fs::read(&path)?)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
            out.push(cursor.files);
        }
    }
    Ok(out)
}

/// Where a channel starts in each file: its saved cursor; a file it has no place in (or a
/// cursor that cannot be read) at the file's end; a file shorter than its place (written
/// anew) from its start. Saved at once, so a crash before the first delivery keeps it.
fn start_cursor(path: &Path, ends: &BTreeMap<String, u64>) -> std::io::Result<BTreeMap<String, u64>> {
    let saved: Option<Cursor> = match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(cursor) => Some(cursor),
            Err(e) => {
                tracing::error!("{}: unreadable ({e}); delivering from the files' ends", path.display());
                None
            }
        },
        Err(_) => None,
    };
    let files = saved.map(|c| c.files).unwrap_or_default();
    let from: BTreeMap<String, u64> = ends
        .iter()
        .map(|(name, end)| {
            // A cursor saved when the outbox was one file (now its first segment).
            let at = match files.get(name).or_else(|| files.get(&format!("{name}.ndjson"))) {
                Some(at) if at <= end => *at,
                Some(_) => 0,
                None => *end,
            };
            (name.clone(), at)
        })
        .collect();
    write_atomic(path, &serde_json::to_vec(&Cursor { files: from.clone() }).unwrap_or_default())?;
    Ok(from)
}

/// One channel's follower of the outboxes.
struct Follower {
    channel: String,
    url: Arc<str>,
    cursor_path: PathBuf,
    /// Where it starts in each file, by file name.
    from: BTreeMap<String, u64>,
    outboxes: Vec<Outbox>,
    config: WebhookConfig,
    client: reqwest::blocking::Client,
    dead: Arc<Mutex<std::fs::File>>,
    stats: Arc<WebhookStats>,
    stop: Arc<AtomicBool>,
    forgotten: Forgotten,
}

impl Follower {
    fn run(self) -> std::io::Result<()> {
        let names: Vec<String> = self.outboxes.iter().map(|o| name_of(&o.path)).collect();
        let mut tails = Vec::with_capacity(self.outboxes.len());
        for (outbox, name) in self.outboxes.iter().zip(&names) {
            let from = self.from.get(name).copied().unwrap_or(0);
            let tail = match Tail::open_partition(&outbox.path, from) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Its segments went (retention) before this channel delivered them.
                    let first = crate::wal::segments::bases(&outbox.path)?.first().copied().unwrap_or(0);
                    tracing::error!("{} from {first}: {e}", self.channel);
                    Tail::open_partition(&outbox.path, first)?
                }
                tail => tail?,
            };
            tails.push(tail.until(outbox.synced.clone()));
        }
        let (jobs_tx, jobs_rx) = sync_channel::<Job>(self.config.queue.max(1));
        let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, u64)>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let mut pool = Vec::new();
        for i in 0..self.config.concurrency.max(1) {
            let worker = Deliverer {
                url: self.url.clone(),
                channel: self.channel.clone(),
                config: self.config.clone(),
                client: self.client.clone(),
                dead: self.dead.clone(),
                stats: self.stats.clone(),
                forgotten: self.forgotten.clone(),
            };
            let (rx, done) = (jobs_rx.clone(), done_tx.clone());
            pool.push(
                std::thread::Builder::new()
                    .name(format!("webhook-{}-{i}", self.channel))
                    .spawn(move || worker.deliver_all(&rx, &done))?,
            );
        }
        drop(done_tx);
        let mut in_flight: BTreeSet<(usize, u64)> = BTreeSet::new();
        let mut written: Vec<u64> = tails.iter().map(Tail::offset).collect();
        let mut saved_at = Instant::now();
        let mut closing: Option<Instant> = None;
        loop {
            while let Ok(done) = done_rx.try_recv() {
                in_flight.remove(&done);
            }
            if closing.is_none() && self.stop.load(Relaxed) {
                closing = Some(Instant::now() + CLOSING);
            }
            let room = self.config.queue.max(1).saturating_sub(in_flight.len());
            let read = self.read(&mut tails, room, &jobs_tx, &mut in_flight)?;
            let at = self.cursor(&tails, &in_flight);
            if at != written && (saved_at.elapsed() >= Duration::from_secs(1) || closing.is_some()) {
                self.save(&names, &at);
                written = at;
                saved_at = Instant::now();
            }
            if let Some(deadline) = closing {
                let drained = in_flight.is_empty() && read == 0;
                if drained || Instant::now() >= deadline {
                    break;
                }
            }
            if read == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        drop(jobs_tx);
        // Deliveries still running finish or are abandoned (their actions are after the cursor).
        if !in_flight.is_empty() {
            tracing::warn!(
                "webhook {}: {} action(s) not delivered yet; they go after the next start",
                self.channel,
                in_flight.len()
            );
        } else {
            for t in pool {
                let _ = t.join();
            }
        }
        Ok(())
    }

    /// Reads up to `room` lines past the tails, queueing this channel's sent actions.
    fn read(
        &self,
        tails: &mut [Tail],
        room: usize,
        jobs: &SyncSender<Job>,
        in_flight: &mut BTreeSet<(usize, u64)>,
    ) -> std::io::Result<usize> {
        let mut read = 0;
        for (file, tail) in tails.iter_mut().enumerate() {
            if read >= room {
                break;
            }
            for (offset, line) in tail.read_at(room - read)? {
                read += 1;
                let Ok(fields) = serde_json::from_slice::<ActionFields>(&line) else { continue };
                if fields.channel != self.channel || fields.status != "sent" {
                    continue;
                }
                let action_id = fields.action_id.into_owned();
                let (user, time) = (Key::of(&fields.user_id), fields.time);
                in_flight.insert((file, offset));
                // The queue has room for every action in flight: this does not wait.
                if jobs.send(Job { file, offset, action_id, user, time, body: line }).is_err() {
                    return Err(std::io::Error::other("the delivery threads stopped"));
                }
            }
        }
        Ok(read)
    }

    /// Each file's cursor: its first action in flight, or how far it is read.
    fn cursor(&self, tails: &[Tail], in_flight: &BTreeSet<(usize, u64)>) -> Vec<u64> {
        (0..tails.len())
            .map(|f| in_flight.range((f, 0)..(f + 1, 0)).next().map_or(tails[f].offset(), |(_, offset)| *offset))
            .collect()
    }

    fn save(&self, names: &[String], at: &[u64]) {
        let cursor = Cursor { files: names.iter().cloned().zip(at.iter().copied()).collect() };
        let bytes = serde_json::to_vec(&cursor).unwrap_or_default();
        if let Err(e) = write_atomic(&self.cursor_path, &bytes) {
            tracing::warn!("webhook {}: the cursor could not be saved: {e}", self.channel);
        }
    }
}

fn name_of(path: &Path) -> String {
    path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// A delivery thread of one channel.
struct Deliverer {
    url: Arc<str>,
    channel: String,
    config: WebhookConfig,
    client: reqwest::blocking::Client,
    dead: Arc<Mutex<std::fs::File>>,
    stats: Arc<WebhookStats>,
    forgotten: Forgotten,
}

impl Deliverer {
    /// Whether the job's user was deleted as of its time or later.
    fn forgotten(&self, job: &Job) -> bool {
        let forgotten = self.forgotten.read().unwrap_or_else(PoisonError::into_inner);
        forgotten.get(&job.user).is_some_and(|at| job.time <= *at)
    }

    fn deliver_all(&self, jobs: &Mutex<Receiver<Job>>, done: &Sender<(usize, u64)>) {
        loop {
            let job = match jobs.lock().unwrap_or_else(PoisonError::into_inner).recv() {
                Ok(job) => job,
                Err(_) => return,
            };
            self.deliver_one(&job);
            let _ = done.send((job.file, job.offset));
        }
    }

    fn deliver_one(&self, job: &Job) {
        let mut backoff = self.config.initial_backoff;
        let mut attempt = 1;
        let outcome = loop {
            if self.forgotten(job) {
                self.stats.forgotten.fetch_add(1, Relaxed);
                return;
            }
            match self.post(job) {
                Ok(()) => break Ok(()),
                Err(Failure::Transient(why)) if attempt < self.config.max_attempts => {
                    tracing::debug!(action_id = %job.action_id, attempt, "webhook: {why}; retrying");
                    self.stats.retried.fetch_add(1, Relaxed);
                    metrics::counter!("journeyflow_webhook_retries_total", "channel" => self.channel.clone())
                        .increment(1);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    attempt += 1;
                }
                Err(Failure::Transient(why) | Failure::Refused(why)) => break Err(why),
            }
        };
        match outcome {
            Ok(()) => {
                self.stats.delivered.fetch_add(1, Relaxed);
                metrics::counter!("journeyflow_webhook_delivered_total", "channel" => self.channel.clone())
                    .increment(1);
            }
            Err(why) => {
                self.stats.failed.fetch_add(1, Relaxed);
                metrics::counter!("journeyflow_webhook_failed_total", "channel" => self.channel.clone()).increment(1);
                tracing::warn!(action_id = %job.action_id, "webhook: giving up after {attempt} attempt(s): {why}");
                let line = serde_json::json!({
                    "action_id": job.action_id, "channel": self.channel, "url": &*self.url, "attempts": attempt,
                    "error": why, "action": serde_json::from_slice::<serde_json::Value>(&job.body).unwrap_or_default(),
                });
                let mut file = self.dead.lock().unwrap_or_else(PoisonError::into_inner);
                if let Err(e) = writeln!(file, "{line}").and_then(|()| file.sync_data()) {
                    tracing::error!("webhook dead-letter file: {e}");
                }
            }
        }
    }

    fn post(&self, job: &Job) -> Result<(), Failure> {
        let answer = self
            .client
            .post(&*self.url)
            .header("content-type", "application/json")
            .header("idempotency-key", &job.action_id)
            .body(job.body.clone())
            .send()
            .map_err(|e| Failure::Transient(e.to_string()))?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(Failure::Transient(format!("HTTP {status}")))
        } else {
            Err(Failure::Refused(format!("HTTP {status}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ndjson::Rolling;
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpListener;

    /// `(path, idempotency key, body)` of each request an endpoint got.
    type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

    /// A real HTTP endpoint on a socket: answers 503 to the first `fail` attempts of each
    /// idempotency key, then 200; 400 on `/refuse`.
    fn endpoint(fail: usize) -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen: Seen = Arc::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split(' ').nth(1).unwrap_or_default().to_string();
                let (mut key, mut length) = (String::new(), 0);
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    let header = header.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    let (name, value) = header.split_once(':').unwrap();
                    match name.to_ascii_lowercase().as_str() {
                        "idempotency-key" => key = value.trim().to_string(),
                        "content-length" => length = value.trim().parse().unwrap(),
                        _ => {}
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let mut log = log.lock().unwrap();
                let attempts = log.iter().filter(|(_, k, _)| *k == key).count();
                log.push((path.clone(), key, String::from_utf8(body).unwrap()));
                let status = if path == "/refuse" {
                    "400 Bad Request"
                } else if attempts < fail {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let _ = write!(stream, "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        (base, seen)
    }

    fn config(base: &str) -> WebhookConfig {
        WebhookConfig {
            urls: BTreeMap::from([
                ("email".to_string(), format!("{base}/email")),
                ("sms".to_string(), format!("{base}/refuse")),
            ]),
            max_attempts: 4,
            initial_backoff: Duration::from_millis(5),
            queue: 2,
            ..WebhookConfig::default()
        }
    }

    /// An empty outbox log (segments of 200 bytes, so that tests cross segments).
    fn outbox(dir: &Path) -> Outbox {
        let path = dir.join("journey_actions-0");
        drop(Rolling::open(&path, &dir.join("journey_actions-0.ndjson"), 200).unwrap());
        Outbox { path, synced: Arc::new(AtomicU64::new(0)) }
    }

    /// Appends actions to an outbox, all synced.
    fn write(outbox: &Outbox, actions: &[(&str, &str, &str)]) {
        let legacy = outbox.path.with_extension("ndjson");
        let mut log = Rolling::open(&outbox.path, &legacy, 200).unwrap();
        for (id, channel, status) in actions {
            let action =
                serde_json::json!({"action_id": id, "channel": channel, "status": status, "user_id": "u", "time": 10});
            log.push(format!("{action}\n").as_bytes());
            log.flush().unwrap();
        }
        log.sync().unwrap();
        outbox.synced.store(log.end(), Relaxed);
    }

    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn sent_actions_are_retried_until_delivered_with_their_id_as_idempotency_key() {
        let (base, seen) = endpoint(2);
        let dir = tempfile::tempdir().unwrap();
        let actions: Vec<(String, &str, &str)> = (0..5).map(|i| (format!("a{i}"), "email", "sent")).collect();
        let mut listed: Vec<(&str, &str, &str)> = actions.iter().map(|(a, c, s)| (a.as_str(), *c, *s)).collect();
        listed.push(("held", "email", "held"));
        listed.push(("ignored", "push", "sent"));
        let outbox = outbox(dir.path());
        let hooks = Webhooks::start(config(&base), dir.path(), vec![outbox.clone()], Vec::new()).unwrap();
        write(&outbox, &listed);
        let stats = hooks.stats.clone();
        wait_for("five deliveries", || stats.delivered.load(Relaxed) == 5);
        hooks.close();
        assert_eq!((stats.retried.load(Relaxed), stats.failed.load(Relaxed)), (10, 0));
        let seen = seen.lock().unwrap();
        for i in 0..5 {
            let tries: Vec<_> = seen.iter().filter(|(_, k, _)| *k == format!("a{i}")).collect();
            assert_eq!(tries.len(), 3, "two 503s, then delivered");
            assert!(tries.iter().all(|(p, _, b)| p == "/email" && b.contains(&format!("\"a{i}\""))));
        }
        assert!(seen.iter().all(|(_, k, _)| k != "ignored" && k != "held"));
    }

    #[test]
    fn a_restart_goes_on_from_the_cursor_and_delivers_what_was_left() {
        let (base, seen) = endpoint(0);
        let dir = tempfile::tempdir().unwrap();
        // Written before the channel was ever started: the past, not sent.
        let first = outbox(dir.path());
        write(&first, &[("old", "email", "sent")]);
        let hooks = Webhooks::start(config(&base), dir.path(), vec![first.clone()], Vec::new()).unwrap();
        write(&first, &[("a0", "email", "sent"), ("a1", "email", "sent")]);
        wait_for("two deliveries", || hooks.stats.delivered.load(Relaxed) == 2);
        hooks.close();
        // Two more written while no sink runs; the next one delivers only those.
        write(&first, &[("a2", "email", "sent"), ("a3", "email", "sent")]);
        let hooks = Webhooks::start(config(&base), dir.path(), vec![first], Vec::new()).unwrap();
        wait_for("two more deliveries", || hooks.stats.delivered.load(Relaxed) == 2);
        hooks.close();
        let mut keys: Vec<String> = seen.lock().unwrap().iter().map(|(_, k, _)| k.clone()).collect();
        keys.sort();
        assert_eq!(keys, ["a0", "a1", "a2", "a3"]);
    }

    #[test]
    fn a_deleted_users_action_being_retried_stops_and_goes_nowhere() {
        let (base, seen) = endpoint(usize::MAX);
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox(dir.path());
        let config = WebhookConfig { max_attempts: 1_000_000, max_backoff: Duration::from_millis(10), ..config(&base) };
        let hooks = Webhooks::start(config, dir.path(), vec![outbox.clone()], Vec::new()).unwrap();
        write(&outbox, &[("a0", "email", "sent")]);
        wait_for("a first attempt", || !seen.lock().unwrap().is_empty());
        // Deleted as of before the action: it stays due.
        hooks.forget(Key::of("u"), 9);
        let tried = seen.lock().unwrap().len();
        wait_for("more attempts", || seen.lock().unwrap().len() > tried + 1);
        hooks.forget(Key::of("u"), 10);
        let stats = hooks.stats.clone();
        wait_for("the action forgotten", || stats.forgotten.load(Relaxed) == 1);
        hooks.close();
        assert_eq!((stats.delivered.load(Relaxed), stats.failed.load(Relaxed)), (0, 0));
        let dead = std::fs::read_to_string(dir.path().join("webhook_dead_letter.ndjson")).unwrap();
        assert!(dead.is_empty(), "{dead}");
    }

    #[test]
    fn refused_and_exhausted_actions_go_to_the_dead_letter_file_with_the_reason() {
        let (base, seen) = endpoint(100);
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox(dir.path());
        let hooks = Webhooks::start(config(&base), dir.path(), vec![outbox.clone()], Vec::new()).unwrap();
        write(&outbox, &[("refused", "sms", "sent"), ("exhausted", "email", "sent")]);
        let stats = hooks.stats.clone();
        wait_for("two failures", || stats.failed.load(Relaxed) == 2);
        hooks.close();
        assert_eq!(stats.delivered.load(Relaxed), 0);
        let dead = dir.path().join("webhook_dead_letter.ndjson");
        let lines: Vec<serde_json::Value> =
            std::fs::read_to_string(&dead).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let by_id = |id: &str| lines.iter().find(|l| l["action_id"] == id).unwrap().clone();
        let refused = by_id("refused");
        assert_eq!((refused["attempts"].as_u64(), refused["error"].as_str()), (Some(1), Some("HTTP 400 Bad Request")));
        assert_eq!(refused["action"]["channel"], "sms");
        let exhausted = by_id("exhausted");
        assert_eq!(exhausted["attempts"], 4);
        assert_eq!(seen.lock().unwrap().iter().filter(|(_, k, _)| k == "exhausted").count(), 4);
    }
}
