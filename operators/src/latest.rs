//! The latest value per key: an upsert that orders updates by an explicit `order` (for
//! traits, `(timestamp, messageId)`), not by arrival, and where `None` removes the key.
//! Updates are held until the frontier passes their time; output changes only when a
//! key's value changes.

use crate::held::Held;
use crate::Time;
use differential_dataflow::{AsCollection, ExchangeData, Hashable, VecCollection};
use journeyflow_types::Shards;
use rustc_hash::{FxBuildHasher, FxHashMap as HashMap};
use std::hash::Hash;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
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
    type Output<K, V> = timely::container::CapacityContainerBuilder<Vec<((K, V), Time, isize)>>;
    upserts
        .unary_frontier::<Output<K, V>, _, _, _>(exchange, "Latest", move |_, _| {
            let mut held: Held<Upsert<K, O, V>> = Held::default();
            let mut state: Shards<K, (O, Option<V>), FxBuildHasher> = Shards::default();
            move |(input, frontier), output| {
                input.for_each(|cap, data| held.hold(&cap, data.drain(..).map(|(u, t, _)| (t, u))));
                let Some((cap, complete)) = held.take_complete(frontier) else { return };
                let mut session = output.session(&cap);
                // One net change per key and time: remember each touched key's value before the time.
                let mut before: HashMap<K, Option<V>> = HashMap::default();
                let mut updates = complete.into_iter().peekable();
                while let Some((time, (key, order, value))) = updates.next() {
                    let current = state.get(&key);
                    if current.is_none_or(|(o, _)| *o < order) {
                        before.entry(key.clone()).or_insert_with(|| current.and_then(|(_, v)| v.clone()));
                        state.insert(key, (order, value));
                    }
                    if updates.peek().is_some_and(|(t, _)| *t == time) {
                        continue;
                    }
                    for (key, old) in before.drain() {
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
            }
        })
        .as_collection()
}
