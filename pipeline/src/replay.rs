//! Runs the engine ([`Programs`], the one `journeyflow run` runs) on timely workers over a
//! source split into per-worker parts, to a time every worker agrees on, and gathers what it
//! produced: membership changes, journey transitions and actions in time order, journey
//! reports, dead letters, counters. `journeyflow replay` is this over an NDJSON file plus the
//! output files.

use crate::admission::IngestConfig;
use crate::analysis::{Analysis, Cells};
use crate::cluster::gather::{gather, share};
use crate::cluster::Cluster;
use crate::journey_output::{reports, ActionLine, JourneyNames, JourneyReport, TransitionLine};
use crate::journey_snapshot::SnapshotRef;
use crate::programs::{ProgramError, Programs};
use journeyflow_connectors::ndjson::RawRecord;
use journeyflow_control_api::buckets::Buckets;
use journeyflow_operators::journey::plan::JourneyPlan;
use journeyflow_operators::journey::record::{Command, JourneyOutput};
use journeyflow_operators::journey::stats::Stat;
use journeyflow_operators::Time;
use journeyflow_types::{decode_record, Key, KeyMap, SegmentDefinition};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// One item of a worker's share of the input.
#[derive(Clone, Debug)]
pub enum SourceItem {
    /// A raw record.
    Record(RawRecord),
    /// A batch boundary: the watermark may advance here.
    EndOfBatch,
}

/// One membership change of a user by key: `diff` is +1 (enter) or -1 (exit).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyedChange {
    /// Event time of the change.
    pub time: Time,
    /// Index of the segment in the definitions.
    pub segment: u32,
    /// The user's key.
    pub user: Key,
    /// +1 enters, -1 exits.
    pub diff: isize,
    /// An exit because the user was deleted.
    pub deleted: bool,
}

/// Counters of one worker's engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Events entered into the dataflow.
    pub offered: u64,
    /// Late events clamped to the watermark.
    pub late_clamped: u64,
    /// Late events refused.
    pub late_rejected: u64,
    /// Duplicates dropped (counted where the dedup state lives).
    pub duplicates: u64,
}

/// What one worker's engine produced up to the as-of time.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct WorkerOutput {
    /// Membership changes.
    changes: Vec<KeyedChange>,
    /// Journey transitions and actions, each user's in the order they happened.
    journeys: Vec<JourneyOutput>,
    /// Journey counters `((journey, stat), value)`, this worker's share.
    stats: Vec<((u32, Stat), isize)>,
    /// This worker's cells of each analysis report asked, in order.
    analysis_cells: Vec<Cells>,
}

/// One membership change: `diff` is +1 (enter) or -1 (exit).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Change {
    /// Event time of the change.
    pub time: Time,
    /// Index of the segment in the definitions.
    pub segment: u32,
    /// The user id.
    pub user: String,
    /// +1 enters, -1 exits.
    pub diff: isize,
    /// An exit because the user was deleted.
    pub deleted: bool,
}

/// User ids by key, as decoded; a second id with the same key is a collision.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Names {
    ids: KeyMap<String>,
    collision: Option<String>,
}

impl Names {
    fn note(&mut self, key: Key, id: &str) {
        match self.ids.get(&key) {
            Some(known) if known != id => {
                self.collision.get_or_insert_with(|| format!("user ids {known:?} and {id:?} have the same key {key}"));
            }
            Some(_) => {}
            None => {
                self.ids.insert(key, id.to_string());
            }
        }
    }

    fn merge(&mut self, other: Names) {
        if let Some(c) = other.collision {
            self.collision.get_or_insert(c);
        }
        for (key, id) in other.ids {
            self.note(key, &id);
        }
    }
}

/// A rejected record and why. Ordered by position in the source (in a cluster, by process
/// first: each reads its own share).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Byte offset in the source.
    pub offset: u64,
    /// 1-based line number in the source, when known.
    pub line: Option<u64>,
    /// What is wrong.
    pub reason: String,
    /// The record's text (absent for records over the size limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

/// Users entering a journey from outside as of a time.
#[derive(Clone, Debug, PartialEq)]
pub struct JourneyEntries {
    /// When.
    pub time: Time,
    /// The journey's id.
    pub journey: String,
    /// Their ids.
    pub users: Vec<String>,
    /// What the journey's templates read as `context` (JSON text of an object).
    pub context: Option<Arc<str>>,
}

