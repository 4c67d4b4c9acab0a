//! Drives the live engine (`Programs`, what `journeyflow run` runs) on timely workers for
//! the measurements: a closed-loop load of an events file at full speed, a segment installed
//! over what was loaded, and an open-loop run paced by a schedule, which records when each
//! event was due and when the engine's outputs were complete through each time.

use crate::workload::{self, Definitions};
use journeyflow::admission::{IngestConfig, LatePolicy, DEFAULT_RETENTION};
use journeyflow::journey_output::{ActionLine, JourneyNames, TransitionLine};
use journeyflow::programs::Programs;
use journeyflow_connectors::ndjson::{PartReader, RawRecord};
use journeyflow_control_api::buckets::Buckets;
use journeyflow_operators::journey::record::{JourneyOutput, Status};
use journeyflow_operators::Time;
use journeyflow_types::{decode_record, Key};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use timely::worker::Worker;

/// Records longer than this are not events of the workload.
const MAX_RECORD: usize = 1 << 20;

/// Events per worker between two watermark advances in a closed-loop load.
pub const BATCH: usize = 100_000;

/// The engine of one worker with the definitions of a run installed at time 0.
pub struct Bench {
    programs: Programs,
    segments: Vec<String>,
    journeys: Vec<String>,
    /// Outputs drained so far: `(user, time)`, segment changes and journey transitions.
    pub outputs: Vec<(Key, Time)>,
    /// Whether `outputs` keeps what is drained (paced runs); loads only free it.
    pub keep_outputs: bool,
    /// Actions drained so far.
    pub actions: u64,
    /// Whether the journeys' transitions and actions are kept as [`Bench::journey_lines`].
    pub keep_journey_lines: bool,
    /// Each transition and action drained, as `(time, is an action, key of its line)`: the
    /// line as `replay` writes it (without its id), the user named by their key.
    pub journey_lines: Vec<(Time, bool, Key)>,
    names: Vec<JourneyNames>,
    /// Events refused as late.
    pub late: u64,
}

impl Bench {
    /// Builds the base dataflow and installs `which` definitions; the watermark trails the
    /// largest time offered by `lateness` (`None`: it moves only when told).
    pub fn new(worker: &mut Worker, which: Definitions, lateness: Option<Time>) -> Bench {
        let config = IngestConfig {
            allowed_lateness: lateness,
            late_policy: LatePolicy::DeadLetter,
            dedup_window: 86_400_000,
            retention: Some(DEFAULT_RETENTION),
        };
        let mut programs = Programs::new(worker, config);
        let (mut segments, mut journeys, mut names) = (Vec::new(), Vec::new(), Vec::new());
        if which != Definitions::None {
            for def in workload::segments() {
                programs.install_segment(worker, &def, 0).expect("S1-S6 install in order");
                segments.push(def.id);
            }
        }
        if which == Definitions::Journeys {
            for plan in workload::journeys() {
                journeys.push(plan.id().to_string());
                names.push(JourneyNames::new(&plan));
                programs.install_journey(worker, plan, 0, Status::Ongoing).expect("J1-J2 install");
            }
        }
        Bench {
            programs,
            segments,
            journeys,
            outputs: Vec::new(),
            keep_outputs: false,
            actions: 0,
            keep_journey_lines: false,
            journey_lines: Vec::new(),
            names,
            late: 0,
        }
    }

    /// Offers one NDJSON line; false when it is not an event or is late.
    pub fn offer_line(&mut self, bytes: &[u8]) -> bool {
        let Ok((event, _)) = decode_record(bytes) else { return false };
        let ok = self.programs.offer(event).is_ok();
        self.late += u64::from(!ok);
        ok
    }

    /// Moves the watermark (to `to` if given and later) and lets the dataflows work.
    pub fn advance(&mut self, worker: &mut Worker, to: Option<Time>) {
        self.programs.advance(worker, to, |_, _, _| {});
        self.drain();
    }

    /// Every record before this time has come out, and every analysis (the funnel of a paced
    /// run) has counted every event before it.
    pub fn frontier(&self) -> Time {
        self.programs.output_frontier().min(self.programs.analyses_frontier())
    }

    /// Installs the analytics figure's funnel before any event (paced runs keep it current
    /// beside S1-S6 and J1-J2).
    pub fn with_funnel(&mut self, worker: &mut Worker) {
        self.programs.install_funnel(worker, workload::funnel(), 0);
    }

