//! One worker's engine: the dataflow built from segment and journey definitions, the event
//! input with its watermark and late-event policy, the journey lifecycle input, and the
//! captured outputs (membership changes, journey transitions and actions, journey stats).
//! The replay command and the tests drive it the same way: `offer` events, `advance` after
//! each batch, `finish` at the as-of time.

use crate::compile::Compiler;
use differential_dataflow::input::InputSession;
use journeyflow_operators::dedup::dedup;
use journeyflow_operators::journey::plan::JourneyPlan;
use journeyflow_operators::journey::record::{Command, JourneyOutput, Status};
use journeyflow_operators::journey::stats::{stats, Stat};
use journeyflow_operators::journey::{journey, Control, Start};
use journeyflow_operators::{SharedEvent, Time};
use journeyflow_types::{Event, Key, SegmentDefinition};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use timely::dataflow::operators::vec::{Broadcast, Input};
use timely::dataflow::operators::{Concatenate, Inspect, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};
use timely::worker::Worker;

/// What to do with an event older than the watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatePolicy {
    /// Reject it to the dead-letter output with the reason.
    DeadLetter,
    /// Process it at the watermark (its windows still end at its own timestamp + window).
    Clamp,
}

/// Settings of the ingest side of the engine.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct IngestConfig {
    /// The watermark trails the largest event time seen by this much; `None` holds it until the end.
    pub allowed_lateness: Option<Time>,
    /// Late events: dead-letter or clamp.
    pub late_policy: LatePolicy,
    /// A repeated messageId within this much event time is a duplicate.
    pub dedup_window: Time,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            allowed_lateness: Some(3_600_000),
            late_policy: LatePolicy::DeadLetter,
            dedup_window: 86_400_000,
        }
    }
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
}

/// Why `offer` refused an event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Older than the watermark under the dead-letter policy.
    #[error("late event: timestamp {ts} is behind the watermark {watermark}")]
    Late {
        /// The event's time.
        ts: Time,
        /// The input's time when it arrived.
        watermark: Time,
    },
}

/// The time an event enters the dataflow at: its own, or under `Clamp` the watermark when it
/// is late; `Err` when it is late under `DeadLetter`.
pub fn admit(policy: LatePolicy, ts: Time, watermark: Time) -> Result<Time, Refused> {
    match (ts >= watermark, policy) {
        (true, _) => Ok(ts),
        (false, LatePolicy::Clamp) => Ok(watermark),
        (false, LatePolicy::DeadLetter) => Err(Refused::Late { ts, watermark }),
    }
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

/// One update of a journey counter: `((journey, stat), time, diff)`.
type StatUpdate = ((u32, Stat), Time, isize);

/// What one worker's engine produced up to the as-of time.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EngineOutput {
    /// Membership changes.
    pub changes: Vec<KeyedChange>,
    /// Journey transitions and actions, in processing order (per user, the order they happened).
    pub journeys: Vec<JourneyOutput>,
    /// Journey counters `((journey, stat), value)`, this worker's share.
    pub stats: Vec<((u32, Stat), isize)>,
    /// Counters.
    pub engine: EngineStats,
}

/// The engine of one worker.
pub struct Engine {
    input: InputSession<Time, SharedEvent, isize>,
    control: InputSession<Time, Control, isize>,
    commands: u64,
    probe: ProbeHandle<Time>,
    changes: Rc<RefCell<Vec<KeyedChange>>>,
    journeys: Rc<RefCell<Vec<JourneyOutput>>>,
    stats: Rc<RefCell<Vec<StatUpdate>>>,
    duplicates: Rc<Cell<u64>>,
    agree_input: InputHandleVec<Time, Time>,
    agree_probe: ProbeHandle<Time>,
    agreed: Rc<Cell<Time>>,
    config: IngestConfig,
    max_seen: Option<Time>,
    /// The input time before the last `advance`, used to bound work in flight.
    previous: Time,
    counters: EngineStats,
}

