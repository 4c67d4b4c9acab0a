//! The long-running worker loop of `journeyflow run`: each worker reads its partitions of the
//! durable ingest log and of the Kafka event topics, feeds the events to its [`Programs`],
//! moves the watermark (per partition; with the wall clock once every partition is read to
//! its end and quiet), applies sequenced requests from the control API, answers membership
//! queries as of their agreed time, and writes outputs to its sinks. Worker 0 takes requests
//! from the handle and sequences them for everyone as of the wall-clock time it receives
//! them; it logs each change to the control log before it applies, and at start applies that
//! log again, each request at its time. Each worker publishes how far its outputs are written
//! and synced, and gives its part of a checkpoint when asked; one thread per process
//! (`make_durable`, `Checkpointer`) makes the lowest frontier durable and completes
//! checkpoints. In a cluster, what processes must know of each other (watermarks, durable
//! frontiers, stopping, journey counters, answers, user ids) travels through the
//! [`crate::cluster`] dataflows.

use crate::admission::IngestConfig;
use crate::archive::Archives;
use crate::checkpoint::{Manifest, Part};
use crate::cluster::gossip::{self, Gossip, Message, TICKET_WORKER_SHIFT};
use crate::cluster::names::Names;
use crate::cluster::Cluster;
use crate::config::KafkaConfig;
use crate::inputs::{restore, Inputs};
use crate::journey_output::{reports, ActionLine, JourneyNames, TransitionLine};
use crate::journey_snapshot::{SnapshotRef, Taken};
use crate::kafka_input::Origins;
use crate::programs::{Programs, Sequenced};
use crate::sequencer::{Sequence, Sequencer, Waiting};
use crate::sinks::{KafkaOutputs, Sinks, TailOut};
use journeyflow_connectors::kafka::Sink;
use journeyflow_control_api::catalog::{Change, Lifecycle};
use journeyflow_control_api::handle::{Answer, EngineHandle, Request};
use journeyflow_operators::journey::plan::JourneyPlan;
use journeyflow_operators::journey::record::{Command, JourneyOutput, Status};
use journeyflow_operators::journey::stats::Stat;
use journeyflow_operators::Time;
use journeyflow_types::cohort::validate_cohort;
use journeyflow_types::funnel::validate_funnel;
use journeyflow_types::paths::validate_paths;
use journeyflow_types::time::now_ms;
use journeyflow_types::{validate_journey_with, validate_segments_with, Key, Limits};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::worker::Worker;

/// Report counters of one journey: `((journey, stat), value)`.
pub type Counters = BTreeMap<(u32, Stat), isize>;

/// How often a worker syncs its files and publishes how far its outputs are written.
const SYNC_EVERY: Duration = Duration::from_millis(200);
/// How often a cluster's other processes send process 0 their counts.
const TALLY_EVERY: Duration = Duration::from_secs(1);

/// How long a round may step the programs after advancing before it reads input again.
const CATCH_UP: Duration = Duration::from_millis(2);

/// Bytes waiting for the disk (outputs, archive rows, checkpoint chunks) above which a worker
/// reads no more input.
const MAX_BACKLOG: usize = 64 << 20;

/// How long a round waits for the dataflows to catch up with the watermark before it goes on
/// with its other duties (sequencing, answers, gossip, stopping): another worker's quiet input
/// may hold them back until its idle timeout.
const PATIENCE: Duration = Duration::from_millis(50);

/// What the workers of a process share.
pub struct Shared {
    /// The cluster this process belongs to.
    pub cluster: Cluster,
    /// The handle the HTTP side holds.
    pub handle: EngineHandle,
    /// The catalog, the control log and the request queue, taken by worker 0.
    pub sequencer: Mutex<Option<Sequencer>>,
    /// Answer channels of queries by ticket, with the number of answers still due.
    pub tickets: Mutex<HashMap<u64, Waiting>>,
    /// Set to stop the workers.
    pub stop: AtomicBool,
    /// Set once the definitions given at start are submitted: until then workers read no
    /// input and hold the watermark, so those apply as of the time they were given for.
    pub inputs_open: AtomicBool,
    /// Each worker's watermark, by global index (other processes' as they last told).
    pub watermarks: Vec<AtomicU64>,
    /// Each worker's process's durable output frontier, as they last told.
    pub durables: Vec<AtomicU64>,
    /// Deletions applied on this process, in order: what the scrubber carries out in its files.
    pub erasures: Mutex<Vec<crate::scrub::Erasure>>,
    /// How many of them are carried out in this process's files.
    pub scrubbed: AtomicU64,
    /// Held while this process rewrites checkpoint files (the scrubber, a merge of the
    /// chain): a merge never copies a file the scrubber has not finished with.
    pub chain_files: Mutex<()>,
    /// The same, of each worker's process as it last told (process 0 reads them).
    pub scrubbeds: Vec<AtomicU64>,
    /// The ingest log's directory.
    pub wal_dir: PathBuf,
    /// Each ingest log partition's synced length: readers stop there.
    pub wal_committed: Vec<Arc<AtomicU64>>,
    /// Where outputs go.
    pub out_dir: PathBuf,
    /// The size at which an output log seals its segment.
    pub output_segment_bytes: u64,
    /// Watermark and dedup settings.
    pub ingest: IngestConfig,
    /// An event timed more than this after it was received is dead-lettered (ms).
    pub max_future_skew: Time,
    /// A partition read to its end and quiet this long stops holding the watermark back.
    pub idle: Duration,
    /// Where sent actions are POSTed, if anywhere.
    pub webhooks: Option<Arc<journeyflow_connectors::webhook::Webhooks>>,
    /// How far each local worker's actions file (the webhooks' outbox) is synced.
    pub actions_synced: Vec<Arc<AtomicU64>>,
    /// Kafka: the config, where each event partition is read from, and the producer.
    pub kafka: Option<(KafkaConfig, Origins, Arc<Sink>)>,
    /// Each local worker's output frontier: its records before it are written and synced.
    pub output_frontiers: Vec<AtomicU64>,
    /// Every output of this process before this time is durable in every sink.
    pub durable: AtomicU64,
    /// Outputs before this time were made durable by an earlier run: not written again.
    pub skip_before: Time,
    /// The Parquet archive's directory and how often workers write it, if there is one.
    pub archive: Option<(PathBuf, Duration)>,
    /// The checkpoints' directory and how often one is taken, if they are.
    pub checkpoints: Option<(PathBuf, Duration)>,
    /// The checkpoint the run started from.
    pub restore: Option<Manifest>,
    /// The checkpoint asked of the workers.
    pub checkpoint_request: AtomicU64,
    /// Workers' parts of checkpoints: `(seq, part)`.
    pub checkpoint_parts: Mutex<Vec<(u64, Part)>>,
    /// How many journey snapshots were asked for (process 0's checkpointer asks, its worker 0
    /// sequences them).
    pub snapshot_request: AtomicU64,
    /// Journey snapshots the local workers took: `(local worker, snapshot)`.
    pub snapshot_parts: Mutex<Vec<(usize, Taken)>>,
    /// The time through which the control log may be compacted, and whether the newest
    /// checkpoint restores journeys from a snapshot at or after it (process 0's checkpointer
    /// says, after each manifest; its worker 0 compacts).
    pub control_compaction: Mutex<Option<(Time, bool)>>,
    /// Each worker's share of each journey's report counters, with the version counted (by
    /// global index, as they last told).
    pub journey_counts: Mutex<BTreeMap<String, Vec<(u32, Counters)>>>,
}

