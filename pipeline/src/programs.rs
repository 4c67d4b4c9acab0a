//! The live engine's dataflows on one worker: a base dataflow that deduplicates events and
//! keeps them for the retention, the universe of users and their traits as shared
//! arrangements; and one
//! dataflow per installed segment, built at runtime over imports of those arrangements (and
//! of the memberships it refers to), so a segment installed now is computed over the
//! retained history at once and a removed one frees its memory. Journeys are programs too;
//! a journey's next version is a new dataflow that takes the running version's users over
//! on each worker as of its publish time, after which the old dataflow goes.
//!
//! Every worker must install and remove the same programs in the same order, as of the same
//! time. Commands enter on any one worker through [`Programs::submit`] and travel on a
//! broadcast control input that follows each worker's watermark; a command entered at time
//! `T` is applied by every worker once the control frontier has passed `T`, as of `T`. Traces
//! are compacted only up to the control frontier, and complete commands are applied before
//! compacting, so every worker's history is still distinguishable at `T` when it applies one.

use crate::admission::{admit, IngestConfig, Refused};
use crate::cohort::CohortProgram;
use crate::compile::Compiler;
use crate::funnel::FunnelProgram;
use crate::journey_output::hour_counts;
use crate::journey_snapshot::{JourneyState, Restore, Restored, Taken};
use crate::paths::PathsProgram;
use differential_dataflow::input::InputSession;
use differential_dataflow::operators::arrange::{ShutdownButton, TraceAgent};
use differential_dataflow::trace::cursor::{cursor_list, Cursor};
use differential_dataflow::trace::implementations::{KeySpine, ValSpine};
use differential_dataflow::trace::TraceReader;
use journeyflow_control_api::buckets::Buckets;
use journeyflow_control_api::cohort_report::CohortPart;
use journeyflow_control_api::funnel_report::FunnelPart;
use journeyflow_control_api::handle::HourCount;
use journeyflow_control_api::path_report::PathsPart;
use journeyflow_operators::dedup::dedup;
use journeyflow_operators::journey::handover::Handover;
use journeyflow_operators::journey::plan::JourneyPlan;
use journeyflow_operators::journey::quota::{quota, QuotaState};
use journeyflow_operators::journey::record::{Command, JourneyOutput, Status};
use journeyflow_operators::journey::stats::{hour_of, stats, Flow, Stat};
use journeyflow_operators::journey::{journey, Control, Entry, Snapshots, Start};
use journeyflow_operators::profiles::profiles;
use journeyflow_operators::retain::{retain, Erase, Store};
use journeyflow_operators::select::arrange_events;
use journeyflow_operators::{SharedEvent, Time, UserId};
use journeyflow_types::cohort::CohortDefinition;
use journeyflow_types::funnel::FunnelDefinition;
use journeyflow_types::paths::PathsDefinition;
use journeyflow_types::{Migration, Record, SegmentDefinition, Value};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;
use timely::progress::frontier::{Antichain, AntichainRef};
use timely::worker::Worker;

/// Deduplicated events by user.
pub use journeyflow_operators::select::EventsTrace;
/// A set of users (a membership, or the universe).
pub type UsersTrace = TraceAgent<KeySpine<UserId, Time, isize>>;
/// Latest trait values by `(user, trait)`.
pub type TraitsTrace = TraceAgent<ValSpine<(UserId, String), Value, Time, isize>>;

pub(crate) type Button = ShutdownButton<timely::dataflow::operators::CapabilitySet<Time>>;

/// One membership change of an installed segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemberChange {
    /// Event time of the change (for a segment installed over history: its install time).
    pub time: Time,
    /// The user.
    pub user: UserId,
    /// +1 enters, -1 exits.
    pub diff: isize,
    /// An exit because the user was deleted at this time.
    pub deleted: bool,
}

/// The base traces, borrowed to import into a program's dataflow.
struct Base<'a> {
    events: &'a mut EventsTrace,
    universe: &'a mut UsersTrace,
    traits: &'a mut TraitsTrace,
}

/// Imports (as of `at`) the users deleted at each time: each present during the millisecond
/// of their deletion only.
fn import_deleted<'s>(
    deleted: &mut UsersTrace,
    scope: timely::dataflow::Scope<'s, Time>,
    at: Time,
    buttons: &mut Vec<Button>,
) -> differential_dataflow::VecCollection<'s, Time, UserId> {
    let since = deleted.get_logical_compaction().first().copied().unwrap_or(Time::MAX).max(at);
    let (imported, button) =
        deleted.import_frontier_core(scope, "Deleted", Antichain::from_elem(since), Antichain::new());
    buttons.push(button);
    imported.as_collection(|u, ()| *u)
}

impl Base<'_> {
    /// A compiler over imports (as of `at`) of the base traces and of the memberships of the
    /// segments in `uses`; the imports' shutdown buttons go to `buttons`.
    fn import<'s>(
        self,
        scope: timely::dataflow::Scope<'s, Time>,
        segments: &mut BTreeMap<String, SegmentProgram>,
        uses: &[String],
        at: Time,
        buttons: &mut Vec<Button>,
    ) -> Compiler<'s> {
        let since = |compacted: AntichainRef<Time>| {
            Antichain::from_elem(compacted.first().copied().unwrap_or(Time::MAX).max(at))
        };
        let until = Antichain::new;
        let s = since(self.events.get_logical_compaction());
        let (events, b1) = self.events.import_frontier_core(scope, "Events", s, until());
        let s = since(self.universe.get_logical_compaction());
        let (universe, b2) = self.universe.import_frontier_core(scope, "Universe", s, until());
        let s = since(self.traits.get_logical_compaction());
        let (traits, b3) = self.traits.import_frontier_core(scope, "Traits", s, until());
        buttons.extend([b1, b2, b3]);
        let mut imported = HashMap::new();
        for id in uses {
            let program = segments.get_mut(id).expect("callers check references");
            let s = since(program.members.get_logical_compaction());
            let (members, button) = program.members.import_frontier_core(scope, id, s, until());
            buttons.push(button);
            imported.insert(id.clone(), members.as_collection(|u, ()| *u));
        }
        Compiler::over(events, universe.as_collection(|u, ()| *u), traits, imported)
    }
}

/// An installed segment's dataflow.
struct SegmentProgram {
    dataflow: usize,
    probe: ProbeHandle<Time>,
    members: UsersTrace,
    buttons: Vec<Button>,
    changes: Rc<RefCell<Vec<MemberChange>>>,
    /// Ids of the installed segments this one refers to.
    uses: Vec<String>,
}

/// One worker's report counters of one journey version.
type Counters = BTreeMap<Stat, isize>;

/// An installed journey's dataflow, with its own lifecycle input (every worker enters the
/// same commands at the same times).
struct JourneyProgram {
    dataflow: usize,
    buttons: Vec<Button>,
    control: InputSession<Time, Control, isize>,
    commands: u64,
    /// Entries from outside: entered on one worker only, advanced on every worker with
    /// `control`.
    entries: InputSession<Time, Entry, isize>,
    /// Entries entered so far here (their sequence numbers).
    entered: u64,
    /// The version's plan.
    plan: Rc<JourneyPlan>,
    outputs: Rc<RefCell<Vec<JourneyOutput>>>,
    uses: Vec<String>,
    probe: ProbeHandle<Time>,
    /// This worker's share of the journey's report counters.
    counts: Rc<RefCell<Counters>>,
    /// The counters through each snapshot's time asked for and not taken yet.
    counts_through: Rc<RefCell<Vec<(Time, Counters)>>>,
    /// Where this version leaves its users for the next one.
    handover: Handover,
    /// Its version.
    version: u32,
    /// Where the operator leaves its snapshots.
    snapshots: Snapshots,
    /// Restored from a snapshot as of this time: lifecycle commands through it are in the
    /// status restored, and not entered again.
    restored: Option<Time>,
}

impl JourneyProgram {
    /// Takes the operator's snapshot as of `time`, with the counters through it, if it is there.
    fn take_snapshot(&self, id: &str, version: u32, time: Time) -> Option<JourneyState> {
        let mut snapshots = self.snapshots.borrow_mut();
        let at = snapshots.iter().position(|s| s.time == time)?;
        let snapshot = snapshots.remove(at);
        let mut through = self.counts_through.borrow_mut();
        let counts = through.iter().position(|(s, _)| *s == time).map(|at| through.remove(at).1).unwrap_or_default();
        Some(JourneyState {
            id: id.to_string(),
            version,
            status: snapshot.status,
            users: snapshot.users,
            counts,
            quota: snapshot.quota,
        })
    }