    /// Takes the outputs produced since the last call.
    fn drain(&mut self) {
        for id in &self.segments {
            let changes = self.programs.take_changes(id);
            if self.keep_outputs {
                self.outputs.extend(changes.into_iter().map(|c| (c.user, c.time)));
            }
        }
        for (id, names) in self.journeys.iter().zip(&self.names) {
            for record in self.programs.take_journey_outputs(id) {
                if self.keep_journey_lines {
                    self.journey_lines.extend(line_key(&record, names));
                }
                match record {
                    JourneyOutput::Transition(t) if self.keep_outputs => self.outputs.push((t.user, t.time)),
                    JourneyOutput::Transition(_) | JourneyOutput::Conversion(_) => {}
                    JourneyOutput::Action(_) => self.actions += 1,
                }
            }
        }
    }

    /// Steps until every output through `time` has come out.
    pub fn settle(&mut self, worker: &mut Worker, time: Time) {
        self.programs.settle(worker, time);
        self.drain();
    }

    /// Keeps the traces readable as of `time`.
    pub fn hold(&mut self, time: Time) {
        self.programs.hold_compaction(Some(time));
    }

    /// This worker's members of every installed segment as of `time`, as a [`Members`] digest
    /// (an error when a segment is not complete through `time`: settle first).
    pub fn members(&mut self, time: Time) -> Result<BTreeMap<String, Members>, String> {
        let ids = self.programs.installed();
        ids.into_iter()
            .map(|id| match self.programs.members_at(&id, time) {
                Some(users) => Ok((id, Members::of(users))),
                None => Err(format!("segment {id} is not complete through {time}")),
            })
            .collect()
    }

    /// Installs the install figure's segment as of `at` (past everything loaded) and steps
    /// until its membership is complete; returns the wall time it took on this worker.
    pub fn install(&mut self, worker: &mut Worker, at: Time) -> Duration {
        let started = Instant::now();
        self.programs.install_segment(worker, &workload::installed(), at).expect("the installed segment is new");
        self.programs.advance(worker, Some(at + 1), |_, _, _| {});
        self.programs.settle(worker, at);
        started.elapsed()
    }

    /// Installs the analytics figure's funnel as of `at` (past everything loaded), steps until
    /// its attempts are complete and reads this worker's share of its report over every entry
    /// time as of `at`; returns the wall time that took and the users it counted at each step.
    pub fn install_funnel(&mut self, worker: &mut Worker, at: Time) -> Result<(Duration, Vec<u64>), String> {
        let started = Instant::now();
        let funnel = workload::funnel();
        let (id, steps) = (funnel.id.clone(), funnel.steps.len());
        self.programs.install_funnel(worker, funnel, at);
        self.programs.advance(worker, Some(at + 1), |_, _, _| {});
        self.programs.settle(worker, at);
        let query = Buckets::new(0, at + 1, None)?;
        let part = self.programs.funnel_part_at(&id, at, &query).ok_or("the funnel is not complete")??;
        let took = started.elapsed();
        let mut users = vec![0; steps];
        for cell in &part.cells {
            for (all, n) in users.iter_mut().zip(&cell.users) {
                *all += n;
            }
        }
        Ok((took, users))
    }

    /// Outputs drained and not needed: frees them.
    pub fn forget_outputs(&mut self) {
        self.outputs = Vec::new();
    }
}

/// Reads this worker's share of an events file, every line.
pub fn lines(path: &Path, index: usize, peers: usize) -> std::io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for record in PartReader::open(path, index, peers, MAX_RECORD)? {
        if let RawRecord::Line { bytes, .. } = record? {
            out.push(bytes);
        }
    }
    Ok(out)
}

/// Every `peers`-th line of an events file from line `index` on: a share spread evenly over
/// event time (a share of whole blocks, as `PartReader` deals them, leaves gaps of days in a
/// time-ordered file, which a paced run would wait on).
pub fn strided_lines(path: &Path, index: usize, peers: usize) -> std::io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for (i, record) in PartReader::open(path, 0, 1, MAX_RECORD)?.enumerate() {
        if let RawRecord::Line { bytes, .. } = record? {
            if i % peers == index {
                out.push(bytes);
            }
        }
    }
    Ok(out)
}