/// How to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The processes and worker threads to run on.
    pub cluster: Cluster,
    /// Watermark, late events, dedup.
    pub ingest: IngestConfig,
    /// The time to run to; `None` is the largest event time.
    pub as_of: Option<Time>,
    /// Record size limit in bytes.
    pub max_record_bytes: usize,
    /// Journey lifecycle commands `(time, journey index, command)`, applied at their times.
    pub commands: Vec<(Time, u32, Command)>,
    /// Users deleted, each as of a time (see [`Programs::delete_user`]).
    pub deletions: Vec<(Time, Key)>,
    /// Entries from outside, applied at their times in this order (see
    /// [`Programs::enter_journey`]).
    pub entries: Vec<JourneyEntries>,
    /// Events timed more than this after the as-of time are counted as `far_future`.
    pub max_future_skew: Time,
    /// Takes a snapshot of the journeys' states as of a time, written under a directory as a
    /// checkpoint's is (see [`crate::journey_snapshot`]).
    pub snapshot: Option<(PathBuf, Time)>,
    /// Starts the journeys from a snapshot under a directory, as a restart does.
    pub restore_journeys: Option<(PathBuf, SnapshotRef)>,
    /// Funnels, installed before any event.
    pub analyses: Vec<Analysis>,
    /// Analysis reports to make: `(as of, analysis index, range)`, an as-of time after the run's
    /// being the run's, and a range ending at `Time::MAX` ending after it. Every trace stays
    /// distinguishable from the earliest one on.
    pub reports: Vec<(Time, u32, Buckets)>,
}

/// Counters over all workers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStats {
    /// Records read (lines that were not blank).
    pub records: u64,
    /// Records rejected for being malformed or too large.
    pub malformed: u64,
    /// Events after the as-of time, not processed.
    pub after_as_of: u64,
    /// Of those, events timed more than the future skew after it (most likely a wrong clock;
    /// `journeyflow run` refuses them at ingest).
    #[serde(default)]
    pub far_future: u64,
    /// Engine counters, summed.
    pub engine: EngineStats,
}

impl RunStats {
    /// Adds another worker's counters.
    fn add(&mut self, other: &RunStats) {
        self.records += other.records;
        self.malformed += other.malformed;
        self.after_as_of += other.after_as_of;
        self.far_future += other.far_future;
        let (e, o) = (&mut self.engine, &other.engine);
        e.offered += o.offered;
        e.late_clamped += o.late_clamped;
        e.late_rejected += o.late_rejected;
        e.duplicates += o.duplicates;
    }
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// The time everything is complete up to.
    pub as_of: Option<Time>,
    /// Changes sorted by `(time, segment, user)`.
    pub changes: Vec<Change>,
    /// Journey transitions by `(time, journey, user)`, each user's in the order they happened.
    pub transitions: Vec<TransitionLine>,
    /// Journey actions by `(time, journey, user)`, each user's in the order they happened.
    pub actions: Vec<ActionLine>,
    /// One report per journey.
    pub journey_stats: Vec<JourneyReport>,
    /// Every journey counter summed, the per-hour ones too: `((journey index, stat), value)`.
    pub journey_counters: std::collections::BTreeMap<(u32, Stat), isize>,
    /// The analysis reports asked, in order (see [`journeyflow_control_api::funnel_report`]
    /// and [`journeyflow_control_api::cohort_report`]).
    pub reports: Vec<serde_json::Value>,
    /// Dead letters sorted by offset.
    pub dead_letters: Vec<DeadLetter>,
    /// Counters.
    pub stats: RunStats,
    /// Whether this process holds what every worker produced (process 0 of a cluster); the
    /// others' outputs are empty and their counters their own share.
    pub gathered: bool,
}

/// What one worker hands to worker 0 at the end: its read error if any, its as-of time,
/// records, dead letters, counters and user ids.
type WorkerResult = (Option<String>, Option<Time>, WorkerOutput, Vec<DeadLetter>, RunStats, Names);

/// Progress shared with the caller while a run goes on.
#[derive(Debug, Default)]
pub struct Progress {
    /// Records handled so far.
    pub records: AtomicU64,
    /// Workers that finished.
    pub workers_done: AtomicUsize,
}

