//! An installed retention cohort on one worker: its dataflow over an import of the retained
//! events ([`journeyflow_operators::cohort`] keeps each user's place), and the reading of the
//! places as of a time into this worker's cells of a report.

use crate::analysis::{per_user_as_of, Dataflow};
use crate::programs::EventsTrace;
use differential_dataflow::trace::TraceReader;
use journeyflow_control_api::buckets::Buckets;
use journeyflow_control_api::cohort_report::{CohortCell, CohortPart};
use journeyflow_operators::cohort::{cohort, CohortEvent, CohortTrace};
use journeyflow_operators::select::select;
use journeyflow_operators::Time;
use journeyflow_types::cohort::CohortDefinition;
use std::collections::BTreeMap;
use timely::dataflow::operators::Probe;
use timely::progress::frontier::AntichainRef;
use timely::worker::Worker;

/// A cohort's dataflow on this worker.
pub struct CohortProgram {
    dataflow: Dataflow,
    places: CohortTrace,
    /// The definition it computes.
    pub def: CohortDefinition,
}

impl CohortProgram {
    /// Builds the cohort's dataflow over the retained events as of `at`.
    pub fn build(worker: &mut Worker, def: CohortDefinition, events: &mut EventsTrace, at: Time) -> CohortProgram {
        let mut dataflow = Dataflow::next(worker);
        let places = worker.dataflow_named::<Time, _, _>(&format!("Cohort({})", def.id), |scope| {
            let events = dataflow.import(events, scope, "Events", at);
            let (first, returns) = (def.first.clone(), def.returns.clone());
            let names = [def.first.event.as_str(), def.returns.event.as_str()];
            let matching = select(events, &names, move |e| {
                let (is_first, is_return) = (first.matches(e), returns.matches(e));
                (is_first || is_return).then(|| {
                    let message_id = e.message_id().to_string();
                    (e.user(), CohortEvent { ts: e.ts(), message_id, first: is_first, returns: is_return })
                })
            });
            let places = cohort(matching, def.period.0);
            places.stream.clone().probe_with(dataflow.probe());
            places.trace
        });
        CohortProgram { dataflow, places, def }
    }

    /// Lets the places forget history distinctions before `frontier`.
    pub fn compact(&mut self, frontier: AntichainRef<Time>) {
        self.places.set_logical_compaction(frontier);
        self.places.set_physical_compaction(frontier);
    }

    /// The earliest time its places may still change at.
    pub fn frontier(&self) -> Time {
        self.dataflow.frontier()
    }

    /// Stops its imports and drops its dataflow.
    pub fn dispose(self, worker: &mut Worker) {
        drop(self.places);
        self.dataflow.dispose(worker);
    }

    /// This worker's share of the report `query` as of `time`, once the places are complete
    /// through `time` (`None` before): each user counts in the cohort of their first event's
    /// bucket.
    pub fn part_at(&mut self, time: Time, query: &Buckets) -> Option<CohortPart> {
        let periods = self.def.periods;
        let mut cells: BTreeMap<u32, CohortCell> = BTreeMap::new();
        let read = per_user_as_of(&mut self.places, time, |_, places| {
            for place in places {
                if let Some(bucket) = query.bucket(place.first) {
                    cells
                        .entry(bucket)
                        .or_insert_with(|| CohortCell::new(bucket, periods))
                        .count(place.returned, place.last);
                }
            }
            Ok::<(), ()>(())
        });
        read.map(|_| CohortPart { periods, period: self.def.period.0, cells: cells.into_values().collect() })
    }
}
