//! What every analysis dataflow (funnels, cohorts, paths) shares: the dataflow itself with its
//! imports' shutdown buttons and its probe, imports of the shared arrangements as of its
//! install time, and reading a per-user result arrangement as of a time.

use crate::programs::{shut, Button};
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::cursor::{cursor_list, Cursor};
use differential_dataflow::trace::implementations::ValSpine;
use differential_dataflow::trace::wrappers::frontier::TraceFrontier;
use differential_dataflow::trace::TraceReader;
use journeyflow_operators::{Time, UserId};
use timely::dataflow::ProbeHandle;
use timely::progress::frontier::Antichain;
use timely::worker::Worker;

/// A per-user result of an analysis: each user's values over time.
pub type PerUser<V> = TraceAgent<ValSpine<UserId, V, Time, isize>>;

/// An analysis's dataflow on this worker.
pub struct Dataflow {
    index: usize,
    buttons: Vec<Button>,
    probe: ProbeHandle<Time>,
}

impl Dataflow {
    /// A dataflow about to be built on `worker` (its index is the next one).
    pub fn next(worker: &Worker) -> Dataflow {
        Dataflow { index: worker.next_dataflow_index(), buttons: Vec::new(), probe: ProbeHandle::new() }
    }

    /// Its probe: what its result's stream goes through.
    pub fn probe(&self) -> &ProbeHandle<Time> {
        &self.probe
    }

    /// Imports `trace` into `scope` as of `at` (or the trace's compaction, if later): history
    /// before is seen at that time. The import's button is kept.
    pub fn import<'s, Tr>(
        &mut self,
        trace: &mut TraceAgent<Tr>,
        scope: timely::dataflow::Scope<'s, Time>,
        name: &str,
        at: Time,
    ) -> Arranged<'s, TraceFrontier<TraceAgent<Tr>>>
    where
        Tr: differential_dataflow::trace::Trace<Time = Time> + 'static,
    {
        let compacted = trace.get_logical_compaction().first().copied().unwrap_or(Time::MAX);
        let since = Antichain::from_elem(compacted.max(at));
        let (imported, button) = trace.import_frontier_core(scope, name, since, Antichain::new());
        self.buttons.push(button);
        imported
    }

    /// The earliest time its result may still change at.
    pub fn frontier(&self) -> Time {
        let mut low = Time::MAX;
        self.probe.with_frontier(|f| low = f.first().copied().unwrap_or(Time::MAX));
        low
    }

    /// Stops its imports and drops it.
    pub fn dispose(self, worker: &mut Worker) {
        shut(worker, self.buttons, self.index);
    }
}

/// Calls `each` with every user's values present as of `time` (in the values' order, read in
/// place), once `trace` is complete through `time` and readable (`None` before); stops at the
/// first error.
pub fn per_user_as_of<V, E>(
    trace: &mut PerUser<V>,
    time: Time,
    mut each: impl FnMut(&UserId, &[&V]) -> Result<(), E>,
) -> Option<Result<(), E>>
where
    V: differential_dataflow::ExchangeData,
{
    let mut upper = Antichain::new();
    trace.read_upper(&mut upper);
    let compacted = trace.get_physical_compaction().to_owned();
    if upper.less_equal(&time) || !timely::PartialOrder::less_equal(&compacted.borrow(), &upper.borrow()) {
        return None;
    }
    let batches = trace.spans_through(upper.borrow())?;
    let (mut cursor, storage) = cursor_list(batches.into_iter().filter_map(|b| b.inner).collect());
    let mut values = Vec::new();
    while cursor.key_valid(&storage) {
        values.clear();
        while cursor.val_valid(&storage) {
            let mut count = 0;
            cursor.map_times(&storage, |t, r| {
                if *t <= time {
                    count += *r;
                }
            });
            if count > 0 {
                values.push(cursor.val(&storage));
            }
            cursor.step_val(&storage);
        }
        if !values.is_empty() {
            if let Err(e) = each(cursor.key(&storage), &values) {
                return Some(Err(e));
            }
        }
        cursor.step_key(&storage);
    }
    Some(Ok(()))
}

