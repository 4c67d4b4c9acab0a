//! `journeyflow replay`: an NDJSON or Parquet event file through the same dataflow as the live
//! pipeline, up to an as-of time, into `segment_changes.ndjson`, `members.ndjson`,
//! `dead_letter.ndjson` and `summary.json` (with `--journeys`, also
//! `journey_transitions.ndjson`, `journey_actions.ndjson`, `journey_members.ndjson` and
//! `journey_stats.json`), with a summary on stderr.

use crate::admission::{IngestConfig, LatePolicy};
use crate::analysis::Analysis;
use crate::cluster::{Cluster, ClusterArgs, ClusterSection};
use crate::record_id::Ids;
use crate::replay::{run, JourneyEntries, Progress, RunConfig, RunOutput, SourceItem};
use crate::segment_output::ChangeLine;
use anyhow::Context;
use journeyflow_connectors::event_parquet::PartRows;
use journeyflow_connectors::ndjson::{line_numbers, NdjsonWriter, PartReader, RawRecord};
use journeyflow_control_api::buckets::Buckets;
use journeyflow_operators::journey::plan::JourneyPlan;
use journeyflow_operators::Time;
use journeyflow_types::cohort::{validate_cohorts_with, CohortDefinition};
use journeyflow_types::entries::parse_entry;
use journeyflow_types::funnel::{validate_funnels_with, FunnelDefinition};
use journeyflow_types::paths::{validate_paths_with, PathsDefinition};
use journeyflow_types::{parse_journeys_with, parse_segments_with, Limits, SegmentDefinition};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Arguments of `journeyflow replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Segment-spec events: NDJSON, or Parquet (a `.parquet` file as `journeyflow generate
    /// --format parquet` writes it).
    #[arg(long)]
    pub events: PathBuf,
    /// JSON array of segment definitions.
    #[arg(long)]
    pub segments: PathBuf,
    /// JSON array of journey definitions (run as version 1, ongoing from the start).
    #[arg(long)]
    pub journeys: Option<PathBuf>,
    /// Run up to this time (RFC 3339 or epoch ms); default: the largest event timestamp.
    #[arg(long, value_parser = super::parse_time)]
    pub as_of: Option<u64>,
    /// Timely worker threads (per process) [default: one per available core].
    #[arg(long, short = 'w', default_value_t = crate::cluster::default_workers(), hide_default_value = true)]
    pub workers: usize,
    /// The cluster this process is part of: each process reads its share of the file (which
    /// every process must be able to read at this path) and process 0 writes the outputs.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// How far behind the largest timestamp seen the watermark trails (`unbounded`: hold it until the end).
    #[arg(long, default_value = "1h", value_parser = super::parse_lateness)]
    pub allowed_lateness: super::Lateness,
    /// What to do with events behind the watermark.
    #[arg(long, value_enum, default_value_t = LatePolicy::DeadLetter)]
    pub late_policy: LatePolicy,
    /// A repeated messageId within this much event time is a duplicate.
    #[arg(long, default_value = "24h", value_parser = super::parse_duration)]
    pub dedup_window: u64,
    /// How long an event counts after its timestamp, or `forever`; definitions whose windows
    /// reach back further are refused.
    #[arg(long, default_value = "90d", value_parser = crate::config::parse_kept)]
    pub retention_events: crate::config::Kept,
    /// Records longer than this many bytes go to the dead-letter output.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_record_bytes: usize,
    /// With --as-of, events timed more than this after it are counted apart in the summary
    /// (a wrong device clock, most likely; `run` refuses them at ingest).
    #[arg(long, default_value = "1h", value_parser = super::parse_duration)]
    pub max_future_skew: u64,
    /// Records per batch and worker: the watermark advances between batches. Larger batches
    /// amortise the dataflow's per-round work; smaller ones hold less in memory.
    #[arg(long, default_value_t = 100_000)]
    pub batch_size: usize,
    /// Users to delete: NDJSON lines `{"user_id": "...", "time": <epoch ms>}`. Every event of
    /// theirs that entered by then is gone from then on (their segments exit, marked
    /// `deleted`; their journeys cancel them), as `DELETE /v1/users/{id}` does in `run`.
    #[arg(long)]
    pub deletions: Option<PathBuf>,
    /// Entries from outside: NDJSON lines `{"journey": id, "time": <epoch ms or RFC 3339>,
    /// "users": [...], "context"?: {...}}`: the users enter the journey then (reason `api`), as
    /// `POST /v1/journeys/{id}/entries` makes them in `run`.
    #[arg(long)]
    pub entries: Option<PathBuf>,
    /// JSON array of funnel definitions: their reports as of the end go to
    /// `funnel_reports.json`, as `GET /v1/funnels/{id}/report` makes them in `run`.
    #[arg(long)]
    pub funnels: Option<PathBuf>,
    /// JSON array of retention cohort definitions: their reports as of the end go to
    /// `cohort_reports.json`, as `GET /v1/cohorts/{id}/report` makes them in `run`.
    #[arg(long)]
    pub cohorts: Option<PathBuf>,
    /// JSON array of path analyses: their reports as of the end go to `paths_reports.json`,
    /// as `GET /v1/paths/{id}/report` makes them in `run`.
    #[arg(long)]
    pub paths: Option<PathBuf>,
    /// The first entry time the funnel, cohort and path reports count (RFC 3339 or epoch ms)
    /// [default: all].
    #[arg(long, value_parser = super::parse_time)]
    pub report_from: Option<u64>,
    /// The end of the reports' range, exclusive [default: after the as-of time].
    #[arg(long, value_parser = super::parse_time)]
    pub report_to: Option<u64>,
    /// The reports' buckets (`1h`, `1d`, `7d`, ...) [default: one bucket].
    #[arg(long, value_parser = super::parse_duration, requires = "report_from")]
    pub report_step: Option<u64>,
}

