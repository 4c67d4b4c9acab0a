//! Records held back until the frontier passes their time, under one capability at the
//! earliest held time. Operators that must see every record of a time at once, in a fixed
//! order (dedup, latest, and journeys' timers), hold their input here and take complete
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
        if self.pending.is_empty() {
            // Nothing held (an empty message may have brought a capability): release it.
            self.cap = None;
            return None;
        }
        let cap = self.cap.as_ref()?;
        self.pending.sort_unstable();
        let complete = self.pending.partition_point(|(t, _)| !frontier.less_equal(t));
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
