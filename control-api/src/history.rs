//! The journey records the control API shows for a user (where they stand in each journey,
//! the actions sent to them): each user's latest transitions per journey and latest actions,
//! kept as written (a line, not a parsed document) and bounded twice, by count per user and by
//! the event retention: what ended before it is forgotten, so the record stays as large as the
//! users the engine still holds, not as every user ever seen.

use crate::catalog::Catalog;
use journeyflow_types::Key;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// How many transitions per user and journey, and actions per user, are kept.
pub const HISTORY: usize = 100;

/// One record as written, with its event time.
#[derive(Clone, Debug)]
struct Kept {
    time: u64,
    line: Box<str>,
}

/// The records kept, by user (their key: a record written before the user's id was known
/// names them by the key's hex, and is theirs all the same).
#[derive(Debug, Default)]
pub struct Histories {
    /// Transitions by `(journey, user)`, oldest first.
    journeys: HashMap<(Arc<str>, Key), VecDeque<Kept>>,
    /// Actions by user, over every journey, oldest first.
    actions: HashMap<Key, VecDeque<Kept>>,
}

#[derive(serde::Deserialize)]
struct Timed {
    time: u64,
}

/// Keeps `kept` in time order, after those at its time: records of one user come in order
/// from one worker, but in a cluster those restored from a snapshot and the new ones come
/// from different workers, in any order.
fn push(history: &mut VecDeque<Kept>, kept: Kept) {
    let at = history.partition_point(|k| k.time <= kept.time);
    if history.len() == HISTORY {
        if at == 0 {
            return;
        }
        history.pop_front();
        history.insert(at - 1, kept);
    } else {
        history.insert(at, kept);
    }
}

fn parsed(history: &VecDeque<Kept>) -> Vec<Value> {
    // Lines this process wrote itself: one that does not parse cannot occur, and is skipped.
    history.iter().filter_map(|k| serde_json::from_str(&k.line).ok()).collect()
}

impl Histories {
    /// Every record kept: `(journey, user, time, line)` (an action's journey left empty).
    pub fn records(&self) -> Vec<(String, Key, u64, String)> {
        let transitions = self.journeys.iter().flat_map(|((journey, user), kept)| {
            kept.iter().map(|k| (journey.to_string(), *user, k.time, k.line.to_string()))
        });
        let actions = self
            .actions
            .iter()
            .flat_map(|(user, kept)| kept.iter().map(|k| (String::new(), *user, k.time, k.line.to_string())));
        transitions.chain(actions).collect()
    }

    /// Keeps a journey record of `user` written as `line`: an action (it has an `action_id`)
    /// or a transition.
    pub fn remember(&mut self, journey: &str, user: Key, line: &str) -> Result<(), serde_json::Error> {
        let Timed { time } = serde_json::from_str(line)?;
        let kept = Kept { time, line: line.into() };
        match line.contains("\"action_id\"") {
            true => push(self.actions.entry(user).or_default(), kept),
            false => push(self.journeys.entry((journey.into(), user)).or_default(), kept),
        }
        Ok(())
    }

    /// The latest transitions in `journey` of the user with id `user_id`, oldest first
    /// (empty: none kept).
    pub fn transitions(&self, journey: &str, user_id: &str) -> Vec<Value> {
        self.journeys.get(&(Arc::from(journey), Key::of(user_id))).map(parsed).unwrap_or_default()
    }

    /// The latest actions of the user with id `user_id`, oldest first.
    pub fn actions(&self, user_id: &str) -> Vec<Value> {
        self.actions.get(&Key::of(user_id)).map(parsed).unwrap_or_default()
    }

    /// Forgets journey `id` (removed).
    pub fn forget_journey(&mut self, id: &str) {
        self.journeys.retain(|(journey, _), _| &**journey != id);
    }

    /// Forgets every user `gone` names (deleted).
    pub fn forget_users(&mut self, gone: impl Fn(Key) -> bool) {
        self.journeys.retain(|(_, user), _| !gone(*user));
        self.actions.retain(|user, _| !gone(*user));
    }

    /// Forgets what happened before `cutoff` (the retention's horizon): actions, transitions but
    /// each user's latest in a journey, and that latest too once the user left the journey
    /// (or it is no longer in `catalog`). A user still inside keeps where they stand.
    pub fn forget_before(&mut self, cutoff: u64, catalog: &Catalog) {
        self.actions.retain(|_, history| {
            history.retain(|k| k.time >= cutoff);
            !history.is_empty()
        });
        self.journeys.retain(|(journey, _), history| {
            while history.len() > 1 && history.front().is_some_and(|k| k.time < cutoff) {
                history.pop_front();
            }
            let Some(last) = history.back() else { return false };
            if last.time >= cutoff {
                return true;
            }
            catalog.journeys.get(&**journey).is_some_and(|entry| {
                let last: Value = serde_json::from_str(&last.line).unwrap_or_default();
                matches!(crate::journeys::status(&entry.definition, &last).0, "waiting" | "running")
            })
        });
    }