impl Shared {
    /// Every output of every process before this time is durable: Kafka offsets are committed
    /// below it.
    pub fn cluster_durable(&self) -> Time {
        // This process's own frontier as it is now; the others' as they last told.
        let here = self.cluster.first_worker()..self.cluster.first_worker() + self.cluster.workers;
        let others = self.durables.iter().enumerate().filter(|(w, _)| !here.contains(w));
        let low = others.map(|(_, d)| d.load(Ordering::Relaxed)).min().unwrap_or(Time::MAX);
        low.min(self.durable.load(Ordering::Relaxed))
    }

    /// How many deletions every process has carried out in its files.
    pub fn cluster_scrubbed(&self) -> u64 {
        let here = self.cluster.first_worker()..self.cluster.first_worker() + self.cluster.workers;
        let others = self.scrubbeds.iter().enumerate().filter(|(w, _)| !here.contains(w));
        let low = others.map(|(_, d)| d.load(Ordering::Relaxed)).min().unwrap_or(u64::MAX);
        low.min(self.scrubbed.load(Ordering::Relaxed))
    }
}

/// A journey's running plan, and the names of every version it ran (records of a replaced
/// version may still come after the new one is published).
struct Versions {
    plan: JourneyPlan,
    names: BTreeMap<u32, JourneyNames>,
}

/// A query waiting for its time to be complete.
enum Query {
    Members(String),
    User(Key),
    /// A user's export: events after a `(timestamp, messageId)`, at most so many.
    Profile(Key, journeyflow_control_api::profile::EventsWanted),
    /// A journey's per-hour counts for `[from, to)`.
    Hours(String, Time, Time),
    /// A funnel's report cells.
    Funnel(String, journeyflow_control_api::buckets::Buckets),
    /// A cohort's report cells.
    Cohort(String, journeyflow_control_api::buckets::Buckets),
    /// A path analysis's report counts.
    Paths(String, journeyflow_control_api::buckets::Buckets),
}

/// A definition the catalog accepted that no longer validates (a bug, reported).
fn definition_errors(errors: Vec<journeyflow_types::ValidationError>) -> anyhow::Error {
    let all: Vec<String> = errors.into_iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
    anyhow::anyhow!("{}", all.join("; "))
}