/// The largest funnels or cohorts file read.
const MAX_ANALYSES_BYTES: u64 = 16 << 20;

/// Reads a JSON file of analysis definitions (at most 16 MiB).
fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    if size > MAX_ANALYSES_BYTES {
        anyhow::bail!("{}: {size} bytes, more than {MAX_ANALYSES_BYTES}", path.display());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))
}

/// Reads a funnels file (a JSON array of definitions, checked as the API checks them).
pub fn read_funnels(path: &Path, limits: &Limits) -> anyhow::Result<Vec<FunnelDefinition>> {
    validate_funnels_with(&read_json(path)?, limits).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Reads a path analyses file (a JSON array of definitions, checked as the API checks them).
pub fn read_paths(path: &Path, limits: &Limits) -> anyhow::Result<Vec<PathsDefinition>> {
    validate_paths_with(&read_json(path)?, limits).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Reads a cohorts file (a JSON array of definitions, checked as the API checks them).
pub fn read_cohorts(path: &Path, limits: &Limits) -> anyhow::Result<Vec<CohortDefinition>> {
    validate_cohorts_with(&read_json(path)?, limits).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The largest entries file read.
const MAX_ENTRIES_BYTES: u64 = 64 << 20;

/// Reads an entries file for `plans`: each line checked as the API checks a request, its
/// journey one of the replay's; any mistake is an error naming the line and the JSON path.
pub fn read_entries(path: &Path, plans: &[JourneyPlan], limits: &Limits) -> anyhow::Result<Vec<JourneyEntries>> {
    let lines: Vec<serde_json::Value> =
        super::read_ndjson(path, MAX_ENTRIES_BYTES, "{\"journey\", \"time\", \"users\", \"context\"?}")?;
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let fail = |p: &str, m: &str| anyhow::anyhow!("{}: entry {}: {p}: {m}", path.display(), i + 1);
        let request = parse_entry(line, "$", &["journey", "time"], limits).map_err(|errors| {
            let text: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
            anyhow::anyhow!("{}: entry {}: {}", path.display(), i + 1, text.join("; "))
        })?;
        let journey =
            line.get("journey").and_then(|j| j.as_str()).ok_or_else(|| fail("$.journey", "expected a journey id"))?;
        if !plans.iter().any(|p| p.id() == journey) {
            return Err(fail("$.journey", &format!("no journey {journey:?} in the journeys file")));
        }
        let time = line.get("time").ok_or_else(|| fail("$", "missing field \"time\""))?;
        let time = journeyflow_types::time::parse_instant(time).map_err(|m| fail("$.time", &m))?;
        let context = request.context.map(|c| Arc::from(c.to_string()));
        out.push(JourneyEntries { time, journey: journey.to_string(), users: request.users, context });
    }
    Ok(out)
}

/// The largest deletions file read.
const MAX_DELETIONS_BYTES: u64 = 64 << 20;

/// One line of a deletions file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeletionLine {
    user_id: String,
    time: u64,
}

/// Reads a deletions file: `(time, user)` in file order; any line that is not one is an error
/// naming it.
pub fn read_deletions(path: &Path) -> anyhow::Result<Vec<(u64, journeyflow_types::Key)>> {
    let lines: Vec<DeletionLine> = super::read_ndjson(path, MAX_DELETIONS_BYTES, "{\"user_id\", \"time\"}")?;
    Ok(lines.into_iter().map(|d| (d.time, journeyflow_types::Key::of(&d.user_id))).collect())
}

/// `summary.json` and the stderr summary.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Input file.
    pub events_file: String,
    /// Time everything is complete up to.
    pub as_of: Option<u64>,
    /// Worker threads over all processes.
    pub workers: usize,
    /// Processes.
    pub processes: usize,
    /// Records read.
    pub records: u64,
    /// Events accepted into the dataflow (before dedup).
    pub accepted: u64,
    /// Records rejected as malformed or too large.
    pub malformed: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Late events rejected.
    pub late_rejected: u64,
    /// Late events clamped to the watermark.
    pub late_clamped: u64,
    /// Events after the as-of time, not processed.
    pub after_as_of: u64,
    /// Of those, events more than `--max-future-skew` after it.
    pub far_future: u64,
    /// Segment changes written.
    pub changes: u64,
    /// Journey transitions written.
    pub transitions: u64,
    /// Journey action records written.
    pub actions: u64,
    /// Members per segment at the as-of time.
    pub segment_sizes: BTreeMap<String, u64>,
    /// Wall time in seconds.
    pub wall_seconds: f64,
    /// Records per second of wall time.
    pub events_per_second: f64,
}