impl Engine {
    /// Builds the dataflows on this worker. Every worker must call this with the same definitions;
    /// journeys start `ongoing`.
    pub fn build(
        worker: &mut Worker,
        defs: &[SegmentDefinition],
        plans: &[JourneyPlan],
        config: IngestConfig,
    ) -> Engine {
        let mut input = InputSession::new();
        let mut control = InputSession::new();
        let probe = ProbeHandle::new();
        let changes = Rc::new(RefCell::new(Vec::new()));
        let journeys = Rc::new(RefCell::new(Vec::new()));
        let stats_out = Rc::new(RefCell::new(Vec::new()));
        let duplicates = Rc::new(Cell::new(0));
        worker.dataflow::<Time, _, _>(|scope| {
            let raw = input.to_collection(scope);
            let events = dedup(raw, config.dedup_window, duplicates.clone());
            let mut compiler = Compiler::new(events.clone());
            let segments = compiler.segments(defs);
            let sink = changes.clone();
            compiler
                .changes(segments)
                .inspect(move |((segment, user), time, diff)| {
                    sink.borrow_mut().push(KeyedChange { time: *time, segment: *segment, user: *user, diff: *diff })
                })
                .probe_with(&probe);
            let control = control.to_collection(scope).inner.broadcast();
            let outputs: Vec<_> = plans
                .iter()
                .enumerate()
                .map(|(i, plan)| {
                    let conditions = compiler.journey_conditions(plan);
                    let plan = Rc::new(plan.clone());
                    journey(
                        plan,
                        i as u32,
                        events.clone(),
                        conditions,
                        control.clone(),
                        Start::new(Status::Ongoing, None),
                    )
                })
                .collect();
            let outputs = scope.concatenate(outputs);
            let sink = journeys.clone();
            let outputs = outputs.inspect(move |record| sink.borrow_mut().push(*record));
            let exits: Vec<Vec<bool>> =
                plans.iter().map(|p| (0..p.nodes.len() as u32).map(|n| p.is_exit(n)).collect()).collect();
            let sink = stats_out.clone();
            stats(outputs, move |j, n| exits[j as usize][n as usize])
                .inspect(move |(stat, time, diff)| sink.borrow_mut().push((*stat, *time, *diff)))
                .probe_with(&probe);
        });
        // A small dataflow through which workers agree on the largest event time.
        let mut agree_input = InputHandleVec::new();
        let agree_probe = ProbeHandle::new();
        let agreed = Rc::new(Cell::new(0));
        worker.dataflow::<Time, _, _>(|scope| {
            let seen = agreed.clone();
            scope
                .input_from(&mut agree_input)
                .broadcast()
                .inspect(move |t: &Time| seen.set(seen.get().max(*t)))
                .probe_with(&agree_probe);
        });
        Engine {
            input,
            control,
            commands: 0,
            probe,
            changes,
            journeys,
            stats: stats_out,
            duplicates,
            agree_input,
            agree_probe,
            agreed,
            config,
            max_seen: None,
            previous: 0,
            counters: EngineStats::default(),
        }
    }

    /// The input's current time: events before it are late.
    pub fn watermark(&self) -> Time {
        *self.input.time()
    }

    /// Enters one event at its own time, or applies the late policy.
    pub fn offer(&mut self, event: Event) -> Result<(), Refused> {
        let watermark = self.watermark();
        let ts = event.ts;
        self.max_seen = Some(self.max_seen.map_or(ts, |m| m.max(ts)));
        let time = match admit(self.config.late_policy, ts, watermark) {
            Ok(time) => {
                self.counters.late_clamped += u64::from(time != ts);
                time
            }
            Err(refused) => {
                self.counters.late_rejected += 1;
                return Err(refused);
            }
        };
        self.counters.offered += 1;
        self.input.update_at(SharedEvent::new(event), time, 1);
        Ok(())
    }

