//! `window`: users for whom a predicate holds over the values of their entries present now,
//! where each entry is present during an interval `[start, end)` of its own (a matching event
//! during its window, a sequence's member interval).
//!
//! State is indexed by time, as in Feldera's window operator: an entry waits in a time-ordered
//! queue until the frontier passes its start and then its end, and only membership changes leave
//! the operator, at their exact millisecond. A temporal filter feeding a `count` or `reduce`
//! would instead send each entry's retraction ahead, to a time up to the window's length away,
//! where every merge batcher downstream re-sorts it at each frontier advance until it is due.

use crate::due::Due;
use crate::{Time, UserId, Users, FOREVER};
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use journeyflow_types::KeyMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

/// An entry: a user, a value, and the interval `[start, end)` during which it is present
/// (from the update's time on, if that is later than `start`; `end == FOREVER` never closes).
pub type Entry<V> = (UserId, V, Time, Time);

/// Users whose present values satisfy `holds`, as a collection of membership changes.
///
/// `holds` sees a user's present values with their multiplicities, sorted and consolidated,
/// and must be false for no values: users without entries are never members.
pub fn window<'s, V, F>(entries: VecCollection<'s, Time, Entry<V>>, name: &str, holds: F) -> Users<'s>
where
    V: ExchangeData,
    F: Fn(&[(V, isize)]) -> bool + 'static,
{
    let exchange = Exchange::new(|((user, ..), _, _): &(Entry<V>, Time, isize)| user.0 as u64);
    type Output = timely::container::CapacityContainerBuilder<Vec<(UserId, Time, isize)>>;
    entries
        .inner
        .unary_frontier::<Output, _, _, _>(exchange, name, move |_, _| {
            // Each entry's start and end, as a change of its value's multiplicity.
            let mut due: Due<(V, isize)> = Due::default();
            // Each user's present values (only users with some).
            let mut present: KeyMap<Vec<(V, isize)>> = KeyMap::default();
            let (mut items, mut changes) = (Vec::new(), Vec::new());
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    due.hold(&cap);
                    for ((user, value, start, end), time, diff) in data.drain(..) {
                        let start = start.max(time);
                        if start >= end || diff == 0 {
                            continue;
                        }
                        if end != FOREVER {
                            due.push(end, user, (value.clone(), -diff));
                        }
                        due.push(start, user, (value, diff));
                    }
                });
                while let Some((time, user)) = due.next(frontier, &mut items) {
                    let values = present.entry(user).or_default();
                    let before = holds(values);
                    for (value, diff) in items.drain(..) {
                        apply(values, value, diff);
                    }
                    let after = holds(values);
                    if values.is_empty() {
                        present.remove(&user);
                    }
                    if before != after {
                        changes.push((user, time, if after { 1 } else { -1 }));
                    }
                }
                due.send(&mut changes, |cap, batch| output.session(cap).give_iterator(batch.drain(..)));
            }
        })
        .as_collection()
}

/// Adds `diff` copies of `value` to a sorted, consolidated multiset (a user's present values
/// here, a user's events in `sequence`).
pub(crate) fn apply<V: Ord>(values: &mut Vec<(V, isize)>, value: V, diff: isize) {
    match values.binary_search_by(|(v, _)| v.cmp(&value)) {
        Ok(i) => {
            values[i].1 += diff;
            if values[i].1 == 0 {
                values.remove(i);
            }
        }
        Err(i) => values.insert(i, (value, diff)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::drive;
    use journeyflow_types::Key;

    /// Entries `(user, value, start, end)` sent at times; returns the membership changes.
    fn run(updates: Vec<(Entry<u32>, Time, isize)>, upto: Time, least: usize) -> Vec<(u128, Time, isize)> {
        drive(updates, upto, move |entries| {
            window(entries, "Test", move |values: &[(u32, isize)]| {
                values.iter().map(|(_, r)| *r).sum::<isize>() >= least as isize
            })
            .map(|u| u.0)
        })
    }

    #[test]
    fn members_enter_and_leave_at_their_exact_times() {
        let u = Key(7);
        // Two entries, [10, 110) and [50, 150); "at least two" holds on [50, 110).
        let changes = run(vec![((u, 1, 10, 110), 10, 1), ((u, 2, 50, 150), 50, 1)], 1_000, 2);
        assert_eq!(changes, vec![(7, 50, 1), (7, 110, -1)]);
    }

    #[test]
    fn an_entry_starts_no_earlier_than_its_update_and_retractions_cancel() {
        let u = Key(1);
        // Sent at 30 for [10, 100): present from 30. Retracted at 60: gone from 60 on.
        let changes = run(vec![((u, 1, 10, 100), 30, 1), ((u, 1, 10, 100), 60, -1)], 1_000, 1);
        assert_eq!(changes, vec![(1, 30, 1), (1, 60, -1)]);
        // An interval already over when sent is nothing; one that never ends stays.
        let changes = run(vec![((u, 1, 10, 20), 30, 1), ((u, 2, 5, FOREVER), 40, 1)], 1_000, 1);
        assert_eq!(changes, vec![(1, 40, 1)]);
    }

    #[test]
    fn nothing_is_sent_for_a_time_the_frontier_has_not_passed() {
        let u = Key(3);
        // The entry ends at 500, after the last complete time 499.
        let changes = run(vec![((u, 1, 100, 500), 100, 1)], 500, 1);
        assert_eq!(changes, vec![(3, 100, 1)]);
    }
}