/// Runs one worker until `stop` is set; then drains what the log holds and returns.
pub fn run_worker(worker: &mut Worker, shared: &Shared) -> anyhow::Result<()> {
    let (index, peers) = (worker.index(), worker.peers());
    // This process's workers: the ingest log's partitions and checkpoints are per process.
    let (local, locals) = (index - shared.cluster.first_worker(), shared.cluster.workers);
    // The watermark is the inputs' (per partition), not the programs' own.
    let mut programs = Programs::new(worker, IngestConfig { allowed_lateness: None, ..shared.ingest });
    let mut gossip = Gossip::new(worker, shared.cluster.processes, locals);
    let mut names = Names::new(worker, shared.handle.names.clone());
    let mut sequencer = match index {
        0 => lock(&shared.sequencer).take(),
        _ => None,
    };
    if let Some(sequencer) = &mut sequencer {
        sequencer.replay(&mut programs)?;
    }
    let mut snapshots_sequenced = shared.snapshot_request.load(Ordering::Relaxed);
    let restored = shared.restore.as_ref();
    // Journeys start from the checkpoint's snapshot, if it has one: what they did through its
    // time is in it (and written), not done again.
    let mut restored_through = None;
    if let (Some(at), Some((root, _))) = (restored.and_then(|m| m.journeys.as_ref()), &shared.checkpoints) {
        let mut restore = crate::journey_snapshot::read(root, at, local, locals)?;
        names.note(&restore.names);
        // The records of this process's users through the snapshot's time: kept here, and
        // (from another process) sent to process 0, which serves them.
        for (journey, user, line) in std::mem::take(&mut restore.records) {
            remember(shared, &journey, user, &line)?;
            if shared.cluster.process != 0 {
                gossip.history(journey, user, line);
            }
        }
        tracing::info!("worker {index}: journeys as of {} from checkpoint {}", at.time, restored.map_or(0, |m| m.seq));
        programs.restore_journeys(restore);
        restored_through = Some(at.time);
    }
    let mut inputs = Inputs::open(shared, (index, peers), (local, locals), restored)?;
    let kafka_out = shared.kafka.as_ref().map(|(config, _, sink)| KafkaOutputs {
        sink: sink.clone(),
        changes: config.segment_changes.clone(),
        transitions: config.journey_transitions.clone(),
        actions: config.journey_actions.clone(),
    });
    let archives = shared.archive.as_ref().map(|(dir, every)| Archives::new(dir, index, peers, *every));
    let mut sinks =
        Sinks::open(&shared.out_dir, index, shared.output_segment_bytes, kafka_out, archives, shared.skip_before)?;
    sinks.tail_to(match shared.cluster.process {
        0 => TailOut::Local(shared.handle.tail.clone()),
        _ => TailOut::Forward { tail: shared.handle.tail.clone(), allowance: Default::default(), pending: Vec::new() },
    });
    shared.actions_synced[local].store(sinks.actions_written(), Ordering::Release);
    if let (Some(manifest), Some((root, _))) = (restored, &shared.checkpoints) {
        let n = restore(manifest, root, local, locals, &mut programs, &mut sinks, &mut names)?;
        tracing::info!("worker {index}: {n} events from checkpoint {}", manifest.seq);
    }
    // Every event read from here on entered after the snapshot's time before: so it does now.
    if let Some(time) = restored_through {
        programs.start_after(time);
    }
    let mut next_ticket: u64 = (index as u64) << TICKET_WORKER_SHIFT;
    let mut pending: Vec<(Time, u64, Query)> = Vec::new();
    let mut plans: BTreeMap<String, Versions> = BTreeMap::new();
    let mut counted: (u64, u64, u64) = (0, 0, 0);
    let mut synced = Instant::now();
    let mut tallied = Instant::now();
    let mut followed = BTreeSet::new();
    let mut draining = false;
    let mut held = Held::default();
    let mut outbox = Vec::new();
    let mut history = Vec::new();
    let mut complain = crate::throttle::Throttled::every(Duration::from_secs(10));
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            draining = true;
        }
        if let Some(sequencer) = &mut sequencer {
            let register = |waiting: Waiting| {
                next_ticket += 1;
                lock(&shared.tickets).insert(next_ticket, waiting);
                next_ticket
            };
            sequencer.take(&mut programs, register, peers)?;
            if let Some((through, snapshot)) = lock(&shared.control_compaction).take() {
                sequencer.compact(through, snapshot);
            }
            let asked = shared.snapshot_request.load(Ordering::Relaxed);
            if asked > snapshots_sequenced {
                sequencer.snapshot(&mut programs)?;
                snapshots_sequenced = asked;
            }
        }
        let open = shared.inputs_open.load(Ordering::Relaxed);
        // Outputs and checkpoint chunks waiting for a full disk hold the inputs back (they are
        // read later).
        // So do dataflows still behind the watermark the last round waited for.
        let room = sinks.backlog() + inputs.backlog() < MAX_BACKLOG && programs.caught_up();
        let read = if open && room { inputs.read(&mut programs, shared, &mut sinks, &mut names)? } else { 0 };
        let progress = &shared.handle.progress;
        progress.events_processed.fetch_add(read, Ordering::Relaxed);
        // This worker's counts, added to the totals as they grow.
        let (late, duplicates, suppressed) = (programs.late(), programs.duplicates(), programs.suppressed());
        progress.late.fetch_add(late - counted.0, Ordering::Relaxed);
        progress.duplicates.fetch_add(duplicates - counted.1, Ordering::Relaxed);
        progress.suppressed.fetch_add(suppressed - counted.2, Ordering::Relaxed);
        counted = (late, duplicates, suppressed);
        // A worker reading nothing follows the others.
        let target = inputs.marks.target(now_ms(), highest(shared, index)).or_else(|| {
            (inputs.tails.is_empty() && inputs.kafka.is_none()).then(|| lowest(shared, Some(index))).flatten()
        });
        // Not while the inputs are closed or held back: what they have not read yet must not
        // find the watermark moved past it.
        let target = target.filter(|_| open && room);
        let mut failed = None;
        programs.advance_until(worker, target, Some(Instant::now() + PATIENCE), |p, w, c| {
            let at = Applied { shared, pending: &mut pending, plans: &mut plans };
            if let Err(e) = apply(p, w, c, at) {
                failed.get_or_insert(e);
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        // Advancing waits for the base dataflow only: after reading, give the programs up to
        // `CATCH_UP` to bring their outputs to the watermark, so that they are written in this
        // round (an idle round parks below instead).
        if read > 0 {
            programs.catch_up(worker, Instant::now() + CATCH_UP);
        }
        names.advance_to(programs.watermark());
        answer(&mut programs, &mut pending, &mut outbox);
        for (ticket, answer) in outbox.drain(..) {
            gossip.answer(ticket, answer);
        }
        let counts = write_outputs(&mut programs, shared, &plans, &mut sinks, &names, &mut held, &mut history)?;
        for taken in programs.take_snapshots() {
            lock(&shared.snapshot_parts).push((local, taken));
        }
        // Each user's latest transitions, for the control API (which process 0 serves: the
        // others send theirs there, and keep them for their own snapshots); those through a
        // restored snapshot's time came with it.
        for (time, journey, user, line) in history.drain(..) {
            if restored_through.is_some_and(|s| time <= s) {
                continue;
            }
            remember(shared, &journey, user, &line)?;
            if shared.cluster.process != 0 {
                gossip.history(journey, user, line);
            }
        }
        if let Err(e) = sinks.flush() {
            complain.warn(format_args!("worker {index}: outputs wait for the disk: {e}"));
        }
        shared.watermarks[index].store(programs.watermark(), Ordering::Relaxed);
        // In a cluster, the other processes send process 0 their counts and the records its
        // live streams follow, and process 0 tells them which those are.
        if shared.cluster.is_distributed() {
            gossip.tail(sinks.forwarded());
            if local == 0 && tallied.elapsed() >= TALLY_EVERY {
                match shared.cluster.process {
                    0 => {
                        let now = shared.handle.tail.prune();
                        if now != followed {
                            gossip.follow(&now);
                            followed = now;
                        }
                    }
                    process => gossip.tally(process, tally(shared)),
                }
                tallied = Instant::now();
            }
        }
        gossip.status(gossip::Status {
            worker: index,
            watermark: programs.watermark(),
            reads: !inputs.tails.is_empty() || inputs.kafka.is_some(),
            durable: shared.durable.load(Ordering::Relaxed),
            scrubbed: shared.scrubbed.load(Ordering::Relaxed),
            inputs_open: open,
            stopping: draining,
            journeys: counts,
        });
        if listen(&mut gossip, shared, local == 0)? {
            publish_reports(shared, &plans)?;
        }
        shared.handle.progress.watermark.store(lowest(shared, None).unwrap_or(0), Ordering::Relaxed);
        shared.handle.progress.durable.store(shared.cluster_durable(), Ordering::Relaxed);
        shared.handle.progress.scrubbed.store(shared.cluster_scrubbed(), Ordering::Relaxed);
        let done = draining && read == 0;
        if synced.elapsed() >= SYNC_EVERY || done {
            // Every record before the frontier was taken above: sync, then say so (not while
            // the disk refuses them: the frontier stays, and they are written later).
            let frontier = programs.output_frontier().min(held.earliest());
            match sinks.complete_through(frontier, done).and_then(|f| Ok(sinks.sync().map(|()| f)?)) {
                Ok(frontier) => {
                    shared.actions_synced[local].store(sinks.actions_written(), Ordering::Release);
                    shared.output_frontiers[local].store(frontier, Ordering::Relaxed);
                }
                Err(e) => complain.warn(format_args!("worker {index}: outputs are not durable yet: {e:#}")),
            }
            if let Some(kafka) = &mut inputs.kafka {
                kafka.commit(shared.cluster_durable(), done)?;
                kafka.publish_lag(&shared.handle.progress);
            }
            // This worker's part of a checkpoint asked for.
            let asked = shared.checkpoint_request.load(Ordering::Relaxed);
            if let Some(seq) = inputs.checkpoint().filter(|open| *open <= asked) {
                match inputs.finish_checkpoint() {
                    Ok(Some(part)) => {
                        let part = Part { watermark: programs.watermark(), ..part };
                        lock(&shared.checkpoint_parts).push((seq, part))
                    }
                    Ok(None) => {}
                    // Kept: the next sync tries again (with later positions).
                    Err(e) => complain.warn(format_args!("worker {index}: checkpoint {seq} is not written yet: {e:#}")),
                }
            }
            synced = Instant::now();
        }
        if done {
            programs.close(worker);
            gossip.close();
            names.close();
            return Ok(());
        }
        if read == 0 {
            worker.step_or_park(Some(Duration::from_millis(5)));
        }
    }
}

/// The highest watermark among the other workers (than `except`): where a worker whose
/// partitions are all quiet may go (following the lowest, two quiet workers held each other
/// back).
fn highest(shared: &Shared, except: usize) -> Option<Time> {
    watermarks(shared, Some(except)).max()
}

/// The lowest watermark among workers (but `except`).
fn lowest(shared: &Shared, except: Option<usize>) -> Option<Time> {
    watermarks(shared, except).min()
}

/// The workers' watermarks (but `except`'s).
fn watermarks(shared: &Shared, except: Option<usize>) -> impl Iterator<Item = Time> + '_ {
    let others = shared.watermarks.iter().enumerate().filter(move |(i, _)| Some(*i) != except);
    others.map(|(_, w)| w.load(Ordering::Relaxed))
}

