//! One measurement each, run in a process of its own (so that its peak resident set is its
//! own), or in several for a cluster shape: the from-scratch recomputation, a closed-loop load
//! with the install figure after it, and a paced run for freshness. Worker 0 gathers every
//! worker's figures (through a dataflow, across processes too) and its process prints the
//! result as one JSON line; the other processes print `null`.

use crate::driver::{self, Bench, Members, Pace};
use crate::recompute::History;
use crate::workload::{self, Definitions};
use hdrhistogram::Histogram;
use journeyflow::admission::DEFAULT_RETENTION;
use journeyflow::cluster::gather::gather;
use journeyflow_operators::Time;
use journeyflow_types::{decode_line, Key};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// The allowed lateness of closed-loop loads: the generated files are out of time order by
/// up to a quarter of an hour.
pub const LATENESS: Time = 3_600_000;

/// Where a measurement runs: `workers` threads in each of `processes` processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Processes (over loopback TCP when more than one).
    pub processes: usize,
    /// Worker threads per process.
    pub workers: usize,
}

impl Shape {
    /// `PxW`.
    pub fn label(&self) -> String {
        format!("{}x{}", self.processes, self.workers)
    }

    /// Workers over all processes.
    pub fn peers(&self) -> usize {
        self.processes * self.workers
    }
}

impl std::str::FromStr for Shape {
    type Err = String;

    fn from_str(text: &str) -> Result<Shape, String> {
        let (p, w) = text.split_once('x').ok_or_else(|| format!("{text:?}: expected PROCESSESxWORKERS"))?;
        let number = |s: &str| s.parse::<usize>().map_err(|e| format!("{text:?}: {e}"));
        let shape = Shape { processes: number(p)?, workers: number(w)? };
        if shape.processes == 0 || shape.workers == 0 {
            return Err(format!("{text:?}: processes and workers must be at least 1"));
        }
        Ok(shape)
    }
}

/// Which process of a cluster shape a child is, and the hostfile they share.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Member {
    /// This process's id.
    pub process: usize,
    /// Every process's `host:port`.
    pub hostfile: Option<PathBuf>,
}

/// A measurement to make.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "case", rename_all = "snake_case")]
pub enum Case {
    /// Decode the file and compute S1-S6 (and the installed segment) from scratch.
    Recompute {
        /// The events.
        file: PathBuf,
    },
    /// Load the file at full speed, then install one more segment.
    Throughput {
        /// The events.
        file: PathBuf,
        /// Processes and workers.
        shape: Shape,
        /// Which process this is.
        member: Member,
        /// What is installed.
        definitions: Definitions,
        /// The time the load runs to (the file's largest timestamp).
        as_of: Time,
    },
    /// Load events before `from` at full speed, then replay those in `[from, to)` over
    /// `seconds` of wall time.
    Latency {
        /// The events.
        file: PathBuf,
        /// Processes and workers.
        shape: Shape,
        /// Which process this is.
        member: Member,
        /// Start of the paced range.
        from: Time,
        /// End of the paced range.
        to: Time,
        /// Wall seconds the paced range takes.
        seconds: f64,
    },
}

/// What the recomputation found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Recomputed {
    /// The file's largest timestamp.
    pub as_of: Time,
    /// The file's smallest timestamp.
    pub first: Time,
    /// Events decoded.
    pub events: u64,
    /// Users with an event.
    pub users: u64,
    /// Seconds to read, decode, deduplicate and group the events.
    pub load_s: f64,
    /// Seconds to compute S1-S6 as of the end over the loaded events.
    pub recompute_s: f64,
    /// Members of S1-S6 at the end, and of the installed segment just after it.
    pub sizes: BTreeMap<String, u64>,
    /// The same memberships by the independent reference evaluator (`crate::reference`),
    /// which shares no decoding or predicate code with the engine: what loads are checked
    /// against.
    pub members: BTreeMap<String, Members>,
    /// J1-J2's transitions and actions through the end by the test suite's journey
    /// interpreter (`crate::journey_reference`), as digests of their lines.
    pub journeys: JourneyLines,
}

/// The transitions and the actions of journeys, each as a digest of their lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneyLines {
    /// Transitions.
    pub transitions: Members,
    /// Actions.
    pub actions: Members,
}

