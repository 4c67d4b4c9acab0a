//! `retain`: the retained events, kept by user on the user's worker. An event counts for the
//! retention after its timestamp: it passes at its time and is retracted at `ts + retention`;
//! one whose retention ended before it arrived (an old event replayed late) never passes. A
//! user's deletion at `T` retracts, at `T`, every event of theirs that entered at or before
//! `T`; events entered later are new, unless the deletion also suppressed the user: then
//! none of theirs that enters after `T` passes, until an unsuppression at `U` (events entered
//! after `U` pass again). Every operator after this one (the events arrangement, profiles,
//! windows, journeys) sees only what is retained.
//!
//! Each user's retained events wait in timestamp order, 24 bytes an event (the timestamp and
//! a shared pointer: placing and expiring events never reads the records themselves), and the
//! time-indexed queue holds one entry per user, at the earliest expiry: retractions
//! leave at their exact millisecond, and no batcher downstream holds a future one. Keeping
//! them by user is what lets a user's events be found (to export or delete them) without
//! walking everyone's.
//!
//! An event that entered at its own timestamp is placed (and passes) at once: a deletion at
//! `T` takes exactly those with `ts <= T` of them, and a suppression at `T` also retracts the
//! later ones at their own times (nothing of them remains). One that entered later than its
//! timestamp (late, or restored at the time it first entered), or whose user is suppressed,
//! waits in the queue until its time is complete, so that the deletions and suppressions
//! before it apply first: it is then placed, or dropped (and retracted at its time, if it
//! had passed).

use crate::due::Due;
use crate::{SharedEvent, Time, UserId, FOREVER};
use differential_dataflow::{AsCollection, VecCollection};
use journeyflow_types::KeyMap;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

/// What is done to a user as of a time: the input beside the events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Erase {
    /// Every event of theirs that entered by then goes.
    Delete,
    /// As `Delete`, and none that enters later passes until `Unsuppress`.
    DeleteAndSuppress,
    /// Events that enter later pass again.
    Unsuppress,
}

/// Each user's retained events on one worker, shared between the operator and readers on
/// the same worker (export), who read it between the operator's activations.
#[derive(Clone, Default)]
pub struct Store(Rc<RefCell<KeyMap<UserEvents>>>);

impl Store {
    /// The user's retained events (those the operator has placed), in timestamp order.
    pub fn events(&self, user: UserId) -> Vec<SharedEvent> {
        self.0.borrow().get(&user).map(|u| u.events.iter().map(|(_, e)| e.clone()).collect()).unwrap_or_default()
    }
}

/// One user's retained events.
struct UserEvents {
    /// With their timestamps, in timestamp order (so in order of expiry).
    events: Vec<(Time, SharedEvent)>,
    /// The expiry the queue holds for this user (entries at other times are stale).
    next: Time,
}

impl UserEvents {
    fn new() -> UserEvents {
        UserEvents { events: Vec::new(), next: FOREVER }
    }

    /// Places `copies` of an event, mostly in order: after the last (one look), else where it
    /// belongs.
    fn place(&mut self, ts: Time, event: &SharedEvent, copies: isize) {
        let at = match self.events.last() {
            Some((last, _)) if *last > ts => self.events.partition_point(|(t, _)| *t <= ts),
            _ => self.events.len(),
        };
        for _ in 0..copies {
            self.events.insert(at, (ts, event.clone()));
        }
    }
}

/// Work a user has at a time, in the order it is done at one time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Work {
    /// Place an event that waited for its time (with its copies; whether it passed already).
    Place(SharedEvent, isize, bool),
    /// Retract the events whose retention ended.
    Expire,
    /// Retract every event.
    Erase(Erase),
}