/// Runs the command.
pub fn execute(args: &ReplayArgs) -> anyhow::Result<Summary> {
    let text =
        std::fs::read_to_string(&args.segments).with_context(|| format!("reading {}", args.segments.display()))?;
    let limits = Limits { retention: args.retention_events.0, ..Limits::default() };
    let defs = parse_segments_with(&text, &limits).map_err(|e| anyhow::anyhow!("{}: {e}", args.segments.display()))?;
    let plans = match &args.journeys {
        None => Vec::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let known = defs.iter().map(|d| d.id.clone()).collect();
            let journeys =
                parse_journeys_with(&text, &known, &limits).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            journeys.into_iter().map(|j| JourneyPlan::new(j, 1)).collect()
        }
    };
    std::fs::metadata(&args.events).with_context(|| format!("reading {}", args.events.display()))?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let cluster = Cluster::resolve(&args.cluster, ClusterSection::default(), args.workers)?;
    let mut analyses = Vec::new();
    if let Some(path) = &args.funnels {
        analyses.extend(read_funnels(path, &limits)?.into_iter().map(Analysis::Funnel));
    }
    if let Some(path) = &args.cohorts {
        analyses.extend(read_cohorts(path, &limits)?.into_iter().map(Analysis::Cohort));
    }
    if let Some(path) = &args.paths {
        analyses.extend(read_paths(path, &limits)?.into_iter().map(Analysis::Paths));
    }
    // Up to the run's end unless a `to` is given (see `RunConfig::reports`).
    let (from, to) = (args.report_from.unwrap_or(0), args.report_to.unwrap_or(Time::MAX));
    let range = Buckets::new(from, to, args.report_step).or_else(|e| match args.report_to {
        // Checked again once the end is known.
        None if from < to => Ok(Buckets { from, to, step: args.report_step }),
        _ => Err(anyhow::anyhow!("the report range: {e}")),
    })?;
    let config = RunConfig {
        cluster: cluster.clone(),
        ingest: IngestConfig {
            allowed_lateness: args.allowed_lateness.0,
            late_policy: args.late_policy,
            dedup_window: args.dedup_window,
            retention: args.retention_events.0,
        },
        as_of: args.as_of,
        max_record_bytes: args.max_record_bytes,
        commands: Vec::new(),
        deletions: match &args.deletions {
            Some(path) => read_deletions(path)?,
            None => Vec::new(),
        },
        entries: match &args.entries {
            Some(path) => read_entries(path, &plans, &limits)?,
            None => Vec::new(),
        },
        max_future_skew: args.max_future_skew,
        snapshot: None,
        restore_journeys: None,
        reports: (0..analyses.len() as u32).map(|i| (Time::MAX, i, range)).collect(),
        analyses,
    };
    let started = Instant::now();
    let progress = Arc::new(Progress::default());
    let bar = progress_bar(&args.events, progress.clone(), cluster.workers);
    let (path, max, batch) = (args.events.clone(), args.max_record_bytes, args.batch_size.max(1));
    let journeys = plans.clone();
    let parquet = is_parquet(&args.events);
    let output = run(defs.clone(), plans, config, progress, move |index, peers| {
        let records: Box<dyn Iterator<Item = std::io::Result<RawRecord>>> = if parquet {
            Box::new(
                PartRows::open(&path, index, peers)
                    .map_err(std::io::Error::other)?
                    .map(|r| r.map_err(std::io::Error::other)),
            )
        } else {
            Box::new(PartReader::open(&path, index, peers, max)?)
        };
        Ok(batched(records, batch))
    });
    if let Some((bar, handle)) = bar {
        let _ = handle.join();
        bar.finish_and_clear();
    }
    let mut output = output?;
    let wall = started.elapsed().as_secs_f64();
    if !output.gathered {
        let s = &output.stats;
        eprintln!(
            "process {} of {}: read {} records ({} malformed) in {wall:.3} s; process 0 writes the outputs",
            cluster.process, cluster.processes, s.records, s.malformed
        );
        return Ok(Summary::new(args, &cluster, &output, wall, 0, BTreeMap::new()));
    }
    // NDJSON parts are read without counting lines; number only the rejected ones (Parquet
    // rows come numbered).
    if !parquet {
        let offsets: Vec<u64> = output.dead_letters.iter().map(|d| d.offset).collect();
        for (d, line) in output.dead_letters.iter_mut().zip(line_numbers(&args.events, &offsets)?) {
            d.line = Some(line);
        }
    }
    let summary = write_outputs(&args.out, &defs, &journeys, &output, args, &cluster, wall)?;
    print_summary(&summary, &output);
    Ok(summary)
}