/// Installs the segments and the journeys before any event: every event, whatever its time,
/// runs them. `defs` are in dependency order, as `parse_segments` returns them.
fn install(
    programs: &mut Programs,
    worker: &mut timely::worker::Worker,
    defs: &[SegmentDefinition],
    plans: &[JourneyPlan],
) -> Result<(), ProgramError> {
    for def in defs {
        programs.install_segment(worker, def, 0)?;
    }
    for plan in plans {
        programs.install_journey_first(worker, plan.clone())?;
    }
    Ok(())
}

/// This worker's outputs at times up to `as_of`, by segment and journey index.
fn take_outputs(
    programs: &mut Programs,
    defs: &[SegmentDefinition],
    plans: &[JourneyPlan],
    as_of: Time,
) -> WorkerOutput {
    let mut out = WorkerOutput::default();
    for (segment, def) in defs.iter().enumerate() {
        let segment = segment as u32;
        let changes = programs.take_changes(&def.id).into_iter().filter(|c| c.time <= as_of);
        out.changes.extend(changes.map(|c| KeyedChange {
            time: c.time,
            segment,
            user: c.user,
            diff: c.diff,
            deleted: c.deleted,
        }));
    }
    for (journey, plan) in plans.iter().enumerate() {
        let journey = journey as u32;
        for mut record in programs.take_journey_outputs(plan.id()) {
            let time = match &mut record {
                JourneyOutput::Transition(t) => {
                    t.journey = journey;
                    t.time
                }
                JourneyOutput::Action(a) => {
                    a.journey = journey;
                    a.time
                }
                JourneyOutput::Conversion(c) => {
                    c.journey = journey;
                    c.time
                }
            };
            if time <= as_of {
                out.journeys.push(record);
            }
        }
        let counters = programs.journey_counters(plan.id(), as_of);
        out.stats.extend(counters.into_iter().map(|((_, stat), v)| ((journey, stat), v)));
    }
    out
}

/// A report's range, one ending at `Time::MAX` ending just after `as_of`, checked.
fn report_range(query: &Buckets, as_of: Time) -> Result<Buckets, String> {
    let to = if query.to == Time::MAX { as_of.saturating_add(1) } else { query.to };
    Buckets::new(query.from, to, query.step).map_err(|e| format!("the report range: {e}"))
}