    /// Enters a lifecycle command as of `at`, or as of the input's time if later; returns the time.
    fn command(&mut self, command: Command, at: Time) -> Time {
        self.commands += 1;
        let at = at.max(*self.control.time());
        self.control.update_at((0, self.commands, command), at, 1);
        at
    }

    /// Moves both lifecycle-time inputs (commands and entries) to `time`.
    fn follow(&mut self, time: Time) {
        if time > *self.control.time() {
            self.control.advance_to(time);
        }
        if time > *self.entries.time() {
            self.entries.advance_to(time);
        }
        self.control.flush();
        self.entries.flush();
    }
}

/// Stops a program's imports and drops its dataflow.
/// How long a wait parks at most before it looks again (a message from another worker wakes it
/// sooner).
const PARK: Duration = Duration::from_millis(10);

/// Steps `worker` while `busy()`, parked whenever no dataflow has work, until `deadline` (none:
/// as long as it takes). Returns whether `busy()` cleared. Spinning instead kept a core busy
/// for as long as a quiet input held the others back.
fn wait_while(worker: &mut Worker, deadline: Option<Instant>, mut busy: impl FnMut() -> bool) -> bool {
    while busy() {
        let park = match deadline {
            None => PARK,
            Some(deadline) => match deadline.saturating_duration_since(Instant::now()) {
                left if left.is_zero() => return false,
                left => left.min(PARK),
            },
        };
        worker.step_or_park(Some(park));
    }
    true
}

pub(crate) fn shut(worker: &mut Worker, mut buttons: Vec<Button>, dataflow: usize) {
    for button in &mut buttons {
        button.press();
    }
    worker.drop_dataflow(dataflow);
}

/// A segment program replaced or removed as of `at`: it runs until its outputs are complete
/// through `at` (the changes it made up to then stand; later ones are not its), then goes.
struct RetiredSegment {
    id: String,
    at: Time,
    program: SegmentProgram,
}

/// A journey version that a newer one replaced as of `at`: kept until the newer one has taken
/// its users and its last outputs are read.
struct Retiring {
    id: String,
    at: Time,
    program: JourneyProgram,
}

/// Why a program could not be installed or removed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// The id is taken.
    #[error("segment {0:?} is already installed")]
    Exists(String),
    /// No such program.
    #[error("segment {0:?} is not installed")]
    Unknown(String),
    /// A reference to a segment that is not installed.
    #[error("{0:?} refers to segment {1:?}, which is not installed")]
    Missing(String, String),
    /// The journey id is taken.
    #[error("journey {0:?} is already installed")]
    JourneyExists(String),
    /// No such journey.
    #[error("journey {0:?} is not installed")]
    UnknownJourney(String),
    /// No such funnel.
    #[error("funnel {0:?} is not installed")]
    UnknownFunnel(String),
    /// No such retention cohort.
    #[error("cohort {0:?} is not installed")]
    UnknownCohort(String),
    /// No such path analysis.
    #[error("path analysis {0:?} is not installed")]
    UnknownPaths(String),
    /// Other programs use it.
    #[error("segment {0:?} is used by {1:?}")]
    InUse(String, Vec<String>),
}

/// The base dataflow and the installed programs of one worker.
pub struct Programs {
    input: InputSession<Time, SharedEvent, isize>,
    config: IngestConfig,
    max_seen: Option<Time>,
    events: EventsTrace,
    universe: UsersTrace,
    traits: TraitsTrace,
    /// Users deleted, each present at the millisecond of their deletion only.
    deleted: UsersTrace,
    /// Deletions and (un)suppressions enter here (on one worker), as of their times; it
    /// follows the control input.
    erasures: InputSession<Time, (UserId, Erase), isize>,
    /// Events of suppressed users dropped on this worker.
    suppressed: Rc<Cell<u64>>,
    /// Deletions applied on this worker whose exits may not be taken yet: `(time, user)`.
    recent_deletions: std::collections::BTreeSet<(Time, UserId)>,
    probe: ProbeHandle<Time>,
    duplicates: Rc<Cell<u64>>,
    segments: BTreeMap<String, SegmentProgram>,
    journeys: BTreeMap<String, JourneyProgram>,
    retiring: Vec<Retiring>,
    leftovers: BTreeMap<String, Vec<JourneyOutput>>,
    /// Segments replaced or removed as of a time, running until complete through it.
    retired_segments: Vec<RetiredSegment>,
    /// Changes of dropped retired segments, through their last time, not taken yet.
    segment_leftovers: BTreeMap<String, Vec<MemberChange>>,
    control: InputSession<Time, (u64, String), isize>,
    control_probe: ProbeHandle<Time>,
    commands: Rc<RefCell<Vec<(Time, u64, String)>>>,
    submitted: u64,
    hold: Option<Time>,
    /// The watermark the last advance waited for the base dataflow to pass.
    awaited: Time,
    late: u64,
    /// Each user's retained events on this worker.
    store: Store,
    /// Since when each member of each installed segment (whose changes were taken here) has
    /// been one, by segment id.
    since: BTreeMap<String, journeyflow_types::KeyMap<Time>>,
    /// Journey snapshots asked for and not taken yet: each time, with the versions running then.
    snapshots_asked: Vec<(Time, Vec<(String, u32)>)>,
    /// The journey states a restart starts from, taken as their versions are installed.
    restore: Option<Restore>,
    /// Installed funnels, each with the time it was installed as of.
    funnels: BTreeMap<String, (Time, FunnelProgram)>,
    /// Installed retention cohorts, each with the time it was installed as of.
    cohorts: BTreeMap<String, (Time, CohortProgram)>,
    /// Installed path analyses, each with the time it was installed as of.
    paths: BTreeMap<String, (Time, PathsProgram)>,
}

/// A command as every worker applies it: its text and the time it applies as of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequenced {
    /// The agreed time.
    pub time: Time,
    /// The submitting worker's sequence number (ties at one time go in this order).
    pub seq: u64,
    /// The command as submitted.
    pub text: String,
}

impl Programs {
    /// Builds the base dataflow on this worker.
    pub fn new(worker: &mut Worker, config: IngestConfig) -> Programs {
        let mut input = InputSession::new();
        let mut erasures = InputSession::new();
        let probe = ProbeHandle::new();
        let duplicates = Rc::new(Cell::new(0));
        let suppressed = Rc::new(Cell::new(0));
        let store = Store::default();
        let (events, universe, traits, deleted) = worker.dataflow::<Time, _, _>(|scope| {
            let raw = input.to_collection(scope);
            let erased = erasures.to_collection(scope);
            let deduplicated = dedup(raw, config.dedup_window, duplicates.clone());
            let retained = retain(deduplicated, erased.clone(), config.retention, suppressed.clone(), store.clone());
            let deleted = erased
                .flat_map(|(user, erase)| (erase != Erase::Unsuppress).then_some(user))
                .arrange_by_self_named("Deleted");
            deleted.stream.clone().probe_with(&probe);
            let (universe, traits) = profiles(retained.clone());
            let universe = universe.arrange_by_self_named("Universe");
            let traits = traits.arrange_by_key_named("Traits");
            let events = arrange_events(retained);
            events.stream.clone().probe_with(&probe);
            universe.stream.clone().probe_with(&probe);
            traits.stream.clone().probe_with(&probe);
            (events.trace, universe.trace, traits.trace, deleted.trace)
        });
        let mut control = InputSession::new();
        let control_probe = ProbeHandle::new();
        let commands = Rc::new(RefCell::new(Vec::new()));
        let sink = commands.clone();
        worker.dataflow::<Time, _, _>(|scope| {
            control
                .to_collection(scope)
                .inner
                .broadcast()
                .inspect(move |((seq, text), t, _): &((u64, String), Time, isize)| {
                    sink.borrow_mut().push((*t, *seq, text.clone()))
                })
                .probe_with(&control_probe);
        });
        Programs {
            input,
            config,
            max_seen: None,
            events,
            universe,
            traits,
            deleted,
            erasures,
            suppressed,
            recent_deletions: Default::default(),
            probe,
            duplicates,
            segments: BTreeMap::new(),
            journeys: BTreeMap::new(),
            retiring: Vec::new(),
            leftovers: BTreeMap::new(),
            retired_segments: Vec::new(),
            segment_leftovers: BTreeMap::new(),
            control,
            control_probe,
            commands,
            submitted: 0,
            hold: None,
            awaited: 0,
            late: 0,
            store,
            since: BTreeMap::new(),
            snapshots_asked: Vec::new(),
            restore: None,
            funnels: BTreeMap::new(),
            cohorts: BTreeMap::new(),
            paths: BTreeMap::new(),
        }
    }

