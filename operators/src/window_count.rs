//! `performed`: users whose number of matching events in the window lies in
//! `[at_least, at_most]`, for `at_least >= 1`. (With `at_least == 0` users with no
//! matching event qualify too: that is the complement, within the universe, of
//! `window_count(at_most + 1, None)`, and the compiler builds it so.)

use crate::temporal::within;
use crate::{Time, UserId, Users};
use differential_dataflow::VecCollection;

/// Users with `at_least..=at_most` matching events in the window, given matches as `(user, ts)`.
pub fn window_count<'s>(
    matches: VecCollection<'s, Time, (UserId, Time)>,
    window: Option<Time>,
    at_least: u64,
    at_most: Option<u64>,
) -> Users<'s> {
    within(matches, window)
        .count()
        .filter(move |(_, n)| {
            let n = *n as u64;
            n >= at_least && at_most.is_none_or(|m| n <= m)
        })
        .map(|(user, _)| user)
}