/// Whether an events file is Parquet (by its extension; anything else is NDJSON).
pub fn is_parquet(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Inserts a batch boundary after every `batch` records.
fn batched(
    reader: impl Iterator<Item = std::io::Result<RawRecord>>,
    batch: usize,
) -> impl Iterator<Item = std::io::Result<SourceItem>> {
    reader.enumerate().flat_map(move |(i, record)| {
        let boundary = ((i + 1) % batch == 0).then_some(Ok(SourceItem::EndOfBatch));
        std::iter::once(record.map(SourceItem::Record)).chain(boundary)
    })
}

/// A progress bar over records, on a terminal only; the thread ends when all workers have.
fn progress_bar(
    path: &Path,
    progress: Arc<Progress>,
    workers: usize,
) -> Option<(indicatif::ProgressBar, std::thread::JoinHandle<()>)> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("valid template"));
    bar.set_message(format!("replaying {} ({} MB)", path.display(), bytes / 1_000_000));
    let b = bar.clone();
    let handle = std::thread::spawn(move || {
        while progress.workers_done.load(Ordering::Relaxed) < workers {
            let n = progress.records.load(Ordering::Relaxed);
            b.set_message(format!("{n} records"));
            b.tick();
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
    Some((bar, handle))
}

#[derive(Serialize)]
struct MemberRecord<'a> {
    segment: &'a str,
    user_id: &'a str,
}

/// Members at the end: the sum of changes per (segment, user).
pub fn members(output: &RunOutput) -> BTreeMap<(u32, &str), isize> {
    let mut acc: BTreeMap<(u32, &str), isize> = BTreeMap::new();
    for c in &output.changes {
        *acc.entry((c.segment, c.user.as_str())).or_default() += c.diff;
    }
    acc.retain(|_, n| *n != 0);
    acc
}

fn write_outputs(
    dir: &Path,
    defs: &[SegmentDefinition],
    journeys: &[JourneyPlan],
    output: &RunOutput,
    args: &ReplayArgs,
    cluster: &Cluster,
    wall: f64,
) -> anyhow::Result<Summary> {
    let name = |i: u32| defs[i as usize].id.as_str();
    // Ids over the whole run, records in the order they happened: the ids a live run gives.
    let mut ids = Ids::default();
    let mut w = NdjsonWriter::create(&dir.join("segment_changes.ndjson"))?;
    for c in &output.changes {
        w.write(&ids.change(&ChangeLine::new(name(c.segment), &c.user, c.diff, c.time).deleted(c.deleted)))?;
    }
    let changes = w.finish()?;
    let members = members(output);
    let mut sizes: BTreeMap<String, u64> = defs.iter().map(|d| (d.id.clone(), 0)).collect();
    let mut w = NdjsonWriter::create(&dir.join("members.ndjson"))?;
    for (segment, user) in members.keys() {
        w.write(&MemberRecord { segment: name(*segment), user_id: user })?;
        *sizes.entry(name(*segment).to_string()).or_default() += 1;
    }
    w.finish()?;
    if !journeys.is_empty() {
        let mut w = NdjsonWriter::create(&dir.join("journey_transitions.ndjson"))?;
        for t in &output.transitions {
            w.write(&ids.transition(t))?;
        }
        w.finish()?;
        let mut w = NdjsonWriter::create(&dir.join("journey_actions.ndjson"))?;
        for a in &output.actions {
            w.write(&ids.action(a))?;
        }
        w.finish()?;
        let mut w = NdjsonWriter::create(&dir.join("journey_members.ndjson"))?;
        for p in crate::journey_output::progress(journeys, &output.transitions) {
            w.write(&p)?;
        }
        w.finish()?;
        let mut w = NdjsonWriter::create(&dir.join("journey_stats.json"))?;
        w.write(&output.journey_stats)?;
        w.finish()?;
    }
    // Each report names its kind (`funnel`, `cohort`, `paths`).
    let of = |kind: &str| output.reports.iter().filter(|r| r.get(kind).is_some()).collect::<Vec<_>>();
    for (name, reports, asked) in [
        ("funnel_reports.json", of("funnel"), args.funnels.is_some()),
        ("cohort_reports.json", of("cohort"), args.cohorts.is_some()),
        ("paths_reports.json", of("paths"), args.paths.is_some()),
    ] {
        if asked {
            let mut w = NdjsonWriter::create(&dir.join(name))?;
            w.write(&reports)?;
            w.finish()?;
        }
    }
    let mut w = NdjsonWriter::create(&dir.join("dead_letter.ndjson"))?;
    for d in &output.dead_letters {
        w.write(d)?;
    }
    w.finish()?;
    let summary = Summary::new(args, cluster, output, wall, changes, sizes);
    let mut w = NdjsonWriter::create(&dir.join("summary.json"))?;
    w.write(&summary)?;
    w.finish()?;
    Ok(summary)
}

impl Summary {
    /// The summary of a run's output.
    fn new(
        args: &ReplayArgs,
        cluster: &Cluster,
        output: &RunOutput,
        wall: f64,
        changes: u64,
        segment_sizes: BTreeMap<String, u64>,
    ) -> Summary {
        let s = &output.stats;
        Summary {
            events_file: args.events.display().to_string(),
            as_of: output.as_of,
            workers: cluster.peers(),
            processes: cluster.processes,
            records: s.records,
            accepted: s.engine.offered,
            malformed: s.malformed,
            duplicates: s.engine.duplicates,
            late_rejected: s.engine.late_rejected,
            late_clamped: s.engine.late_clamped,
            after_as_of: s.after_as_of,
            far_future: s.far_future,
            changes,
            transitions: output.transitions.len() as u64,
            actions: output.actions.len() as u64,
            segment_sizes,
            wall_seconds: wall,
            events_per_second: s.records as f64 / wall.max(1e-9),
        }
    }
}

fn print_summary(s: &Summary, output: &RunOutput) {
    let as_of = s.as_of.map_or("-".to_string(), journeyflow_types::time::format_instant);
    eprintln!("replayed {} as of {as_of} with {} worker(s) in {} process(es)", s.events_file, s.workers, s.processes);
    eprintln!(
        "  records {}  accepted {}  rejected {} (malformed {}, late {})  duplicates {}  late clamped {}  after as-of {}",
        s.records,
        s.accepted,
        s.malformed + s.late_rejected,
        s.malformed,
        s.late_rejected,
        s.duplicates,
        s.late_clamped,
        s.after_as_of
    );
    if s.far_future > 0 {
        eprintln!(
            "  of those after as-of, {} are timed more than the future skew after it (wrong clocks?)",
            s.far_future
        );
    }
    eprintln!("  segment changes {}", s.changes);
    eprintln!("  segment sizes:");
    for (id, n) in &s.segment_sizes {
        eprintln!("    {id:<32} {n:>10}");
    }
    if !output.journey_stats.is_empty() {
        eprintln!("  journeys (transitions {}, actions {}):", s.transitions, s.actions);
        eprintln!(
            "    {:<24} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9}",
            "journey", "entered", "in_progress", "converted", "exited", "completed", "canceled"
        );
        for r in &output.journey_stats {
            eprintln!(
                "    {:<24} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9}",
                r.journey, r.entered, r.in_progress, r.converted, r.exited, r.completed, r.canceled
            );
        }
    }
    eprintln!("  wall time {:.3} s, {:.0} events/s", s.wall_seconds, s.events_per_second);
}