    /// Submits a command (on one worker only): every worker gets it back from `advance`, at the
    /// same time (the current watermark) and in the same order.
    pub fn submit(&mut self, text: String) {
        let now = *self.control.time();
        self.submit_at(text, now);
    }

    /// Submits a command to apply as of `time` (or the watermark, if later).
    pub fn submit_at(&mut self, text: String, time: Time) {
        self.submitted += 1;
        let time = time.max(*self.control.time());
        self.control.update_at((self.submitted, text), time, 1);
    }

    /// The control input's current time: a command submitted now applies at this time or later.
    pub fn control_time(&self) -> Time {
        *self.control.time()
    }

    /// Moves the input past `time`: after a restart from a journey snapshot as of `time`,
    /// every event read enters later, as it did before.
    pub fn start_after(&mut self, time: Time) {
        if *self.input.time() <= time {
            self.input.advance_to(time + 1);
        }
        // The control input goes with the events (what the control log entered before stays).
        if *self.control.time() <= time {
            self.control.advance_to(time + 1);
        }
        if *self.erasures.time() <= time {
            self.erasures.advance_to(time + 1);
        }
    }

    /// The input's current time: events before it are late.
    pub fn watermark(&self) -> Time {
        *self.input.time()
    }

    /// Enters one event (a decoded record, or an event) at its own time, or applies the late
    /// policy.
    pub fn offer(&mut self, event: impl Into<Record>) -> Result<(), Refused> {
        self.offer_at_least(event, 0).map(|_| ())
    }

    /// Enters one event at its own time, or applies the late policy to an event before `floor`
    /// (its partition's watermark) or the watermark; returns the time it entered at.
    pub fn offer_at_least(&mut self, event: impl Into<Record>, floor: Time) -> Result<Time, Refused> {
        let record = event.into();
        let watermark = self.watermark().max(floor);
        let ts = record.ts();
        self.saw(ts);
        let time = admit(self.config.late_policy, ts, watermark)?;
        self.late += u64::from(time != ts);
        self.input.update_at(record, time, 1);
        Ok(time)
    }

    /// Enters one event at exactly `time` (not before the watermark): an event restored from
    /// a checkpoint, at the time it entered at before.
    pub fn offer_at(&mut self, event: impl Into<Record>, time: Time) {
        let record = event.into();
        self.saw(record.ts());
        self.input.update_at(record, time.max(self.watermark()), 1);
    }

    fn saw(&mut self, ts: Time) {
        self.max_seen = Some(self.max_seen.map_or(ts, |m| m.max(ts)));
    }

    /// The largest event time offered on this worker.
    pub fn max_seen(&self) -> Option<Time> {
        self.max_seen
    }

    /// Declares this worker's events read to the end (a replay): the event input no longer
    /// holds the other workers back (their `advance` waits for the base dataflow), while the
    /// control input, and with it every journey, stays until [`Programs::run_to`] names the
    /// time to complete.
    pub fn input_done(&mut self) {
        self.input.advance_to(Time::MAX);
        self.input.flush();
        // A replay's deletions were all entered before its events.
        self.erasures.advance_to(Time::MAX);
        self.erasures.flush();
    }

    /// Enters the deletion of `user` as of `at` (or the control input's time, if later; on one
    /// worker only): every event of theirs that entered by then is retracted then, with
    /// everything derived from them (traits, memberships), and their journeys are canceled;
    /// when `suppress`, none of theirs that enters later counts until [`Programs::unsuppress`].
    /// Every worker must also [`Programs::note_deletion`] it. Returns the time.
    pub fn delete_user(&mut self, user: UserId, at: Time, suppress: bool) -> Time {
        let erase = if suppress { Erase::DeleteAndSuppress } else { Erase::Delete };
        self.erase(user, erase, at)
    }

    /// Lets the events of a suppressed `user` that enter after `at` count again (on one worker).
    pub fn unsuppress(&mut self, user: UserId, at: Time) -> Time {
        self.erase(user, Erase::Unsuppress, at)
    }

    /// Enters an erasure, present during its millisecond only.
    fn erase(&mut self, user: UserId, erase: Erase, at: Time) -> Time {
        let at = at.max(*self.erasures.time());
        self.erasures.update_at((user, erase), at, 1);
        self.erasures.update_at((user, erase), at + 1, -1);
        at
    }