/// Runs the engine on the cluster's workers; `part(index, peers)` gives each worker its share
/// (`index` counts over every process). Worker 0 gathers what all produced.
pub fn run<F, I>(
    defs: Vec<SegmentDefinition>,
    plans: Vec<JourneyPlan>,
    config: RunConfig,
    progress: Arc<Progress>,
    part: F,
) -> anyhow::Result<RunOutput>
where
    F: Fn(usize, usize) -> io::Result<I> + Send + Sync + 'static,
    I: Iterator<Item = io::Result<SourceItem>>,
{
    let timely_config = config.cluster.timely();
    let worker_config = config.clone();
    let worker_plans = plans.clone();
    let guards = timely::execute(timely_config, move |worker| -> Result<_, String> {
        let config = &worker_config;
        let mut programs = Programs::new(worker, config.ingest);
        if let Some((root, at)) = &config.restore_journeys {
            let restore = crate::journey_snapshot::read(root, at, worker.index(), worker.peers())
                .map_err(|e| format!("{e:#}"))?;
            programs.restore_journeys(restore);
        }
        install(&mut programs, worker, &defs, &worker_plans).map_err(|e| e.to_string())?;
        for analysis in &config.analyses {
            analysis.install(&mut programs, worker, 0);
        }
        programs.hold_compaction(config.reports.iter().map(|r| r.0).min());
        if let Some((_, at)) = &config.snapshot {
            programs.snapshot_journeys(*at);
        }
        // Every worker enters the same commands: each journey's lifecycle input is its own.
        for (time, journey, command) in &config.commands {
            let plan = worker_plans
                .get(*journey as usize)
                .ok_or_else(|| format!("a command for journey {journey}, of {}", worker_plans.len()))?;
            let id = plan.id();
            programs.journey_command(id, *command, *time).map_err(|e| e.to_string())?;
        }
        for (time, user) in &config.deletions {
            if worker.index() == 0 {
                programs.delete_user(*user, *time, false);
            }
            programs.note_deletion(*user, *time);
        }
        let mut names = Names::default();
        // Every worker checks the entries; worker 0 enters them (and names their users).
        for e in &config.entries {
            let keys: Vec<Key> = e.users.iter().map(|u| Key::of(u)).collect();
            let first = worker.index() == 0;
            programs.enter_journey(&e.journey, &keys, e.context.clone(), e.time, first).map_err(|e| e.to_string())?;
            if first {
                for (key, id) in keys.iter().zip(&e.users) {
                    names.note(*key, id);
                }
            }
        }
        let mut offered = 0;
        let mut late_rejected = 0;
        let mut dead = Vec::new();
        let mut stats = RunStats::default();
        let outcome = (|| -> io::Result<()> {
            for item in part(worker.index(), worker.peers())? {
                let record = match item? {
                    SourceItem::EndOfBatch => {
                        // Nothing is submitted to the control input: no command comes back.
                        programs.advance(worker, None, |_, _, _| {});
                        continue;
                    }
                    SourceItem::Record(record) => record,
                };
                stats.records += 1;
                progress.records.fetch_add(1, Ordering::Relaxed);
                let (line, offset, bytes) = match record {
                    RawRecord::TooLarge { line, offset, size } => {
                        let reason = journeyflow_types::DecodeError::TooLarge { size, limit: config.max_record_bytes }
                            .to_string();
                        dead.push(DeadLetter { line, offset, reason, record: None });
                        stats.malformed += 1;
                        continue;
                    }
                    RawRecord::Line { line, offset, bytes } => (line, offset, bytes),
                };
                let event = match decode_record(&bytes) {
                    Ok((event, _)) => event,
                    Err(e) => {
                        dead.push(DeadLetter {
                            line,
                            offset,
                            reason: e.to_string(),
                            record: Some(String::from_utf8_lossy(&bytes).into_owned()),
                        });
                        stats.malformed += 1;
                        continue;
                    }
                };
                if let Some(as_of) = config.as_of.filter(|as_of| event.ts() > *as_of) {
                    stats.after_as_of += 1;
                    stats.far_future += u64::from(event.ts() > as_of.saturating_add(config.max_future_skew));
                    continue;
                }
                names.note(event.user(), event.user_id());
                if let Err(refused) = programs.offer(event) {
                    late_rejected += 1;
                    dead.push(DeadLetter {
                        line,
                        offset,
                        reason: refused.to_string(),
                        record: Some(String::from_utf8_lossy(&bytes).into_owned()),
                    });
                } else {
                    offered += 1;
                }
            }
            Ok(())
        })();
        // Every worker must take part in agreeing and finishing, even after a read error.
        programs.input_done();
        let as_of = match config.as_of {
            Some(t) => Some(t),
            None => share(worker, programs.max_seen()).into_iter().flatten().max(),
        };
        let as_of_or_start = as_of.unwrap_or(0);
        programs.run_to(worker, as_of_or_start);
        if let Some((root, _)) = &config.snapshot {
            for taken in programs.take_snapshots() {
                let journeys = taken.journeys.unwrap_or_default();
                let ids: KeyMap<Arc<str>> = KeyMap::default();
                crate::journey_snapshot::write(root, taken.time, worker.index(), &journeys, &ids, &[])
                    .map_err(|e| format!("{e:#}"))?;
            }
        }
        let mut output = take_outputs(&mut programs, &defs, &worker_plans, as_of_or_start);
        for (time, analysis, query) in &config.reports {
            let analysis = config.analyses.get(*analysis as usize).ok_or("a report of no analysis")?;
            let query = report_range(query, as_of_or_start)?;
            output.analysis_cells.push(analysis.cells(&mut programs, (*time).min(as_of_or_start), &query)?);
        }
        stats.engine =
            EngineStats { offered, late_clamped: programs.late(), late_rejected, duplicates: programs.duplicates() };
        programs.close(worker);
        progress.workers_done.fetch_add(1, Ordering::Relaxed);
        let error = outcome.err().map(|e| format!("worker {}: reading input: {e}", worker.index()));
        let mine: WorkerResult = (error.clone(), as_of, output, dead, stats.clone(), names);
        // Worker 0 takes everyone's part; the others keep their counters for their summary.
        let all = gather(worker, mine);
        if let Some(e) = error.or_else(|| all.iter().find_map(|r| r.0.clone())) {
            return Err(e);
        }
        match worker.index() {
            0 => Ok(all),
            _ => Ok(vec![(None, as_of, WorkerOutput::default(), Vec::new(), stats, Names::default())]),
        }
    })
    .map_err(|e| anyhow::anyhow!("starting workers: {e}"))?;

    let mut out = RunOutput {
        as_of: None,
        changes: Vec::new(),
        transitions: Vec::new(),
        actions: Vec::new(),
        journey_stats: Vec::new(),
        journey_counters: std::collections::BTreeMap::new(),
        reports: Vec::new(),
        dead_letters: Vec::new(),
        stats: RunStats::default(),
        gathered: false,
    };
    let mut names = Names::default();
    let mut keyed = Vec::new();
    let mut journey_records = Vec::new();
    let mut counters = std::collections::BTreeMap::new();
    let mut analysis_cells: Vec<Cells> = config
        .reports
        .iter()
        .map(|(_, i, _)| config.analyses.get(*i as usize).map_or(Cells::Funnel(Vec::new()), Analysis::no_cells))
        .collect();
    let mut joined = Vec::new();
    for result in guards.join() {
        joined.push(result.map_err(|e| anyhow::anyhow!("worker failed: {e}"))?.map_err(anyhow::Error::msg)?);
    }
    // This process's first worker is worker 0 on process 0: it holds every worker's part.
    // Elsewhere each worker holds only its own counters.
    out.gathered = config.cluster.process == 0;
    let results: Vec<WorkerResult> = match out.gathered {
        true => joined.into_iter().next().unwrap_or_default(),
        false => joined.into_iter().flatten().collect(),
    };
    for (_, as_of, output, dead, stats, worker_names) in results {
        let WorkerOutput { changes, journeys, stats: worker_counters, analysis_cells: cells } = output;
        for (all, mine) in analysis_cells.iter_mut().zip(cells) {
            all.extend(mine);
        }
        out.as_of = out.as_of.max(as_of);
        keyed.extend(changes);
        journey_records.extend(journeys);
        for (stat, value) in worker_counters {
            *counters.entry(stat).or_insert(0) += value;
        }
        names.merge(worker_names);
        out.dead_letters.extend(dead);
        out.stats.add(&stats);
    }
    if let Some(collision) = names.collision {
        anyhow::bail!("{collision}: rename one of them");
    }
    if out.as_of.is_some() {
        let name = |key: &Key| names.ids.get(key).cloned().unwrap_or_else(|| key.to_string());
        out.changes = keyed
            .into_iter()
            .map(|c| Change { time: c.time, segment: c.segment, user: name(&c.user), diff: c.diff, deleted: c.deleted })
            .collect();
        // Each user's records are on one worker, in the order they happened: a stable sort
        // by (time, journey, user) keeps that order and makes the rest independent of workers.
        let ids: KeyMap<Arc<str>> = names.ids.iter().map(|(k, v)| (*k, Arc::from(v.as_str()))).collect();
        let id = |key: &Key| ids.get(key).cloned().unwrap_or_else(|| key.to_string().into());
        journey_records.sort_by_cached_key(|r| match r {
            JourneyOutput::Transition(t) => (t.time, t.journey, id(&t.user)),
            JourneyOutput::Action(a) => (a.time, a.journey, id(&a.user)),
            JourneyOutput::Conversion(c) => (c.time, c.journey, id(&c.user)),
        });
        let journey_names: Vec<JourneyNames> = plans.iter().map(JourneyNames::new).collect();
        for record in &journey_records {
            match record {
                JourneyOutput::Transition(t) => {
                    out.transitions.push(TransitionLine::new(t, &journey_names[t.journey as usize], id(&t.user)))
                }
                JourneyOutput::Action(a) => {
                    out.actions.push(ActionLine::new(a, &journey_names[a.journey as usize], a.user, id(&a.user)))
                }
                // Counted in the reports; no output line.
                JourneyOutput::Conversion(_) => {}
            }
        }
        out.journey_stats = reports(&plans, &counters);
        let as_of = out.as_of.unwrap_or(0);
        for ((time, analysis, query), cells) in config.reports.iter().zip(analysis_cells) {
            let Some(analysis) = config.analyses.get(*analysis as usize) else { continue };
            let query = report_range(query, as_of).map_err(anyhow::Error::msg)?;
            out.reports.push(analysis.report(&query, (*time).min(as_of), cells));
        }
        out.journey_counters = counters;
    }
    out.changes.sort();
    out.dead_letters.sort();
    if let Some(bad) = out.changes.iter().find(|c| c.diff.abs() != 1) {
        anyhow::bail!(
            "internal error: segment {} user {} changed by {} at {}",
            bad.segment,
            bad.user,
            bad.diff,
            bad.time
        );
    }
    Ok(out)
}
