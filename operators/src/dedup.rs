//! Drops repeated `messageId`s. Events are routed by message id, held until the frontier
//! passes their time, and then taken in `(time, event)` order, so which copy survives
//! never depends on batching or worker count: the earliest one. An id is remembered for
//! `window` milliseconds of dataflow time after the copy that was kept.

use crate::{SharedEvent, Time};
use differential_dataflow::{AsCollection, Hashable, VecCollection};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
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
    let exchange = Exchange::new(|(e, _, _): &(SharedEvent, Time, isize)| e.message_id.hashed());
    events
        .inner
        .unary_frontier::<timely::container::CapacityContainerBuilder<Vec<(SharedEvent, Time, isize)>>, _, _, _>(
            exchange,
            "Dedup",
            move |_, _| {
                // Held events by time, and one capability at the earliest held time: output goes
                // out in one message per activation, not one per distinct timestamp.
                let mut pending: BTreeMap<Time, Vec<SharedEvent>> = BTreeMap::new();
                let mut held: Option<Capability<Time>> = None;
                let mut kept: HashMap<String, Time> = HashMap::new();
                let mut expiry: VecDeque<(Time, String)> = VecDeque::new();
                move |(input, frontier), output| {
                    input.for_each(|cap, data| {
                        if let Some(t) = cap.least() {
                            if held.as_ref().is_none_or(|h| t < h.time()) {
                                held = cap.retain_least(0);
                            }
                        }
                        for (event, time, diff) in data.drain(..) {
                            let slot = pending.entry(time).or_default();
                            // Events are only ever inserted; a multiplicity above one is repeated copies.
                            for _ in 0..diff.max(0) {
                                slot.push(event.clone());
                            }
                        }
                    });
                    let Some(cap) = held.as_ref() else { return };
                    let mut session = output.session(cap);
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let (time, mut batch) = entry.remove_entry();
                        while let Some((t, _)) = expiry.front() {
                            if t.saturating_add(window) >= time {
                                break;
                            }
                            let (t, id) = expiry.pop_front().expect("front exists");
                            if kept.get(&id) == Some(&t) {
                                kept.remove(&id);
                            }
                        }
                        batch.sort();
                        for event in batch {
                            if let Some(&first) = kept.get(&event.message_id) {
                                if time.saturating_sub(first) <= window {
                                    duplicates.set(duplicates.get() + 1);
                                    continue;
                                }
                            }
                            kept.insert(event.message_id.clone(), time);
                            expiry.push_back((time, event.message_id.clone()));
                            session.give((event, time, 1));
                        }
                    }
                    drop(session);
                    held = pending.keys().next().map(|t| held.as_ref().expect("held while pending").delayed(t));
                }
            },
        )
        .as_collection()
}
