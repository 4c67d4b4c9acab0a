//! The soak benchmark: the standard workload (S1-S6, J1-J2) streamed at a constant rate
//! through `journeyflow run` over HTTP for three times the event retention in event time,
//! compressed (event time advances much faster than the wall clock), while the server's
//! resident memory and the size of its data directory are sampled all along; then the
//! outputs it wrote (read as the logs grow: their old segments go with the output retention)
//! are compared with `journeyflow replay` over the same events. Figures: each
//! at one, two and three retentions' worth of events, and the curves (`soak.csv`, `soak.svg`).

use crate::workload::{JOURNEYS, SEGMENTS};
use anyhow::Context;
use journeyflow_connectors::wal::Tail;
use journeyflow_datasets::generator::{generate_parallel, GeneratorConfig};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DAY: u64 = 86_400_000;

/// How to soak.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// Events streamed in all.
    pub events: u64,
    /// Distinct users.
    pub users: u64,
    /// The event retention, ms (at least the definitions' longest window, 30 days).
    pub retention: u64,
    /// Wall-clock seconds the stream lasts.
    pub seconds: f64,
    /// How often the server checkpoints (each checkpoint may drop what expired before the
    /// journey snapshot of the one before: short against a retention's wall-clock time).
    pub checkpoint_interval: Duration,
    /// The server's idle timeout: the first batch must come sooner, and event time follows the
    /// wall clock this long after the stream ends.
    pub idle: Duration,
    /// How often the server is sampled.
    pub sample_every: Duration,
    /// The figures at each retention are taken over the samples of its last `window` (a
    /// fraction of a retention).
    pub window: f64,
    /// Where the `journeyflow` binary is.
    pub binary: PathBuf,
    /// Scratch space: events, the data directory, replay's outputs.
    pub scratch: PathBuf,
}

/// One sample.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the stream started.
    pub wall_s: f64,
    /// Events sent so far.
    pub events: u64,
    /// Event time reached, in retentions since the first event.
    pub retentions: f64,
    /// The server's resident set, bytes.
    pub rss_bytes: u64,
    /// The data directory's size, bytes.
    pub data_bytes: u64,
    /// Of which checkpoints (event files and journey snapshots), bytes.
    pub checkpoint_bytes: u64,
    /// Of which journey snapshots (what the journeys remember of their users), bytes.
    pub snapshot_bytes: u64,
    /// Of which the chain of event files (and manifests): the rest, bytes.
    pub chain_bytes: u64,
    /// Records the server's arrangements hold (its `journeyflow_arranged_records`).
    pub arranged_records: u64,
}

/// The figures of one retention: over the samples of its last `window` (a fraction of a
/// retention), timed as the last of them.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Figures {
    /// The median of each figure.
    pub median: Sample,
    /// The largest of each.
    pub peak: Sample,
    /// The least of each: what is held when nothing lags (a checkpoint or a durable output
    /// that comes late on a loaded machine holds event files longer, and event time, compressed,
    /// moves days a second), which a leak raises too.
    pub floor: Sample,
    /// How many samples the figures are taken over.
    pub samples: usize,
}

fn figures(samples: &[Sample], k: f64, window: f64) -> Option<Figures> {
    let within: Vec<&Sample> =
        samples.iter().filter(|s| s.retentions > k - window + 1e-9 && s.retentions <= k + 1e-9).collect();
    let last = **within.last()?;
    let at = |rank: fn(usize) -> usize| {
        let figure = |f: fn(&Sample) -> u64| {
            let mut values: Vec<u64> = within.iter().map(|s| f(s)).collect();
            values.sort_unstable();
            values[rank(values.len())]
        };
        Sample {
            rss_bytes: figure(|s| s.rss_bytes),
            data_bytes: figure(|s| s.data_bytes),
            checkpoint_bytes: figure(|s| s.checkpoint_bytes),
            snapshot_bytes: figure(|s| s.snapshot_bytes),
            chain_bytes: figure(|s| s.chain_bytes),
            arranged_records: figure(|s| s.arranged_records),
            ..last
        }
    };
    Some(Figures { median: at(|n| n / 2), peak: at(|n| n - 1), floor: at(|_| 0), samples: within.len() })
}

