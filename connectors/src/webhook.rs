//! The webhook sink for actions (bring your own integrations): POSTs each sent action's JSON
//! to the URL configured for its channel, with its deterministic `action_id` as the
//! `Idempotency-Key` header so a receiver can drop repeats. Connection errors, timeouts, 408,
//! 429 and 5xx are retried with exponential backoff; a bounded queue holds actions waiting to
//! go, so a slow endpoint slows the pipeline down instead of filling memory. An action that
//! still fails after the last attempt, or that the endpoint refuses (another 4xx), is
//! appended with the reason to a dead-letter file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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
    /// Actions waiting to be delivered, at most.
    pub queue: usize,
    /// Deliveries in flight at once.
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

/// One action to deliver.
struct Job {
    url: Arc<str>,
    channel: String,
    action_id: String,
    body: Vec<u8>,
}

/// Outcome counts, for metrics and tests.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Delivered (a 2xx answer).
    pub delivered: std::sync::atomic::AtomicU64,
    /// Attempts that were retried.
    pub retried: std::sync::atomic::AtomicU64,
    /// Given up on (written to the dead-letter file).
    pub failed: std::sync::atomic::AtomicU64,
}

/// The running sink: a bounded queue and the threads that deliver from it.
pub struct Webhooks {
    urls: BTreeMap<String, Arc<str>>,
    queue: Mutex<Option<SyncSender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Outcome counts.
    pub stats: Arc<WebhookStats>,
}

/// A delivery that will not succeed as is.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// Worth another attempt.
    Transient(String),
    /// The endpoint refused it.
    Refused(String),
}

impl Webhooks {
    /// Starts the delivery threads; actions given up on are appended to `dead_letter`.
    pub fn start(config: WebhookConfig, dead_letter: PathBuf) -> std::io::Result<Webhooks> {
        let client = reqwest::blocking::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| std::io::Error::other(format!("webhook client: {e}")))?;
        if let Some(dir) = dead_letter.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let dead = Arc::new(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(&dead_letter)?));
        let (tx, rx) = sync_channel::<Job>(config.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(WebhookStats::default());
        let threads = (0..config.concurrency.max(1))
            .map(|i| {
                let (rx, client, dead, stats, config) =
                    (rx.clone(), client.clone(), dead.clone(), stats.clone(), config.clone());
                std::thread::Builder::new()
                    .name(format!("webhook-{i}"))
                    .spawn(move || deliver_all(&rx, &client, &config, &dead, &stats))
            })
            .collect::<std::io::Result<_>>()?;
        let urls = config.urls.into_iter().map(|(c, u)| (c, Arc::from(u))).collect();
        Ok(Webhooks { urls, queue: Mutex::new(Some(tx)), threads: Mutex::new(threads), stats })
    }

    /// Whether actions of `channel` are delivered.
    pub fn wants(&self, channel: &str) -> bool {
        self.urls.contains_key(channel)
    }

    /// Queues an action of `channel` (the JSON `body`) for delivery; waits while the queue is
    /// full. Actions of channels without a URL are ignored.
    pub fn send(&self, channel: &str, action_id: &str, body: Vec<u8>) {
        let Some(url) = self.urls.get(channel) else { return };
        let Some(queue) = self.queue.lock().expect("lock").clone() else {
            tracing::error!(action_id, "webhook: an action came after the sink was closed");
            return;
        };
        let job = Job { url: url.clone(), channel: channel.to_string(), action_id: action_id.to_string(), body };
        // The threads only stop once every sender is gone, after `close`.
        let _ = queue.send(job);
    }

    /// Delivers what is queued (or gives up on it), then stops.
    pub fn close(&self) {
        self.queue.lock().expect("lock").take();
        for t in self.threads.lock().expect("lock").drain(..) {
            let _ = t.join();
        }
    }
}

