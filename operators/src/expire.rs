//! `expire`: an event counts for the retention period after its timestamp. Each event passes
//! at its time and is retracted at `ts + retention`; one whose retention ended before it
//! arrived (an old event replayed late) never passes. The retractions wait in a time-indexed
//! queue on the event's user's worker and leave at their exact millisecond, so no batcher
//! downstream holds a future retraction, and every operator after this one (the events
//! arrangement, the universe, traits, windows) keeps only what is retained.

use crate::due::Due;
use crate::{SharedEvent, Time, FOREVER};
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

/// `events` during `[time, ts + retention)` each. The input holds insertions only, as
/// deduplication emits them; an insertion of several copies leaves as several retractions.
pub fn expire<'s>(
    events: VecCollection<'s, Time, SharedEvent>,
    retention: Time,
) -> VecCollection<'s, Time, SharedEvent> {
    let exchange = Exchange::new(|(e, _, _): &(SharedEvent, Time, isize)| e.user().0 as u64);
    type Output = timely::container::CapacityContainerBuilder<Vec<(SharedEvent, Time, isize)>>;
    events
        .inner
        .unary_frontier::<Output, _, _, _>(exchange, "Expire", move |_, _| {
            // Each retained event by the time its retention ends (24 bytes an event: no user
            // key, no multiplicity).
            let mut due: Due<SharedEvent, ()> = Due::default();
            let (mut items, mut retractions) = (Vec::new(), Vec::new());
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    due.hold(&cap);
                    let retained = data.drain(..).filter(|(event, time, diff)| {
                        debug_assert!(*diff >= 0, "expire takes insertions only");
                        let end = event.ts().saturating_add(retention);
                        if end <= *time || *diff <= 0 {
                            return false;
                        }
                        if end != FOREVER {
                            for _ in 0..*diff {
                                due.push(end, (), event.clone());
                            }
                        }
                        true
                    });
                    output.session(&cap).give_iterator(retained);
                });
                while let Some((time, ())) = due.next(frontier, &mut items) {
                    retractions.extend(items.drain(..).map(|event| (event, time, -1)));
                }
                due.send(&mut retractions, |cap, batch| output.session(cap).give_iterator(batch.drain(..)));
            }
        })
        .as_collection()
}

#[cfg(test)]
mod tests {
    use super::*;
    use differential_dataflow::input::Input;
    use journeyflow_types::{Event, Key, Kind, Props, Record};
    use std::cell::RefCell;
    use std::rc::Rc;
    use timely::dataflow::operators::{Inspect, Probe};
    use timely::dataflow::ProbeHandle;

    fn event(ts: Time, user: &str) -> Record {
        Record::from(&Event {
            ts,
            message_id: format!("{user}-{ts}"),
            user_id: user.to_string(),
            user: Key::of(user),
            kind: Kind::Track,
            name: "View".into(),
            props: Props::default(),
        })
    }

    /// Events entered at the given times, with a retention of 100; what comes out by the time
    /// the output frontier passes `until`, as `(ts, time, diff)` sorted.
    fn run(events: Vec<(Record, Time)>, until: Time) -> Vec<(Time, Time, isize)> {
        timely::execute_directly(move |worker| {
            let seen = Rc::new(RefCell::new(Vec::new()));
            let sink = seen.clone();
            let probe = ProbeHandle::new();
            let mut input = worker.dataflow::<Time, _, _>(|scope| {
                let (input, events) = scope.new_collection::<Record, isize>();
                expire(events, 100)
                    .inner
                    .inspect(move |(e, t, r)| sink.borrow_mut().push((e.ts(), *t, *r)))
                    .probe_with(&probe);
                input
            });
            for (event, time) in events {
                input.advance_to(time);
                input.insert(event);
            }
            input.advance_to(until);
            input.flush();
            worker.step_while(|| probe.less_than(&until));
            let mut seen = seen.borrow().clone();
            seen.sort();
            seen
        })
    }

    #[test]
    fn events_leave_at_their_timestamp_plus_the_retention_and_old_ones_never_enter() {
        // The one of ts 5 enters at 140, after its retention ended (105): it never counts.
        let events = || vec![(event(10, "a"), 10), (event(20, "b"), 50), (event(40, "a"), 130), (event(5, "c"), 140)];
        let mut expected = vec![
            (10, 10, 1),
            (10, 110, -1),
            // Entered late, at 50: still leaves at 120.
            (20, 50, 1),
            (20, 120, -1),
            (40, 130, 1),
        ];
        // At 135 the retraction of ts 40 is not yet due.
        assert_eq!(run(events()[..3].to_vec(), 135), expected);
        expected.push((40, 140, -1));
        assert_eq!(run(events(), 200), expected);
    }
}