/// What the soak found.
#[derive(Debug, Serialize)]
pub struct SoakReport {
    /// Events and users.
    pub events: u64,
    /// Distinct users.
    pub users: u64,
    /// The retention, days.
    pub retention_days: f64,
    /// Events per second offered.
    pub rate: f64,
    /// Every sample.
    pub samples: Vec<Sample>,
    /// The fraction of a retention each retention's figures are taken over (its end).
    pub window: f64,
    /// At one, two and three retentions of event time: the figures over the samples of the
    /// window that ends there (one sample swings with each checkpoint, snapshot and merge).
    pub at_retentions: Vec<Figures>,
    /// Records through the last event that the run and replay both wrote, and those only one
    /// of them wrote, per kind: `(kind, both, run only, replay only)`.
    pub compared: Vec<(String, usize, usize, usize)>,
    /// At the end, bytes of each entry of the data directory (`checkpoints`, `out`, ...).
    pub data_parts: BTreeMap<String, u64>,
}

impl SoakReport {
    /// The figures as Markdown.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "Soak: {} events of {} users over {} retentions of {:.0} days, at {:.0} events/s\n\n\
             Each figure is the median (and the least and the largest) of the samples over the \
             last {:.0}% of each retention.\n\n\
             | event time | samples | resident set | (least, largest) | data directory | (least, largest) | \
             of which checkpoints | (least, largest) | arranged records |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
            self.events,
            self.users,
            3,
            self.retention_days,
            self.rate,
            self.window * 100.0
        );
        for f in &self.at_retentions {
            let mb = |bytes: u64| bytes as f64 / 1e6;
            let (m, lo, hi) = (&f.median, &f.floor, &f.peak);
            out.push_str(&format!(
                "| {:.2} retentions | {} | {:.0} MB | {:.0}, {:.0} MB | {:.1} MB | {:.1}, {:.1} MB | {:.1} MB | {:.1}, {:.1} MB | {} |\n",
                m.retentions,
                f.samples,
                mb(m.rss_bytes),
                mb(lo.rss_bytes),
                mb(hi.rss_bytes),
                mb(m.data_bytes),
                mb(lo.data_bytes),
                mb(hi.data_bytes),
                mb(m.checkpoint_bytes),
                mb(lo.checkpoint_bytes),
                mb(hi.checkpoint_bytes),
                m.arranged_records
            ));
        }
        let parts: Vec<String> =
            self.data_parts.iter().map(|(n, b)| format!("{n} {:.1} MB", *b as f64 / 1e6)).collect();
        out.push_str(&format!("\nThe data directory at the end: {}.\n", parts.join(", ")));
        out.push_str("\n| output | in both | run only | replay only |\n| --- | --- | --- | --- |\n");
        for (kind, both, run, replay) in &self.compared {
            out.push_str(&format!("| {kind} | {both} | {run} | {replay} |\n"));
        }
        out
    }
}

/// Generates the events: `events` over three retentions, ending two hours before now (so
/// that the server's event time, once the stream is idle, passes them all).
fn generate(config: &SoakConfig) -> anyhow::Result<(PathBuf, u64)> {
    let span = 3 * config.retention;
    let now = chrono::Utc::now().timestamp_millis() as u64;
    let start = now - 2 * 3_600_000 - span;
    let generator = GeneratorConfig {
        users: config.users,
        events: config.events,
        seed: 7,
        start_ms: start,
        span_ms: span,
        ..GeneratorConfig::default()
    };
    let path = config.scratch.join("soak-events.ndjson");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    generate_parallel(&generator, 2, 200_000, |part| out.write_all(part))?;
    out.flush()?;
    Ok((path, start))
}

fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The server's `journeyflow_arranged_records` (0 if it cannot be read).
fn arranged(client: &reqwest::blocking::Client, metrics: &str) -> u64 {
    let Ok(text) = client.get(metrics).send().and_then(|r| r.text()) else { return 0 };
    text.lines()
        .find_map(|l| l.strip_prefix("journeyflow_arranged_records ")?.trim().parse::<f64>().ok())
        .map_or(0, |n| n.max(0.0) as u64)
}