/// Offers this worker's share of `path` in file order at full speed, advancing the
/// watermark every `BATCH` events; returns the number of lines read.
pub fn load(bench: &mut Bench, worker: &mut Worker, path: &Path) -> std::io::Result<u64> {
    let mut n = 0u64;
    for record in PartReader::open(path, worker.index(), worker.peers(), MAX_RECORD)? {
        if let RawRecord::Line { bytes, .. } = record? {
            bench.offer_line(&bytes);
            n += 1;
            if n.is_multiple_of(BATCH as u64) {
                bench.advance(worker, None);
                bench.forget_outputs();
            }
        }
    }
    Ok(n)
}

/// An event's timestamp without decoding the rest (`None`: not found).
pub fn timestamp(line: &[u8]) -> Option<Time> {
    const KEY: &[u8] = b"\"timestamp\":";
    let at = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits]).ok()?.parse().ok()
}

/// What a paced run recorded on one worker.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Paced {
    /// Paced events: `(user, time, due)`, `due` in nanoseconds after the schedule's start.
    pub events: Vec<(Key, Time, u64)>,
    /// `(frontier, nanoseconds after the start)` each time the output frontier moved.
    pub frontier: Vec<(Time, u64)>,
    /// Outputs at times in the paced range.
    pub outputs: Vec<(Key, Time)>,
    /// Nanoseconds after the start at which the last event was offered, and when it was due.
    pub last_offered: (u64, u64),
}

/// How a paced run goes: event time `[from, to)` is replayed over `seconds` of wall time.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Events before this time are loaded first, at full speed (warm state).
    pub from: Time,
    /// Events in `[from, to)` are paced.
    pub to: Time,
    /// Wall seconds the paced range takes.
    pub seconds: f64,
}

impl Pace {
    /// When an event at `ts` is due, in nanoseconds after the start: event time maps
    /// linearly onto wall time, the same on every worker, so the workers move through event
    /// time together whatever share of the events each reads.
    pub fn due(&self, ts: Time) -> u64 {
        ((ts - self.from) as f64 / (self.to - self.from).max(1) as f64 * self.seconds * 1e9) as u64
    }
}

/// Loads this worker's events before `pace.from` at full speed, then offers those in
/// `[pace.from, pace.to)` on a fixed schedule (open loop: an event is due at its time whether
/// or not the engine kept up). Events go in time order and the watermark follows the next
/// event, as from a source that reads a time-ordered log. `start` is shared by the workers:
/// the first to finish loading sets the schedule's start.
pub fn paced(
    bench: &mut Bench,
    worker: &mut Worker,
    mut share: Vec<Vec<u8>>,
    pace: Pace,
    start: &OnceLock<Instant>,
) -> Paced {
    let mut timed: Vec<(Time, Vec<u8>)> =
        share.drain(..).filter_map(|l| timestamp(&l).map(|t| (t, l))).filter(|(t, _)| *t < pace.to).collect();
    timed.sort_by_key(|(t, _)| *t);
    let first = timed.partition_point(|(t, _)| *t < pace.from);
    for (i, (_, line)) in timed[..first].iter().enumerate() {
        bench.offer_line(line);
        if (i + 1).is_multiple_of(BATCH) {
            let next = timed.get(i + 1).map_or(pace.from, |(t, _)| *t).min(pace.from);
            bench.advance(worker, Some(next));
            bench.forget_outputs();
        }
    }
    bench.advance(worker, Some(pace.from));
    bench.settle(worker, pace.from.saturating_sub(1));
    // Once more, so that the traces take in (and merge) the load's last batches now: the
    // schedule measures the paced events, not the tail of the load before them.
    bench.advance(worker, Some(pace.from));
    bench.forget_outputs();
    bench.keep_outputs = true;
    let t0 = *start.get_or_init(|| Instant::now() + Duration::from_millis(20));
    let since = |t: Instant| t.saturating_duration_since(t0).as_nanos() as u64;
    let mut out = Paced::default();
    let paced = &timed[first..];
    let mut next = 0usize;
    let mut seen = bench.frontier();
    loop {
        let now = Instant::now();
        while next < paced.len() && pace.due(paced[next].0) <= since(now) {
            let (ts, line) = &paced[next];
            let due = pace.due(*ts);
            if let Ok((event, _)) = decode_record(line) {
                out.events.push((event.user(), *ts, due));
                bench.late += u64::from(bench.programs.offer(event).is_err());
            }
            out.last_offered = (since(Instant::now()), due);
            next += 1;
        }
        let to = paced.get(next).map_or(pace.to, |(t, _)| *t);
        // Also when idle: advancing hands the lifecycle frontier on to the journeys.
        bench.advance(worker, Some(to));
        // Advancing waits for the base dataflow only: bring the programs' outputs up to the
        // watermark too, until the next event is due (at most a millisecond), and park until
        // then when they are.
        let soon = Instant::now() + Duration::from_millis(1);
        let due = paced.get(next).map(|(ts, _)| t0 + Duration::from_nanos(pace.due(*ts)));
        let deadline = due.map_or(soon, |due| due.min(soon));
        if bench.programs.catch_up(worker, deadline) {
            worker.step_or_park(Some(deadline.saturating_duration_since(Instant::now())));
        }
        bench.drain();
        let frontier = bench.frontier();
        if frontier > seen {
            seen = frontier;
            out.frontier.push((frontier, since(Instant::now())));
        }
        if next == paced.len() && frontier >= pace.to {
            break;
        }
    }
    out.outputs = std::mem::take(&mut bench.outputs);
    out.outputs.retain(|(_, t)| *t >= pace.from && *t < pace.to);
    out
}