    /// Events of suppressed users dropped on this worker.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.get()
    }

    /// Notes (on every worker) that `user` was deleted as of `at`: their exits at `at` are
    /// marked as caused by the deletion.
    pub fn note_deletion(&mut self, user: UserId, at: Time) {
        self.recent_deletions.insert((at, user));
    }

    /// A time before which every segment change has come out and passed the gate of
    /// [`Programs::take_changes`]: once they are taken, [`Programs::changes_taken_before`] it.
    pub fn taking_mark(&self) -> Time {
        self.output_frontier().min(self.applied_through())
    }

    /// Every segment change before `mark` (from [`Programs::taking_mark`]) was taken: the
    /// deletions before it are no longer looked up.
    pub fn changes_taken_before(&mut self, mark: Time) {
        self.recent_deletions.retain(|(t, _)| *t >= mark);
    }

    /// Completes every program through `time` after [`Programs::input_done`]: journeys
    /// produce nothing after `time` (their lifecycle input stops at `time + 1`).
    pub fn run_to(&mut self, worker: &mut Worker, time: Time) {
        if time + 1 > *self.control.time() {
            self.control.advance_to(time + 1);
        }
        self.control.flush();
        let control = self.control_probe.clone();
        worker.step_while(|| control.less_than(&(time + 1)));
        self.settle(worker, time);
    }

    /// The earliest time any output of this worker's programs may still have: every record
    /// before it has come out (commands not applied yet count, as the programs they install).
    pub fn output_frontier(&self) -> Time {
        let mut low = Time::MAX;
        let mut at = |probe: &ProbeHandle<Time>| {
            probe.with_frontier(|f| low = low.min(f.first().copied().unwrap_or(Time::MAX)));
        };
        at(&self.probe);
        at(&self.control_probe);
        self.segments.values().for_each(|p| at(&p.probe));
        self.journeys.values().for_each(|p| at(&p.probe));
        self.retiring.iter().for_each(|r| at(&r.program.probe));
        self.retired_segments.iter().for_each(|r| at(&r.program.probe));
        let pending = self.commands.borrow().iter().map(|c| c.0).min().unwrap_or(Time::MAX);
        low.min(pending)
    }

    /// Moves the watermark to `max seen - allowed lateness` (or to `to`, if later), lets the
    /// dataflows catch up to the previous watermark, hands every command that became complete
    /// to `apply` (in `(time, seq)` order), and then lets every kept trace compact up to the
    /// control frontier.
    pub fn advance<F>(&mut self, worker: &mut Worker, to: Option<Time>, apply: F)
    where
        F: FnMut(&mut Programs, &mut Worker, Sequenced),
    {
        self.advance_until(worker, to, None, apply);
    }

    /// [`Programs::advance`], waiting for the dataflows only until `deadline`: another worker
    /// may hold them back for as long as its input is quiet (up to the idle timeout), and a
    /// caller with other duties (sequencing, answering, stopping) must not wait that long. The
    /// wait parks the thread when nothing is to be done. Returns whether the dataflows caught up;
    /// until [`Programs::caught_up`], a caller should read no more input (the wait is what keeps
    /// a worker from running ahead of the others).
    pub fn advance_until<F>(
        &mut self,
        worker: &mut Worker,
        to: Option<Time>,
        deadline: Option<Instant>,
        mut apply: F,
    ) -> bool
    where
        F: FnMut(&mut Programs, &mut Worker, Sequenced),
    {
        let from_data = match (self.config.allowed_lateness, self.max_seen) {
            (Some(lateness), Some(max)) => Some(max.saturating_sub(lateness)),
            _ => None,
        };
        let previous = self.watermark();
        if let Some(target) = from_data.max(to) {
            if target > previous {
                self.input.advance_to(target);
                self.control.advance_to(target);
                if target > *self.erasures.time() {
                    self.erasures.advance_to(target);
                }
            }
        }
        self.input.flush();
        self.control.flush();
        self.erasures.flush();
        // Wait for the base dataflow only: a program being removed may already be gone on
        // another worker, and its copy here would then never complete.
        let probe = self.probe.clone();
        self.awaited = previous;
        let mut caught_up = wait_while(worker, deadline, || probe.less_than(&previous));
        // Every worker moved its control input with its events: a command that arrived before
        // the previous watermark is complete once the control dataflow's progress catches up
        // with the base's. Wait for that, or a worker whose control progress lags would keep
        // the command pending, hold its journeys before it, and stall every worker's copies.
        let due = self.commands.borrow().iter().any(|c| c.0 < previous);
        if due && caught_up {
            let control = self.control_probe.clone();
            caught_up = wait_while(worker, deadline, || control.less_than(&previous));
        }
        let mut complete: Vec<(Time, u64, String)> = Vec::new();
        {
            let mut pending = self.commands.borrow_mut();
            pending.sort();
            let n = pending.partition_point(|(t, _, _)| !self.control_probe.less_equal(t));
            complete.extend(pending.drain(..n));
        }
        for (time, seq, text) in complete {
            apply(self, worker, Sequenced { time, seq, text });
        }
        self.drop_retired(worker);
        self.follow_commands();
        let mut frontier = Antichain::new();
        self.control_probe.with_frontier(|f| frontier.extend(f.iter().copied()));
        let through = frontier.first().copied().unwrap_or(previous).min(previous).min(self.hold.unwrap_or(Time::MAX));
        self.compact(through);
        caught_up
    }

    /// Whether the dataflows caught up with the watermark the last advance waited for.
    pub fn caught_up(&self) -> bool {
        !self.probe.less_than(&self.awaited)
    }

    /// Steps every dataflow on this worker until the programs' outputs are complete up to the
    /// watermark, or until `deadline` (at least one step): what a caller does after
    /// [`Programs::advance`] (which waits for the base dataflow only) so that a round's outputs
    /// come out in that round, not whenever the worker is next idle. Returns whether they are
    /// complete.
    pub fn catch_up(&mut self, worker: &mut Worker, deadline: Instant) -> bool {
        let watermark = self.watermark();
        loop {
            self.step(worker);
            // Analyses make no output, but one that falls behind must hold the input back too.
            if self.output_frontier().min(self.analyses_frontier()) >= watermark {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// One step of every dataflow, the journeys' lifecycle inputs following the commands.
    fn step(&mut self, worker: &mut Worker) {
        worker.step();
        self.follow_commands();
    }

    /// Moves the journeys' lifecycle inputs up to the sequenced commands' frontier, but not past
    /// a command still to apply: a command sequenced at `t` then applies at exactly `t`.
    fn follow_commands(&mut self) {
        let mut known = *self.control.time();
        self.control_probe.with_frontier(|f| known = f.first().copied().unwrap_or(known));
        if let Some(first) = self.commands.borrow().iter().map(|c| c.0).min() {
            known = known.min(first);
        }
        for journey in self.journeys.values_mut().chain(self.retiring.iter_mut().map(|r| &mut r.program)) {
            journey.follow(known);
        }
    }

    /// Allows every trace kept here to forget history distinctions before `time`.
    fn compact(&mut self, time: Time) {
        let frontier = [time];
        let frontier = AntichainRef::new(&frontier);
        self.events.set_logical_compaction(frontier);
        self.events.set_physical_compaction(frontier);
        self.traits.set_logical_compaction(frontier);
        self.traits.set_physical_compaction(frontier);
        self.deleted.set_logical_compaction(frontier);
        self.deleted.set_physical_compaction(frontier);
        let users = std::iter::once(&mut self.universe).chain(self.segments.values_mut().map(|p| &mut p.members));
        for trace in users {
            trace.set_logical_compaction(frontier);
            trace.set_physical_compaction(frontier);
        }
        for (_, funnel) in self.funnels.values_mut() {
            funnel.compact(frontier);
        }
        for (_, cohort) in self.cohorts.values_mut() {
            cohort.compact(frontier);
        }
        for (_, paths) in self.paths.values_mut() {
            paths.compact(frontier);
        }
        // Per-hour counts older than the retention before this time go (every query comes at
        // this time or later, and reads no hour before its own time less the retention).
        if let Some(keep) = self.config.retention {
            let cutoff = hour_of(time.saturating_sub(keep));
            let programs = self.journeys.values().chain(self.retiring.iter().map(|r| &r.program));
            for program in programs {
                let mut counts = program.counts.borrow_mut();
                let first = counts.range(Stat::Hourly(0, Flow::Entered)..).next().map(|(k, _)| *k);
                if first.is_some_and(|k| k < Stat::Hourly(cutoff, Flow::Entered)) {
                    let mut hourly = counts.split_off(&Stat::Hourly(0, Flow::Entered));
                    counts.append(&mut hourly.split_off(&Stat::Hourly(cutoff, Flow::Entered)));
                }
            }
        }
    }

    /// Installs a funnel (or replaces the one of its id) as a new dataflow over the retained
    /// history, which it sees as of `at`.
    pub fn install_funnel(&mut self, worker: &mut Worker, def: FunnelDefinition, at: Time) {
        if let Some((_, old)) = self.funnels.remove(&def.id) {
            old.dispose(worker);
        }
        let id = def.id.clone();
        let program = FunnelProgram::build(worker, def, &mut self.events, &mut self.traits, at);
        self.funnels.insert(id, (at, program));
    }

    /// Removes a funnel and drops its dataflow.
    pub fn remove_funnel(&mut self, worker: &mut Worker, id: &str) -> Result<(), ProgramError> {
        let (_, program) = self.funnels.remove(id).ok_or_else(|| ProgramError::UnknownFunnel(id.to_string()))?;
        program.dispose(worker);
        Ok(())
    }

    /// This worker's share of a funnel's report as of `time`, once its attempts are complete
    /// through `time` (`None` before); `Some(Err)` for a funnel not installed, installed
    /// (replaced) after `time`, or a share too large.
    pub fn funnel_part_at(&mut self, id: &str, time: Time, query: &Buckets) -> Option<Result<FunnelPart, String>> {
        match analysis_at(&mut self.funnels, "funnel", id, time) {
            Err(why) => Some(Err(why)),
            Ok(program) => program.part_at(time, query),
        }
    }

    /// Installs a retention cohort (or replaces the one of its id) as a new dataflow over the
    /// retained history, which it sees as of `at`.
    pub fn install_cohort(&mut self, worker: &mut Worker, def: CohortDefinition, at: Time) {
        if let Some((_, old)) = self.cohorts.remove(&def.id) {
            old.dispose(worker);
        }
        let id = def.id.clone();
        let program = CohortProgram::build(worker, def, &mut self.events, at);
        self.cohorts.insert(id, (at, program));
    }

    /// Removes a retention cohort and drops its dataflow.
    pub fn remove_cohort(&mut self, worker: &mut Worker, id: &str) -> Result<(), ProgramError> {
        let (_, program) = self.cohorts.remove(id).ok_or_else(|| ProgramError::UnknownCohort(id.to_string()))?;
        program.dispose(worker);
        Ok(())
    }

    /// This worker's share of a cohort's report as of `time`, once its places are complete
    /// through `time` (`None` before); `Some(Err)` for a cohort not installed, or installed
    /// (replaced) after `time`.
    pub fn cohort_part_at(&mut self, id: &str, time: Time, query: &Buckets) -> Option<Result<CohortPart, String>> {
        match analysis_at(&mut self.cohorts, "cohort", id, time) {
            Err(why) => Some(Err(why)),
            Ok(program) => program.part_at(time, query).map(Ok),
        }
    }

    /// Installs a path analysis (or replaces the one of its id) as a new dataflow over the
    /// retained history, which it sees as of `at`.
    pub fn install_paths(&mut self, worker: &mut Worker, def: PathsDefinition, at: Time) {
        if let Some((_, old)) = self.paths.remove(&def.id) {
            old.dispose(worker);
        }
        let id = def.id.clone();
        let program = PathsProgram::build(worker, def, &mut self.events, at);
        self.paths.insert(id, (at, program));
    }

    /// Removes a path analysis and drops its dataflow.
    pub fn remove_paths(&mut self, worker: &mut Worker, id: &str) -> Result<(), ProgramError> {
        let (_, program) = self.paths.remove(id).ok_or_else(|| ProgramError::UnknownPaths(id.to_string()))?;
        program.dispose(worker);
        Ok(())
    }

    /// This worker's share of a path analysis's report as of `time`, once its paths are
    /// complete through `time` (`None` before); `Some(Err)` for one not installed, installed
    /// (replaced) after `time`, or a share too large.
    pub fn paths_part_at(&mut self, id: &str, time: Time, query: &Buckets) -> Option<Result<PathsPart, String>> {
        match analysis_at(&mut self.paths, "path analysis", id, time) {
            Err(why) => Some(Err(why)),
            Ok(program) => program.part_at(time, query),
        }
    }

    /// The earliest time an analysis (a funnel, a cohort, paths) may still change at
    /// (`Time::MAX` without one).
    pub fn analyses_frontier(&self) -> Time {
        let funnels = self.funnels.values().map(|(_, p)| p.frontier());
        let cohorts = self.cohorts.values().map(|(_, p)| p.frontier());
        let paths = self.paths.values().map(|(_, p)| p.frontier());
        funnels.chain(cohorts).chain(paths).min().unwrap_or(Time::MAX)
    }

    /// Ids of the installed segments, in install order of their names.
    pub fn installed(&self) -> Vec<String> {
        self.segments.keys().cloned().collect()
    }

    /// Installs a segment as a new dataflow over the retained history, which it sees as of
    /// `at` (every worker must pass the same time, at or after the watermark it compacted to):
    /// its initial members appear as entries at `at`. Its `in_segment` references must be
    /// installed already.
    pub fn install_segment(
        &mut self,
        worker: &mut Worker,
        def: &SegmentDefinition,
        at: Time,
    ) -> Result<(), ProgramError> {
        if self.segments.contains_key(&def.id) {
            return Err(ProgramError::Exists(def.id.clone()));
        }
        let program = self.build_segment(worker, def, at, None)?;
        self.segments.insert(def.id.clone(), program);
        Ok(())
    }

    /// Replaces an installed segment's definition as of `at`: the new membership is computed
    /// over the retained history, and the changes emitted at `at` are only the differences
    /// from the old membership. Refused while another segment uses it.
    pub fn replace_segment(
        &mut self,
        worker: &mut Worker,
        def: &SegmentDefinition,
        at: Time,
    ) -> Result<(), ProgramError> {
        if !self.segments.contains_key(&def.id) {
            return Err(ProgramError::Unknown(def.id.clone()));
        }
        self.refuse_if_used(&def.id)?;
        let mut old = self.segments.remove(&def.id).expect("checked above");
        match self.build_segment(worker, def, at, Some(&mut old.members)) {
            Ok(program) => {
                // The old definition's changes through `at` stand (the new one's changes at
                // `at` are the difference from its membership then); it runs until it made them.
                self.segments.insert(def.id.clone(), program);
                self.retired_segments.push(RetiredSegment { id: def.id.clone(), at, program: old });
                Ok(())
            }
            Err(e) => {
                self.segments.insert(def.id.clone(), old);
                Err(e)
            }
        }
    }

    fn refuse_if_used(&self, id: &str) -> Result<(), ProgramError> {
        let segments = self.segments.iter().map(|(k, p)| (k, &p.uses));
        let journeys = self.journeys.iter().map(|(k, p)| (k, &p.uses));
        let users: Vec<String> =
            segments.chain(journeys).filter(|(_, uses)| uses.iter().any(|u| u == id)).map(|(k, _)| k.clone()).collect();
        if users.is_empty() {
            Ok(())
        } else {
            Err(ProgramError::InUse(id.to_string(), users))
        }
    }

    /// Builds a segment's dataflow. With `previous` (the membership it replaces), the change
    /// output is the new membership minus the previous one as of `at`.
    fn build_segment(
        &mut self,
        worker: &mut Worker,
        def: &SegmentDefinition,
        at: Time,
        previous: Option<&mut UsersTrace>,
    ) -> Result<SegmentProgram, ProgramError> {
        let mut uses = Vec::new();
        def.condition.references(&mut uses);
        uses.sort();
        uses.dedup();
        if let Some(missing) = uses.iter().find(|u| !self.segments.contains_key(*u)) {
            return Err(ProgramError::Missing(def.id.clone(), missing.clone()));
        }
        let changes = Rc::new(RefCell::new(Vec::new()));
        let sink = changes.clone();
        let mut buttons = Vec::new();
        let probe = ProbeHandle::new();
        let program_probe = probe.clone();
        let dataflow = worker.next_dataflow_index();
        let base = Base { events: &mut self.events, universe: &mut self.universe, traits: &mut self.traits };
        let segments = &mut self.segments;
        let members = worker.dataflow_named::<Time, _, _>(&format!("Segment({})", def.id), |scope| {
            let since = |compacted: AntichainRef<Time>| {
                Antichain::from_elem(compacted.first().copied().unwrap_or(Time::MAX).max(at))
            };
            let mut compiler = base.import(scope, segments, &uses, at, &mut buttons);
            let members = compiler.condition(&def.condition).arrange_by_self_named("Members");
            let mut output = members.clone().as_collection(|u, ()| *u);
            if let Some(previous) = previous {
                // The old membership as of `at` only: nothing of it after `at` is read, so the
                // import finishes and never holds this dataflow back.
                let s = since(previous.get_logical_compaction());
                let (old, button) = previous.import_frontier_core(scope, "Previous", s, Antichain::from_elem(at + 1));
                buttons.push(button);
                output = output.concat(old.as_collection(|u, ()| *u).negate()).consolidate();
            }
            output
                .inner
                .inspect(move |(user, time, diff)| {
                    sink.borrow_mut().push(MemberChange { time: *time, user: *user, diff: *diff, deleted: false })
                })
                .probe_with(&probe);
            members.trace
        });
        Ok(SegmentProgram { dataflow, probe: program_probe, members, buttons, changes, uses })
    }

    /// Stops a program's imports and drops its dataflow.
    fn dispose(worker: &mut Worker, program: SegmentProgram) {
        drop(program.members);
        shut(worker, program.buttons, program.dataflow);
    }

    /// Installs a journey as a new dataflow in status `status`, over the retained history as of
    /// `at`: history sets the users' condition states but moves nobody; events and changes
    /// after `at` run the journey. The segments its conditions name must be installed.
    pub fn install_journey(
        &mut self,
        worker: &mut Worker,
        plan: JourneyPlan,
        at: Time,
        status: Status,
    ) -> Result<(), ProgramError> {
        self.insert_journey(worker, plan, at, Start::new(status, Some(at)))
    }

    /// Installs a journey before any event has entered (a replay's journeys): every event,
    /// whatever its time, runs it.
    pub fn install_journey_first(&mut self, worker: &mut Worker, plan: JourneyPlan) -> Result<(), ProgramError> {
        self.insert_journey(worker, plan, 0, Start::new(Status::Ongoing, None))
    }

    fn insert_journey(
        &mut self,
        worker: &mut Worker,
        plan: JourneyPlan,
        at: Time,
        start: Start,
    ) -> Result<(), ProgramError> {
        if self.journeys.contains_key(plan.id()) {
            return Err(ProgramError::JourneyExists(plan.id().to_string()));
        }
        let (id, program) = self.build_journey(worker, plan, at, start)?;
        self.journeys.insert(id, program);
        Ok(())
    }

    /// Restores journeys from a snapshot: each version it holds starts from its state when
    /// the control log installs (or publishes) it; the versions it replaced do not run past
    /// then. Call before any journey is installed.
    pub fn restore_journeys(&mut self, restore: Restore) {
        self.restore = Some(restore);
    }

    /// Publishes a new version of an installed journey as of `at`: the running version handles
    /// everything through `at` and then hands its users over; the new one, built over the
    /// retained history like a first version, places them as `migration` says and runs from
    /// then on. The old version's dataflow goes once its users are taken and its outputs read.
    pub fn publish_version(
        &mut self,
        worker: &mut Worker,
        plan: JourneyPlan,
        migration: Migration,
        at: Time,
    ) -> Result<(), ProgramError> {
        let id = plan.id().to_string();
        let Some(old) = self.journeys.get(&id) else { return Err(ProgramError::UnknownJourney(id)) };
        let restored = self.restore.as_ref().is_some_and(|r| r.holds(&id, plan.version));
        let start = Start {
            status: Status::Ongoing,
            since: Some(at),
            retire: Handover::default(),
            takeover: Some((old.handover.clone(), migration)),
            snapshots: Snapshots::default(),
        };
        let (_, program) = self.build_journey(worker, plan, at, start)?;
        let mut old = self.journeys.insert(id.clone(), program).expect("checked above");
        if restored {
            // The snapshot is of this version, its users taken over already: the old one goes.
            Self::drop_journey(worker, old);
            return Ok(());
        }
        let at = old.command(Command::Retire, at);
        self.retiring.push(Retiring { id, at, program: old });
        Ok(())
    }

    fn build_journey(
        &mut self,
        worker: &mut Worker,
        plan: JourneyPlan,
        at: Time,
        start: Start,
    ) -> Result<(String, JourneyProgram), ProgramError> {
        let id = plan.id().to_string();
        let mut uses = Vec::new();
        for c in &plan.conditions {
            c.references(&mut uses);
        }
        uses.sort();
        uses.dedup();
        if let Some(missing) = uses.iter().find(|u| !self.segments.contains_key(*u)) {
            return Err(ProgramError::Missing(id, missing.clone()));
        }
        let outputs = Rc::new(RefCell::new(Vec::new()));
        let sink = outputs.clone();
        let version = plan.version;
        let restored = self.restore.as_mut().and_then(|r| r.take(&id, version).map(|j| (r.time, j)));
        let (start, restored_at, users, counts, counted) = match restored {
            Some((time, Restored { status, users, counts, quota, .. })) => {
                let start = Start {
                    status: status.unwrap_or(start.status),
                    since: Some(time),
                    takeover: None,
                    snapshots: Snapshots::default(),
                    ..start
                };
                (start, Some(time), users, counts, quota.unwrap_or_default())
            }
            None => (start, None, Vec::new(), BTreeMap::new(), QuotaState::default()),
        };
        let snapshots = start.snapshots.clone();
        let counts = Rc::new(RefCell::new(counts));
        let counts_through = Rc::new(RefCell::new(Vec::<(Time, Counters)>::new()));
        let handover = start.retire.clone();
        let mut buttons = Vec::new();
        let mut control = InputSession::new();
        control.advance_to(at);
        let mut entries = InputSession::new();
        entries.advance_to(at);
        // A restored version's users, entered as of the snapshot's time once the dataflow is
        // built (records sent while it is being built would be lost to its progress tracking).
        let mut entered = InputSession::new();
        let dataflow = worker.next_dataflow_index();
        let probe = ProbeHandle::new();
        let base = Base { events: &mut self.events, universe: &mut self.universe, traits: &mut self.traits };
        let segments = &mut self.segments;
        let deleted = &mut self.deleted;
        let plan = Rc::new(plan);
        let kept_plan = plan.clone();
        worker.dataflow_named::<Time, _, _>(&format!("Journey({id} v{})", plan.version), |scope| {
            let mut compiler = base.import(scope, segments, &uses, at, &mut buttons);
            let deletions = import_deleted(deleted, scope, at, &mut buttons);
            let conditions = compiler.journey_conditions(&plan);
            let commands = control.to_collection(scope).inner;
            let restored_users = entered.to_collection(scope).inner;
            let exits: Vec<bool> = (0..plan.nodes.len() as u32).map(|n| plan.is_exit(n)).collect();
            // The journey operator keeps what its plan finds relevant.
            let events = compiler.select(&plan.event_names(), |e| Some(e.clone()));
            let traits = compiler.traits_read(plan.traits.clone());
            let from_outside = entries.to_collection(scope);
            let left = start.snapshots.clone();
            let records = journey(
                plan.clone(),
                0,
                events,
                conditions,
                traits,
                from_outside,
                deletions,
                commands.clone(),
                restored_users,
                start,
            );
            // Conversions are counted in the reports; only moves and actions are written.
            let records = quota(plan, 0, records, commands, counted, left).inspect(move |record| {
                if !matches!(record, JourneyOutput::Conversion(_)) {
                    sink.borrow_mut().push(record.clone())
                }
            });
            let (totals, through) = (counts.clone(), counts_through.clone());
            stats(records, move |_, n| exits[n as usize])
                .inner
                .inspect(move |((_, stat), t, diff)| {
                    *totals.borrow_mut().entry(*stat).or_default() += diff;
                    for (_, upto) in through.borrow_mut().iter_mut().filter(|(s, _)| t <= s) {
                        *upto.entry(*stat).or_default() += diff;
                    }
                })
                .probe_with(&probe);
        });
        if let Some(time) = restored_at {
            entered.advance_to(time);
            for (user, state) in users {
                entered.update_at((user, state), time, 1);
            }
        }
        entered.close();
        let program = JourneyProgram {
            dataflow,
            buttons,
            control,
            commands: 0,
            entries,
            entered: 0,
            plan: kept_plan,
            outputs,
            uses,
            probe,
            counts,
            counts_through,
            handover,
            version,
            snapshots,
            restored: restored_at,
        };
        Ok((id, program))
    }

    /// Applies a lifecycle command to an installed journey as of `at` (every worker must give
    /// the same commands at the same times).
    pub fn journey_command(&mut self, id: &str, command: Command, at: Time) -> Result<(), ProgramError> {
        // A version replaced as of `t` still runs through `t`: commands up to then are its.
        let replaced = self.retiring.iter_mut().rev().find(|r| r.id == id && at <= r.at).map(|r| &mut r.program);
        let program = match replaced {
            Some(p) => p,
            None => self.journeys.get_mut(id).ok_or_else(|| ProgramError::UnknownJourney(id.to_string()))?,
        };
        if program.restored.is_some_and(|s| at <= s) && command != Command::Retire {
            return Ok(());
        }
        program.command(command, at);
        Ok(())
    }

    /// Lets `users` into journey `id` as of `at` (an entry from outside, with the `context` its
    /// templates read), in the version running then; only `enter` (one worker) enters them,
    /// the others only check. Every worker must give the same entries at the same times.
    pub fn enter_journey(
        &mut self,
        id: &str,
        users: &[UserId],
        context: Option<Arc<str>>,
        at: Time,
        enter: bool,
    ) -> Result<(), ProgramError> {
        let replaced = self.retiring.iter_mut().rev().find(|r| r.id == id && at <= r.at).map(|r| &mut r.program);
        let program = match replaced {
            Some(p) => p,
            None => self.journeys.get_mut(id).ok_or_else(|| ProgramError::UnknownJourney(id.to_string()))?,
        };
        // Entries through a restored snapshot's time are in its users' states.
        if !enter || program.restored.is_some_and(|s| at <= s) {
            return Ok(());
        }
        let at = at.max(*program.entries.time());
        for user in users {
            program.entered += 1;
            program.entries.update_at((*user, program.entered, context.clone()), at, 1);
        }
        Ok(())
    }

    /// Asks every running journey version for a snapshot of its state as of `at` (once every
    /// input through `at` is done); see [`Programs::take_snapshots`].
    pub fn snapshot_journeys(&mut self, at: Time) {
        let ids: Vec<String> = self.journeys.keys().cloned().collect();
        let mut listed = Vec::with_capacity(ids.len());
        for id in ids {
            // A version replaced as of `at` or later still runs through `at`.
            let replaced = self.retiring.iter_mut().rev().find(|r| r.id == id && at <= r.at).map(|r| &mut r.program);
            let Some(program) = replaced.or_else(|| self.journeys.get_mut(&id)) else { continue };
            let at = program.command(Command::Snapshot, at);
            // Every counter so far is of an earlier time: the operator has not done `at` yet.
            let so_far = program.counts.borrow().clone();
            program.counts_through.borrow_mut().push((at, so_far));
            listed.push((id, program.version));
        }
        self.snapshots_asked.push((at, listed));
    }

    /// The snapshots asked for whose every journey is complete through their time, in order;
    /// one whose journey went first is given up (`None`).
    pub fn take_snapshots(&mut self) -> Vec<Taken> {
        let mut out = Vec::new();
        while let Some((time, listed)) = self.snapshots_asked.first() {
            let time = *time;
            let find = |id: &str, version: u32| {
                let current = self.journeys.get(id).filter(|p| p.version == version);
                let replaced = self.retiring.iter().filter(|r| r.id == id).map(|r| &r.program);
                current.or_else(|| replaced.clone().find(|p| p.version == version))
            };
            let programs: Option<Vec<&JourneyProgram>> = listed.iter().map(|(id, v)| find(id, *v)).collect();
            let ready =
                |p: &&JourneyProgram| !p.probe.less_equal(&time) && p.snapshots.borrow().iter().any(|s| s.time == time);
            if programs.as_ref().is_some_and(|programs| !programs.iter().all(ready)) {
                break;
            }
            let journeys = programs.and_then(|programs| {
                let states = listed.iter().zip(programs).map(|((id, version), p)| p.take_snapshot(id, *version, time));
                states.collect::<Option<Vec<JourneyState>>>()
            });
            if journeys.is_none() {
                for p in self.journeys.values().chain(self.retiring.iter().map(|r| &r.program)) {
                    p.snapshots.borrow_mut().retain(|s| s.time != time);
                    p.counts_through.borrow_mut().retain(|(s, _)| *s != time);
                }
            }
            self.snapshots_asked.remove(0);
            out.push(Taken { time, journeys });
        }
        out
    }

    /// Drops the dataflows of replaced versions whose users were taken over and whose outputs
    /// are complete through the time they were replaced (their last outputs are kept to read).
    fn drop_retired(&mut self, worker: &mut Worker) {
        let (done, kept): (Vec<Retiring>, Vec<Retiring>) = std::mem::take(&mut self.retiring)
            .into_iter()
            .partition(|r| r.program.handover.is_done() && !r.program.probe.less_equal(&r.at));
        self.retiring = kept;
        for Retiring { id, program, .. } in done {
            self.leftovers.entry(id).or_default().append(&mut program.outputs.borrow_mut());
            Self::drop_journey(worker, program);
        }
        // A retired segment goes once complete through its last time (another worker may
        // already have dropped its copy, which then stops its frontier past that time).
        let (done, kept): (Vec<RetiredSegment>, Vec<RetiredSegment>) =
            std::mem::take(&mut self.retired_segments).into_iter().partition(|r| !r.program.probe.less_equal(&r.at));
        self.retired_segments = kept;
        for RetiredSegment { id, at, program } in done {
            let last = program.changes.borrow_mut().drain(..).filter(|c| c.time <= at).collect::<Vec<_>>();
            self.segment_leftovers.entry(id).or_default().extend(last);
            Self::dispose(worker, program);
        }
    }

    /// Transitions and actions of a journey produced since the last call (by the versions it
    /// replaced first).
    pub fn take_journey_outputs(&mut self, id: &str) -> Vec<JourneyOutput> {
        let mut out = self.leftovers.remove(id).unwrap_or_default();
        for r in self.retiring.iter().filter(|r| r.id == id) {
            out.append(&mut r.program.outputs.borrow_mut());
        }
        if let Some(p) = self.journeys.get(id) {
            out.append(&mut p.outputs.borrow_mut());
        }
        out
    }

    /// This worker's share of a journey's report counters (journey index 0), but for the
    /// per-hour ones ([`Programs::journey_hours_at`]).
    pub fn journey_counts(&self, id: &str) -> BTreeMap<(u32, Stat), isize> {
        let report = |(k, v): (&Stat, &isize)| (*v != 0).then_some(((0, *k), *v));
        // The per-hour counters sort last.
        let before_hours = ..Stat::Hourly(0, Flow::Entered);
        self.journeys
            .get(id)
            .map(|p| p.counts.borrow().range(before_hours).filter_map(report).collect())
            .unwrap_or_default()
    }

    /// This worker's share of every counter of a journey, the per-hour ones too (as a query
    /// at `as_of` reads them: none before the retention).
    pub fn journey_counters(&self, id: &str, as_of: Time) -> BTreeMap<(u32, Stat), isize> {
        let oldest =
            Stat::Hourly(self.config.retention.map_or(0, |keep| hour_of(as_of.saturating_sub(keep))), Flow::Entered);
        let all = |(k, v): (&Stat, &isize)| {
            (*v != 0 && !(matches!(k, Stat::Hourly(..)) && *k < oldest)).then_some(((0, *k), *v))
        };
        self.journeys.get(id).map(|p| p.counts.borrow().iter().filter_map(all).collect()).unwrap_or_default()
    }

    /// This worker's share of a journey's per-hour counts for the hours starting in
    /// `[from, to)`, named, once its version running now has counted everything through
    /// `time`; `Some(None)` for a journey not running here.
    pub fn journey_hours_at(&self, id: &str, time: Time, from: Time, to: Time) -> Option<Option<Vec<HourCount>>> {
        // The version running at `time` (one replaced then or later still runs through it).
        let replaced = self.retiring.iter().rev().find(|r| r.id == id && time <= r.at).map(|r| &r.program);
        let Some(program) = replaced.or_else(|| self.journeys.get(id)) else { return Some(None) };
        if program.probe.less_equal(&time) {
            return None;
        }
        // No hour before the retention (every worker may have let those go).
        let from = match self.config.retention {
            Some(keep) => from.max(hour_of(time.saturating_sub(keep))),
            None => from,
        };
        let counts = program.counts.borrow();
        let range = counts.range(Stat::Hourly(from, Flow::Entered)..Stat::Hourly(to, Flow::Entered));
        let found = range.filter_map(|(k, v)| match k {
            Stat::Hourly(hour, flow) if *v != 0 => Some((*hour, *flow, *v)),
            _ => None,
        });
        Some(Some(hour_counts(&program.plan, found)))
    }

    /// Removes a journey (and the versions it replaced) and drops its dataflows.
    pub fn remove_journey(&mut self, worker: &mut Worker, id: &str) -> Result<(), ProgramError> {
        let program = self.journeys.remove(id).ok_or_else(|| ProgramError::UnknownJourney(id.to_string()))?;
        Self::drop_journey(worker, program);
        let (gone, kept): (Vec<Retiring>, Vec<Retiring>) =
            std::mem::take(&mut self.retiring).into_iter().partition(|r| r.id == id);
        self.retiring = kept;
        for r in gone {
            Self::drop_journey(worker, r.program);
        }
        self.leftovers.remove(id);
        Ok(())
    }

    fn drop_journey(worker: &mut Worker, program: JourneyProgram) {
        drop(program.control);
        shut(worker, program.buttons, program.dataflow);
    }

    /// Removes a segment as of `at`: its changes through `at` still come out, then its
    /// dataflow goes. Refused while another segment or a journey uses it.
    pub fn remove_segment(&mut self, id: &str, at: Time) -> Result<(), ProgramError> {
        if !self.segments.contains_key(id) {
            return Err(ProgramError::Unknown(id.to_string()));
        }
        self.refuse_if_used(id)?;
        let program = self.segments.remove(id).expect("checked above");
        self.retired_segments.push(RetiredSegment { id: id.to_string(), at, program });
        Ok(())
    }

    /// Ids of the segments that may have changes to take: the installed ones and those
    /// replaced or removed whose last changes are not taken yet.
    pub fn segments_with_changes(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.segments.keys().cloned().collect();
        ids.extend(self.retired_segments.iter().map(|r| r.id.clone()));
        ids.extend(self.segment_leftovers.keys().cloned());
        ids.sort();
        ids.dedup();
        ids
    }

    /// Membership changes of a segment produced since the last call, before the time through
    /// which every change of the definitions has been applied (a change later applied as of
    /// `T` decides whether the changes from `T` on stand, and a deletion as of `T` marks the
    /// exits at `T`); the rest wait for a later call. The changes of a replaced definition
    /// (through its replacement) come first.
    pub fn take_changes(&mut self, id: &str) -> Vec<MemberChange> {
        let mut out = self.segment_leftovers.remove(id).unwrap_or_default();
        for r in self.retired_segments.iter().filter(|r| r.id == id) {
            out.extend(r.program.changes.borrow_mut().drain(..).filter(|c| c.time <= r.at));
        }
        if let Some(p) = self.segments.get(id) {
            let gate = self.applied_through();
            let mut changes = p.changes.borrow_mut();
            if changes.iter().all(|c| c.time < gate) {
                // Almost always: nothing waits, and nothing is copied.
                if out.is_empty() {
                    out = std::mem::take(&mut *changes);
                } else {
                    out.append(&mut changes);
                }
            } else {
                let (now, later): (Vec<MemberChange>, Vec<MemberChange>) =
                    changes.drain(..).partition(|c| c.time < gate);
                *changes = later;
                out.extend(now);
            }
        }
        if !self.recent_deletions.is_empty() {
            for c in out.iter_mut().filter(|c| c.diff < 0) {
                c.deleted = self.recent_deletions.contains(&(c.time, c.user));
            }
        }
        if self.segments.contains_key(id) {
            let since = self.since.entry(id.to_string()).or_default();
            for c in &out {
                match (c.diff > 0, since.get(&c.user)) {
                    (true, Some(t)) if *t > c.time => {}
                    (true, _) => {
                        since.insert(c.user, c.time);
                    }
                    (false, Some(t)) if *t <= c.time => {
                        since.remove(&c.user);
                    }
                    (false, _) => {}
                }
            }
        } else {
            self.since.remove(id);
        }
        out
    }

    /// The user's retained events on this worker (where the user's events live), in timestamp
    /// order, as the engine has got through them.
    pub fn retained(&self, user: UserId) -> Vec<SharedEvent> {
        self.store.events(user)
    }

    /// The installed segments `user` belongs to on this worker as of `time`, each with the time
    /// the user last entered it (when its changes were taken here), once every segment is
    /// complete through `time`.
    pub fn user_memberships_at(&mut self, user: UserId, time: Time) -> Option<Vec<(String, Option<Time>)>> {
        let ids = self.user_segments_at(user, time)?;
        Some(ids.into_iter().map(|id| (id.clone(), self.since.get(&id).and_then(|s| s.get(&user)).copied())).collect())
    }

    /// The user's traits on this worker (where their `(user, trait)` keys live) as of `time`,
    /// once the traits are complete through `time`.
    pub fn traits_at(&mut self, user: UserId, time: Time) -> Option<Vec<(String, Value)>> {
        let mut upper = Antichain::new();
        self.traits.read_upper(&mut upper);
        let compacted = self.traits.get_physical_compaction().to_owned();
        if upper.less_equal(&time) || !timely::PartialOrder::less_equal(&compacted.borrow(), &upper.borrow()) {
            return None;
        }
        let batches = self.traits.spans_through(upper.borrow())?;
        let (mut cursor, storage) = cursor_list(batches.into_iter().filter_map(|b| b.inner).collect());
        cursor.seek_key(&storage, &(user, String::new()));
        let mut out = Vec::new();
        while cursor.key_valid(&storage) && cursor.key(&storage).0 == user {
            let name = cursor.key(&storage).1.clone();
            while cursor.val_valid(&storage) {
                let mut count = 0;
                cursor.map_times(&storage, |t, r| {
                    if *t <= time {
                        count += *r;
                    }
                });
                if count > 0 {
                    out.push((name.clone(), cursor.val(&storage).clone()));
                }
                cursor.step_val(&storage);
            }
            cursor.step_key(&storage);
        }
        Some(out)
    }

    /// The time through which every change of the definitions that will ever apply has been
    /// applied: commands still to come, or sequenced and not applied, are at this time or later.
    fn applied_through(&self) -> Time {
        let mut frontier = Time::MAX;
        self.control_probe.with_frontier(|f| frontier = f.first().copied().unwrap_or(Time::MAX));
        let pending = self.commands.borrow().iter().map(|c| c.0).min().unwrap_or(Time::MAX);
        frontier.min(pending)
    }

    /// This worker's members of a segment as of `time`, once the segment is complete through
    /// `time` (`None` before that, or for an unknown segment). `time` must not be behind the
    /// compaction: hold it with [`Programs::hold_compaction`] until answered.
    pub fn members_at(&mut self, id: &str, time: Time) -> Option<Vec<UserId>> {
        members_as_of(&mut self.segments.get_mut(id)?.members, time, None)
    }

    /// The installed segments `user` belongs to on this worker as of `time` (where the user's
    /// memberships live), once every segment is complete through `time`.
    pub fn user_segments_at(&mut self, user: UserId, time: Time) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for (id, program) in &mut self.segments {
            if !members_as_of(&mut program.members, time, Some(user))?.is_empty() {
                out.push(id.clone());
            }
        }
        Some(out)
    }

    /// Whether segment `id` is installed.
    pub fn has_segment(&self, id: &str) -> bool {
        self.segments.contains_key(id)
    }

    /// Keeps traces distinguishable at `time` and later (for answers still to give as of
    /// `time`); `None` lifts the hold.
    pub fn hold_compaction(&mut self, time: Option<Time>) {
        self.hold = time;
    }

    /// Duplicates dropped on this worker.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.get()
    }

    /// Late events this worker moved up to its watermark.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Drops every program's dataflow, for a worker that stops: a copy whose peer another
    /// worker dropped already (a replaced journey version) would otherwise never complete.
    pub fn close(mut self, worker: &mut Worker) {
        for (_, program) in std::mem::take(&mut self.segments) {
            Self::dispose(worker, program);
        }
        for (_, program) in std::mem::take(&mut self.journeys) {
            Self::drop_journey(worker, program);
        }
        for r in std::mem::take(&mut self.retiring) {
            Self::drop_journey(worker, r.program);
        }
        for r in std::mem::take(&mut self.retired_segments) {
            Self::dispose(worker, r.program);
        }
        for (_, (_, program)) in std::mem::take(&mut self.funnels) {
            program.dispose(worker);
        }
        for (_, (_, program)) in std::mem::take(&mut self.cohorts) {
            program.dispose(worker);
        }
        for (_, (_, program)) in std::mem::take(&mut self.paths) {
            program.dispose(worker);
        }
    }

    /// Steps the worker until every dataflow here has completed `time` (not while programs
    /// are being removed: see `advance`), replaced journey versions through their last time.
    pub fn settle(&mut self, worker: &mut Worker, time: Time) {
        let mut probes = vec![self.probe.clone()];
        probes.extend(self.segments.values().map(|p| p.probe.clone()));
        probes.extend(self.journeys.values().map(|p| p.probe.clone()));
        // A replaced version is complete once past its last time (another worker may already
        // have dropped its copy, which then stops its frontier there).
        let mut replaced: Vec<(ProbeHandle<Time>, Time)> =
            self.retiring.iter().map(|r| (r.program.probe.clone(), r.at.min(time))).collect();
        replaced.extend(self.retired_segments.iter().map(|r| (r.program.probe.clone(), r.at.min(time))));
        while probes.iter().any(|p| p.less_than(&(time + 1)))
            || replaced.iter().any(|(p, at)| p.less_equal(at))
            || self.analyses_frontier() <= time
        {
            self.step(worker);
        }
        self.drop_retired(worker);
    }
}