/// Bytes of a file, or of the files under a directory.
fn size_of(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => size(path),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

fn size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => size(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// Bytes of the files under `dir`, and of those under its subdirectory `part`, in one walk.
fn size_split(dir: &Path, part: &str) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return (0, 0) };
    entries.filter_map(Result::ok).fold((0, 0), |(all, within), e| {
        let bytes = match e.file_type() {
            Ok(t) if t.is_dir() => size(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        };
        (all + bytes, within + if e.file_name() == part { bytes } else { 0 })
    })
}

/// The server, and where it listens.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(config: &SoakConfig, data: &Path, definitions: &Path) -> anyhow::Result<Server> {
        let retention = format!("{}ms", config.retention);
        let mut child = Command::new(&config.binary)
            .args(["run", "--listen", "127.0.0.1:0", "--workers", "2", "--max-body-bytes", "10000000"])
            .args(["--segments", &definitions.join("segments.json").to_string_lossy()])
            .args(["--journeys", &definitions.join("journeys.json").to_string_lossy()])
            .args(["--retention-events", &retention, "--max-batch-events", "5000"])
            .args(["--checkpoint-interval", &format!("{}ms", config.checkpoint_interval.as_millis())])
            // The events are weeks old: event time follows them (less the allowed lateness, an
            // hour) while they stream, the first batch coming before the idle timeout; once the
            // stream ends, it follows the wall clock, past every event.
            .args(["--idle-timeout", &format!("{}ms", config.idle.as_millis())])
            // The generator's events are out of order by up to a minute: replay's default
            // lateness (an hour) admits them all at their own times, and so does this.
            .args(["--allowed-lateness", "1h"])
            // Segments small against the stream, so that the ingest log's deletion behind
            // checkpoints shows as it would over months.
            .args(["--log-segment-bytes", "1048576"])
            // Output logs kept for one retention, in segments small enough to go as it passes.
            .args(["--retention-outputs", &retention, "--output-segment-bytes", "262144"])
            .arg("--data-dir")
            .arg(data)
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", config.binary.display()))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let mut lines = std::io::BufReader::new(stderr).lines();
        let base = loop {
            let line = lines.next().context("the server stopped before listening")??;
            if let Some(addr) = line.strip_prefix("journeyflow listening on ") {
                break addr.trim().to_string();
            }
        };
        // Keep reading stderr so the server never blocks on it.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Server { child, base })
    }

    fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "the server exited with {status}");
        Ok(())
    }
}

/// A reader of the server's output logs as they grow, as a consumer of the files would be:
/// the logs' old segments go (output retention) while the soak runs.
#[derive(Default)]
struct Follower {
    /// A tail per log (`out/<kind>-<worker>/`), opened once the log exists.
    tails: BTreeMap<PathBuf, Tail>,
    /// The records read, per kind: `(time, id)`.
    read: BTreeMap<&'static str, Vec<(u64, String)>>,
}

impl Follower {
    /// Reads what the logs under `out` hold past what was read.
    fn follow(&mut self, out: &Path) -> anyhow::Result<()> {
        for kind in KINDS {
            for worker in 0.. {
                let log = journeyflow::sinks::output_log(out, kind, worker);
                if !log.is_dir() {
                    break;
                }
                if !self.tails.contains_key(&log) {
                    let first = journeyflow_connectors::wal::segments::bases(&log)?.first().copied().unwrap_or(0);
                    self.tails.insert(log.clone(), Tail::open_partition(&log, first)?);
                }
                let tail = self.tails.get_mut(&log).context("opened above")?;
                loop {
                    let lines = tail.read(10_000)?;
                    if lines.is_empty() {
                        break;
                    }
                    for line in lines.iter().filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
                        let v: serde_json::Value = serde_json::from_slice(line)?;
                        let (time, id) = (v["time"].as_u64().unwrap_or(0), v["id"].as_str().unwrap_or_default());
                        self.read.entry(kind).or_default().push((time, id.to_string()));
                    }
                }
            }
        }
        Ok(())
    }

    /// The ids of the records of `kind` read, timed through `until`.
    fn ids(&self, kind: &str, until: u64) -> BTreeSet<String> {
        let read = self.read.get(kind).map(Vec::as_slice).unwrap_or_default();
        read.iter().filter(|(t, _)| *t <= until).map(|(_, id)| id.clone()).collect()
    }
}

/// The output kinds compared.
const KINDS: [&str; 3] = ["segment_changes", "journey_transitions", "journey_actions"];

