//! `cohort`: each user's place in a retention cohort, kept as an arrangement by user that
//! reports read as of any time: the time of their first event matching the cohort's first
//! event (the earliest retained, in `(timestamp, messageId)` order), the periods after it in
//! which a return event came (strictly after that first event; period `k` covers
//! `[first + k * period, first + (k + 1) * period)`), and the last such period. Which cohort
//! a user is in (the bucket of their first event) is decided when a report is read, so the
//! buckets are the query's.
//!
//! A user's place is recomputed by a differential `reduce` when their matching events change,
//! so a cohort installed over the retained history is computed at once and kept current as
//! events arrive and expire.

use crate::{Time, UserId};
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

/// An event matching the first event or the return event: `(timestamp, messageId)` order first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CohortEvent {
    /// Event time.
    pub ts: Time,
    /// Tie-breaker among equal timestamps.
    pub message_id: String,
    /// Whether it matches the first event.
    pub first: bool,
    /// Whether it matches the return event.
    pub returns: bool,
}

/// A user's place in a cohort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CohortUser {
    /// Their first event's time.
    pub first: Time,
    /// Bit `k` is set when a return event came in period `k` (periods past 63 are not kept).
    pub returned: u64,
    /// The last period a return event came in, if any.
    pub last: Option<u64>,
}

/// A cohort's users by user.
pub type CohortTrace = TraceAgent<ValSpine<UserId, CohortUser, Time, isize>>;

/// Each user's place in the cohort of period `period`, from their events matching the first
/// or the return event, arranged by user (users without a first event have none).
pub fn cohort<'s>(events: VecCollection<'s, Time, (UserId, CohortEvent)>, period: Time) -> Arranged<'s, CohortTrace> {
    type Builder = ValBuilder<UserId, CohortUser, Time, isize>;
    type Spine = ValSpine<UserId, CohortUser, Time, isize>;
    events.arrange_by_key_named("CohortInput").reduce_abelian::<_, Builder, Spine, _, _>(
        "Cohort",
        move |_user, input, output| {
            // The input comes sorted by `(timestamp, messageId)`; duplicates were removed
            // upstream, and only present events count.
            let present = input.iter().filter(|(_, diff)| *diff > 0).map(|(e, _)| *e);
            if let Some(user) = place(present, period) {
                output.push((user, 1));
            }
        },
        |vec, key, upds| {
            vec.clear();
            vec.extend(upds.drain(..).map(|(v, t, r)| ((*key, v), t, r)));
        },
    )
}

/// A user's place, from their events in `(timestamp, messageId)` order.
pub fn place<'a>(events: impl Iterator<Item = &'a CohortEvent>, period: Time) -> Option<CohortUser> {
    let mut user: Option<CohortUser> = None;
    for e in events {
        match &mut user {
            None if e.first => user = Some(CohortUser { first: e.ts, returned: 0, last: None }),
            None => {}
            Some(u) if e.returns => {
                let k = (e.ts - u.first) / period.max(1);
                if k < 64 {
                    u.returned |= 1 << k;
                }
                u.last = Some(k);
            }
            Some(_) => {}
        }
    }
    user
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: Time, id: &str, first: bool, returns: bool) -> CohortEvent {
        CohortEvent { ts, message_id: id.into(), first, returns }
    }

    #[test]
    fn returns_after_the_first_event_mark_their_periods() {
        // A return before the first event does not count; the first event is not its own
        // return even when it matches both; one 25 periods on is the last.
        let events = [
            ev(5, "a", false, true),
            ev(10, "b", true, true),
            ev(10, "c", false, true),
            ev(35, "d", false, true),
            ev(260, "e", false, true),
        ];
        let user = place(events.iter(), 10).unwrap();
        assert_eq!(user, CohortUser { first: 10, returned: 0b101 | 1 << 25, last: Some(25) });
    }

    #[test]
    fn no_first_event_no_place_and_far_returns_are_only_last() {
        assert_eq!(place([ev(1, "a", false, true)].iter(), 10), None);
        let far = place([ev(0, "a", true, false), ev(1_000, "b", false, true)].iter(), 10).unwrap();
        assert_eq!((far.returned, far.last), (0, Some(100)));
    }
}