/// Answers membership queries whose time is complete (into `outbox`).
fn answer(programs: &mut Programs, pending: &mut Vec<(Time, u64, Query)>, outbox: &mut Vec<(u64, Answer)>) {
    let mut still = Vec::new();
    for (time, ticket, query) in pending.drain(..) {
        let answer = match &query {
            Query::Members(id) if !programs.has_segment(id) => Some(Answer::Failed(format!("no segment {id:?}"))),
            Query::Members(id) => programs.members_at(id, time).map(|m| Answer::Members(time, m)),
            Query::User(user) => programs.user_segments_at(*user, time).map(|s| Answer::Segments(time, s)),
            Query::Profile(user, wanted) => {
                crate::profile::part(programs, *user, time, wanted).map(|p| Answer::Profile(time, Box::new(p)))
            }
            Query::Hours(id, from, to) => programs.journey_hours_at(id, time, *from, *to).map(|found| match found {
                Some(counts) => Answer::Hours(time, counts),
                None => Answer::Failed(format!("journey {id:?} is not running")),
            }),
            Query::Funnel(id, query) => programs.funnel_part_at(id, time, query).map(|found| match found {
                Ok(part) => Answer::Funnel(time, part),
                Err(why) => Answer::Failed(why),
            }),
            Query::Cohort(id, query) => programs.cohort_part_at(id, time, query).map(|found| match found {
                Ok(part) => Answer::Cohort(time, part),
                Err(why) => Answer::Failed(why),
            }),
            Query::Paths(id, query) => programs.paths_part_at(id, time, query).map(|found| match found {
                Ok(part) => Answer::Paths(time, part),
                Err(why) => Answer::Failed(why),
            }),
        };
        match answer {
            Some(answer) => outbox.push((ticket, answer)),
            None => still.push((time, ticket, query)),
        }
    }
    *pending = still;
    programs.hold_compaction(pending.iter().map(|p| p.0).min());
}

/// Records whose user id has not reached this process yet, with the earliest one's time.
#[derive(Default)]
struct Held {
    changes: Vec<(String, crate::programs::MemberChange)>,
    journeys: Vec<(String, JourneyOutput)>,
}

impl Held {
    /// The earliest time of a held record: outputs are complete only before it.
    fn earliest(&self) -> Time {
        let changes = self.changes.iter().map(|(_, c)| c.time);
        let journeys = self.journeys.iter().map(|(_, r)| r.time());
        changes.chain(journeys).min().unwrap_or(Time::MAX)
    }
}

/// Writes the records the programs produced since the last call (and those held before),
/// holding back each user's whose id has not arrived while names may still come for its time;
/// adds each transition written to `history` as `(time, journey, user id, line)`; returns this
/// worker's journey counters.
fn write_outputs(
    programs: &mut Programs,
    shared: &Shared,
    plans: &BTreeMap<String, Versions>,
    sinks: &mut Sinks,
    names: &Names,
    held: &mut Held,
    history: &mut Vec<(Time, String, Key, String)>,
) -> anyhow::Result<crate::cluster::gossip::JourneyCounts> {
    let complete = names.complete();
    let registry = names.registry().read().unwrap_or_else(std::sync::PoisonError::into_inner);
    // A record waits while its user's id is unknown and may still come; after that it goes
    // out under the key (an id that never came).
    let ready = |user: &Key, time: Time| time < complete || registry.contains_key(user);
    let mut users_held: BTreeSet<Key> = BTreeSet::new();
    let mut changes: BTreeMap<String, Vec<crate::programs::MemberChange>> = BTreeMap::new();
    for (id, c) in std::mem::take(&mut held.changes) {
        changes.entry(id).or_default().push(c);
    }
    let mark = programs.taking_mark();
    for id in programs.segments_with_changes() {
        changes.entry(id.clone()).or_default().extend(programs.take_changes(&id));
    }
    programs.changes_taken_before(mark);
    for (id, all) in changes {
        // A user's records stay together, in order.
        for c in &all {
            if !ready(&c.user, c.time) {
                users_held.insert(c.user);
            }
        }
        let (wait, go): (Vec<_>, Vec<_>) = all.into_iter().partition(|c| users_held.contains(&c.user));
        held.changes.extend(wait.into_iter().map(|c| (id.clone(), c)));
        if go.is_empty() {
            continue;
        }
        let delta: i64 = go.iter().map(|c| c.diff as i64).sum();
        // A removed segment's last changes still go out; its size is no longer reported.
        if programs.has_segment(&id) {
            *lock(&shared.handle.progress.segment_sizes).entry(id.clone()).or_default() += delta;
        }
        sinks.batch();
        for c in go {
            sinks.change(&id, &name_of(&registry, &c.user), c.diff, c.time, c.deleted)?;
        }
    }
    let mut records: BTreeMap<String, Vec<JourneyOutput>> = BTreeMap::new();
    for (id, r) in std::mem::take(&mut held.journeys) {
        records.entry(id).or_default().push(r);
    }
    for id in plans.keys() {
        records.entry(id.clone()).or_default().extend(programs.take_journey_outputs(id));
    }
    for (id, all) in records {
        let Some(Versions { names: versions, .. }) = plans.get(&id) else { continue };
        for r in &all {
            if !ready(&r.user(), r.time()) {
                users_held.insert(r.user());
            }
        }
        let (wait, go): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| users_held.contains(&r.user()));
        held.journeys.extend(wait.into_iter().map(|r| (id.clone(), r)));
        sinks.batch();
        for record in &go {
            match record {
                JourneyOutput::Transition(t) => {
                    let line = TransitionLine::new(t, &versions[&t.version], name_of(&registry, &t.user));
                    sinks.transition(&line)?;
                    history.push((t.time, id.clone(), t.user, serde_json::to_string(&line)?));
                }
                JourneyOutput::Action(a) => {
                    let line = ActionLine::new(a, &versions[&a.version], a.user, name_of(&registry, &a.user));
                    sinks.action(&line)?;
                    history.push((a.time, id.clone(), a.user, serde_json::to_string(&line)?));
                }
                // Counted in the reports; no output line.
                JourneyOutput::Conversion(_) => {}
            }
        }
    }
    Ok(plans
        .iter()
        .map(|(id, v)| (id.clone(), (v.plan.version, programs.journey_counts(id).into_iter().collect())))
        .collect())
}

