//! Path analysis definitions (issue 19) and their validation: from an anchor event, the events
//! of some names users did next (or, backwards, before it), a few steps deep, with
//! consecutive repeats collapsed or not. The names are required: they bound what an analysis
//! reads and keeps. Every mistake is reported with its JSON path;
//! nothing invalid is installed.

use crate::condition::EventFilter;
use crate::definition::{valid_id, Checker, ValidationError, ValidationErrors};
use crate::duration::Duration;
use crate::limits::Limits;
use crate::time::json_kind;
use serde_json::Value as Json;
use std::collections::BTreeSet;

/// The most events a path follows after (or before) its anchor.
pub const MAX_DEPTH: u64 = 5;
/// The most paths a report names.
pub const MAX_TOP: u64 = 100;
/// The most event names a path analysis may be limited to.
pub const MAX_NAMES: usize = 100;

/// Which way a path goes from its anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The events after the anchor (`start`).
    After,
    /// The events before the anchor (`end`).
    Before,
}

/// A validated path analysis.
#[derive(Clone, Debug, PartialEq)]
pub struct PathsDefinition {
    /// `[a-z0-9_-]{1,64}`.
    pub id: String,
    /// The event each path starts (or ends) at.
    pub anchor: EventFilter,
    /// Whether paths go after the anchor or lead to it.
    pub direction: Direction,
    /// How many events a path follows (1 to 5).
    pub depth: u32,
    /// Only events of these names are steps of a path.
    pub names: Vec<String>,
    /// Whether an event of the same name as the step before it is left out.
    pub collapse: bool,
    /// The steps lie at most this long from the anchor, if given.
    pub within: Option<Duration>,
    /// How many paths the report names (1 to 100).
    pub top: u32,
    /// The definition as written.
    pub source: Json,
}

/// Validates a JSON array of path analyses (ids unique) under `limits`.
pub fn validate_paths_with(json: &Json, limits: &Limits) -> Result<Vec<PathsDefinition>, ValidationErrors> {
    let mut cx = Checker::new(*limits);
    let Some(items) = json.as_array() else {
        cx.error("$", format!("expected an array of path analyses, found {}", json_kind(json)));
        return Err(cx.finish());
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("$[{i}]");
        if let Some(p) = paths(&mut cx, &path, item) {
            if !seen.insert(p.id.clone()) {
                cx.error(&format!("{path}.id"), format!("path analysis {:?} is defined twice", p.id));
            }
            out.push(p);
        }
    }
    match cx.is_clean() {
        true => Ok(out),
        false => Err(cx.finish()),
    }
}

/// Validates one path analysis (paths from `$`).
pub fn validate_paths(json: &Json, limits: &Limits) -> Result<PathsDefinition, Vec<ValidationError>> {
    let mut cx = Checker::new(*limits);
    match (paths(&mut cx, "$", json), cx.is_clean()) {
        (Some(p), true) => Ok(p),
        _ => Err(cx.finish().0),
    }
}

/// A count within `range`, `default` when absent.
fn count_in(
    cx: &mut Checker,
    path: &str,
    o: &crate::definition::Obj,
    key: &str,
    range: (u64, u64),
    default: u64,
) -> Option<u32> {
    match cx.opt_count(path, o, key) {
        Ok(None) => Some(default as u32),
        Ok(Some(n)) if (range.0..=range.1).contains(&n) => Some(n as u32),
        Ok(Some(n)) => {
            cx.error(&format!("{path}.{key}"), format!("must be {} to {}, not {n}", range.0, range.1));
            None
        }
        Err(_) => None,
    }
}

