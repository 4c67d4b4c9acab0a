//! An installed path analysis on one worker: its dataflow over an import of the retained events
//! ([`journeyflow_operators::paths`] keeps each user's paths), and the reading of the paths as
//! of a time into this worker's counts of a report.

use crate::analysis::{per_user_as_of, Dataflow};
use crate::programs::EventsTrace;
use differential_dataflow::trace::TraceReader;
use journeyflow_control_api::buckets::Buckets;
use journeyflow_control_api::path_report::{PathsPart, MAX_PATHS, MAX_PATH_BYTES};
use journeyflow_operators::paths::{paths, PathEvent, PathsSpec, PathsTrace};
use journeyflow_operators::select::select;
use journeyflow_operators::Time;
use journeyflow_types::paths::{Direction, PathsDefinition};
use journeyflow_types::Kind;
use std::collections::BTreeMap;
use timely::dataflow::operators::Probe;
use timely::progress::frontier::AntichainRef;
use timely::worker::Worker;

/// A path analysis's dataflow on this worker.
pub struct PathsProgram {
    dataflow: Dataflow,
    paths: PathsTrace,
    /// The definition it computes.
    pub def: PathsDefinition,
}

impl PathsProgram {
    /// Builds the analysis's dataflow over the retained events as of `at`: the events of its
    /// names and its anchor's.
    pub fn build(worker: &mut Worker, def: PathsDefinition, events: &mut EventsTrace, at: Time) -> PathsProgram {
        let mut dataflow = Dataflow::next(worker);
        let spec = PathsSpec {
            after: def.direction == Direction::After,
            depth: def.depth as usize,
            collapse: def.collapse,
            within: def.within.map(|w| w.0),
        };
        let trace = worker.dataflow_named::<Time, _, _>(&format!("Paths({})", def.id), |scope| {
            let events = dataflow.import(events, scope, "Events", at);
            let (anchor, names) = (def.anchor.clone(), def.names.clone());
            let logic = move |e: &journeyflow_operators::SharedEvent| {
                let is_anchor = anchor.matches(e);
                let step = e.kind() != Kind::Identify && names.iter().any(|n| n == e.name());
                (is_anchor || step).then(|| {
                    let (ts, message_id, name) = (e.ts(), e.message_id().to_string(), e.name().to_string());
                    (e.user(), PathEvent { ts, message_id, name, anchor: is_anchor, step })
                })
            };
            let mut read: Vec<&str> = def.names.iter().map(String::as_str).collect();
            read.push(def.anchor.event.as_str());
            let matching = select(events, &read, logic);
            let paths = paths(matching, spec);
            paths.stream.clone().probe_with(dataflow.probe());
            paths.trace
        });
        PathsProgram { dataflow, paths: trace, def }
    }

    /// Lets the paths forget history distinctions before `frontier`.
    pub fn compact(&mut self, frontier: AntichainRef<Time>) {
        self.paths.set_logical_compaction(frontier);
        self.paths.set_physical_compaction(frontier);
    }

    /// The earliest time its paths may still change at.
    pub fn frontier(&self) -> Time {
        self.dataflow.frontier()
    }

    /// Stops its imports and drops its dataflow.
    pub fn dispose(self, worker: &mut Worker) {
        drop(self.paths);
        self.dataflow.dispose(worker);
    }

    /// This worker's counts of the report over anchors in `query`'s range as of `time`, once
    /// the paths are complete through `time` (`None` before): each user counts once, by the
    /// path of their first anchor in the range. `Some(Err)` past [`MAX_PATHS`] distinct paths
    /// or [`MAX_PATH_BYTES`] bytes of their names.
    pub fn part_at(&mut self, time: Time, query: &Buckets) -> Option<Result<PathsPart, String>> {
        let mut counts: BTreeMap<Vec<String>, u64> = BTreeMap::new();
        let mut bytes = 0;
        let read = per_user_as_of(&mut self.paths, time, |_, paths| {
            // In anchor order: the first in the range counts.
            if let Some(path) = paths.iter().find(|p| query.bucket(p.ts).is_some()) {
                match counts.get_mut(&path.names) {
                    Some(n) => *n += 1,
                    None => {
                        bytes += path.names.iter().map(String::len).sum::<usize>();
                        counts.insert(path.names.clone(), 1);
                    }
                }
            }
            match counts.len() > MAX_PATHS || bytes > MAX_PATH_BYTES {
                true => Err(format!(
                    "more than {MAX_PATHS} distinct paths on a worker: name the events a path may take, or collapse repeats"
                )),
                false => Ok(()),
            }
        });
        match read? {
            Err(e) => Some(Err(e)),
            Ok(()) => Some(Ok(PathsPart {
                top: self.def.top,
                backwards: self.def.direction == Direction::Before,
                paths: counts.into_iter().collect(),
            })),
        }
    }
}