/// `(time, is an action, key of its line)` of a journey record: the line `replay` writes
/// (without its id), with the user named by their key (as [`journey_line_key`] names them);
/// none for a conversion, which has no line.
fn line_key(record: &JourneyOutput, names: &JourneyNames) -> Option<(Time, bool, Key)> {
    let (value, time, action) = match record {
        JourneyOutput::Transition(t) => {
            (serde_json::to_value(TransitionLine::new(t, names, t.user.to_string().into())), t.time, false)
        }
        JourneyOutput::Action(a) => {
            (serde_json::to_value(ActionLine::new(a, names, a.user, a.user.to_string().into())), a.time, true)
        }
        JourneyOutput::Conversion(_) => return None,
    };
    // Strings, numbers and JSON values only: turning them into a JSON value does not fail. If
    // it ever did, the line's key would match no reference line and the check would say so.
    let text = value.map_or_else(|e| format!("unserializable journey line: {e}"), |v| v.to_string());
    Some((time, action, Key::of(&text)))
}

/// The key of a journey line of a reference evaluator (a JSON object whose `user_id` is the
/// user's id): the key of the same line with the user named by their key instead, as the
/// engine's lines are.
pub fn journey_line_key(mut line: serde_json::Value) -> Key {
    if let Some(user) = line.get_mut("user_id") {
        if let Some(id) = user.as_str() {
            *user = serde_json::Value::String(Key::of(id).to_string());
        }
    }
    Key::of(&line.to_string())
}

/// A set of users in a few bytes: how many, and an order-independent digest of who (the sum
/// of a mix of each user's key), so that the members of a segment on every worker add up and
/// compare with a from-scratch evaluation without moving the sets around.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Members {
    /// Users in the set.
    pub count: u64,
    /// Wrapping sum of each user's mixed key.
    pub digest: u64,
}

impl Members {
    /// The digest of these users.
    pub fn of(users: impl IntoIterator<Item = Key>) -> Members {
        users.into_iter().fold(Members::default(), |m, k| m.union(&Members::one(k)))
    }

    fn one(key: Key) -> Members {
        // splitmix64's finaliser over both halves: any difference in who changes the sum.
        let mut x = (key.0 as u64) ^ ((key.0 >> 64) as u64).rotate_left(29);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Members { count: 1, digest: x ^ (x >> 31) }
    }

    /// The union of two disjoint sets.
    pub fn union(self, other: &Members) -> Members {
        Members { count: self.count + other.count, digest: self.digest.wrapping_add(other.digest) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_tells_who_not_only_how_many_and_adds_up_over_workers() {
        let [a, b, c] = ["u1", "u2", "u3"].map(Key::of);
        assert_eq!(Members::of([a, b]), Members::of([b, a]));
        assert_eq!(Members::of([a, b]).count, Members::of([a, c]).count);
        assert_ne!(Members::of([a, b]), Members::of([a, c]), "same size, other users");
        assert_eq!(Members::of([a]).union(&Members::of([b, c])), Members::of([a, b, c]));
    }
}
