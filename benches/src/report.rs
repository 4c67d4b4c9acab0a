//! The benchmark's result: the JSON document written to `DIR/result.json`, and the human
//! summary (a Markdown table per figure, also written to `DIR/summary.md`).

use crate::cases::Shape;
use crate::machine::Machine;
use crate::workload::{short, Size};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// How the run was set up.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    /// `--quick`.
    pub quick: bool,
    /// Data sets.
    pub sizes: Vec<Size>,
    /// Processes x workers measured.
    pub shapes: Vec<Shape>,
    /// Offered loads for freshness, as fractions of the maximum rate.
    pub loads: Vec<f64>,
    /// Seconds of paced events per load (at most).
    pub paced_seconds: f64,
    /// Events per worker between watermark advances in closed-loop loads.
    pub batch: usize,
    /// Allowed lateness of closed-loop loads, milliseconds.
    pub lateness_ms: u64,
}

/// One closed-loop load.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ThroughputRow {
    /// Data set.
    pub size: Size,
    /// Processes and workers.
    pub shape: Shape,
    /// What was installed.
    pub definitions: String,
    /// Events per second, first line read to every output through the end.
    pub events_per_s: f64,
    /// Seconds.
    pub wall_s: f64,
    /// Peak resident set of the process.
    pub peak_rss_bytes: u64,
    /// Live heap after the load.
    pub heap_bytes: u64,
    /// Live heap per user with an event.
    pub heap_bytes_per_user: f64,
}

/// One paced run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LatencyRow {
    /// Data set.
    pub size: Size,
    /// Processes and workers.
    pub shape: Shape,
    /// Offered load as a fraction of the maximum rate (S1-S6 + J1-J2, same shape).
    pub load: f64,
    /// Offered events per second.
    pub offered_events_per_s: f64,
    /// Events paced.
    pub events: u64,
    /// Events that caused an output (the samples).
    pub measured: u64,
    /// Milliseconds.
    pub p50: f64,
    /// Milliseconds.
    pub p99: f64,
    /// Milliseconds.
    pub p999: f64,
    /// Milliseconds.
    pub max: f64,
    /// How late the pacer offered its last event, milliseconds.
    pub pacer_lag_ms: f64,
}

/// One install.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstallRow {
    /// Data set (the retained events).
    pub size: Size,
    /// Processes and workers.
    pub shape: Shape,
    /// Milliseconds from the install to the complete membership.
    pub install_ms: f64,
    /// Its members.
    pub members: u64,
}

/// The funnel installed over the retained events, and DuckDB's from-scratch time beside it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FunnelRow {
    /// Data set (the retained events).
    pub size: Size,
    /// Processes and workers.
    pub shape: Shape,
    /// Milliseconds from the install to the report over every entry time.
    pub install_ms: f64,
    /// Users at each step.
    pub users: Vec<u64>,
    /// DuckDB's seconds to load the file into a table (none without a Python with duckdb).
    pub duckdb_load_s: Option<f64>,
    /// DuckDB's seconds to compute the same report over the loaded table.
    pub duckdb_query_s: Option<f64>,
}

/// The from-scratch baseline over one data set.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecomputeRow {
    /// Data set.
    pub size: Size,
    /// Users with an event.
    pub users: u64,
    /// Seconds to compute S1-S6 at the end over decoded, grouped events.
    pub recompute_s: f64,
    /// Seconds to read, decode and group them first.
    pub load_s: f64,
    /// Members per segment, which every load's sizes were checked against.
    pub sizes: std::collections::BTreeMap<String, u64>,
}

/// State per user attributable to S1-S6: live heap with them minus without, per user.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemoryRow {
    /// Data set.
    pub size: Size,
    /// Processes and workers.
    pub shape: Shape,
    /// All live heap per user, S1-S6 installed.
    pub bytes_per_user: f64,
    /// The part S1-S6 add per user (over the base: events, universe, traits).
    pub s1_s6_bytes_per_user: f64,
}

/// The whole result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// How.
    pub config: Config,
    /// Closed-loop loads.
    pub throughput_events_per_s: Vec<ThroughputRow>,
    /// Freshness per offered load.
    pub latency_ms: Vec<LatencyRow>,
    /// Installs over the retained events.
    pub install_ms: Vec<InstallRow>,
    /// Funnels installed over the retained events.
    #[serde(default)]
    pub funnel: Vec<FunnelRow>,
    /// The largest peak resident set of any measurement.
    pub peak_rss_bytes: u64,
    /// Memory per user.
    pub memory: Vec<MemoryRow>,
    /// The from-scratch baseline.
    pub recompute_s: Vec<RecomputeRow>,
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

