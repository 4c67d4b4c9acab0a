//! Drops repeated `messageId`s. Events are routed by message id, held until the frontier
//! passes their time, and then taken in `(time, event)` order, so which copy survives
//! never depends on batching or worker count: the earliest one. An id is remembered for
//! `window` milliseconds of dataflow time after the copy that was kept.

use crate::held::Held;
use crate::{SharedEvent, Time};
use differential_dataflow::{AsCollection, VecCollection};
use journeyflow_types::{Key, KeyMap};
use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

/// Removes duplicate events; `duplicates` counts the ones dropped on this worker.
pub fn dedup<'s>(
    events: VecCollection<'s, Time, SharedEvent>,
    window: Time,
    duplicates: Rc<Cell<u64>>,
) -> VecCollection<'s, Time, SharedEvent> {
    let exchange = Exchange::new(|(e, _, _): &(SharedEvent, Time, isize)| Key::of(e.message_id()).0 as u64);
    type Output = timely::container::CapacityContainerBuilder<Vec<(SharedEvent, Time, isize)>>;
    events
        .inner
        .unary_frontier::<Output, _, _, _>(exchange, "Dedup", move |_, _| {
            let mut held: Held<SharedEvent> = Held::default();
            let mut kept: KeyMap<Time> = KeyMap::default();
            let mut expiry: VecDeque<(Time, Key)> = VecDeque::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    // Events are only ever inserted; a multiplicity above one is repeated copies.
                    let copies = data.drain(..).flat_map(|(e, t, r)| std::iter::repeat_n((t, e), r.max(0) as usize));
                    held.hold(&cap, copies);
                });
                let Some((cap, complete)) = held.take_complete(frontier) else { return };
                let mut session = output.session(&cap);
                for (time, event) in complete {
                    while let Some(&(t, id)) = expiry.front() {
                        if t.saturating_add(window) >= time {
                            break;
                        }
                        expiry.pop_front();
                        if kept.get(&id) == Some(&t) {
                            kept.remove(&id);
                        }
                    }
                    let id = Key::of(event.message_id());
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
            }
        })
        .as_collection()
}