impl JourneyLines {
    /// The digests of `(time, is an action, key of the line)` records through `as_of`.
    fn of(lines: &[(Time, bool, Key)], as_of: Time) -> JourneyLines {
        let kept = |action: bool| lines.iter().filter(move |l| l.0 <= as_of && l.1 == action).map(|l| l.2);
        JourneyLines { transitions: Members::of(kept(false)), actions: Members::of(kept(true)) }
    }

    fn union(self, other: &JourneyLines) -> JourneyLines {
        JourneyLines {
            transitions: self.transitions.union(&other.transitions),
            actions: self.actions.union(&other.actions),
        }
    }
}

/// What a closed-loop load measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Loaded {
    /// Lines read.
    pub events: u64,
    /// Seconds from the first line read to every output through the end.
    pub wall_s: f64,
    /// Events per second.
    pub events_per_s: f64,
    /// Events refused as late.
    pub late: u64,
    /// Members at the end per segment.
    pub sizes: BTreeMap<String, u64>,
    /// Who they are, as digests.
    pub members: BTreeMap<String, Members>,
    /// Live heap bytes after the load.
    pub heap_bytes: u64,
    /// Resident set after the load.
    pub rss_bytes: u64,
    /// Milliseconds from installing one more segment to its complete membership (when the
    /// run has segments).
    pub install_ms: Option<f64>,
    /// The installed segment's members.
    pub installed_size: Option<u64>,
    /// Who they are, as a digest.
    pub installed_members: Option<Members>,
    /// J1-J2's transitions and actions through the end (loads with journeys).
    pub journeys: Option<JourneyLines>,
    /// The process's peak resident set.
    pub peak_rss_bytes: u64,
    /// Milliseconds from installing the funnel to its report over every entry time (loads
    /// with S1-S6 only), and the users it counted at each step.
    #[serde(default)]
    pub funnel: Option<(f64, Vec<u64>)>,
}

/// Freshness of one paced run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Freshness {
    /// Offered events per second (events paced over the run's seconds).
    pub rate: f64,
    /// Events paced.
    pub events: u64,
    /// Events that caused a segment change or a journey transition at their own time.
    pub measured: u64,
    /// Milliseconds from an event's due time to the moment every output through its time
    /// had come out: median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// How late the last event was offered against its slot, in milliseconds (the pacer
    /// itself falling behind).
    pub pacer_lag_ms: f64,
    /// Events refused as late (should be none).
    pub late: u64,
}

impl Case {
    /// The processes the case runs in.
    pub fn processes(&self) -> usize {
        match self {
            Case::Recompute { .. } => 1,
            Case::Throughput { shape, .. } | Case::Latency { shape, .. } => shape.processes,
        }
    }

    /// The case as process `process` of its cluster runs it.
    pub fn for_member(&self, member: Member) -> Case {
        let mut case = self.clone();
        if let Case::Throughput { member: m, .. } | Case::Latency { member: m, .. } = &mut case {
            *m = member;
        }
        case
    }
}

/// The timely configuration of one process of `shape`.
fn timely_config(shape: Shape, member: &Member) -> anyhow::Result<timely::Config> {
    let addresses = match (&member.hostfile, shape.processes) {
        (_, 1) => Vec::new(),
        (Some(path), _) => journeyflow::cluster::read_hostfile(path)?,
        (None, n) => anyhow::bail!("{n} processes need a hostfile"),
    };
    let cluster = journeyflow::cluster::Cluster {
        processes: shape.processes,
        process: member.process,
        workers: shape.workers,
        addresses,
    };
    Ok(cluster.timely())
}

/// Runs a case and returns its result as JSON (`null` on a process other than 0).
pub fn run(case: &Case, heap: fn() -> u64) -> anyhow::Result<serde_json::Value> {
    Ok(match case {
        Case::Recompute { file } => serde_json::to_value(recompute(file)?)?,
        Case::Throughput { file, shape, member, definitions, as_of } => {
            serde_json::to_value(throughput(file, *shape, member, *definitions, *as_of, heap)?)?
        }
        Case::Latency { file, shape, member, from, to, seconds } => {
            serde_json::to_value(latency(file, *shape, member, Pace { from: *from, to: *to, seconds: *seconds })?)?
        }
    })
}

