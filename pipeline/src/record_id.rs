//! Deterministic ids of output records. A record gets the same id in every sink, in every run
//! over the same events and definitions, and when it is written again after a restart, so a
//! consumer drops repeats by id. Records equal in every field (a user entering twice in one
//! millisecond) are told apart by their occurrence among the records of one batch: all records
//! of one user at one time come out of one operator activation, in one batch.

use crate::journey_output::{ActionLine, TransitionLine};
use crate::segment_output::ChangeLine;
use serde::Serialize;
use std::collections::HashMap;
use xxhash_rust::xxh3::Xxh3;

/// A record with its id first.
#[derive(Serialize)]
pub struct WithId<'a, T> {
    /// The record's deterministic id (32 hex digits).
    pub id: String,
    /// The record's fields.
    #[serde(flatten)]
    pub record: &'a T,
}

/// Assigns ids to the records of one batch (or of a whole run, in the order they happened).
#[derive(Default)]
pub struct Ids {
    seen: HashMap<u128, u32>,
}

impl Ids {
    /// Starts a new batch.
    pub fn clear(&mut self) {
        self.seen.clear();
    }

    /// A segment change's id: at most one change per segment, user and time.
    pub fn change<'a, 'b>(&mut self, line: &'b ChangeLine<'a>) -> WithId<'b, ChangeLine<'a>> {
        let mut h = Xxh3::new();
        for part in [b"change".as_slice(), line.segment.as_bytes(), line.user_id.as_bytes(), line.change.as_bytes()] {
            field(&mut h, part);
        }
        field(&mut h, &line.time.to_le_bytes());
        WithId { id: self.finish(h), record: line }
    }

    /// The id of the record announcing a user's deletion as of `time`.
    pub fn deletion(user_id: &str, time: u64) -> String {
        let mut h = Xxh3::new();
        field(&mut h, b"deletion");
        field(&mut h, user_id.as_bytes());
        field(&mut h, &time.to_le_bytes());
        format!("{:032x}", h.digest128())
    }

    /// A transition's id.
    pub fn transition<'b>(&mut self, line: &'b TransitionLine) -> WithId<'b, TransitionLine> {
        let mut h = Xxh3::new();
        field(&mut h, b"transition");
        field(&mut h, line.journey.as_bytes());
        field(&mut h, &line.version.to_le_bytes());
        field(&mut h, line.user_id.as_bytes());
        field(&mut h, &line.time.to_le_bytes());
        // A missing side is hashed apart from any node name (names are not empty).
        field(&mut h, line.from.as_deref().unwrap_or("").as_bytes());
        field(&mut h, line.to.as_deref().unwrap_or("").as_bytes());
        field(&mut h, line.reason.to_string().as_bytes());
        if let journeyflow_operators::journey::record::Reason::Migrated(v) = line.reason {
            field(&mut h, &v.to_le_bytes());
        }
        WithId { id: self.finish(h), record: line }
    }

    /// An action record's id: its `action_id`, status and time.
    pub fn action<'b>(&mut self, line: &'b ActionLine) -> WithId<'b, ActionLine> {
        let mut h = Xxh3::new();
        for part in [b"action".as_slice(), line.action_id.as_bytes(), line.status.as_bytes()] {
            field(&mut h, part);
        }
        field(&mut h, &line.time.to_le_bytes());
        WithId { id: self.finish(h), record: line }
    }

    /// The content hash with its occurrence number in this batch.
    fn finish(&mut self, h: Xxh3) -> String {
        let content = h.digest128();
        let n = self.seen.entry(content).or_default();
        let mut h = Xxh3::new();
        h.update(&content.to_le_bytes());
        h.update(&n.to_le_bytes());
        *n += 1;
        format!("{:032x}", h.digest128())
    }
}

/// Hashes one field with its length, so that fields cannot run into each other.
fn field(h: &mut Xxh3, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_records_in_one_batch_get_different_ids_and_the_same_ids_in_the_next() {
        let line = ChangeLine::new("s", "u", 1, 5);
        let mut ids = Ids::default();
        let (a, b) = (ids.change(&line).id, ids.change(&line).id);
        assert_ne!(a, b);
        ids.clear();
        assert_eq!(ids.change(&line).id, a);
        assert_ne!(ids.change(&ChangeLine::new("s", "u", -1, 5)).id, b, "exit differs from enter");
        let shifted = ChangeLine::new("su", "", 1, 5);
        ids.clear();
        assert_ne!(ids.change(&shifted).id, a, "fields do not run into each other");
    }

    #[test]
    fn the_id_comes_first_and_the_fields_follow() {
        let line = ChangeLine::new("s", "u", -1, 7);
        let text = serde_json::to_string(&Ids::default().change(&line)).unwrap();
        assert!(text.starts_with("{\"id\":\""), "{text}");
        assert!(text.ends_with(",\"segment\":\"s\",\"user_id\":\"u\",\"change\":\"exit\",\"time\":7}"), "{text}");
    }
}
