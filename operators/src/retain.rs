//! `retain`: the retained events, kept by user on the user's worker. An event counts for the
//! retention after its timestamp: it passes at its time and is retracted at `ts + retention`;
//! one whose retention ended before it arrived (an old event replayed late) never passes. Every
//! operator after this one (the events arrangement, profiles, windows, journeys) sees only
//! what is retained.
//!
//! Each user's retained events wait in timestamp order, 24 bytes an event (the timestamp and
//! a shared pointer: placing and expiring events never reads the records themselves), and the
//! time-indexed queue holds one entry per user, at the earliest expiry: retractions
//! leave at their exact millisecond, and no batcher downstream holds a future one. Keeping
//! them by user is what lets a user's events be found (to export or delete them) without
//! walking everyone's.

use crate::due::Due;
use crate::{SharedEvent, Time, UserId, FOREVER};
use differential_dataflow::{AsCollection, VecCollection};
use journeyflow_types::KeyMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

/// One user's retained events.
struct UserEvents {
    /// With their timestamps, in timestamp order (so in order of expiry).
    events: Vec<(Time, SharedEvent)>,
    /// The expiry the queue holds for this user (entries at other times are stale).
    next: Time,
}

/// `events` during `[time, ts + retention)` each (`None`: forever). The input holds insertions
/// only, as deduplication emits them; an insertion of several copies is kept as several.
pub fn retain<'s>(
    events: VecCollection<'s, Time, SharedEvent>,
    retention: Option<Time>,
) -> VecCollection<'s, Time, SharedEvent> {
    let exchange = Exchange::new(|(e, _, _): &(SharedEvent, Time, isize)| e.user().0 as u64);
    type Output = timely::container::CapacityContainerBuilder<Vec<(SharedEvent, Time, isize)>>;
    let end = move |ts: Time| retention.map_or(FOREVER, |r| ts.saturating_add(r));
    events
        .inner
        .unary_frontier::<Output, _, _, _>(exchange, "Retain", move |_, _| {
            let mut users: KeyMap<UserEvents> = KeyMap::default();
            // Each user with retained events, at their earliest expiry.
            let mut due: Due<(), UserId> = Due::default();
            let (mut items, mut retractions) = (Vec::new(), Vec::new());
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    due.hold(&cap);
                    let retained = data.drain(..).filter(|(event, time, diff)| {
                        debug_assert!(*diff >= 0, "retain takes insertions only");
                        let ts = event.ts();
                        let end = end(ts);
                        if end <= *time || *diff <= 0 {
                            return false;
                        }
                        let kept = users
                            .entry(event.user())
                            .or_insert_with(|| UserEvents { events: Vec::new(), next: FOREVER });
                        // Mostly in order: after the last (one look), else where it belongs.
                        let at = match kept.events.last() {
                            Some((last, _)) if *last > ts => kept.events.partition_point(|(t, _)| *t <= ts),
                            _ => kept.events.len(),
                        };
                        for _ in 0..*diff {
                            kept.events.insert(at, (ts, event.clone()));
                        }
                        if end < kept.next {
                            kept.next = end;
                            due.push(end, event.user(), ());
                        }
                        true
                    });
                    output.session(&cap).give_iterator(retained);
                });
                while let Some((time, user)) = due.next(frontier, &mut items) {
                    let Some(kept) = users.get_mut(&user).filter(|k| k.next == time) else { continue };
                    let expired = kept.events.partition_point(|(ts, _)| end(*ts) <= time);
                    retractions.extend(kept.events.drain(..expired).map(|(_, e)| (e, time, -1)));
                    match kept.events.first().map(|(ts, _)| end(*ts)) {
                        Some(next) => {
                            kept.next = next;
                            if next != FOREVER {
                                due.push(next, user, ());
                            }
                        }
                        None => {
                            users.remove(&user);
                        }
                    }
                }
                due.send(&mut retractions, |cap, batch| output.session(cap).give_iterator(batch.drain(..)));
            }
        })
        .as_collection()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::drive;
    use journeyflow_types::{Kind, Props, Record};
    use proptest::prelude::*;

    fn event(ts: Time, user: &str, n: usize) -> Record {
        crate::testing::event(ts, user, Kind::Track, "View", format!("{user}-{ts}-{n}"), Props::default())
    }

    /// Events entered at the given (non-decreasing) times; what comes out by the time the
    /// output frontier passes `until`, as `(message id, time, diff)` sorted.
    fn run(events: Vec<(Record, Time)>, retention: Option<Time>, until: Time) -> Vec<(String, Time, isize)> {
        let updates = events.into_iter().map(|(e, t)| (e, t, 1)).collect();
        drive(updates, until, move |records| retain(records, retention).map(|e| e.message_id().to_string()))
    }

    fn row(id: &str, time: Time, diff: isize) -> (String, Time, isize) {
        (id.to_string(), time, diff)
    }

    #[test]
    fn events_leave_at_their_timestamp_plus_the_retention_and_old_ones_never_enter() {
        // The one of ts 5 enters at 140, after its retention ended (105): it never counts.
        let events = || {
            vec![(event(10, "a", 0), 10), (event(20, "b", 0), 50), (event(40, "a", 0), 130), (event(5, "c", 0), 140)]
        };
        let mut expected = vec![
            row("a-10-0", 10, 1),
            row("a-10-0", 110, -1),
            row("a-40-0", 130, 1),
            // Entered late, at 50: still leaves at 120.
            row("b-20-0", 50, 1),
            row("b-20-0", 120, -1),
        ];
        // At 135 the retraction of ts 40 is not yet due.
        assert_eq!(run(events()[..3].to_vec(), Some(100), 135), expected);
        expected.push(row("a-40-0", 140, -1));
        expected.sort();
        assert_eq!(run(events(), Some(100), 200), expected);
        // Kept forever: nothing leaves.
        let forever: Vec<_> = expected.iter().filter(|(_, _, d)| *d > 0).cloned().collect();
        assert_eq!(run(events()[..3].to_vec(), None, 1_000), forever);
    }

    proptest! {
        /// Events of a few users entered late by random delays (so a user's events arrive out
        /// of timestamp order, and an earlier expiry than the one queued comes in): each passes
        /// at its time unless its retention ended before, and leaves exactly at `ts + retention`.
        #[test]
        fn each_event_leaves_exactly_when_its_retention_ends(
            drafts in prop::collection::vec((0..3usize, 0u64..200, 0u64..40), 1..40),
            retention in 1u64..80,
        ) {
            let mut events: Vec<(Record, Time)> = drafts
                .iter()
                .enumerate()
                .map(|(n, &(user, ts, delay))| (event(ts, &format!("u{user}"), n), ts + delay))
                .collect();
            events.sort_by_key(|(_, time)| *time);
            let mut expected = Vec::new();
            for (e, time) in &events {
                let end = e.ts() + retention;
                if end > *time {
                    expected.push((e.message_id().to_string(), *time, 1));
                    expected.push((e.message_id().to_string(), end, -1));
                }
            }
            expected.sort();
            prop_assert_eq!(run(events, Some(retention), 1_000), expected);
        }
    }
}
