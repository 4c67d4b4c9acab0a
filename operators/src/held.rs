//! Records held back until the frontier passes their time, under one capability at the
//! earliest held time. Operators that must see every record of a time at once, in a fixed
//! order (dedup, profiles, and journeys' timers), hold their input here and take complete
//! times in `(time, record)` order, so their output never depends on batching.

use crate::Time;
use timely::dataflow::operators::{Capability, InputCapability};
use timely::progress::frontier::MutableAntichain;

/// Records of complete times, in order, with the capability to send what they cause.
pub type Complete<D> = (Capability<Time>, Vec<(Time, D)>);

/// Pending records and the capability that lets them be sent later.
pub struct Held<D> {
    pending: Vec<(Time, D)>,
    cap: Option<Capability<Time>>,
}

impl<D: Ord> Default for Held<D> {
    fn default() -> Self {
        Held { pending: Vec::new(), cap: None }
    }
}

impl<D: Ord> Held<D> {
    /// Holds records that arrived under `cap` (each at a time not before it).
    pub fn hold(&mut self, cap: &InputCapability<Time>, records: impl IntoIterator<Item = (Time, D)>) {
        if let Some(t) = cap.least() {
            if self.cap.as_ref().is_none_or(|held| t < held.time()) {
                self.cap = cap.retain_least(0);
            }
        }
        self.pending.extend(records);
    }

    /// Takes the records whose time the frontier has passed, sorted by `(time, record)`, with
    /// a capability to send them under; keeps holding the rest.
    pub fn take_complete(&mut self, frontier: &MutableAntichain<Time>) -> Option<Complete<D>> {
        self.take_when(|t| !frontier.less_equal(t))
    }

    /// The earliest time held, if any.
    pub fn earliest(&self) -> Option<Time> {
        self.pending.iter().map(|(t, _)| *t).min()
    }

    /// [`Held::take_complete`] for an operator whose times are complete by `complete` (its
    /// inputs' frontiers together): a time no later than a complete one is complete.
    pub fn take_when(&mut self, complete: impl Fn(&Time) -> bool) -> Option<Complete<D>> {
        if self.pending.is_empty() {
            // Nothing held (an empty message may have brought a capability): release it.
            self.cap = None;
            return None;
        }
        let cap = self.cap.as_ref()?;
        self.pending.sort_unstable();
        let complete = self.pending.partition_point(|(t, _)| complete(t));
        if complete == 0 {
            // Hold no earlier than needed, or this operator's output frontier lags its input.
            let earliest = self.pending[0].0;
            if *cap.time() < earliest {
                self.cap = Some(cap.delayed(&earliest));
            }
            return None;
        }
        let taken: Vec<(Time, D)> = self.pending.drain(..complete).collect();
        let send = cap.clone();
        self.cap = self.pending.first().map(|(t, _)| cap.delayed(t));
        Some((send, taken))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;
    use timely::dataflow::channels::pact::Pipeline;
    use timely::dataflow::operators::generic::Operator;
    use timely::dataflow::operators::vec::Input;
    use timely::dataflow::operators::Probe;
    use timely::dataflow::{InputHandleVec, ProbeHandle};

    /// Records pass through `Held`; the test watches what comes out and the output frontier.
    #[test]
    fn releases_complete_times_in_order_and_holds_no_earlier_than_needed() {
        timely::execute_directly(|worker| {
            let mut input: InputHandleVec<Time, (Time, char)> = InputHandleVec::new();
            let probe = ProbeHandle::new();
            let seen = Rc::new(RefCell::new(Vec::new()));
            let sink = seen.clone();
            worker.dataflow::<Time, _, _>(|scope| {
                type Out = timely::container::CapacityContainerBuilder<Vec<(Time, char)>>;
                scope
                    .input_from(&mut input)
                    .unary_frontier::<Out, _, _, _>(Pipeline, "Held", |_, _| {
                        let mut held: Held<char> = Held::default();
                        move |(input, frontier), output| {
                            input.for_each(|cap, data| held.hold(&cap, data.drain(..)));
                            if let Some((cap, complete)) = held.take_complete(frontier) {
                                sink.borrow_mut().extend(complete.iter().copied());
                                output.session(&cap).give_iterator(complete.into_iter());
                            }
                        }
                    })
                    .probe_with(&probe);
            });
            // Sent at epoch 0 for times 7 and 5; nothing is complete until the input passes them.
            input.send((7, 'b'));
            input.send((5, 'a'));
            input.advance_to(5);
            // The operator must not keep holding time 0: its output frontier follows to 5.
            for _ in 0..100 {
                worker.step();
            }
            assert!(!probe.less_than(&5), "output frontier stuck behind the held records");
            assert!(seen.borrow().is_empty());
            input.advance_to(8);
            worker.step_while(|| probe.less_than(&8));
            assert_eq!(*seen.borrow(), vec![(5, 'a'), (7, 'b')]);
        });
    }
}
