//! User ids by key for the outputs, over the whole cluster: an event's user id is known where
//! the event was read, but the user's records may come out on a worker of another process.
//! Each worker sends the ids it sees first through a broadcast dataflow, at a time no later
//! than the event's, into its process's registry; a record at time `t` whose id is unknown
//! waits until the names are complete through `t`.

use journeyflow_control_api::user_names::{Noted, UserNames};
use journeyflow_operators::Time;
use journeyflow_types::Key;
use std::sync::{Arc, RwLock};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::{Broadcast, Input};
use timely::dataflow::operators::Probe;
use timely::dataflow::{InputHandleVec, ProbeHandle};
use timely::worker::Worker;

/// The registry every worker of a process writes into and reads from.
pub type Registry = Arc<RwLock<UserNames>>;

/// One worker's end of the names dataflow.
pub struct Names {
    input: InputHandleVec<Time, (Key, String)>,
    probe: ProbeHandle<Time>,
    registry: Registry,
}

impl Names {
    /// Builds the dataflow on this worker (every worker must, in the same order as the others).
    pub fn new(worker: &mut Worker, registry: Registry) -> Names {
        let mut input = InputHandleVec::new();
        let probe = ProbeHandle::new();
        let into = registry.clone();
        worker.dataflow::<Time, _, _>(|scope| {
            scope
                .input_from(&mut input)
                .broadcast()
                .unary::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(
                    Pipeline,
                    "Names",
                    move |_, _| {
                        move |input, _output| {
                            input.for_each(|_, data| {
                                let mut names = into.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                                for (key, id) in data.drain(..) {
                                    names.note(key, &Arc::from(id));
                                }
                            });
                        }
                    },
                )
                .probe_with(&probe);
        });
        Names { input, probe, registry }
    }

    /// Keeps the ids this process's registry does not hold in its current generation (at
    /// once: answers here need them) and sends them to every process (one lock for the lot).
    pub fn note(&mut self, users: &[(Key, Arc<str>)]) {
        if users.is_empty() {
            return;
        }
        let mut names = self.registry.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (key, id) in users {
            if names.note(*key, id) == Noted::Added {
                self.input.send((*key, id.to_string()));
            }
        }
    }

    /// Moves the time names are sent at (the programs' input time: never after an event's).
    pub fn advance_to(&mut self, time: Time) {
        if time > *self.input.time() {
            self.input.advance_to(time);
        }
    }

    /// Every name sent before this time is in the registry.
    pub fn complete(&self) -> Time {
        self.probe.with_frontier(|f| f.first().copied().unwrap_or(Time::MAX))
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Closes this worker's input (the dataflow ends once every worker's is closed).
    pub fn close(self) {
        drop(self.input);
    }
}
