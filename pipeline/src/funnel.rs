//! An installed funnel on one worker: its dataflow over imports of the retained events and the
//! traits ([`journeyflow_operators::funnel`] keeps each user's attempts), and the reading of its
//! attempts as of a time into this worker's cells of a report.

use crate::analysis::{per_user_as_of, Dataflow};
use crate::programs::{EventsTrace, TraitsTrace};
use differential_dataflow::trace::TraceReader;
use journeyflow_control_api::buckets::Buckets;
use journeyflow_control_api::funnel_report::{FunnelCell, FunnelPart, MAX_CELLS, MAX_TIMES};
use journeyflow_operators::funnel::{funnel, FunnelItem, FunnelOut, FunnelSpec, FunnelTrace};
use journeyflow_operators::select::select;
use journeyflow_operators::Time;
use journeyflow_types::funnel::{FunnelDefinition, StepOrder};
use journeyflow_types::Value;
use std::collections::BTreeMap;
use timely::dataflow::operators::Probe;
use timely::progress::frontier::AntichainRef;
use timely::worker::Worker;

/// A funnel's dataflow on this worker.
pub struct FunnelProgram {
    dataflow: Dataflow,
    attempts: FunnelTrace,
    /// The definition it computes.
    pub def: FunnelDefinition,
}

impl FunnelProgram {
    /// Builds the funnel's dataflow over the retained events and traits as of `at`.
    pub fn build(
        worker: &mut Worker,
        def: FunnelDefinition,
        events: &mut EventsTrace,
        traits: &mut TraitsTrace,
        at: Time,
    ) -> FunnelProgram {
        let mut dataflow = Dataflow::next(worker);
        let spec = FunnelSpec { steps: def.steps.len(), within: def.within.0, strict: def.order == StepOrder::Strict };
        let attempts = worker.dataflow_named::<Time, _, _>(&format!("Funnel({})", def.id), |scope| {
            let events = dataflow.import(events, scope, "Events", at);
            let steps = def.steps.clone();
            let names: Vec<&str> = def.steps.iter().map(|f| f.event.as_str()).collect();
            let mut items = select(events, &names, move |e| {
                let mask = steps.iter().enumerate().filter(|(_, f)| f.matches(e)).fold(0u32, |m, (i, _)| m | 1 << i);
                (mask != 0).then(|| {
                    (e.user(), FunnelItem::Event { ts: e.ts(), message_id: e.message_id().to_string(), steps: mask })
                })
            });
            if let Some(name) = def.breakdown.clone() {
                let traits = dataflow.import(traits, scope, "Traits", at);
                let values = traits.flat_map_ref(move |(user, key), value| {
                    (*key == name).then(|| (*user, FunnelItem::Trait(value.clone())))
                });
                items = items.concat(values);
            }
            let attempts = funnel(items, spec);
            attempts.stream.clone().probe_with(dataflow.probe());
            attempts.trace
        });
        FunnelProgram { dataflow, attempts, def }
    }

    /// Lets the attempts forget history distinctions before `frontier`.
    pub fn compact(&mut self, frontier: AntichainRef<Time>) {
        self.attempts.set_logical_compaction(frontier);
        self.attempts.set_physical_compaction(frontier);
    }

    /// The earliest time its attempts may still change at.
    pub fn frontier(&self) -> Time {
        self.dataflow.frontier()
    }

    /// Stops its imports and drops its dataflow.
    pub fn dispose(self, worker: &mut Worker) {
        drop(self.attempts);
        self.dataflow.dispose(worker);
    }

    /// This worker's share of the report `query` as of `time`, once the attempts are complete
    /// through `time` (`None` before): each user counts once per bucket, by their first
    /// attempt starting in it. `Some(Err)` when the share would be larger than
    /// [`MAX_CELLS`] cells or [`MAX_TIMES`] times.
    pub fn part_at(&mut self, time: Time, query: &Buckets) -> Option<Result<FunnelPart, String>> {
        let steps = self.def.steps.len();
        let mut cells: BTreeMap<(u32, Option<String>), FunnelCell> = BTreeMap::new();
        let mut times = 0;
        let read = per_user_as_of(&mut self.attempts, time, |_, values| {
            // Attempts sort before the breakdown value, by `(start, messageId)`.
            let breakdown = values.iter().find_map(|v| match v {
                FunnelOut::Breakdown(v) => Some(breakdown_text(v)),
                FunnelOut::Attempt(_) => None,
            });
            let mut last = None;
            for value in values {
                let FunnelOut::Attempt(a) = value else { continue };
                let Some(bucket) = query.bucket(a.start).filter(|b| last != Some(*b)) else { continue };
                last = Some(bucket);
                let key = (bucket, breakdown.clone());
                let cell = cells.entry(key).or_insert_with(|| FunnelCell::new(bucket, breakdown.clone(), steps));
                cell.count(a.start, &a.reached);
                times += a.reached.len();
            }
            match cells.len() > MAX_CELLS || times > MAX_TIMES {
                true => Err(format!(
                    "the report would be too large (more than {MAX_CELLS} buckets and values or {MAX_TIMES} times on a \
                     worker): a shorter range or a wider step"
                )),
                false => Ok(()),
            }
        });
        match read? {
            Err(e) => Some(Err(e)),
            Ok(()) => {
                let names = self.def.steps.iter().map(|s| s.event.clone()).collect();
                let breakdown = self.def.breakdown.is_some();
                Some(Ok(FunnelPart { names, breakdown, cells: cells.into_values().collect() }))
            }
        }
    }
}

/// A breakdown value as the report names it: its JSON text, a whole number written as one
/// (numbers are kept as doubles; `1` and `1.0` are one value).
fn breakdown_text(value: &Value) -> String {
    match value {
        Value::Num(n) if n.0.fract() == 0.0 && n.0.abs() < 9_007_199_254_740_992.0 => format!("{}", n.0 as i64),
        other => other.to_json().to_string(),
    }
}