/// The analysis `id` (of `kind`) of `installed`, if it was installed as of `time` or before;
/// why not otherwise (it was removed, or replaced, while a report asked as of `time` waited).
fn analysis_at<'a, P>(
    installed: &'a mut BTreeMap<String, (Time, P)>,
    kind: &str,
    id: &str,
    time: Time,
) -> Result<&'a mut P, String> {
    match installed.get_mut(id) {
        None => Err(format!("{kind} {id:?} was removed while the report was made")),
        Some((at, _)) if *at > time => Err(format!("{kind} {id:?} was replaced while the report was made; ask again")),
        Some((_, program)) => Ok(program),
    }
}

/// The users of a membership trace as of `time` (only `user`, if given), once the trace is
/// complete through `time` and readable: compaction may run ahead of a program that lags.
fn members_as_of(members: &mut UsersTrace, time: Time, user: Option<UserId>) -> Option<Vec<UserId>> {
    let mut upper = Antichain::new();
    members.read_upper(&mut upper);
    if upper.less_equal(&time) || !timely::PartialOrder::less_equal(&members.get_physical_compaction(), &upper.borrow())
    {
        return None;
    }
    let batches = members.spans_through(upper.borrow())?;
    let (mut cursor, storage) = cursor_list(batches.into_iter().filter_map(|b| b.inner).collect());
    if let Some(user) = &user {
        cursor.seek_key(&storage, user);
    }
    let mut out = Vec::new();
    while cursor.key_valid(&storage) && user.is_none_or(|u| cursor.key(&storage) == &u) {
        let mut count = 0;
        cursor.map_times(&storage, |t, r| {
            if *t <= time {
                count += *r;
            }
        });
        if count > 0 {
            out.push(*cursor.key(&storage));
        }
        if user.is_some() {
            break;
        }
        cursor.step_key(&storage);
    }
    Some(out)
}
