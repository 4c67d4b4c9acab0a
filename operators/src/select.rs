//! The events arrangement and `select`, which reads it by event name. The arrangement keeps
//! every named event under the key of its name, on its user's worker; `select` reads each
//! batch of an import only at the keys of some names (by seeking), so a definition that reads
//! one event name never walks the records of the others: neither as the live batches arrive
//! nor when it is installed over the retained history.

use crate::{SharedEvent, Time};
use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::{ValBatcher, ValSpine};
use differential_dataflow::trace::{BatchCursor, Cursor, Navigable, TraceReader};
use differential_dataflow::{AsCollection, Data, VecCollection};
use journeyflow_types::Kind;
use std::collections::VecDeque;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::CapabilitySet;

/// Deduplicated named events by [`name_key`].
pub type EventsTrace = TraceAgent<ValSpine<u64, SharedEvent, Time, isize>>;

/// The key of an event's name in the events arrangement: a stable 64-bit hash.
/// Two names may share a key; readers still test the name, so that only costs reading more.
pub fn name_key(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes())
}

/// Arranges deduplicated events by [`name_key`], each on the worker that keeps its user's
/// state in the per-user operators (`window`, `sequence`, journeys), so reading them there
/// moves nothing between workers. Identify calls are left out: they carry traits, which the
/// base dataflow derives from the events before this, and no event filter matches them.
pub fn arrange_events<'s>(events: VecCollection<'s, Time, SharedEvent>) -> Arranged<'s, EventsTrace> {
    let keyed = events.flat_map(|e| (e.kind() != Kind::Identify).then(|| (name_key(e.name()), e)));
    let exchange = Exchange::new(|((_, e), _, _): &((u64, SharedEvent), Time, isize)| e.user().0 as u64);
    type Batcher = ValBatcher<u64, SharedEvent, Time, isize>;
    arrange_core::<_, _, Batcher, _>(keyed.inner, exchange, "Events", ValBatcher::new)
}

/// Records read per activation: a larger batch (an install's history) is read over several,
/// so the operators downstream take each part before the next is made, and no stage holds a
/// copy of the whole history at once. (Tests read a few at a time, to cross activations.)
const FUEL: usize = if cfg!(test) { 3 } else { 65_536 };

/// A batch being read: the names before `key` are done, and the cursor is at `keys[key]` once
/// `at_key`.
struct Reading<B: Navigable> {
    caps: CapabilitySet<Time>,
    batch: B,
    cursor: B::Cursor,
    key: usize,
    at_key: bool,
}