fn recompute(file: &std::path::Path) -> anyhow::Result<Recomputed> {
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parts: Vec<Vec<journeyflow_types::Event>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                s.spawn(move || -> std::io::Result<Vec<_>> {
                    let lines = driver::lines(file, i, threads)?;
                    Ok(lines.iter().filter_map(|l| decode_line(l).ok()).collect())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("decoder thread")).collect::<std::io::Result<_>>()
    })?;
    let events: Vec<_> = parts.into_iter().flatten().collect();
    let n = events.len() as u64;
    let as_of = events.iter().map(|e| e.ts).max().unwrap_or(0);
    let first = events.iter().map(|e| e.ts).min().unwrap_or(0);
    let history = History::new(events, 86_400_000);
    let history_users = history.users() as u64;
    let load_s = started.elapsed().as_secs_f64();
    let defs = workload::segments();
    let started = Instant::now();
    let members = history.members(&defs, as_of);
    let recompute_s = started.elapsed().as_secs_f64();
    let mut sizes: BTreeMap<String, u64> = members.into_iter().map(|(id, m)| (id, m.len() as u64)).collect();
    let installed = workload::installed();
    let extra = history.members(std::slice::from_ref(&installed), as_of + 1);
    sizes.insert(installed.id, extra.values().map(|m| m.len() as u64).sum());
    drop(history);
    let (members, journeys) = reference_members(file, as_of, n)?;
    Ok(Recomputed { as_of, first, events: n, users: history_users, load_s, recompute_s, sizes, members, journeys })
}

/// Events the reference evaluates at once: its events are JSON values (about 2.5 KB each with
/// its copies), so a large file is evaluated in parts of whole users.
const REFERENCE_PART: u64 = 1_000_000;

/// The members of S1-S6 at `as_of` and of the installed segment just after it, by the test
/// suite's reference evaluator over the raw lines (deduplicated within a day, as the loads),
/// and J1-J2's transitions and actions through `as_of` by its journey interpreter. `events`
/// (the file's count) sets how many parts of whole users the file is evaluated in.
fn reference_members(
    file: &std::path::Path,
    as_of: Time,
    events: u64,
) -> anyhow::Result<(BTreeMap<String, Members>, JourneyLines)> {
    use crate::journey_reference::interpret;
    use crate::reference::{accepted, Reference};
    use serde_json::Value as J;
    use std::io::{BufRead, Write};
    let parts = events.div_ceil(REFERENCE_PART).max(1);
    let dir = tempfile::tempdir()?;
    let path = |k: u64| dir.path().join(format!("part-{k}.ndjson"));
    {
        // Each user's lines to one part. Deduplication is by message id over all users: a
        // message id seen with two users would make the parts disagree with the whole.
        let mut writers = (0..parts)
            .map(|k| Ok(std::io::BufWriter::new(std::fs::File::create(path(k))?)))
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut owner: std::collections::HashMap<u128, u128> = std::collections::HashMap::new();
        for line in std::io::BufReader::new(std::fs::File::open(file)?).lines() {
            let line = line?;
            let value: J = serde_json::from_str(&line).unwrap_or(J::Null);
            let user = ["userId", "anonymousId"].iter().find_map(|k| value.get(*k).and_then(J::as_str));
            let user = Key::of(user.unwrap_or_default()).0;
            if parts > 1 {
                if let Some(id) = value.get("messageId").and_then(J::as_str) {
                    let first = *owner.entry(Key::of(id).0).or_insert(user);
                    anyhow::ensure!(first == user, "message id {id:?} is used by two users: evaluate in one part");
                }
            }
            let w = &mut writers[(user % parts as u128) as usize];
            w.write_all(line.as_bytes())?;
            w.write_all(b"\n")?;
        }
        for mut w in writers {
            w.flush()?;
        }
    }
    let mut defs: Vec<J> = serde_json::from_str(workload::SEGMENTS)?;
    let installed: Vec<J> = serde_json::from_str(workload::INSTALLED)?;
    defs.extend(installed);
    let segments: Vec<J> = serde_json::from_str(workload::SEGMENTS)?;
    let journeys: Vec<J> = serde_json::from_str(workload::JOURNEYS)?;
    let mut spans = std::collections::BTreeSet::new();
    for v in segments.iter().chain(&journeys) {
        durations(v, &mut spans);
    }
    let installed_id = workload::installed().id;
    let mut members: BTreeMap<String, Members> = BTreeMap::new();
    let mut lines_of = JourneyLines::default();
    for k in 0..parts {
        let lines: Vec<String> = std::fs::read_to_string(path(k))?.lines().map(String::from).collect();
        let events = accepted(&lines, 86_400_000);
        drop(lines);
        let reference = Reference::new(&defs, &events).retained_for(Some(DEFAULT_RETENTION));
        for def in &defs {
            let id = def["id"].as_str().ok_or_else(|| anyhow::anyhow!("a definition without an id"))?;
            let t = if id == installed_id { as_of + 1 } else { as_of };
            let part = Members::of(reference.members(id, t).iter().map(|u| Key::of(u)));
            let all = members.entry(id.to_string()).or_default();
            *all = all.union(&part);
        }
        drop(reference);
        let reference = Reference::new(&segments, &events).retained_for(Some(DEFAULT_RETENTION));
        let (transitions, actions) = interpret(&journeys, &reference, &spans, &[], as_of, None);
        let digest = |all: Vec<J>| Members::of(all.into_iter().map(driver::journey_line_key));
        let part = JourneyLines { transitions: digest(transitions), actions: digest(actions) };
        lines_of = lines_of.union(&part);
    }
    Ok((members, lines_of))
}

