//! The latest value per key: an upsert that orders updates by an explicit `order` (for
//! traits, `(timestamp, messageId)`), not by arrival, and where `None` removes the key.
//! Updates are held until the frontier passes their time; output changes only when a
//! key's value changes.

use crate::Time;
use differential_dataflow::{AsCollection, ExchangeData, Hashable, VecCollection};
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;
use std::hash::Hash;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

/// An upsert: set `key` to `value` (or remove it with `None`) if `order` is the greatest seen.
pub type Upsert<K, O, V> = (K, O, Option<V>);

/// A stream of timed upserts.
pub type UpsertStream<'s, K, O, V> = Stream<'s, Time, Vec<(Upsert<K, O, V>, Time, isize)>>;

/// Maintains `(key, value)` for the greatest-ordered upsert of each key.
pub fn latest<'s, K, O, V>(upserts: UpsertStream<'s, K, O, V>) -> VecCollection<'s, Time, (K, V)>
where
    K: ExchangeData + Hash + Eq,
    O: ExchangeData,
    V: ExchangeData,
{
    let exchange = Exchange::new(|((k, _, _), _, _): &(Upsert<K, O, V>, Time, isize)| k.hashed());
    upserts
        .unary_frontier::<timely::container::CapacityContainerBuilder<Vec<((K, V), Time, isize)>>, _, _, _>(
            exchange,
            "Latest",
            move |_, _| {
                let mut pending: BTreeMap<Time, Vec<Upsert<K, O, V>>> = BTreeMap::new();
                // One capability at the earliest held time; output goes out in one message.
                let mut held: Option<Capability<Time>> = None;
                let mut state: HashMap<K, (O, Option<V>)> = HashMap::default();
                move |(input, frontier), output| {
                    input.for_each(|cap, data| {
                        if let Some(t) = cap.least() {
                            if held.as_ref().is_none_or(|h| t < h.time()) {
                                held = cap.retain_least(0);
                            }
                        }
                        for (upsert, time, _) in data.drain(..) {
                            pending.entry(time).or_default().push(upsert);
                        }
                    });
                    let Some(cap) = held.as_ref() else { return };
                    let mut session = output.session(cap);
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let (time, batch) = entry.remove_entry();
                        // Value of each touched key before this time, to emit one net change per key.
                        let mut before: HashMap<K, Option<V>> = HashMap::default();
                        for (key, order, value) in batch {
                            let current = state.get(&key);
                            if current.is_some_and(|(o, _)| *o >= order) {
                                continue;
                            }
                            before.entry(key.clone()).or_insert_with(|| current.and_then(|(_, v)| v.clone()));
                            state.insert(key, (order, value));
                        }
                        for (key, old) in before {
                            let new = state.get(&key).and_then(|(_, v)| v.clone());
                            if old != new {
                                if let Some(old) = old {
                                    session.give(((key.clone(), old), time, -1));
                                }
                                if let Some(new) = new {
                                    session.give(((key, new), time, 1));
                                }
                            }
                        }
                    }
                    drop(session);
                    held = pending.keys().next().map(|t| held.as_ref().expect("held while pending").delayed(t));
                }
            },
        )
        .as_collection()
}
