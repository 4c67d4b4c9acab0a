//! Temporal filters: a record is present only during a validity interval `[start, end)`
//! computed from its data, so memberships change when time passes with no new input.
//! This is Materialize's temporal filter: an update `(d, t, r)` becomes
//! `(d, max(t, start), r)` and `(d, end, -r)`, and nothing at all once `t >= end`.

use crate::Time;
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::operators::vec::Map;

/// The end of time: an interval ending here never closes.
pub const FOREVER: Time = Time::MAX;

/// Keeps each record present only during `validity(record)`, mapped through `finish`.
pub fn temporal_filter<'s, D, D2, F, G>(
    c: VecCollection<'s, Time, D>,
    validity: F,
    finish: G,
) -> VecCollection<'s, Time, D2>
where
    D: Clone + 'static,
    D2: Clone + 'static,
    F: Fn(&D) -> (Time, Time) + 'static,
    G: Fn(D) -> D2 + 'static,
{
    c.inner
        .flat_map(move |(d, t, r)| {
            let (start, end) = validity(&d);
            let lower = t.max(start);
            let d2 = finish(d);
            let open = (lower < end).then(|| (d2.clone(), lower, r));
            let close = (lower < end && end != FOREVER).then(|| (d2, end, -r));
            open.into_iter().chain(close)
        })
        .as_collection()
}

/// Keeps `(key, ts)` records present during `[ts, ts + window)` (or forever with no window),
/// dropping the timestamp.
pub fn within<'s, K: Clone + 'static>(
    c: VecCollection<'s, Time, (K, Time)>,
    window: Option<Time>,
) -> VecCollection<'s, Time, K> {
    temporal_filter(c, move |(_, ts)| (*ts, window.map_or(FOREVER, |w| ts.saturating_add(w))), |(k, _)| k)
}