/// Takes what the gossip brought: answers for tickets held here, and (on a process's first
/// worker, `first`) the other workers' statuses. Returns whether journey counters changed.
fn listen(gossip: &mut Gossip, shared: &Shared, first: bool) -> anyhow::Result<bool> {
    let mut counted = false;
    for message in gossip.take() {
        match message {
            Message::Answer(ticket, answer) => reply(shared, ticket, answer),
            Message::History(journey, user, line) => remember(shared, &journey, user, &line)?,
            Message::Status(status) if first => {
                let w = status.worker;
                shared.watermarks[w].fetch_max(status.watermark, Ordering::Relaxed);
                shared.durables[w].fetch_max(status.durable, Ordering::Relaxed);
                shared.scrubbeds[w].fetch_max(status.scrubbed, Ordering::Relaxed);
                if w == 0 && status.inputs_open {
                    shared.inputs_open.store(true, Ordering::Relaxed);
                }
                if status.stopping && !shared.stop.swap(true, Ordering::Relaxed) {
                    tracing::info!("worker {w} is stopping: stopping this process too");
                }
                let peers = shared.watermarks.len();
                let mut all = lock(&shared.journey_counts);
                for (id, (version, counts)) in status.journeys {
                    let slots = all.entry(id).or_insert_with(|| vec![(0, BTreeMap::new()); peers]);
                    slots[w] = (version, counts.into_iter().collect());
                    counted = true;
                }
            }
            Message::Status(_) => {}
            Message::Tally(process, tally) => {
                lock(&shared.handle.progress.peer_tallies).insert(process, tally);
            }
            Message::Tail(item) => shared.handle.tail.send(item),
            Message::Follow(topics) if shared.cluster.process != 0 => shared.handle.tail.follow_remote(topics),
            Message::Follow(_) => {}
        }
    }
    Ok(counted)
}

/// Keeps a transition line among its user's latest in the journey (at most `HISTORY`).
fn remember(shared: &Shared, journey: &str, user: Key, line: &str) -> anyhow::Result<()> {
    Ok(lock(&shared.handle.histories).remember(journey, user, line)?)
}

/// Publishes each journey's report: every worker's share summed, once all count for the
/// running version (a new version's node indices are its own).
fn publish_reports(shared: &Shared, plans: &BTreeMap<String, Versions>) -> anyhow::Result<()> {
    let all = lock(&shared.journey_counts);
    for (id, Versions { plan, .. }) in plans {
        let Some(slots) = all.get(id) else { continue };
        if slots.iter().any(|(version, _)| *version != plan.version) {
            continue;
        }
        let mut total = Counters::new();
        for (_, slot) in slots.iter() {
            for (k, v) in slot {
                *total.entry(*k).or_default() += v;
            }
        }
        if let Some(report) = reports(std::slice::from_ref(plan), &total).pop() {
            lock(&shared.handle.journey_reports).insert(id.clone(), serde_json::to_value(report)?);
        }
    }
    Ok(())
}

/// This process's counts, for process 0's overview.
fn tally(shared: &Shared) -> journeyflow_control_api::tally::Tally {
    let progress = &shared.handle.progress;
    let log_lags = progress.lags_behind(shared.wal_committed.iter().map(|c| c.load(Ordering::Acquire)));
    let user_ids = shared.handle.names.read().map_or_else(|e| e.into_inner().len(), |n| n.len());
    journeyflow_control_api::tally::Tally::of(progress, log_lags, shared.cluster.process, user_ids)
}

fn name_of(registry: &journeyflow_control_api::user_names::UserNames, user: &Key) -> Arc<str> {
    registry.get(user).cloned().unwrap_or_else(|| user.to_string().into())
}

fn reply(shared: &Shared, ticket: u64, answer: Answer) {
    let mut tickets = lock(&shared.tickets);
    if let Some((tx, due)) = tickets.get_mut(&ticket) {
        let _ = tx.send(answer);
        *due -= 1;
        if *due == 0 {
            tickets.remove(&ticket);
        }
    }
}

/// Locks a mutex; one a panicking thread left poisoned is taken as it is (every value kept
/// behind these locks is replaced whole, never left half-updated).
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What applying a request touches on a worker.
struct Applied<'a> {
    shared: &'a Shared,
    pending: &'a mut Vec<(Time, u64, Query)>,
    plans: &'a mut BTreeMap<String, Versions>,
}

/// Applies one sequenced request on this worker: a change (decided by worker 0 already, so it
/// cannot be refused here), or a membership query, answered later once complete.
fn apply(programs: &mut Programs, worker: &mut Worker, command: Sequenced, at: Applied<'_>) -> anyhow::Result<()> {
    let Applied { shared, pending, plans } = at;
    let Sequence { ticket, request } = match serde_json::from_str::<Sequence>(&command.text) {
        Ok(sequence) => sequence,
        Err(e) => {
            // Every worker reads the same text the same way: skipping it keeps them equal.
            tracing::error!("an unreadable sequenced request was skipped: {e}");
            return Ok(());
        }
    };
    match request {
        Request::Change(change) | Request::Import(change) => {
            if let Err(e) = apply_change(programs, worker, change, command.time, shared, plans) {
                // The catalog checked it: the programs disagreeing is a bug, reported loudly.
                tracing::error!("a change the catalog accepted did not apply as of {}: {e}", command.time);
            }
        }
        Request::Members { id } => pending.push((command.time, ticket, Query::Members(id))),
        Request::UserSegments { user_id } => pending.push((command.time, ticket, Query::User(Key::of(&user_id)))),
        Request::UserProfile { user_id, events } => {
            pending.push((command.time, ticket, Query::Profile(Key::of(&user_id), events)))
        }
        Request::SnapshotJourneys => programs.snapshot_journeys(command.time),
        Request::JourneyHours { id, from, to } => pending.push((command.time, ticket, Query::Hours(id, from, to))),
        Request::FunnelReport { id, query } => pending.push((command.time, ticket, Query::Funnel(id, query))),
        Request::CohortReport { id, query } => pending.push((command.time, ticket, Query::Cohort(id, query))),
        Request::PathsReport { id, query } => pending.push((command.time, ticket, Query::Paths(id, query))),
    }
    Ok(())
}