/// Every duration (ms) written in a definition: the interpreter's times of interest.
fn durations(v: &serde_json::Value, out: &mut std::collections::BTreeSet<u64>) {
    use serde_json::Value as J;
    match v {
        J::String(_) => out.extend(crate::reference::duration(Some(v))),
        J::Array(xs) => xs.iter().for_each(|x| durations(x, out)),
        J::Object(o) => o.values().for_each(|x| durations(x, out)),
        _ => {}
    }
}

/// What one worker of a load reports; times in seconds since the workers set out together.
#[derive(Clone, Serialize, Deserialize)]
struct WorkerLoad {
    started: f64,
    ended: f64,
    events: u64,
    late: u64,
    members: BTreeMap<String, Members>,
    journeys: Option<JourneyLines>,
    memory: Option<(u64, u64)>,
    install: Option<(f64, Members)>,
    funnel: Option<(f64, Vec<u64>)>,
    peak: u64,
}

fn throughput(
    file: &std::path::Path,
    shape: Shape,
    member: &Member,
    definitions: Definitions,
    as_of: Time,
    heap: fn() -> u64,
) -> anyhow::Result<Option<Loaded>> {
    let file = file.to_path_buf();
    let guards = timely::execute(timely_config(shape, member)?, move |worker| -> Result<Vec<WorkerLoad>, String> {
        let mut bench = Bench::new(worker, definitions, Some(LATENESS));
        bench.keep_journey_lines = definitions == Definitions::Journeys;
        // Every worker (of every process) sets out at once.
        gather(worker, ());
        let origin = Instant::now();
        let since = |t: Instant| (t - origin).as_secs_f64();
        let started = since(Instant::now());
        let events = driver::load(&mut bench, worker, &file).map_err(|e| format!("{}: {e}", file.display()))?;
        bench.hold(as_of);
        bench.advance(worker, Some(as_of + 1));
        bench.settle(worker, as_of);
        let ended = since(Instant::now());
        bench.forget_outputs();
        let journeys = bench.keep_journey_lines.then(|| JourneyLines::of(&bench.journey_lines, as_of));
        bench.journey_lines = Vec::new();
        let members = bench.members(as_of)?;
        // Each process's first worker counts its process's memory.
        let memory = (worker.index() % shape.workers == 0).then(|| (heap(), crate::machine::rss()));
        let install = (definitions != Definitions::None).then(|| {
            bench.hold(as_of + 1);
            let took = bench.install(worker, as_of + 1);
            let members = bench.members(as_of + 1)?.get(&workload::installed().id).copied().unwrap_or_default();
            Ok::<_, String>((took.as_secs_f64() * 1e3, members))
        });
        let install = install.transpose()?;
        let funnel = (definitions == Definitions::Segments).then(|| {
            bench.hold(as_of + 2);
            bench.install_funnel(worker, as_of + 2).map(|(took, users)| (took.as_secs_f64() * 1e3, users))
        });
        let funnel = funnel.transpose()?;
        let peak = crate::machine::peak_rss();
        let late = bench.late;
        Ok(gather(
            worker,
            WorkerLoad { started, ended, events, late, members, journeys, memory, install, funnel, peak },
        ))
    })
    .map_err(|e| anyhow::anyhow!("starting workers: {e}"))?;
    let mut reports = Vec::new();
    for result in guards.join() {
        reports.extend(result.map_err(|e| anyhow::anyhow!("worker failed: {e}"))?.map_err(anyhow::Error::msg)?);
    }
    if member.process != 0 {
        return Ok(None);
    }
    let start = reports.iter().map(|r| r.started).reduce(f64::min).expect("a worker");
    let end = reports.iter().map(|r| r.ended).reduce(f64::max).expect("a worker");
    let wall_s = end - start;
    let events: u64 = reports.iter().map(|r| r.events).sum();
    // Each user's memberships are on one worker: the workers' sets add up.
    let mut members: BTreeMap<String, Members> = BTreeMap::new();
    for r in &reports {
        for (id, m) in &r.members {
            let all = members.entry(id.clone()).or_default();
            *all = all.union(m);
        }
    }
    let sizes = members.iter().map(|(id, m)| (id.clone(), m.count)).collect();
    let journeys = reports.iter().filter_map(|r| r.journeys).reduce(|all, j| all.union(&j));
    // Every process's memory, added up.
    let memory: Vec<(u64, u64)> = reports.iter().filter_map(|r| r.memory).collect();
    let installs: Vec<(f64, Members)> = reports.iter().filter_map(|r| r.install).collect();
    // The slowest worker's time; every worker's users added up.
    let funnel = reports.iter().filter_map(|r| r.funnel.clone()).reduce(|(t, mut all), (u, users)| {
        all.iter_mut().zip(&users).for_each(|(a, n)| *a += n);
        (t.max(u), all)
    });
    let installed_members =
        (!installs.is_empty()).then(|| installs.iter().fold(Members::default(), |all, i| all.union(&i.1)));
    Ok(Some(Loaded {
        events,
        wall_s,
        events_per_s: events as f64 / wall_s,
        late: reports.iter().map(|r| r.late).sum(),
        sizes,
        members,
        journeys,
        heap_bytes: memory.iter().map(|m| m.0).sum(),
        rss_bytes: memory.iter().map(|m| m.1).sum(),
        install_ms: installs.iter().map(|i| i.0).reduce(f64::max),
        installed_size: installed_members.map(|m| m.count),
        installed_members,
        peak_rss_bytes: reports.iter().filter(|r| r.memory.is_some()).map(|r| r.peak).sum(),
        funnel,
    }))
}

