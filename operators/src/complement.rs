//! `not`: users of the universe who are not in a set.

use crate::Users;

/// `universe - set`; `set` need not be a subset of the universe.
pub fn complement<'s>(universe: Users<'s>, set: Users<'s>) -> Users<'s> {
    universe.map(|u| (u, ())).antijoin(set).map(|(u, ())| u)
}
