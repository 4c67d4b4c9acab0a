//! A path analysis's report: the share each worker counts (how many users took each path, a
//! user once, by their first anchor in the range) and the report made of every worker's
//! shares: the most taken paths and, of those, the nodes and weighted links of a Sankey
//! diagram. Workers count; this module only adds and ranks.

use crate::buckets::Buckets;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Event time in epoch milliseconds.
pub type Time = u64;

/// The most distinct paths one worker's share may have.
pub const MAX_PATHS: usize = 100_000;

/// The most bytes of event names the distinct paths of one worker's share may hold.
pub const MAX_PATH_BYTES: usize = 16 << 20;

/// A Sankey node: a step from the anchor and an event name.
type Node = (i64, String);

/// One worker's share of a report, with the shape of the analysis it counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathsPart {
    /// How many paths the report names.
    pub top: u32,
    /// Whether the paths lead to the anchor (it is their last step).
    pub backwards: bool,
    /// Users per path (each path's event names, the anchor's included).
    pub paths: Vec<(Vec<String>, u64)>,
}

/// The report of path analysis `id` over anchors in `query`'s range as of `as_of`, from every
/// worker's counts: the `top` most taken paths (most users first, then by path), the users of
/// the others, and the Sankey diagram of the top paths: a node per step and event name (`step`
/// counts from the anchor, 0, negative before it) and a link per pair of steps with its users.
pub fn report(
    id: &str,
    top: u32,
    backwards: bool,
    query: &Buckets,
    as_of: Time,
    counts: Vec<(Vec<String>, u64)>,
) -> Value {
    let mut merged: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for (path, users) in counts {
        *merged.entry(path).or_default() += users;
    }
    let users: u64 = merged.values().sum();
    let mut ranked: Vec<(Vec<String>, u64)> = merged.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rest = ranked.split_off(ranked.len().min(top as usize));
    let other: u64 = rest.iter().map(|(_, n)| n).sum();
    let step = |path: &[String], i: usize| if backwards { i as i64 - (path.len() as i64 - 1) } else { i as i64 };
    let mut nodes: BTreeMap<Node, u64> = BTreeMap::new();
    let mut links: BTreeMap<(Node, Node), u64> = BTreeMap::new();
    for (path, n) in &ranked {
        for (i, name) in path.iter().enumerate() {
            *nodes.entry((step(path, i), name.clone())).or_default() += n;
            if i + 1 < path.len() {
                let from = (step(path, i), name.clone());
                let to = (step(path, i + 1), path[i + 1].clone());
                *links.entry((from, to)).or_default() += n;
            }
        }
    }
    let node_id = |(s, name): &Node| format!("{s}:{name}");
    let nodes: Vec<Value> =
        nodes.iter().map(|(key, n)| json!({"id": node_id(key), "step": key.0, "name": key.1, "users": n})).collect();
    let links: Vec<Value> = links
        .iter()
        .map(|((from, to), n)| json!({"source": node_id(from), "target": node_id(to), "users": n}))
        .collect();
    let paths: Vec<Value> = ranked.iter().map(|(path, n)| json!({"path": path, "users": n})).collect();
    json!({"paths": id, "as_of": as_of, "from": query.from, "to": query.to, "users": users, "top": paths,
        "other": other, "sankey": {"nodes": nodes, "links": links}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_top_paths_make_the_sankey_and_the_rest_is_other() {
        let q = Buckets::new(0, 100, None).unwrap();
        let a = vec![(path(&["C", "P", "O"]), 3), (path(&["C", "P"]), 1)];
        let b = vec![(path(&["C", "P", "O"]), 2), (path(&["C", "X"]), 1)];
        let r = report("p", 2, false, &q, 99, [a, b].concat());
        assert_eq!(r["users"], 7);
        assert_eq!(r["top"], json!([{"path": ["C", "P", "O"], "users": 5}, {"path": ["C", "P"], "users": 1}]));
        assert_eq!(r["other"], 1);
        let links = r["sankey"]["links"].as_array().unwrap();
        assert!(links.contains(&json!({"source": "0:C", "target": "1:P", "users": 6})), "{links:?}");
        assert!(links.contains(&json!({"source": "1:P", "target": "2:O", "users": 5})), "{links:?}");
        // Backwards, the anchor is step 0 and the steps before it are negative.
        let r = report("p", 5, true, &q, 99, vec![(path(&["A", "O"]), 2), (path(&["B", "A", "O"]), 1)]);
        let nodes: Vec<&str> =
            r["sankey"]["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
        assert_eq!(nodes, ["-2:B", "-1:A", "0:O"]);
    }
}