/// An analysis a replay installs before any event, and asks reports of.
#[derive(Clone, Debug)]
pub enum Analysis {
    /// A funnel.
    Funnel(journeyflow_types::funnel::FunnelDefinition),
    /// A retention cohort.
    Cohort(journeyflow_types::cohort::CohortDefinition),
    /// A path analysis.
    Paths(journeyflow_types::paths::PathsDefinition),
}

/// One worker's cells of an analysis's report.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Cells {
    /// A funnel's.
    Funnel(Vec<journeyflow_control_api::funnel_report::FunnelCell>),
    /// A cohort's.
    Cohort(Vec<journeyflow_control_api::cohort_report::CohortCell>),
    /// A path analysis's: users per path.
    Paths(Vec<(Vec<String>, u64)>),
}

impl Cells {
    /// Adds another worker's cells of the same report.
    pub fn extend(&mut self, other: Cells) {
        match (self, other) {
            (Cells::Funnel(all), Cells::Funnel(mine)) => all.extend(mine),
            (Cells::Cohort(all), Cells::Cohort(mine)) => all.extend(mine),
            (Cells::Paths(all), Cells::Paths(mine)) => all.extend(mine),
            _ => {}
        }
    }
}

impl Analysis {
    /// Its id.
    pub fn id(&self) -> &str {
        match self {
            Analysis::Funnel(def) => &def.id,
            Analysis::Cohort(def) => &def.id,
            Analysis::Paths(def) => &def.id,
        }
    }

    /// Installs it on this worker as of `at`.
    pub fn install(&self, programs: &mut crate::programs::Programs, worker: &mut Worker, at: Time) {
        match self {
            Analysis::Funnel(def) => programs.install_funnel(worker, def.clone(), at),
            Analysis::Cohort(def) => programs.install_cohort(worker, def.clone(), at),
            Analysis::Paths(def) => programs.install_paths(worker, def.clone(), at),
        }
    }

    /// This worker's cells of its report over `query` as of `time` (an error when it is not
    /// complete through `time`, or the share is too large).
    pub fn cells(
        &self,
        programs: &mut crate::programs::Programs,
        time: Time,
        query: &journeyflow_control_api::buckets::Buckets,
    ) -> Result<Cells, String> {
        let incomplete = || format!("{} is not complete through {time}", self.id());
        match self {
            Analysis::Funnel(def) => {
                programs.funnel_part_at(&def.id, time, query).ok_or_else(incomplete)?.map(|p| Cells::Funnel(p.cells))
            }
            Analysis::Cohort(def) => {
                programs.cohort_part_at(&def.id, time, query).ok_or_else(incomplete)?.map(|p| Cells::Cohort(p.cells))
            }
            Analysis::Paths(def) => {
                programs.paths_part_at(&def.id, time, query).ok_or_else(incomplete)?.map(|p| Cells::Paths(p.paths))
            }
        }
    }

    /// No cells yet, of its kind.
    pub fn no_cells(&self) -> Cells {
        match self {
            Analysis::Funnel(_) => Cells::Funnel(Vec::new()),
            Analysis::Cohort(_) => Cells::Cohort(Vec::new()),
            Analysis::Paths(_) => Cells::Paths(Vec::new()),
        }
    }

    /// Its report over `query` as of `as_of`, from every worker's cells.
    pub fn report(
        &self,
        query: &journeyflow_control_api::buckets::Buckets,
        as_of: Time,
        cells: Cells,
    ) -> serde_json::Value {
        use journeyflow_control_api::{cohort_report, funnel_report, path_report};
        match (self, cells) {
            (Analysis::Funnel(def), Cells::Funnel(cells)) => {
                let names: Vec<String> = def.steps.iter().map(|s| s.event.clone()).collect();
                funnel_report::report(&def.id, &names, def.breakdown.is_some(), query, as_of, cells)
            }
            (Analysis::Cohort(def), Cells::Cohort(cells)) => {
                cohort_report::report(&def.id, def.periods, def.period.0, query, as_of, cells)
            }
            (Analysis::Paths(def), Cells::Paths(counts)) => {
                let backwards = def.direction == journeyflow_types::paths::Direction::Before;
                path_report::report(&def.id, def.top, backwards, query, as_of, counts)
            }
            (analysis, _) => serde_json::json!({"error": format!("cells of another kind for {}", analysis.id())}),
        }
    }
}
