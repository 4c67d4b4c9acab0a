//! `performed`: users whose number of matching events in the window lies in
//! `[at_least, at_most]`. With `at_least == 0`, users with no matching event qualify,
//! out of the universe.

use crate::temporal::within;
use crate::{complement::complement, Time, UserId, Users};
use differential_dataflow::VecCollection;

/// Members of a `performed` condition, given matching events as `(user, ts)`.
pub fn window_count<'s>(
    matches: VecCollection<'s, Time, (UserId, Time)>,
    window: Option<Time>,
    at_least: u64,
    at_most: Option<u64>,
    universe: Users<'s>,
) -> Users<'s> {
    let counts = within(matches, window).count();
    if at_least == 0 {
        let bound = at_most.unwrap_or(u64::MAX);
        let over = counts.filter(move |(_, n)| *n as u64 > bound).map(|(user, _)| user);
        complement(universe, over)
    } else {
        counts
            .filter(move |(_, n)| {
                let n = *n as u64;
                n >= at_least && at_most.is_none_or(|m| n <= m)
            })
            .map(|(user, _)| user)
    }
}
