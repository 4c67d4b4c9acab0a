//! User ids by key (outputs and answers name users by id; the engine holds keys), kept in two
//! generations so that the registry holds the users seen lately rather than every user ever
//! seen: a name noted (an event read, a journey still holding the user) goes into the current
//! generation; a new generation starts only when the caller says (after a journey snapshot
//! noted every user the journeys hold, and once event time passed the current generation's
//! start by the retention), and the oldest one goes then. A name is kept at least a retention
//! after it was last noted. A deleted user's id goes once the deletion's outputs are written,
//! unless the user was noted again after the deletion was applied.

use journeyflow_types::{Key, KeyMap};
use std::sync::Arc;

/// What noting a name did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Noted {
    /// It was in the current generation already.
    Known,
    /// It was not in the current generation: other registries must be told.
    Added,
}

/// The registry.
#[derive(Debug, Default)]
pub struct UserNames {
    current: KeyMap<Arc<str>>,
    previous: KeyMap<Arc<str>>,
    /// The event time the current generation started at.
    started: u64,
    /// Users deleted whose ids go once the deletion's outputs are written, unless noted again.
    deleted: KeyMap<()>,
}

impl UserNames {
    /// The id of `key`, if held.
    pub fn get(&self, key: &Key) -> Option<&Arc<str>> {
        self.current.get(key).or_else(|| self.previous.get(key))
    }

    /// Whether the id of `key` is held.
    pub fn contains_key(&self, key: &Key) -> bool {
        self.current.contains_key(key) || self.previous.contains_key(key)
    }

    /// Keeps `id` as `key`'s in the current generation.
    pub fn note(&mut self, key: Key, id: &Arc<str>) -> Noted {
        // A deleted user seen again is told to the other registries too (which may have noted
        // the deletion).
        if self.current.contains_key(&key) && (self.deleted.is_empty() || self.deleted.remove(&key).is_none()) {
            return Noted::Known;
        }
        let id = self.previous.remove(&key).unwrap_or_else(|| id.clone());
        self.current.insert(key, id);
        Noted::Added
    }

    /// Moves `key`'s id, if held, into the current generation; returns it.
    pub fn refresh(&mut self, key: &Key) -> Option<Arc<str>> {
        if let Some(id) = self.current.get(key) {
            return Some(id.clone());
        }
        let id = self.previous.remove(key)?;
        self.current.insert(*key, id.clone());
        Some(id)
    }

    /// Notes that `key`'s user was deleted: [`UserNames::forget_deleted`] forgets the id unless
    /// the user is noted again before.
    pub fn mark_deleted(&mut self, key: Key) {
        self.deleted.insert(key, ());
    }

    /// Forgets `key`'s id if its user was deleted and not noted since.
    pub fn forget_deleted(&mut self, key: &Key) {
        if self.deleted.remove(key).is_some() {
            self.current.remove(key);
            self.previous.remove(key);
        }
    }

    /// Starts a new generation when event time `now` is `keep` past the current one's start;
    /// returns the generation that goes (for the caller to drop outside its lock).
    pub fn rotate(&mut self, now: u64, keep: u64) -> Option<KeyMap<Arc<str>>> {
        if now < self.started.saturating_add(keep) {
            return None;
        }
        self.started = now;
        let current = std::mem::take(&mut self.current);
        Some(std::mem::replace(&mut self.previous, current))
    }

    /// How many ids are held.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Key {
        Key::of(&i.to_string())
    }

    #[test]
    fn a_name_stays_a_generation_past_its_last_note_and_then_goes() {
        let mut names = UserNames::default();
        let id: Arc<str> = Arc::from("ann");
        assert_eq!(names.note(key(1), &id), Noted::Added);
        assert_eq!(names.note(key(1), &id), Noted::Known);
        assert!(names.rotate(5, 10).is_none(), "not yet a retention past the start");
        assert!(names.rotate(10, 10).is_some());
        assert_eq!(names.get(&key(1)).map(|n| &**n), Some("ann"), "in the previous generation");
        // Noted again: back in the current one, and other registries are told.
        assert_eq!(names.note(key(1), &id), Noted::Added);
        names.note(key(2), &Arc::from("bob"));
        assert!(names.rotate(20, 10).is_some());
        assert!(names.rotate(30, 10).is_some());
        assert!(names.get(&key(1)).is_none() && names.get(&key(2)).is_none() && names.is_empty());
    }

    #[test]
    fn a_refreshed_name_survives_rotations_and_a_removed_one_goes() {
        let mut names = UserNames::default();
        names.note(key(1), &Arc::from("ann"));
        names.note(key(2), &Arc::from("bob"));
        for now in [10, 20, 30] {
            assert_eq!(names.refresh(&key(1)).as_deref(), Some("ann"));
            names.rotate(now, 10);
        }
        assert!(names.contains_key(&key(1)) && !names.contains_key(&key(2)));
        names.mark_deleted(key(1));
        names.forget_deleted(&key(1));
        assert!(names.is_empty());
        assert_eq!(names.refresh(&key(1)), None);
    }

    #[test]
    fn a_deleted_user_noted_again_keeps_their_id_and_is_told_again() {
        let mut names = UserNames::default();
        let ann: Arc<str> = Arc::from("ann");
        names.note(key(1), &ann);
        names.mark_deleted(key(1));
        assert_eq!(names.note(key(1), &ann), Noted::Added, "told to the other registries");
        names.forget_deleted(&key(1));
        assert_eq!(names.get(&key(1)).map(|n| &**n), Some("ann"));
        // Deleted and not seen again: forgotten.
        names.mark_deleted(key(1));
        names.forget_deleted(&key(1));
        assert!(names.is_empty());
    }
}
