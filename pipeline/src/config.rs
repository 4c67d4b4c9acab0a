//! Settings of `journeyflow run`: defaults for everything, overridden by a TOML file
//! (`--config`), then by `JOURNEYFLOW_*` environment variables and flags (clap reads both).
//! Unknown keys in the file are errors that name the key.

use journeyflow_connectors::webhook::WebhookConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The settings `journeyflow run` runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveConfig {
    /// HTTP address.
    pub listen: SocketAddr,
    /// Ingest log, definitions and outputs.
    pub data_dir: PathBuf,
    /// Segments to install at start.
    pub segments: Option<PathBuf>,
    /// Journeys to publish at start.
    pub journeys: Option<PathBuf>,
    /// Timely worker threads.
    pub workers: usize,
    /// Watermark lag behind the largest event time, ms.
    pub allowed_lateness: u64,
    /// Quiet time after which event time follows the wall clock, ms.
    pub idle_timeout: u64,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Bearer token for control calls.
    pub api_token: Option<String>,
    /// Segment write keys for ingest.
    pub write_keys: Vec<String>,
    /// Allow an open non-loopback listener.
    pub insecure: bool,
    /// Where sent actions are POSTed, per channel, and how.
    pub webhooks: WebhookConfig,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("journeyflow-data"),
            segments: None,
            journeys: None,
            workers: 1,
            allowed_lateness: 1_000,
            idle_timeout: 200,
            max_body_bytes: 4 << 20,
            api_token: None,
            write_keys: Vec::new(),
            insecure: false,
            webhooks: WebhookConfig::default(),
        }
    }
}

/// The TOML file: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `listen = "127.0.0.1:8080"`.
    pub listen: Option<SocketAddr>,
    /// `data_dir = "journeyflow-data"`.
    pub data_dir: Option<PathBuf>,
    /// `segments = "segments.json"`.
    pub segments: Option<PathBuf>,
    /// `journeys = "journeys.json"`.
    pub journeys: Option<PathBuf>,
    /// `workers = 2`.
    pub workers: Option<usize>,
    /// `[ingest]`.
    #[serde(default)]
    pub ingest: IngestSection,
    /// `[api]`.
    #[serde(default)]
    pub api: ApiSection,
    /// `[webhooks]`.
    #[serde(default)]
    pub webhooks: WebhooksSection,
}

/// `[webhooks]`: `urls = { email = "https://..." }` and how deliveries are retried.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksSection {
    /// URL per action channel.
    pub urls: Option<BTreeMap<String, String>>,
    /// `max_attempts = 8`.
    pub max_attempts: Option<u32>,
    /// `initial_backoff = "200ms"`, doubled per attempt.
    pub initial_backoff: Option<String>,
    /// `max_backoff = "30s"`.
    pub max_backoff: Option<String>,
    /// `queue = 10000` actions waiting at most.
    pub queue: Option<usize>,
    /// `concurrency = 4` deliveries in flight.
    pub concurrency: Option<usize>,
    /// `timeout = "10s"` per request.
    pub timeout: Option<String>,
}

/// `[ingest]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    /// `allowed_lateness = "1s"`.
    pub allowed_lateness: Option<String>,
    /// `idle_timeout = "200ms"`.
    pub idle_timeout: Option<String>,
    /// `max_body_bytes = 4194304`.
    pub max_body_bytes: Option<usize>,
    /// `write_keys = ["..."]`.
    pub write_keys: Option<Vec<String>>,
}

/// `[api]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// `token = "..."`.
    pub token: Option<String>,
    /// `insecure = false`.
    pub insecure: Option<bool>,
}

impl FileConfig {
    /// Reads a file; errors name the file, the key and the position.
    pub fn read(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// The defaults overridden by this file.
    pub fn over_defaults(self) -> anyhow::Result<LiveConfig> {
        let d = LiveConfig::default();
        let duration = |key: &str, v: Option<String>, default: u64| -> anyhow::Result<u64> {
            v.map_or(Ok(default), |s| crate::cli::parse_duration(&s).map_err(|e| anyhow::anyhow!("{key}: {e}")))
        };
        let span = |key: &str, v: Option<String>, default: std::time::Duration| {
            duration(key, v, default.as_millis() as u64).map(std::time::Duration::from_millis)
        };
        let (w, dw) = (self.webhooks, d.webhooks);
        let webhooks = WebhookConfig {
            urls: w.urls.unwrap_or(dw.urls),
            max_attempts: w.max_attempts.unwrap_or(dw.max_attempts).max(1),
            initial_backoff: span("webhooks.initial_backoff", w.initial_backoff, dw.initial_backoff)?,
            max_backoff: span("webhooks.max_backoff", w.max_backoff, dw.max_backoff)?,
            queue: w.queue.unwrap_or(dw.queue),
            concurrency: w.concurrency.unwrap_or(dw.concurrency),
            timeout: span("webhooks.timeout", w.timeout, dw.timeout)?,
        };
        Ok(LiveConfig {
            listen: self.listen.unwrap_or(d.listen),
            data_dir: self.data_dir.unwrap_or(d.data_dir),
            segments: self.segments.or(d.segments),
            journeys: self.journeys.or(d.journeys),
            workers: self.workers.unwrap_or(d.workers).max(1),
            allowed_lateness: duration("ingest.allowed_lateness", self.ingest.allowed_lateness, d.allowed_lateness)?,
            idle_timeout: duration("ingest.idle_timeout", self.ingest.idle_timeout, d.idle_timeout)?,
            max_body_bytes: self.ingest.max_body_bytes.unwrap_or(d.max_body_bytes),
            api_token: self.api.token.or(d.api_token),
            write_keys: self.ingest.write_keys.unwrap_or(d.write_keys),
            insecure: self.api.insecure.unwrap_or(d.insecure),
            webhooks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_defaults_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journeyflow.toml");
        std::fs::write(&path, "workers = 2\n[ingest]\nallowed_lateness = \"5s\"\n[api]\ntoken = \"t\"\n").unwrap();
        let c = FileConfig::read(&path).unwrap().over_defaults().unwrap();
        assert_eq!((c.workers, c.allowed_lateness, c.api_token.as_deref()), (2, 5_000, Some("t")));
        assert_eq!(c.listen, LiveConfig::default().listen);
        std::fs::write(&path, "[ingest]\nalowed_lateness = \"5s\"\n").unwrap();
        let err = FileConfig::read(&path).unwrap_err().to_string();
        assert!(err.contains("alowed_lateness") && err.contains("journeyflow.toml"), "{err}");
        std::fs::write(&path, "[webhooks]\nurls = { email = \"http://127.0.0.1:9/e\" }\nmax_backoff = \"5s\"\n")
            .unwrap();
        let c = FileConfig::read(&path).unwrap().over_defaults().unwrap();
        assert_eq!(c.webhooks.urls["email"], "http://127.0.0.1:9/e");
        assert_eq!(c.webhooks.max_backoff, std::time::Duration::from_secs(5));
        std::fs::write(&path, "[ingest]\nidle_timeout = \"soon\"\n").unwrap();
        let err = FileConfig::read(&path).unwrap().over_defaults().unwrap_err().to_string();
        assert!(err.contains("ingest.idle_timeout"), "{err}");
    }
}