impl Report {
    /// The human summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# journeyflow bench{}\n", if self.config.quick { " (quick)" } else { "" });
        let _ = writeln!(s, "{}\n", self.machine.line());
        let _ = writeln!(s, "## Throughput (closed loop, NDJSON file to complete outputs)\n");
        let _ = writeln!(s, "| data | processes x workers | definitions | events/s | wall | peak RSS | heap/user |");
        let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | --- |");
        for r in &self.throughput_events_per_s {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} | {:.2} s | {} | {:.0} B |",
                r.size.label(),
                r.shape.label(),
                r.definitions,
                r.events_per_s,
                r.wall_s,
                mb(r.peak_rss_bytes),
                r.heap_bytes_per_user
            );
        }
        let _ = writeln!(s, "\n## Scaling (throughput of each shape over 1x1's, same data and definitions)\n");
        let _ = writeln!(s, "| data | definitions | shape | speed-up over 1x1 | efficiency (speed-up / workers) |");
        let _ = writeln!(s, "| --- | --- | --- | --- | --- |");
        for r in &self.throughput_events_per_s {
            let single = self.throughput_events_per_s.iter().find(|b| {
                b.size == r.size && b.definitions == r.definitions && b.shape == Shape { processes: 1, workers: 1 }
            });
            if let Some(b) = single.filter(|_| r.shape.peers() > 1) {
                let speedup = r.events_per_s / b.events_per_s;
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.2}x | {:.0}% |",
                    r.size.label(),
                    r.definitions,
                    r.shape.label(),
                    speedup,
                    speedup / r.shape.peers() as f64 * 100.0
                );
            }
        }
        let _ = writeln!(
            s,
            "\n## Freshness (open loop, S1-S6 + J1-J2 + the funnel; due time to complete output and funnel)\n"
        );
        let _ =
            writeln!(s, "| data | processes x workers | load | offered events/s | p50 | p99 | p99.9 | max | samples |");
        let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        for r in &self.latency_ms {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0}% | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
                r.size.label(),
                r.shape.label(),
                r.load * 100.0,
                r.offered_events_per_s,
                r.p50,
                r.p99,
                r.p999,
                r.max,
                r.measured
            );
        }
        let _ = writeln!(s, "\n## Install (one more segment over the retained events)\n");
        let _ = writeln!(s, "| retained events | processes x workers | install to complete membership | members |");
        let _ = writeln!(s, "| --- | --- | --- | --- |");
        for r in &self.install_ms {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} ms | {} |",
                short(r.size.events),
                r.shape.label(),
                r.install_ms,
                r.members
            );
        }
        let _ = writeln!(s, "\n## Funnel (a 4-step funnel over the retained events, and DuckDB from scratch)\n");
        let _ = writeln!(
            s,
            "| retained events | processes x workers | install to report | users at each step | DuckDB load | DuckDB query | install / query |"
        );
        let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | --- |");
        for r in &self.funnel {
            let secs = |x: Option<f64>| x.map_or("–".to_string(), |x| format!("{:.2} s", x));
            let ratio = r.duckdb_query_s.map_or("–".to_string(), |q| format!("{:.2}", r.install_ms / 1e3 / q));
            let users: Vec<String> = r.users.iter().map(|u| u.to_string()).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} ms | {} | {} | {} | {} |",
                short(r.size.events),
                r.shape.label(),
                r.install_ms,
                users.join(" → "),
                secs(r.duckdb_load_s),
                secs(r.duckdb_query_s),
                ratio
            );
        }
        let _ = writeln!(s, "\n## Memory (live heap per user with an event, after the load)\n");
        let _ = writeln!(s, "| data | processes x workers | all state | S1-S6's part |");
        let _ = writeln!(s, "| --- | --- | --- | --- |");
        for r in &self.memory {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} B | {:.0} B |",
                r.size.label(),
                r.shape.label(),
                r.bytes_per_user,
                r.s1_s6_bytes_per_user
            );
        }
        let _ = writeln!(s, "\nPeak resident set of any measurement: {}\n", mb(self.peak_rss_bytes));
        let _ = writeln!(s, "## From-scratch recomputation of S1-S6 at the end (the baseline)\n");
        let _ = writeln!(s, "| data | users | recompute | (read and decode first) | recompute / p50 freshness |");
        let _ = writeln!(s, "| --- | --- | --- | --- | --- |");
        for r in &self.recompute_s {
            let p50 = self.latency_ms.iter().filter(|l| l.size == r.size).map(|l| l.p50).reduce(f64::min);
            let ratio = p50.map_or("-".to_string(), |p| format!("{:.0}x", r.recompute_s * 1e3 / p.max(1e-3)));
            let _ = writeln!(
                s,
                "| {} | {} | {:.2} s | {:.2} s | {} |",
                r.size.label(),
                r.users,
                r.recompute_s,
                r.load_s,
                ratio
            );
        }
        s
    }
}
