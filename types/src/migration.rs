//! What happens to users in flight when a new version of a journey is published: the
//! `migrate` object (`{"node_map": {"old": "new"}, "default": "exit"}`), its validation
//! against the two versions, and the rule that places each user in the new version.

use crate::definition::{Checker, ValidationErrors};
use crate::journey::{JourneyDefinition, Node};
use crate::time::json_kind;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// How users at the old version's nodes move to the new version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// Old node id to new node id, for users the request moves explicitly.
    pub node_map: BTreeMap<String, String>,
    /// Where users go whose node is neither mapped nor kept: a node id of the new version, or
    /// `exit` (they leave the journey), unless the new version has a node named `exit`.
    pub default: String,
}

impl Default for Migration {
    fn default() -> Self {
        Migration { node_map: BTreeMap::new(), default: "exit".into() }
    }
}

/// Where a user at some node of the old version goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement<'a> {
    /// Stays at the node of the same id and kind, keeping the time they got there and their timer.
    Stay(&'a str),
    /// Arrives at this node of the new version now (and moves on from it as the node says).
    Move(&'a str),
    /// Leaves the journey.
    Exit,
}

impl Migration {
    /// Where a user at `old_node` (a node of `old`) goes in `new`, in this order: the node map;
    /// the node of the same id if it is of the same kind and holds users (wait, wait_until, wait_until_time,
    /// action); the node of the same id of another kind (the user arrives at it); the default.
    pub fn place<'a>(
        &'a self,
        old: &JourneyDefinition,
        old_node: &'a str,
        new: &'a JourneyDefinition,
    ) -> Placement<'a> {
        if let Some(to) = self.node_map.get(old_node) {
            return Placement::Move(to);
        }
        if let Some((id, node)) = new.nodes.get_key_value(old_node) {
            let same_kind = old.nodes.get(old_node).is_some_and(|o| o.kind() == node.kind());
            return if same_kind && (node.waits() || matches!(node, Node::Action { .. })) {
                Placement::Stay(id)
            } else {
                Placement::Move(id)
            };
        }
        match new.nodes.get_key_value(&self.default) {
            Some((id, _)) => Placement::Move(id),
            None => Placement::Exit,
        }
    }
}

/// Reads the `migrate` object of a publish request (`None`: every default) for moving users
/// from `old` to `new`, reporting every error with its JSON path under `$.migrate`.
pub fn validate_migration(
    json: Option<&Json>,
    old: &JourneyDefinition,
    new: &JourneyDefinition,
) -> Result<Migration, ValidationErrors> {
    let mut cx = Checker::default();
    let mut migration = Migration::default();
    let Some(json) = json else { return Ok(migration) };
    let Some(obj) = json.as_object() else {
        cx.error("$.migrate", format!("expected an object, found {}", json_kind(json)));
        return Err(cx.finish());
    };
    for key in obj.keys().filter(|k| *k != "node_map" && *k != "default") {
        cx.error(&format!("$.migrate.{key}"), "unknown field (expected node_map, default)".to_string());
    }
    match obj.get("node_map") {
        None => {}
        Some(Json::Object(map)) => {
            for (from, to) in map {
                let path = format!("$.migrate.node_map.{from}");
                if !old.nodes.contains_key(from) {
                    cx.error(&path, format!("version being replaced has no node {from:?}"));
                }
                match to.as_str() {
                    Some(to) if new.nodes.contains_key(to) => {
                        migration.node_map.insert(from.clone(), to.to_string());
                    }
                    Some(to) => cx.error(&path, format!("the new version has no node {to:?}")),
                    None => cx.error(&path, format!("expected a node id, found {}", json_kind(to))),
                }
            }
        }
        Some(other) => cx.error("$.migrate.node_map", format!("expected an object, found {}", json_kind(other))),
    }
    match obj.get("default") {
        None => {}
        Some(Json::String(d)) if d == "exit" || new.nodes.contains_key(d) => migration.default = d.clone(),
        Some(Json::String(d)) => {
            cx.error("$.migrate.default", format!("expected \"exit\" or a node of the new version, found {d:?}"))
        }
        Some(other) => cx.error("$.migrate.default", format!("expected a string, found {}", json_kind(other))),
    }
    if cx.is_clean() {
        Ok(migration)
    } else {
        Err(cx.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate_journey;
    use serde_json::json;

    fn def(nodes: Json) -> JourneyDefinition {
        let j = json!({"id": "j", "entry": {"event": "A"}, "start": "w", "nodes": nodes});
        validate_journey(&j, &Default::default()).unwrap()
    }

    #[test]
    fn users_stay_at_kept_nodes_of_the_same_kind_and_move_otherwise() {
        let old = def(json!({"w": {"wait": {"duration": "1h"}, "next": "u"},
            "u": {"wait_until": {"event": "B", "timeout": "1h", "on_event": "x", "on_timeout": "gone"}},
            "gone": {"wait": {"duration": "1h"}, "next": "x"}, "x": {"exit": {}}}));
        let new = def(json!({"w": {"wait": {"duration": "2h"}, "next": "u"},
            "u": {"wait": {"duration": "1h"}, "next": "x"}, "x": {"exit": {}}}));
        let m = validate_migration(None, &old, &new).unwrap();
        assert_eq!(m.place(&old, "w", &new), Placement::Stay("w"));
        assert_eq!(m.place(&old, "u", &new), Placement::Move("u"));
        assert_eq!(m.place(&old, "gone", &new), Placement::Exit);
        let m = validate_migration(Some(&json!({"node_map": {"w": "u"}, "default": "w"})), &old, &new).unwrap();
        assert_eq!(m.place(&old, "w", &new), Placement::Move("u"));
        assert_eq!(m.place(&old, "gone", &new), Placement::Move("w"));
    }

    #[test]
    fn every_mistake_is_reported_with_its_path() {
        let old = def(json!({"w": {"wait": {"duration": "1h"}, "next": "x"}, "x": {"exit": {}}}));
        let new = old.clone();
        let bad = json!({"node_map": {"nope": "w", "w": "missing", "x": 3}, "default": "elsewhere", "extra": 1});
        let errors = validate_migration(Some(&bad), &old, &new).unwrap_err().0;
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.migrate.default",
                "$.migrate.extra",
                "$.migrate.node_map.nope",
                "$.migrate.node_map.w",
                "$.migrate.node_map.x"
            ]
        );
    }
}