/// `logic` applied to the events named one of `names` (each name read once however often it
/// is given), from an arrangement of events by [`name_key`], with the events' times and
/// multiplicities.
pub fn select<'s, Tr, D, L>(events: Arranged<'s, Tr>, names: &[&str], mut logic: L) -> VecCollection<'s, Time, D>
where
    Tr: TraceReader<Time = Time> + 'static,
    Tr::Batch: Navigable,
    for<'a> BatchCursor<Tr>: Cursor<Time = Time, Diff = isize, Key<'a> = &'a u64, Val<'a> = &'a SharedEvent>,
    D: Data,
    L: FnMut(&SharedEvent) -> Option<D> + 'static,
{
    let mut keys: Vec<u64> = names.iter().map(|n| name_key(n)).collect();
    // Seeking only moves forward.
    keys.sort_unstable();
    keys.dedup();
    let scope = events.stream.scope();
    events
        .stream
        .unary(Pipeline, "Select", move |_, info| {
            let activator = scope.activator_for(info.address);
            let mut reading: VecDeque<Reading<Tr::Batch>> = VecDeque::new();
            move |input, output| {
                input.for_each(|time, data| {
                    let caps = time.retain_stamp(0);
                    for batch in data.iter().filter_map(|span| span.inner.clone()) {
                        let cursor = batch.cursor();
                        reading.push_back(Reading { caps: caps.clone(), batch, cursor, key: 0, at_key: false });
                    }
                });
                let mut fuel = FUEL;
                while fuel > 0 {
                    let Some(r) = reading.front_mut() else { break };
                    let mut session = output.session(&r.caps);
                    while fuel > 0 && r.key < keys.len() {
                        let name = keys[r.key];
                        if !r.at_key {
                            r.cursor.seek_key(&r.batch, &name);
                            r.at_key = true;
                        }
                        let event = match r.cursor.get_key(&r.batch) == Some(&name) {
                            true => r.cursor.get_val(&r.batch),
                            false => None,
                        };
                        let Some(event) = event else {
                            (r.key, r.at_key) = (r.key + 1, false);
                            continue;
                        };
                        if let Some(datum) = logic(event) {
                            r.cursor.map_times(&r.batch, |t, diff| {
                                let t = <BatchCursor<Tr> as Cursor>::owned_time(t);
                                session.give((datum.clone(), t, <BatchCursor<Tr> as Cursor>::owned_diff(diff)));
                            });
                        }
                        r.cursor.step_val(&r.batch);
                        fuel -= 1;
                    }
                    drop(session);
                    if r.key == keys.len() {
                        reading.pop_front();
                    }
                }
                if !reading.is_empty() {
                    activator.activate();
                }
            }
        })
        .as_collection()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::drive;
    use journeyflow_types::{Props, Record};

    fn event(ts: Time, user: &str, name: &str) -> Record {
        crate::testing::event(ts, user, Kind::Track, name, format!("{user}-{ts}-{name}"), Props::default())
    }

    /// Events entered at their own times (or all at `at`); what `select(names)` reads, as
    /// (name, ts, time, diff).
    fn run(
        events: Vec<(Record, isize)>,
        names: &'static [&'static str],
        at: Option<Time>,
    ) -> Vec<(String, Time, Time, isize)> {
        let updates = events.into_iter().map(|(e, diff)| (at.unwrap_or(e.ts()), e, diff)).map(|(t, e, d)| (e, t, d));
        drive(updates.collect(), 1_000, move |records| {
            select(arrange_events(records), names, |e| Some((e.name().to_string(), e.ts())))
        })
        .into_iter()
        .map(|((name, ts), time, diff)| (name, ts, time, diff))
        .collect()
    }

    #[test]
    fn reads_the_named_events_only_and_each_once_and_no_identify_call() {
        let mut events = vec![
            (event(1, "a", "View"), 1),
            (event(2, "b", "Order"), 1),
            (event(3, "a", "Cart"), 1),
            (event(4, "c", "View"), 1),
            (event(5, "c", "View"), -1),
        ];
        events.push((crate::testing::event(6, "a", Kind::Identify, "", "traits".into(), Props::default()), 1));
        let read = run(events, &["View", "Order", "View", "Missing", ""], None);
        let expected = vec![
            ("Order".to_string(), 2, 2, 1),
            ("View".to_string(), 1, 1, 1),
            ("View".to_string(), 4, 4, 1),
            ("View".to_string(), 5, 5, -1),
        ];
        assert_eq!(read, expected);
        assert_eq!(run(vec![(event(1, "a", "View"), 1)], &[], None), vec![]);
    }

    #[test]
    fn a_batch_larger_than_the_fuel_is_read_whole_over_several_activations() {
        // One batch at time 1 (its events' own times differ), read a few records at a time.
        let names = ["A", "B", "C", "D"];
        let events: Vec<(Record, isize)> =
            (1..=40).map(|i| (event(i, &format!("u{}", i % 7), names[i as usize % 4]), 1)).collect();
        let read = run(events, &["B", "D"], Some(1));
        let mut expected: Vec<(String, Time, Time, isize)> =
            (1..=40u64).filter(|i| i % 2 == 1).map(|i| (names[i as usize % 4].to_string(), i, 1, 1)).collect();
        expected.sort();
        assert_eq!(read, expected);
    }
}