fn latency(file: &std::path::Path, shape: Shape, member: &Member, pace: Pace) -> anyhow::Result<Option<Freshness>> {
    let file = file.to_path_buf();
    let start = Arc::new(OnceLock::new());
    let guards = timely::execute(timely_config(shape, member)?, move |worker| -> Result<_, String> {
        let share = driver::strided_lines(&file, worker.index(), worker.peers())
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let mut bench = Bench::new(worker, Definitions::Journeys, None);
        bench.with_funnel(worker);
        // The paced range starts when the load before it has settled on every worker, which
        // every process sees within the time progress takes to travel.
        let paced = driver::paced(&mut bench, worker, share, pace, &start);
        Ok(gather(worker, (paced, bench.late)))
    })
    .map_err(|e| anyhow::anyhow!("starting workers: {e}"))?;
    let mut runs = Vec::new();
    for result in guards.join() {
        runs.extend(result.map_err(|e| anyhow::anyhow!("worker failed: {e}"))?.map_err(anyhow::Error::msg)?);
    }
    if member.process != 0 {
        return Ok(None);
    }
    let caused: HashSet<(Key, Time)> = runs.iter().flat_map(|(r, _)| r.outputs.iter().copied()).collect();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    let mut events = 0;
    for (run, _) in &runs {
        events += run.events.len() as u64;
        for (user, ts, due) in &run.events {
            if !caused.contains(&(*user, *ts)) {
                continue;
            }
            // The first moment the outputs were complete through `ts`.
            let i = run.frontier.partition_point(|(f, _)| *f <= *ts);
            let done = run.frontier.get(i).map_or(u64::MAX, |(_, at)| *at);
            histogram.saturating_record((done.saturating_sub(*due) / 1_000).max(1));
        }
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1e3;
    let pacer_lag_ms =
        runs.iter().map(|(r, _)| r.last_offered.0.saturating_sub(r.last_offered.1) as f64 / 1e6).fold(0.0, f64::max);
    Ok(Some(Freshness {
        rate: events as f64 / pace.seconds,
        events,
        measured: histogram.len(),
        p50: ms(0.5),
        p99: ms(0.99),
        p999: ms(0.999),
        max: histogram.max() as f64 / 1e3,
        pacer_lag_ms,
        late: runs.iter().map(|(_, late)| late).sum(),
    }))
}