fn paths(cx: &mut Checker, path: &str, v: &Json) -> Option<PathsDefinition> {
    let o = cx.object(path, v, &["id", "start", "end", "depth", "events", "collapse", "within", "top"])?;
    let id = cx.string(path, o, "id");
    if let Some(id) = &id {
        if !valid_id(id) {
            cx.error(&format!("{path}.id"), format!("id {id:?} must match [a-z0-9_-]{{1,64}}"));
        }
    }
    let anchor = match (o.get("start"), o.get("end")) {
        (Some(f), None) => cx.filter(&format!("{path}.start"), f).map(|f| (f, Direction::After)),
        (None, Some(f)) => cx.filter(&format!("{path}.end"), f).map(|f| (f, Direction::Before)),
        _ => {
            cx.error(path, "expected exactly one of \"start\" (paths after it) and \"end\" (paths leading to it)");
            None
        }
    };
    let depth = count_in(cx, path, o, "depth", (1, MAX_DEPTH), 3);
    let top = count_in(cx, path, o, "top", (1, MAX_TOP), 10);
    let names = match o.get("events") {
        None => {
            cx.error(path, "missing field \"events\" (the event names a path may take)");
            None
        }
        Some(Json::Array(items)) if !items.is_empty() && items.len() <= MAX_NAMES => {
            let names: Vec<Option<String>> = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let name = cx.string_value(&format!("{path}.events[{i}]"), item)?;
                    if name.is_empty() {
                        cx.error(&format!("{path}.events[{i}]"), "an event name is not empty");
                        return None;
                    }
                    Some(name)
                })
                .collect();
            names.into_iter().collect::<Option<Vec<String>>>()
        }
        Some(other) => {
            cx.error(
                &format!("{path}.events"),
                format!("expected 1 to {MAX_NAMES} event names, found {}", json_kind(other)),
            );
            None
        }
    };
    let collapse = match o.get("collapse") {
        None => Some(false),
        Some(Json::Bool(b)) => Some(*b),
        Some(other) => {
            cx.error(&format!("{path}.collapse"), format!("expected true or false, found {other}"));
            None
        }
    };
    let within = match cx.opt_duration(path, o, "within") {
        Ok(Some(d)) if d.0 == 0 => {
            cx.error(&format!("{path}.within"), "must be longer than 0");
            None
        }
        Ok(d) => Some(d),
        Err(_) => None,
    };
    let (anchor, direction) = anchor?;
    Some(PathsDefinition {
        id: id?,
        anchor,
        direction,
        depth: depth?,
        names: names?,
        collapse: collapse?,
        within: within?,
        top: top?,
        source: v.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_path_analysis_parses_with_its_defaults() {
        let p = validate_paths(
            &json!({"id": "after_cart", "start": {"event": "Cart Viewed"}, "events": ["A"]}),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!((p.direction, p.depth, p.top, p.collapse, p.within), (Direction::After, 3, 10, false, None));
        let p = validate_paths(
            &json!({"id": "to_order", "end": {"event": "Order Completed"}, "depth": 5, "events": ["A", "B"],
                "collapse": true, "within": "1d", "top": 20}),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!((p.direction, p.depth, p.top, p.collapse), (Direction::Before, 5, 20, true));
        assert_eq!(p.names, vec!["A".to_string(), "B".to_string()]);
    }

    #[test]
    fn every_mistake_is_named_at_its_path() {
        let found = validate_paths_with(
            &json!([
                {"id": "x", "start": {"event": "A"}, "end": {"event": "B"}, "depth": 6, "events": [], "collapse": 1,
                    "within": "0d", "top": 0},
                {"id": "y", "start": {"nope": 1}, "events": ["A", 3]},
                {"id": "z", "start": {"event": "A"}}
            ]),
            &Limits::default(),
        )
        .unwrap_err();
        let paths: BTreeSet<String> = found.0.iter().map(|e| e.path.clone()).collect();
        for p in [
            "$[0]",
            "$[0].depth",
            "$[0].events",
            "$[0].collapse",
            "$[0].within",
            "$[0].top",
            "$[1].start",
            "$[1].events[1]",
            "$[2]",
        ] {
            assert!(paths.contains(p), "no error at {p}: {:?}", found.0);
        }
    }
}