fn deliver_all(
    rx: &Mutex<Receiver<Job>>,
    client: &reqwest::blocking::Client,
    config: &WebhookConfig,
    dead: &Mutex<std::fs::File>,
    stats: &WebhookStats,
) {
    use std::sync::atomic::Ordering::Relaxed;
    loop {
        let job = match rx.lock().expect("lock").recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let mut backoff = config.initial_backoff;
        let mut attempt = 1;
        let outcome = loop {
            match deliver(client, &job) {
                Ok(()) => break Ok(()),
                Err(Failure::Transient(why)) if attempt < config.max_attempts => {
                    tracing::debug!(action_id = %job.action_id, attempt, "webhook: {why}; retrying");
                    stats.retried.fetch_add(1, Relaxed);
                    metrics::counter!("journeyflow_webhook_retries_total", "channel" => job.channel.clone())
                        .increment(1);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(config.max_backoff);
                    attempt += 1;
                }
                Err(Failure::Transient(why) | Failure::Refused(why)) => break Err(why),
            }
        };
        match outcome {
            Ok(()) => {
                stats.delivered.fetch_add(1, Relaxed);
                metrics::counter!("journeyflow_webhook_delivered_total", "channel" => job.channel.clone()).increment(1);
            }
            Err(why) => {
                stats.failed.fetch_add(1, Relaxed);
                metrics::counter!("journeyflow_webhook_failed_total", "channel" => job.channel.clone()).increment(1);
                tracing::warn!(action_id = %job.action_id, "webhook: giving up after {attempt} attempt(s): {why}");
                let line = serde_json::json!({
                    "action_id": job.action_id, "channel": job.channel, "url": &*job.url, "attempts": attempt,
                    "error": why, "action": serde_json::from_slice::<serde_json::Value>(&job.body).unwrap_or_default(),
                });
                let mut file = dead.lock().expect("lock");
                if let Err(e) = writeln!(file, "{line}") {
                    tracing::error!("webhook dead-letter file: {e}");
                }
            }
        }
    }
}

fn deliver(client: &reqwest::blocking::Client, job: &Job) -> Result<(), Failure> {
    let answer = client
        .post(&*job.url)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpListener;
    use std::sync::atomic::Ordering::Relaxed;

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

    #[test]
    fn actions_are_retried_until_delivered_with_their_id_as_idempotency_key() {
        let (base, seen) = endpoint(2);
        let dir = tempfile::tempdir().unwrap();
        let hooks = Webhooks::start(config(&base), dir.path().join("dead.ndjson")).unwrap();
        assert!(hooks.wants("email") && !hooks.wants("push"));
        for i in 0..5 {
            hooks.send("email", &format!("a{i}"), format!("{{\"n\":{i}}}").into_bytes());
        }
        hooks.send("push", "ignored", b"{}".to_vec());
        let stats = hooks.stats.clone();
        hooks.close();
        assert_eq!(
            (stats.delivered.load(Relaxed), stats.retried.load(Relaxed), stats.failed.load(Relaxed)),
            (5, 10, 0)
        );
        let seen = seen.lock().unwrap();
        for i in 0..5 {
            let tries: Vec<_> = seen.iter().filter(|(_, k, _)| *k == format!("a{i}")).collect();
            assert_eq!(tries.len(), 3, "two 503s, then delivered");
            assert!(tries.iter().all(|(p, _, b)| p == "/email" && *b == format!("{{\"n\":{i}}}")));
        }
        assert!(seen.iter().all(|(_, k, _)| k != "ignored"));
    }

    #[test]
    fn refused_and_exhausted_actions_go_to_the_dead_letter_file_with_the_reason() {
        let (base, seen) = endpoint(100);
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("out/dead.ndjson");
        let hooks = Webhooks::start(config(&base), dead.clone()).unwrap();
        hooks.send("sms", "refused", b"{\"x\":1}".to_vec());
        hooks.send("email", "exhausted", b"{\"x\":2}".to_vec());
        let stats = hooks.stats.clone();
        hooks.close();
        assert_eq!((stats.delivered.load(Relaxed), stats.failed.load(Relaxed)), (0, 2));
        let lines: Vec<serde_json::Value> =
            std::fs::read_to_string(&dead).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let by_id = |id: &str| lines.iter().find(|l| l["action_id"] == id).unwrap().clone();
        let refused = by_id("refused");
        assert_eq!((refused["attempts"].as_u64(), refused["error"].as_str()), (Some(1), Some("HTTP 400 Bad Request")));
        assert_eq!(refused["action"], serde_json::json!({"x": 1}));
        let exhausted = by_id("exhausted");
        assert_eq!(exhausted["attempts"], 4);
        assert_eq!(seen.lock().unwrap().iter().filter(|(_, k, _)| k == "exhausted").count(), 4);
    }
}