    /// Applies a lifecycle command to journey `journey` at event time `at`, which must not be
    /// behind the watermark. Give commands on one worker only: they reach every worker.
    pub fn command(&mut self, journey: u32, command: Command, at: Time) {
        let at = at.max(*self.control.time());
        self.commands += 1;
        self.control.update_at((journey, self.commands, command), at, 1);
    }

    /// Ends a batch: moves the watermark to `max seen - allowed lateness` and lets the
    /// dataflow work, waiting for the previous batch to complete so work in flight stays bounded.
    pub fn advance(&mut self, worker: &mut Worker) {
        if let (Some(lateness), Some(max)) = (self.config.allowed_lateness, self.max_seen) {
            let watermark = max.saturating_sub(lateness);
            if watermark > self.watermark() {
                self.input.advance_to(watermark);
            }
        }
        self.input.flush();
        self.control.advance_to(self.watermark());
        self.control.flush();
        let previous = self.previous;
        worker.step_while(|| self.probe.less_than(&previous));
        self.previous = self.watermark();
    }

    /// Declares this worker's input exhausted: its input stops holding the frontier back, so
    /// workers still reading are never waiting on one that has finished.
    /// `limit` is the as-of time plus one when known; otherwise the input is released entirely.
    pub fn input_done(&mut self, limit: Option<Time>) {
        let limit = limit.unwrap_or(Time::MAX);
        if limit > self.watermark() {
            self.input.advance_to(limit);
        }
        self.input.flush();
        self.control.advance_to(self.watermark());
        self.control.flush();
    }

    /// The largest event time offered on any worker (every worker must call this, after `input_done`).
    pub fn agree_on_max_time(&mut self, worker: &mut Worker) -> Option<Time> {
        // Each worker sends its largest time plus one; zero means "saw nothing".
        self.agree_input.send(self.max_seen.map_or(0, |m| m.saturating_add(1)));
        self.agree_input.advance_to(1);
        let probe = self.agree_probe.clone();
        worker.step_while(|| probe.less_than(&1));
        self.agreed.get().checked_sub(1)
    }

    /// Completes every time up to and including `as_of` and returns what this worker produced
    /// (times at most `as_of`) and its counters. Once one worker has called `input_done`, the
    /// others must not offer events after `as_of`.
    pub fn finish(self, worker: &mut Worker, as_of: Time) -> EngineOutput {
        let Engine {
            mut input,
            mut control,
            probe,
            changes,
            journeys,
            stats,
            duplicates,
            agree_input,
            mut counters,
            ..
        } = self;
        if as_of + 1 > *input.time() {
            input.advance_to(as_of + 1);
        }
        input.flush();
        if as_of + 1 > *control.time() {
            control.advance_to(as_of + 1);
        }
        control.flush();
        worker.step_while(|| probe.less_than(&(as_of + 1)));
        let mut changes = std::mem::take(&mut *changes.borrow_mut());
        changes.retain(|c| c.time <= as_of);
        let mut journeys = std::mem::take(&mut *journeys.borrow_mut());
        journeys.retain(|j| match j {
            JourneyOutput::Transition(t) => t.time <= as_of,
            JourneyOutput::Action(a) => a.time <= as_of,
        });
        let mut totals: std::collections::BTreeMap<(u32, Stat), isize> = std::collections::BTreeMap::new();
        for (stat, time, diff) in stats.borrow().iter() {
            if *time <= as_of {
                *totals.entry(*stat).or_default() += diff;
            }
        }
        counters.duplicates = duplicates.get();
        // Times after `as_of` are not wanted: close the inputs, then drop the dataflows
        // instead of running them out.
        drop(input);
        drop(control);
        drop(agree_input);
        for id in worker.installed_dataflows() {
            worker.drop_dataflow(id);
        }
        EngineOutput {
            changes,
            journeys,
            stats: totals.into_iter().filter(|(_, v)| *v != 0).collect(),
            engine: counters,
        }
    }
}
