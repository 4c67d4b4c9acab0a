//! `all`: users in every one of several sets.

use crate::Users;

/// The intersection of non-empty `sets`.
pub fn intersect<'s>(mut sets: Vec<Users<'s>>) -> Users<'s> {
    let first = sets.remove(0);
    sets.into_iter().fold(first, |acc, next| acc.map(|u| (u, ())).semijoin(next).map(|(u, ())| u))
}
