//! The standard workload of `shared/BENCHMARK.md`: segments S1-S6 and journeys J1-J2 (the
//! bundled sample's definitions), the segment installed at runtime for the install figure,
//! and the generated event files, made once per size and seed and kept in the data directory.

use anyhow::Context;
use journeyflow_datasets::generator::{self, generate_parallel, GeneratorConfig};
use journeyflow_operators::journey::plan::JourneyPlan;
use journeyflow_types::funnel::{validate_funnel, FunnelDefinition};
use journeyflow_types::{parse_journeys, parse_segments, Limits, SegmentDefinition};
use std::io::Write;
use std::path::{Path, PathBuf};

/// S1-S6.
pub const SEGMENTS: &str = include_str!("../../datasets/sample/segments.json");
/// J1-J2.
pub const JOURNEYS: &str = include_str!("../../datasets/sample/journeys.json");
/// The segment installed over the retained history for the install figure: users on a paid
/// plan who viewed at least three products in 30 days.
pub const INSTALLED: &str = r#"[{"id": "s7_engaged_paid", "condition": {"all": [
  {"trait": {"name": "plan", "op": "in", "value": ["pro", "enterprise"]}},
  {"performed": {"event": "Product Viewed", "within": "30d", "at_least": 3}}]}}]"#;

/// The funnel installed over the retained history for the analytics figure: the shopping
/// funnel of the generated sessions, within a week.
pub const FUNNEL: &str = r#"{"id": "shopping", "steps": [{"event": "Product Viewed"}, {"event": "Product Added"},
  {"event": "Cart Viewed"}, {"event": "Order Completed"}], "within": "7d"}"#;

/// Which definitions a run installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Definitions {
    /// None: reading, decoding, deduplicating and keeping the events (the baseline).
    None,
    /// S1-S6.
    Segments,
    /// S1-S6 and J1-J2.
    Journeys,
}

impl Definitions {
    /// The name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Definitions::None => "no definitions",
            Definitions::Segments => "S1-S6",
            Definitions::Journeys => "S1-S6 + J1-J2",
        }
    }
}

/// S1-S6, parsed.
pub fn segments() -> Vec<SegmentDefinition> {
    parse_segments(SEGMENTS).expect("the standard segments are valid")
}

/// The install figure's segment, parsed.
pub fn installed() -> SegmentDefinition {
    parse_segments(INSTALLED).expect("the installed segment is valid").remove(0)
}

/// The analytics figure's funnel, parsed.
pub fn funnel() -> FunnelDefinition {
    let json: serde_json::Value = serde_json::from_str(FUNNEL).expect("the funnel is JSON");
    validate_funnel(&json, &Limits::default()).expect("the funnel is valid")
}

/// J1-J2 as version 1.
pub fn journeys() -> Vec<JourneyPlan> {
    let known = segments().iter().map(|d| d.id.clone()).collect();
    let defs = parse_journeys(JOURNEYS, &known).expect("the standard journeys are valid");
    defs.into_iter().map(|j| JourneyPlan::new(j, 1)).collect()
}

/// A generated data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Size {
    /// Events.
    pub events: u64,
    /// Users.
    pub users: u64,
}

impl Size {
    /// `1M events / 100k users`.
    pub fn label(self) -> String {
        format!("{} events / {} users", short(self.events), short(self.users))
    }
}

/// `1000000` as `1M`.
pub fn short(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// The events file of `size` (seed 1) in `dir`, generated unless already there.
pub fn events_file(dir: &Path, size: Size) -> anyhow::Result<PathBuf> {
    let name = format!("events-{}-{}-seed1-v{}.ndjson", size.events, size.users, generator::VERSION);
    let path = dir.join(name);
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = GeneratorConfig { users: size.users, events: size.events, seed: 1, ..GeneratorConfig::default() };
    let tmp = path.with_extension("tmp");
    let mut out = std::io::BufWriter::with_capacity(1 << 22, std::fs::File::create(&tmp)?);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    generate_parallel(&config, threads, 500_000, |part| out.write_all(part))?;
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}
