//! Drops repeated `messageId`s. Events are routed by message id, held until the frontier
//! passes their time, and then taken in `(time, event)` order, so which copy survives
//! never depends on batching or worker count: the earliest one. An id is remembered for
//! `window` milliseconds of dataflow time after the copy that was kept.

use crate::{SharedEvent, Time};
use differential_dataflow::{AsCollection, VecCollection};
use journeyflow_types::{Key, KeyMap};
use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;

/// Removes duplicate events; `duplicates` counts the ones dropped on this worker.
pub fn dedup<'s>(
    events: VecCollection<'s, Time, SharedEvent>,
    window: Time,
    duplicates: Rc<Cell<u64>>,
) -> VecCollection<'s, Time, SharedEvent> {
    let exchange = Exchange::new(|(e, _, _): &(SharedEvent, Time, isize)| Key::of(&e.message_id).0 as u64);
    type Output = timely::container::CapacityContainerBuilder<Vec<(SharedEvent, Time, isize)>>;
    events
        .inner
        .unary_frontier::<Output, _, _, _>(exchange, "Dedup", move |_, _| {
            // Held events, and one capability at the earliest held time: output goes out in
            // one message per activation, not one per distinct timestamp.
            let mut pending: Vec<(Time, SharedEvent)> = Vec::new();
            let mut held: Option<Capability<Time>> = None;
            let mut kept: KeyMap<Time> = KeyMap::default();
            let mut expiry: VecDeque<(Time, Key)> = VecDeque::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    if let Some(t) = cap.least() {
                        if held.as_ref().is_none_or(|h| t < h.time()) {
                            held = cap.retain_least(0);
                        }
                    }
                    for (event, time, diff) in data.drain(..) {
                        // Events are only ever inserted; a multiplicity above one is repeated copies.
                        for _ in 0..diff.max(0) {
                            pending.push((time, event.clone()));
                        }
                    }
                });
                let Some(cap) = held.as_ref() else { return };
                // Complete times go first, in (time, event) order; the rest wait.
                pending.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
                let complete = pending.partition_point(|(t, _)| !frontier.less_equal(t));
                let mut session = output.session(cap);
                for (time, event) in pending.drain(..complete) {
                    while let Some(&(t, id)) = expiry.front() {
                        if t.saturating_add(window) >= time {
                            break;
                        }
                        expiry.pop_front();
                        if kept.get(&id) == Some(&t) {
                            kept.remove(&id);
                        }
                    }
                    let id = Key::of(&event.message_id);
                    if let Some(&first) = kept.get(&id) {
                        if time.saturating_sub(first) <= window {
                            duplicates.set(duplicates.get() + 1);
                            continue;
                        }
                    }
                    kept.insert(id, time);
                    expiry.push_back((time, id));
                    session.give((event, time, 1));
                }
                drop(session);
                held = pending.first().map(|(t, _)| held.as_ref().expect("held while pending").delayed(t));
            }
        })
        .as_collection()
}