    /// How many records are kept (transitions and actions).
    pub fn len(&self) -> usize {
        self.journeys.values().chain(self.actions.values()).map(VecDeque::len).sum()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        let mut catalog = Catalog::default();
        let definition = json!({"id": "j", "nodes": {"wait": {"wait": "30d", "next": "done"}, "done": {"exit": {}}}});
        catalog.journeys.insert(
            "j".into(),
            crate::catalog::JourneyEntry {
                definition,
                version: 1,
                status: "ongoing".into(),
                published_at: Some(0),
                next: None,
            },
        );
        catalog
    }

    fn transition(user: &str, to: Option<&str>, time: u64) -> String {
        json!({"journey": "j", "user_id": user, "from": null, "to": to, "time": time, "reason": "entry"}).to_string()
    }

    #[test]
    fn at_most_history_records_per_user_and_journey_are_kept() {
        let mut h = Histories::default();
        for t in 0..(HISTORY as u64 + 5) {
            h.remember("j", Key::of("u"), &transition("u", Some("wait"), t)).unwrap();
        }
        let kept = h.transitions("j", "u");
        assert_eq!((kept.len(), kept[0]["time"].as_u64()), (HISTORY, Some(5)));
    }

    #[test]
    fn before_the_horizon_only_users_still_inside_are_kept_with_their_latest_transition() {
        let mut h = Histories::default();
        h.remember("j", Key::of("waiting"), &transition("waiting", None, 1)).unwrap();
        h.remember("j", Key::of("waiting"), &transition("waiting", Some("wait"), 2)).unwrap();
        h.remember("j", Key::of("completed"), &transition("completed", Some("done"), 3)).unwrap();
        h.remember("j", Key::of("canceled"), &transition("canceled", None, 4)).unwrap();
        h.remember("j", Key::of("recent"), &transition("recent", Some("done"), 50)).unwrap();
        let action = json!({"action_id": "a", "journey": "j", "user_id": "waiting", "time": 2}).to_string();
        h.remember("j", Key::of("waiting"), &action).unwrap();
        h.forget_before(10, &catalog());
        assert_eq!(h.transitions("j", "waiting").len(), 1, "the latest transition of a user still inside");
        assert!(h.transitions("j", "completed").is_empty() && h.transitions("j", "canceled").is_empty());
        assert_eq!(h.transitions("j", "recent").len(), 1);
        assert!(h.actions("waiting").is_empty());
        assert_eq!(h.len(), 2);
        h.forget_users(|u| u == Key::of("waiting"));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn records_come_out_in_time_order_whatever_order_they_came_in() {
        let mut h = Histories::default();
        for t in [5, 1, 3, 3, 9, 0] {
            h.remember("j", Key::of("u"), &transition("u", Some("wait"), t)).unwrap();
        }
        let times: Vec<_> = h.transitions("j", "u").iter().filter_map(|r| r["time"].as_u64()).collect();
        assert_eq!(times, [0, 1, 3, 3, 5, 9]);
        let mut full = Histories::default();
        for t in (1..=HISTORY as u64).rev() {
            full.remember("j", Key::of("u"), &transition("u", Some("wait"), t)).unwrap();
        }
        full.remember("j", Key::of("u"), &transition("u", Some("wait"), 0)).unwrap();
        assert_eq!(full.transitions("j", "u")[0]["time"].as_u64(), Some(1), "one older than all kept is not kept");
        full.remember("j", Key::of("u"), &transition("u", Some("wait"), 50)).unwrap();
        let times: Vec<_> = full.transitions("j", "u").iter().filter_map(|r| r["time"].as_u64()).collect();
        assert_eq!((times.len(), times[0], times[48], times[49], times[50]), (HISTORY, 2, 50, 50, 51));
    }

    #[test]
    fn a_record_written_under_the_key_is_the_users() {
        let mut h = Histories::default();
        let hex = Key::of("ann").to_string();
        h.remember("j", Key::of("ann"), &transition(&hex, Some("wait"), 1)).unwrap();
        assert_eq!(h.transitions("j", "ann").len(), 1);
    }
}