/// Applies a change to this worker's programs as of `at`.
fn apply_change(
    programs: &mut Programs,
    worker: &mut Worker,
    change: Change,
    at: Time,
    shared: &Shared,
    plans: &mut BTreeMap<String, Versions>,
) -> anyhow::Result<()> {
    let ceiling = Limits::ceiling();
    let installed = |programs: &Programs| programs.installed().into_iter().collect::<BTreeSet<String>>();
    match change {
        Change::InstallSegment { definition } => {
            let def =
                validate_segments_with(&serde_json::Value::Array(vec![definition]), &installed(programs), &ceiling)?
                    .pop()
                    .ok_or_else(|| anyhow::anyhow!("no definition"))?;
            programs.install_segment(worker, &def, at)?;
        }
        Change::ReplaceSegment { definition } => {
            // A definition may not refer to itself: its old version does not count as known.
            let mut known = installed(programs);
            known.remove(definition.get("id").and_then(|v| v.as_str()).unwrap_or_default());
            let def = validate_segments_with(&serde_json::Value::Array(vec![definition]), &known, &ceiling)?
                .pop()
                .ok_or_else(|| anyhow::anyhow!("no definition"))?;
            programs.replace_segment(worker, &def, at)?;
        }
        Change::RemoveSegment { id } => {
            programs.remove_segment(&id, at)?;
            lock(&shared.handle.progress.segment_sizes).remove(&id);
        }
        Change::DraftJourney { .. } | Change::ReviseJourney { .. } => {}
        Change::InstallJourney { definition, version } => {
            let plan = JourneyPlan::new(validate_journey_with(&definition, &installed(programs), &ceiling)?, version);
            let id = plan.id().to_string();
            programs.install_journey(worker, plan.clone(), at, Status::Ongoing)?;
            let names = BTreeMap::from([(version, JourneyNames::new(&plan))]);
            plans.insert(id, Versions { plan, names });
        }
        Change::PublishVersion { definition, version, migrate } => {
            let def = validate_journey_with(&definition, &installed(programs), &ceiling)?;
            let versions =
                plans.get_mut(&def.id).ok_or_else(|| anyhow::anyhow!("journey {:?} is not running", def.id))?;
            let plan = JourneyPlan::new(def, version);
            programs.publish_version(worker, plan.clone(), migrate, at)?;
            versions.names.insert(version, JourneyNames::replacing(&plan, &versions.plan));
            versions.plan = plan;
        }
        Change::RemoveJourney { id } => {
            // A draft never ran here; an ended journey's dataflow and reports go.
            if plans.remove(&id).is_some() {
                programs.remove_journey(worker, &id)?;
            }
            lock(&shared.handle.journey_reports).remove(&id);
            lock(&shared.handle.histories).forget_journey(&id);
            lock(&shared.journey_counts).remove(&id);
        }
        Change::JourneyCommand { id, command } => {
            let command = match command {
                Lifecycle::Pause => Command::Pause,
                Lifecycle::Resume => Command::Resume,
                Lifecycle::End => Command::End,
            };
            programs.journey_command(&id, command, at)?;
        }
        // Worker 0 entered it into the dataflow when it decided it.
        Change::DeleteUser { user, .. } => {
            let key = Key::parse(&user).ok_or_else(|| anyhow::anyhow!("a deletion of {user:?}, not a key"))?;
            programs.note_deletion(key, at);
            if worker.index() == shared.cluster.first_worker() {
                // Their id goes once the deletion's outputs are durable (unless they come back);
                // one durable before this start has nothing left to name.
                if at >= shared.skip_before {
                    shared.handle.names.write().unwrap_or_else(std::sync::PoisonError::into_inner).mark_deleted(key);
                }
                lock(&shared.erasures).push((key, at));
                if let Some(webhooks) = &shared.webhooks {
                    webhooks.forget(key, at);
                }
            }
            if worker.index() == 0 && at >= shared.skip_before {
                announce_deletion(shared, key, at)?;
            }
        }
        Change::Unsuppress { .. } => {}
        Change::InstallFunnel { definition } | Change::ReplaceFunnel { definition } => {
            programs.install_funnel(worker, validate_funnel(&definition, &ceiling).map_err(definition_errors)?, at);
        }
        Change::RemoveFunnel { id } => programs.remove_funnel(worker, &id)?,
        Change::InstallCohort { definition } | Change::ReplaceCohort { definition } => {
            programs.install_cohort(worker, validate_cohort(&definition, &ceiling).map_err(definition_errors)?, at);
        }
        Change::RemoveCohort { id } => programs.remove_cohort(worker, &id)?,
        Change::InstallPaths { definition } | Change::ReplacePaths { definition } => {
            programs.install_paths(worker, validate_paths(&definition, &ceiling).map_err(definition_errors)?, at);
        }
        Change::RemovePaths { id } => programs.remove_paths(worker, &id)?,
        Change::EnterJourney { id, users, context } => {
            let keys = users
                .iter()
                .map(|u| Key::parse(u).ok_or_else(|| anyhow::anyhow!("an entry of {u:?}, not a key")))
                .collect::<anyhow::Result<Vec<Key>>>()?;
            let context = context.map(|c| Arc::from(c.to_string()));
            // One worker of the cluster enters them (the journey's exchange takes each to its
            // owner); the API named them when it took the request.
            programs.enter_journey(&id, &keys, context, at, worker.index() == 0)?;
        }
    }
    Ok(())
}

/// Sends a record announcing the deletion of `user` as of `at` to each Kafka output topic,
/// keyed by the user's id (`{"id", "user_id", "deleted": true, "time"}`), for consumers to
/// delete what they hold; a user whose id never reached this process had no records there.
fn announce_deletion(shared: &Shared, user: Key, at: Time) -> anyhow::Result<()> {
    let Some((config, _, sink)) = &shared.kafka else { return Ok(()) };
    let Some(user_id) =
        shared.handle.names.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&user).cloned()
    else {
        return Ok(());
    };
    let id = crate::record_id::Ids::deletion(&user_id, at);
    let record = serde_json::json!({"id": id, "user_id": &*user_id, "deleted": true, "time": at}).to_string();
    for topic in [&config.segment_changes, &config.journey_transitions, &config.journey_actions] {
        sink.send(topic, user_id.as_bytes(), record.as_bytes(), &[("journeyflow.id", id.as_bytes())])?;
    }
    Ok(())
}