/// `events` during `[time, ts + retention)` each (`None`: forever), each user's up to their
/// deletions, and none of a suppressed user's (see [`Erase`]; `erasures` as insertions: later
/// retractions are ignored). Events of suppressed users dropped are counted in `suppressed`;
/// what is retained is kept in `store`.
/// The input holds insertions only, as deduplication emits them; an insertion of several
/// copies is kept as several.
pub fn retain<'s>(
    events: VecCollection<'s, Time, SharedEvent>,
    erasures: VecCollection<'s, Time, (UserId, Erase)>,
    retention: Option<Time>,
    suppressed: Rc<Cell<u64>>,
    store: Store,
) -> VecCollection<'s, Time, SharedEvent> {
    let exchange = Exchange::new(|(e, _, _): &(SharedEvent, Time, isize)| e.user().0 as u64);
    let by_user = Exchange::new(|((user, _), _, _): &((UserId, Erase), Time, isize)| user.0 as u64);
    type Output = timely::container::CapacityContainerBuilder<Vec<(SharedEvent, Time, isize)>>;
    let end = move |ts: Time| retention.map_or(FOREVER, |r| ts.saturating_add(r));
    events
        .inner
        .binary_frontier::<_, Output, _, _, _, _>(erasures.inner, exchange, by_user, "Retain", move |_, _| {
            // Users whose events are refused, as far as this operator has got.
            let mut refused: KeyMap<()> = KeyMap::default();
            // Each user with retained events, at their earliest expiry; events waiting for
            // their time; erasures.
            let mut due: Due<Work, UserId> = Due::default();
            let (mut items, mut changes) = (Vec::new(), Vec::new());
            move |(input, frontier), (erased, erased_frontier), output| {
                let mut users = store.0.borrow_mut();
                input.for_each(|cap, data| {
                    due.hold(&cap);
                    let passing = data.drain(..).filter(|(event, time, diff)| {
                        debug_assert!(*diff >= 0, "retain takes insertions only");
                        let (ts, user) = (event.ts(), event.user());
                        let end = end(ts);
                        if end <= *time || *diff <= 0 {
                            return false;
                        }
                        if refused.contains_key(&user) {
                            due.push(*time, user, Work::Place(event.clone(), *diff, false));
                            return false;
                        }
                        if *time > ts {
                            due.push(*time, user, Work::Place(event.clone(), *diff, true));
                            return true;
                        }
                        let kept = users.entry(user).or_insert_with(UserEvents::new);
                        kept.place(ts, event, *diff);
                        if end < kept.next {
                            kept.next = end;
                            due.push(end, user, Work::Expire);
                        }
                        true
                    });
                    output.session(&cap).give_iterator(passing);
                });
                erased.for_each(|cap, data| {
                    due.hold(&cap);
                    for ((user, erase), time, diff) in data.drain(..) {
                        if diff > 0 {
                            due.push(time, user, Work::Erase(erase));
                        }
                    }
                });
                let complete = |t: &Time| !frontier.less_equal(t) && !erased_frontier.less_equal(t);
                while let Some((time, user)) = due.next_complete(complete, &mut items) {
                    items.sort_unstable();
                    for work in items.drain(..) {
                        match work {
                            Work::Place(event, copies, passed) if refused.contains_key(&user) => {
                                suppressed.set(suppressed.get() + copies as u64);
                                if passed {
                                    changes.push((event, time, -copies));
                                }
                            }
                            Work::Place(event, copies, passed) => {
                                let ts = event.ts();
                                let kept = users.entry(user).or_insert_with(UserEvents::new);
                                kept.place(ts, &event, copies);
                                if !passed {
                                    changes.push((event, time, copies));
                                }
                            }
                            Work::Expire => {
                                let Some(kept) = users.get_mut(&user).filter(|k| k.next == time) else { continue };
                                let expired = kept.events.partition_point(|(ts, _)| end(*ts) <= time);
                                changes.extend(kept.events.drain(..expired).map(|(_, e)| (e, time, -1)));
                                kept.next = FOREVER;
                            }
                            Work::Erase(Erase::Unsuppress) => {
                                refused.remove(&user);
                            }
                            Work::Erase(erase) => {
                                let Some(kept) = users.get_mut(&user) else {
                                    if erase == Erase::DeleteAndSuppress {
                                        refused.insert(user, ());
                                    }
                                    continue;
                                };
                                let gone = kept.events.partition_point(|(ts, _)| *ts <= time);
                                changes.extend(kept.events.drain(..gone).map(|(_, e)| (e, time, -1)));
                                kept.next = FOREVER;
                                if erase == Erase::DeleteAndSuppress {
                                    // Those left entered at their own (later) times: each is
                                    // decided again then, after any unsuppression before it.
                                    for (ts, e) in kept.events.drain(..) {
                                        due.push(ts, user, Work::Place(e, 1, true));
                                    }
                                    refused.insert(user, ());
                                }
                            }
                        }
                    }
                    // The next expiry, if the work changed it.
                    let Some(kept) = users.get_mut(&user) else { continue };
                    match kept.events.first().map(|(ts, _)| end(*ts)) {
                        Some(next) if next < kept.next => {
                            kept.next = next;
                            if next != FOREVER {
                                due.push(next, user, Work::Expire);
                            }
                        }
                        Some(_) => {}
                        None => {
                            users.remove(&user);
                        }
                    }
                }
                due.send(&mut changes, |cap, batch| output.session(cap).give_iterator(batch.drain(..)));
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
        run_deleting(events.into_iter().map(|(e, t)| (Ok(e), t)).collect(), retention, until)
    }

    /// Events (`Ok`) and erasures (`Err`) entered at the given (non-decreasing) times.
    fn run_deleting(
        inputs: Vec<(crate::testing::Entered, Time)>,
        retention: Option<Time>,
        until: Time,
    ) -> Vec<(String, Time, isize)> {
        let updates = inputs.into_iter().map(|(e, t)| (e, t, 1)).collect();
        drive(updates, until, move |inputs| {
            let events = inputs.clone().flat_map(|i| i.ok());
            let deletions = inputs.flat_map(|i| i.err());
            retain(events, deletions, retention, Rc::default(), Store::default()).map(|e| e.message_id().to_string())
        })
    }

    /// `(id, time, diff)` rows with equal `(id, time)` summed, zeros dropped, sorted.
    fn consolidated(mut rows: Vec<(String, Time, isize)>) -> Vec<(String, Time, isize)> {
        differential_dataflow::consolidation::consolidate_updates(&mut rows);
        rows
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

    #[test]
    fn a_deletion_retracts_what_entered_up_to_it_and_later_events_are_new() {
        let a = journeyflow_types::Key::of("a");
        let inputs = vec![
            (Ok(event(10, "a", 0)), 10),
            (Ok(event(20, "b", 0)), 20),
            // Entered late, before the deletion: it goes with it.
            (Ok(event(15, "a", 1)), 30),
            (Ok(event(40, "a", 0)), 40),
            (Err((a, Erase::Delete)), 50),
            // Entered late, after the deletion: it is new, as is the one at 60.
            (Ok(event(45, "a", 2)), 55),
            (Ok(event(60, "a", 0)), 60),
        ];
        let expected = vec![
            row("a-10-0", 10, 1),
            row("a-10-0", 50, -1),
            row("a-15-1", 30, 1),
            row("a-15-1", 50, -1),
            row("a-40-0", 40, 1),
            row("a-40-0", 50, -1),
            row("a-45-2", 55, 1),
            row("a-45-2", 145, -1),
            row("a-60-0", 60, 1),
            row("b-20-0", 20, 1),
            row("b-20-0", 120, -1),
        ];
        assert_eq!(run_deleting(inputs, Some(100), 150), expected);
    }

    proptest! {
        /// Events and erasures of a few users, events entered late by random delays: each
        /// event passes at its time unless its retention ended before or its user was
        /// suppressed then, and leaves at the end of its retention or at the first deletion of
        /// its user at or after the time it entered, whichever comes first.
        #[test]
        fn each_event_leaves_at_its_end_or_its_users_next_deletion(
            drafts in prop::collection::vec((0..3usize, 0u64..200, 0u64..40, 0..12u8), 1..50),
            retention in prop::option::of(1u64..120),
        ) {
            let mut inputs: Vec<(crate::testing::Entered, Time)> = drafts
                .iter()
                .enumerate()
                .map(|(n, &(user, ts, delay, what))| {
                    let user = format!("u{user}");
                    let key = journeyflow_types::Key::of(&user);
                    match what {
                        0 => (Err((key, Erase::Delete)), ts),
                        1 => (Err((key, Erase::DeleteAndSuppress)), ts),
                        2 => (Err((key, Erase::Unsuppress)), ts),
                        _ => (Ok(event(ts, &user, n)), ts + delay),
                    }
                })
                .collect();
            inputs.sort_by_key(|(_, time)| *time);
            let mut erasures: Vec<(UserId, Erase, Time)> =
                inputs.iter().filter_map(|(i, t)| i.as_ref().err().map(|(u, e)| (*u, *e, *t))).collect();
            // At one time, in the order of `Erase` (the sequencer gives a user's at most one a time).
            erasures.sort_by_key(|(_, e, t)| (*t, *e));
            let mut expected = Vec::new();
            for (input, time) in &inputs {
                let Ok(e) = input else { continue };
                let end = retention.map_or(Time::MAX, |r| e.ts() + r);
                if end <= *time {
                    continue;
                }
                // Suppressed by the last suppression or unsuppression before it entered.
                let suppressed = erasures
                    .iter()
                    .rfind(|(u, x, t)| *u == e.user() && *t < *time && *x != Erase::Delete)
                    .is_some_and(|(_, x, _)| *x == Erase::DeleteAndSuppress);
                if suppressed {
                    continue;
                }
                let deleted = erasures
                    .iter()
                    .filter(|(u, x, t)| *u == e.user() && *t >= *time && *x != Erase::Unsuppress)
                    .map(|(_, _, t)| *t)
                    .min();
                let leaves = deleted.map_or(end, |d| d.min(end));
                expected.push((e.message_id().to_string(), *time, 1));
                if leaves < 1_000 {
                    expected.push((e.message_id().to_string(), leaves, -1));
                }
            }
            prop_assert_eq!(consolidated(run_deleting(inputs, retention, 1_000)), consolidated(expected));
        }

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