/// Every record's id a set of NDJSON files holds, with its time.
fn ids(files: &[PathBuf], until: u64) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for file in files {
        for line in std::fs::read_to_string(file)?.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)?;
            if v["time"].as_u64().is_some_and(|t| t <= until) {
                out.insert(v["id"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    Ok(out)
}

/// Runs the soak.
pub fn run(config: &SoakConfig) -> anyhow::Result<SoakReport> {
    std::fs::create_dir_all(&config.scratch)?;
    let (events, start) = generate(config)?;
    let definitions = config.scratch.join("definitions");
    std::fs::create_dir_all(&definitions)?;
    std::fs::write(definitions.join("segments.json"), SEGMENTS)?;
    std::fs::write(definitions.join("journeys.json"), JOURNEYS)?;
    let data = config.scratch.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let server = Server::start(config, &data, &definitions)?;
    let pid = server.child.id();
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let rate = config.events as f64 / config.seconds;
    let lines: Vec<String> = std::fs::read_to_string(&events)?.lines().map(str::to_string).collect();
    let began = Instant::now();
    // Sampled on a thread of its own, so that a slow batch delays no sample.
    let progress = Arc::new((AtomicU64::new(0), AtomicU64::new(start)));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (progress, stop, data, every) = (progress.clone(), stop.clone(), data.clone(), config.sample_every);
        // A sample waits for /metrics a second at most (an answer later is worth no sample).
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(1)).build()?;
        let metrics = format!("{}/metrics", server.base);
        let retention = config.retention as f64;
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            loop {
                // Read before the figures: a last sample once the stream has ended.
                let stopped = stop.load(Ordering::SeqCst);
                // One walk: the snapshots are a part of the same listing as the rest.
                let (all, snapshots) = size_split(&data.join("checkpoints"), "journeys");
                let (sent, last_ts) = (progress.0.load(Ordering::SeqCst), progress.1.load(Ordering::SeqCst));
                samples.push(Sample {
                    wall_s: began.elapsed().as_secs_f64(),
                    events: sent,
                    retentions: (last_ts - start) as f64 / retention,
                    rss_bytes: rss(pid),
                    data_bytes: size(&data),
                    checkpoint_bytes: all,
                    snapshot_bytes: snapshots,
                    chain_bytes: all.saturating_sub(snapshots),
                    arranged_records: arranged(&client, &metrics),
                });
                if stopped {
                    break samples;
                }
                std::thread::sleep(every);
            }
        })
    };
    let mut followed = Instant::now();
    let mut sent = 0usize;
    let mut last_ts = start;
    let mut follower = Follower::default();
    const BATCH: usize = 500;
    let streamed = (|| -> anyhow::Result<()> {
        while sent < lines.len() {
            // Paced: the batch goes when its last event is due.
            let due = Duration::from_secs_f64((sent + BATCH).min(lines.len()) as f64 / rate);
            if let Some(wait) = due.checked_sub(began.elapsed()) {
                std::thread::sleep(wait);
            }
            let batch = &lines[sent..(sent + BATCH).min(lines.len())];
            let body = format!("{{\"batch\":[{}]}}", batch.join(","));
            let answer = client
                .post(format!("{}/v1/batch", server.base))
                .header("content-type", "application/json")
                .body(body)
                .send()?;
            if answer.status().as_u16() == 429 || answer.status().as_u16() == 503 {
                // Back-pressure: the same batch again shortly.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            anyhow::ensure!(answer.status().is_success(), "a batch was refused: {}", answer.status());
            if let Some(ts) =
                batch.last().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["timestamp"].as_u64())
            {
                last_ts = last_ts.max(ts);
            }
            sent += batch.len();
            progress.0.store(sent as u64, Ordering::SeqCst);
            progress.1.store(last_ts, Ordering::SeqCst);
            if followed.elapsed() >= Duration::from_secs(1) {
                followed = Instant::now();
                follower.follow(&data.join("out"))?;
            }
        }
        Ok(())
    })();
    stop.store(true, Ordering::SeqCst);
    let samples = sampler.join().map_err(|_| anyhow::anyhow!("the sampler panicked"))?;
    streamed?;
    // Every output through the last event durable (event time follows the wall clock once
    // the stream has been quiet for the idle timeout), then stop.
    let deadline = Instant::now() + Duration::from_secs(600);
    while !journeyflow::durable::load(&data.join("out")).is_ok_and(|d| d > last_ts) {
        anyhow::ensure!(Instant::now() < deadline, "the outputs were not durable past the last event in 10 minutes");
        std::thread::sleep(Duration::from_millis(200));
    }
    let until = last_ts;
    follower.follow(&data.join("out"))?;
    server.stop()?;
    let data_parts = std::fs::read_dir(&data)?
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), size_of(&e.path())))
        .collect();
    // The same events through replay.
    let replayed = config.scratch.join("replay");
    let status = Command::new(&config.binary)
        .args(["replay", "--events"])
        .arg(&events)
        .args(["--segments"])
        .arg(definitions.join("segments.json"))
        .args(["--journeys"])
        .arg(definitions.join("journeys.json"))
        .args(["--retention-events", &format!("{}ms", config.retention), "--out"])
        .arg(&replayed)
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "replay failed: {status}");
    let mut compared = Vec::new();
    for kind in KINDS {
        let run = follower.ids(kind, until);
        let replay = ids(&[replayed.join(format!("{kind}.ndjson"))], until)?;
        let both = run.intersection(&replay).count();
        compared.push((kind.to_string(), both, run.len() - both, replay.len() - both));
    }
    let at_retentions = (1..=3).filter_map(|k| figures(&samples, k as f64, config.window)).collect();
    Ok(SoakReport {
        events: config.events,
        users: config.users,
        retention_days: config.retention as f64 / DAY as f64,
        rate,
        samples,
        window: config.window,
        at_retentions,
        compared,
        data_parts,
    })
}