/// How far past the retention a user's id is kept at most (a retention further at most), for
/// outputs of the times just before a snapshot that are not written yet when the snapshot is.
const NAMES_MARGIN: Time = 24 * 3_600_000;

/// Forgets the latest transitions and actions the API keeps (on process 0) of the users
/// deleted in `erasures`, and their ids, once every output through their deletions is durable
/// (so all of theirs were remembered and named first): the deletion's own cancellations go
/// too.
pub fn forget_deleted(shared: &Shared, erasures: &[crate::scrub::Erasure]) {
    let gone: journeyflow_types::KeyMap<()> = erasures.iter().map(|(user, _)| (*user, ())).collect();
    if gone.is_empty() {
        return;
    }
    lock(&shared.handle.histories).forget_users(|user| gone.contains_key(&user));
    let mut names = shared.handle.names.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    for (user, _) in erasures {
        names.forget_deleted(user);
    }
}

/// Forgets the journey records the API keeps (on process 0) from before the event retention,
/// but where users still inside a journey stand.
pub fn forget_expired(shared: &Shared, retention: Option<Time>) {
    let Some(retention) = retention else { return };
    let watermark = shared.handle.progress.watermark.load(Ordering::Relaxed);
    let catalog = shared.handle.catalog.get();
    lock(&shared.handle.histories).forget_before(watermark.saturating_sub(retention), &catalog);
}

/// Makes the lowest worker output frontier durable: waits for Kafka to acknowledge every
/// record sent, then stores the frontier (which lets workers commit offsets below it).
pub fn make_durable(shared: &Shared) -> anyhow::Result<()> {
    let Some(low) = shared.output_frontiers.iter().map(|f| f.load(Ordering::Relaxed)).min() else {
        return Ok(());
    };
    if low <= shared.durable.load(Ordering::Relaxed) {
        return Ok(());
    }
    if let Some((_, _, sink)) = &shared.kafka {
        sink.flush(Duration::from_secs(60))?;
    }
    crate::durable::store(&shared.out_dir, low)?;
    shared.durable.store(low, Ordering::Relaxed);
    Ok(())
}

/// Deletes the ingest log segments a complete checkpoint covers: a restart reads each
/// partition from the checkpoint's position on. One that cannot be deleted now goes after a
/// later checkpoint.
fn discard_ingest_log(shared: &Shared, manifest: &Manifest) {
    for (part, offset) in &manifest.positions.wal {
        let dir = journeyflow_connectors::wal::part_dir(&shared.wal_dir, *part);
        if let Err(e) = journeyflow_connectors::wal::discard_before(&dir, *offset) {
            tracing::warn!("ingest log: segments of {} behind offset {offset} not deleted yet: {e}", dir.display());
        }
    }
}

/// Takes checkpoints: asks the workers for their parts every interval, and writes the
/// manifest once all have given theirs, leaving out of the chain the files whose events have
/// all expired (see [`Checkpointer::expired_before`]).
pub struct Checkpointer {
    root: PathBuf,
    every: Duration,
    /// How long an event matters after its time (its retention, and the dedup window), if
    /// not forever.
    keep: Option<Time>,
    last: Instant,
    previous: Option<Manifest>,
    asked: Option<u64>,
    /// When a manifest that failed is tried again.
    retry_at: Option<Instant>,
    /// When the journey snapshot asked for (on process 0) and not written or given up yet was
    /// asked for.
    snapshot_pending: Option<Instant>,
    /// The journey snapshot every local worker took, waiting for its outputs to be durable
    /// (one at most).
    taken: Option<(Time, Vec<(usize, Taken)>)>,
    /// Journey snapshots written and not in a manifest yet, oldest first.
    snapshots: Vec<SnapshotRef>,
}

impl Checkpointer {
    /// Checkpoints after `previous` (the one the run started from), every `every`; events
    /// matter for `keep` after their time (`None`: forever, and the chain keeps every file).
    pub fn new(root: PathBuf, every: Duration, keep: Option<Time>, previous: Option<Manifest>) -> Checkpointer {
        Checkpointer {
            root,
            every,
            keep,
            last: Instant::now(),
            previous,
            asked: None,
            retry_at: None,
            snapshot_pending: None,
            taken: None,
            snapshots: Vec::new(),
        }
    }

    /// Writes the journey snapshots every local worker has taken once every output through
    /// their time is durable; forgets those given up.
    ///
    /// Not before: the API's records of this process's users through a snapshot's time are
    /// written with it (a restart makes none of them again), and until then some may not be
    /// written yet (held back with their users' names, or taken after the snapshot was).
    fn write_snapshots(&mut self, shared: &Shared) {
        {
            let mut parts = lock(&shared.snapshot_parts);
            let times: BTreeSet<Time> = parts.iter().map(|(_, t)| t.time).collect();
            for time in times {
                if parts.iter().filter(|(_, t)| t.time == time).count() < shared.cluster.workers {
                    continue;
                }
                let (these, rest): (Vec<_>, Vec<_>) = parts.drain(..).partition(|(_, t)| t.time == time);
                *parts = rest;
                self.snapshot_pending = None;
                if these.iter().any(|(_, t)| t.journeys.is_none()) {
                    tracing::info!("journey snapshot as of {time} given up: a journey went first");
                    continue;
                }
                // One waits at most (each holds every journey's users): while outputs are slow
                // to be durable, newer ones are let go, and the one waiting is written first.
                if self.taken.is_some() {
                    tracing::debug!("journey snapshot as of {time} let go: an older one waits for its outputs");
                    continue;
                }
                self.taken = Some((time, these));
            }
        }
        let durable = shared.durable.load(Ordering::Relaxed);
        if let Some((time, parts)) = self.taken.take_if(|(time, _)| *time < durable) {
            match self.write_snapshot(shared, time, parts) {
                Ok(written) => self.snapshots.push(written),
                Err(e) => tracing::warn!("journey snapshot as of {time} is not written: {e:#}"),
            }
        }
    }

