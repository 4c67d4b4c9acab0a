//! `performed`: users whose number of matching events in the window lies in
//! `[at_least, at_most]`, for `at_least >= 1`. (With `at_least == 0` users with no
//! matching event qualify too: that is the complement, within the universe, of
//! `window_count(at_most + 1, None)`, and the compiler builds it so.)

use crate::window::window;
use crate::{Time, UserId, Users, FOREVER};
use differential_dataflow::VecCollection;

/// Users with `at_least..=at_most` matching events in the window, given matches as `(user, ts)`.
pub fn window_count<'s>(
    matches: VecCollection<'s, Time, (UserId, Time)>,
    within: Option<Time>,
    at_least: u64,
    at_most: Option<u64>,
) -> Users<'s> {
    let entries = matches.map(move |(user, ts)| (user, (), ts, within.map_or(FOREVER, |w| ts.saturating_add(w))));
    window(entries, "WindowCount", move |present: &[((), isize)]| {
        let n = present.first().map_or(0, |(_, n)| *n).max(0) as u64;
        n >= at_least.max(1) && at_most.is_none_or(|m| n <= m)
    })
}
