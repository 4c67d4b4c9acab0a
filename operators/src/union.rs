//! `any`: users in at least one of several sets.

use crate::Users;

/// The union of non-empty `sets`, each user once.
pub fn union<'s>(mut sets: Vec<Users<'s>>) -> Users<'s> {
    if sets.len() == 1 {
        return sets.remove(0);
    }
    let first = sets.remove(0);
    first.concatenate(sets).distinct()
}