    fn write_snapshot(&self, shared: &Shared, time: Time, parts: Vec<(usize, Taken)>) -> anyhow::Result<SnapshotRef> {
        // The ids of the users in it, and the API's records, copied out: no lock is held while
        // writing. The users a journey holds stay named (their outputs may come from timers
        // alone); once they are, a new generation of names may start (see `UserNames`).
        let (names, gone) = {
            let mut registry = shared.handle.names.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            let users = parts.iter().flat_map(|(_, t)| t.journeys.iter().flatten()).flat_map(|j| &j.users);
            let names: journeyflow_types::KeyMap<Arc<str>> =
                users.filter_map(|(user, _)| Some((*user, registry.refresh(user)?))).collect();
            let gone = self.keep.and_then(|keep| registry.rotate(time, keep.saturating_add(keep.min(NAMES_MARGIN))));
            (names, gone)
        };
        if let Some(gone) = gone.filter(|g| !g.is_empty()) {
            tracing::info!("user ids: {} not seen for a retention forgotten", gone.len());
        }
        // Each process's snapshot holds its own users' records (process 0 keeps everyone's):
        // a restart restores them where the users' journeys restart from the same time.
        let mut records = lock(&shared.handle.histories).records();
        records.retain(|(_, user, _, _)| shared.cluster.owns(*user));
        let mut written = SnapshotRef { time, files: Vec::new(), journeys: Vec::new() };
        for (local, taken) in parts {
            let journeys = taken.journeys.unwrap_or_default();
            written.journeys.extend(journeys.iter().map(|j| j.id.clone()));
            let records: &[(String, Key, Time, String)] = if local == 0 { &records } else { &[] };
            written.files.push(crate::journey_snapshot::write(&self.root, time, local, &journeys, &names, records)?);
        }
        written.journeys.sort();
        written.journeys.dedup();
        written.files.sort();
        Ok(written)
    }

    /// The time before which a file's events no longer matter to a restart: they expired
    /// (`keep`) before every output still to be made durable, so that the restarted run
    /// computes the same state from every time it writes outputs for; and before the first
    /// publication of every journey that runs, whose users' states depend on everything the
    /// journey saw (a journey's later versions take their users over, so one past its first
    /// keeps every file).
    ///
    /// A journey in the manifest's snapshot `journeys` depends on nothing before its time but
    /// the condition memberships then, which the retention covers.
    fn expired_before(&self, shared: &Shared, journeys: Option<&SnapshotRef>) -> Time {
        let Some(keep) = self.keep else { return 0 };
        let catalog = shared.handle.catalog.get();
        let held = catalog
            .journeys
            .iter()
            .filter(|(_, entry)| entry.published())
            .map(|(id, entry)| match journeys {
                Some(snapshot) if snapshot.journeys.contains(id) => snapshot.time,
                _ if entry.version == 1 => entry.published_at.unwrap_or(0),
                _ => 0,
            })
            .min()
            .unwrap_or(Time::MAX);
        shared.cluster_durable().min(held).saturating_sub(keep)
    }

    /// Asks for the next checkpoint when due, and completes the one asked for once every
    /// worker gave its part. A manifest that cannot be written (a full disk) is tried again
    /// a few seconds later with the same parts: checkpointing goes on once it can.
    ///
    /// With each checkpoint asked for, process 0 asks for a journey snapshot (unless one is
    /// still being taken or waits to be written); a manifest names the latest snapshot written whose time is before
    /// every part's watermark (every event read past the positions entered after it).
    pub fn step(&mut self, shared: &Shared) {
        self.write_snapshots(shared);
        let seq = self.previous.as_ref().map_or(1, |m| m.seq + 1);
        match self.asked {
            None if self.last.elapsed() >= self.every => {
                // One that has not come in ten intervals (a minute at least) is asked again.
                let patience = (self.every * 10).max(Duration::from_secs(60));
                let idle = self.taken.is_none() && self.snapshot_pending.is_none_or(|at| at.elapsed() > patience);
                if shared.cluster.process == 0 && idle {
                    shared.snapshot_request.fetch_add(1, Ordering::Relaxed);
                    self.snapshot_pending = Some(Instant::now());
                }
                shared.checkpoint_request.store(seq, Ordering::Relaxed);
                self.asked = Some(seq);
            }
            Some(asked) if self.retry_at.is_none_or(|t| Instant::now() >= t) => {
                let parts: Vec<Part> = {
                    let all = lock(&shared.checkpoint_parts);
                    let these: Vec<Part> = all.iter().filter(|(s, _)| *s == asked).map(|(_, p)| p.clone()).collect();
                    if these.len() < shared.cluster.workers {
                        return;
                    }
                    these
                };
                // And through which every output is durable: a restart makes none of them again.
                let floor = parts.iter().map(|p| p.watermark).min().unwrap_or(0).min(shared.cluster_durable());
                let journeys = self.snapshots.iter().rev().find(|s| s.time < floor).cloned();
                let named = journeys.as_ref().or(self.previous.as_ref().and_then(|m| m.journeys.as_ref()));
                let expired = self.expired_before(shared, named);
                // Old files are merged unless the scrubber is at work on them (next time, then);
                // one is written again once a 32nd of the retention of it expired.
                let merging = shared.chain_files.try_lock().ok();
                let slack = merging.as_ref().map(|_| self.keep.map_or(Time::MAX, |keep| keep / 32));
                let (previous, root) = (self.previous.as_ref(), &self.root);
                let completed = crate::checkpoint::complete(root, asked, previous, parts, journeys, expired, slack);
                drop(merging);
                match completed {
                    Ok((manifest, dropped)) => {
                        tracing::info!("checkpoint {asked}: {} event files", manifest.files.len());
                        if !dropped.is_empty() {
                            match crate::checkpoint::sweep(&self.root, &manifest) {
                                Ok(n) => tracing::info!("checkpoint {asked}: {n} expired event files deleted"),
                                Err(e) => tracing::warn!("expired checkpoint files are not deleted yet: {e:#}"),
                            }
                        }
                        // Snapshots older than the one named go (newer ones wait for a manifest).
                        let kept = manifest.journeys.as_ref().map(|s| s.time);
                        self.snapshots.retain(|s| Some(s.time) > kept);
                        if let Err(e) = crate::journey_snapshot::sweep(&self.root, kept) {
                            tracing::warn!("old journey snapshots are not deleted yet: {e:#}");
                        }
                        discard_ingest_log(shared, &manifest);
                        // Changes before the snapshot's time (and durable) need not be applied
                        // again one by one: the control log may be compacted through then. Not
                        // at it: a version published at the snapshot's time is not in it yet
                        // (the one it replaces is). Not in a cluster: each process restores
                        // from its own newest checkpoint, whose snapshot may be older.
                        if shared.cluster.processes == 1 {
                            let snapshot = manifest.journeys.as_ref().map(|s| s.time);
                            let through = snapshot.unwrap_or(Time::MAX).min(floor).saturating_sub(1);
                            *lock(&shared.control_compaction) = Some((through, snapshot.is_some()));
                        }
                        lock(&shared.checkpoint_parts).retain(|(s, _)| *s != asked);
                        self.previous = Some(manifest);
                        self.asked = None;
                        self.retry_at = None;
                        self.last = Instant::now();
                    }
                    Err(e) => {
                        tracing::error!("checkpoint {asked} is not complete yet (tried again in 5s): {e:#}");
                        self.retry_at = Some(Instant::now() + Duration::from_secs(5));
                    }
                }
            }
            _ => {}
        }
    }
}
