//! Drops repeated `messageId`s. Events are routed by message id, held until the frontier
//! passes their time, and then taken in `(time, event)` order, so which copy survives
//! never depends on batching or worker count: the earliest one. An id is remembered for
//! `window` milliseconds of dataflow time after the copy that was kept.

use crate::Time;
use differential_dataflow::{AsCollection, Hashable, VecCollection};
use journeyflow_types::Event;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;

/// Removes duplicate events; `duplicates` counts the ones dropped on this worker.
pub fn dedup<'s>(
    events: VecCollection<'s, Time, Event>,
    window: Time,
    duplicates: Rc<Cell<u64>>,
) -> VecCollection<'s, Time, Event> {
    let exchange = Exchange::new(|(e, _, _): &(Event, Time, isize)| e.message_id.hashed());
    events
        .inner
        .unary_frontier::<timely::container::CapacityContainerBuilder<Vec<(Event, Time, isize)>>, _, _, _>(exchange, "Dedup", move |_, _| {
            let mut pending: BTreeMap<Time, (Capability<Time>, Vec<Event>)> = BTreeMap::new();
            let mut kept: HashMap<String, Time> = HashMap::new();
            let mut expiry: VecDeque<(Time, String)> = VecDeque::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    for (event, time, diff) in data.drain(..) {
                        let slot = pending.entry(time).or_insert_with(|| (cap.delayed(&time, 0), Vec::new()));
                        // Events are only ever inserted; a multiplicity above one is repeated copies.
                        for _ in 0..diff.max(0) {
                            slot.1.push(event.clone());
                        }
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (time, (cap, mut batch)) = entry.remove_entry();
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
                    let mut session = output.session(&cap);
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
            }
        })
        .as_collection()
}
