//! Funnel definitions (issue 19) and their validation: ordered steps, each an event filter,
//! that a user must reach within a window of their first step, strictly in order or in any
//! order, optionally broken down by a trait. Every mistake is reported with its JSON path;
//! nothing invalid is installed.

use crate::condition::EventFilter;
use crate::definition::{valid_id, Checker, ValidationError, ValidationErrors};
use crate::duration::Duration;
use crate::journey_definition::positive_duration;
use crate::limits::Limits;
use crate::time::json_kind;
use serde_json::Value as Json;
use std::collections::BTreeSet;

/// The most steps a funnel has.
pub const MAX_STEPS: usize = 16;

/// Whether the steps after the first must come in their order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOrder {
    /// Each next step after the previous one.
    Strict,
    /// The other steps in any order, after the first.
    Any,
}

/// A validated funnel.
#[derive(Clone, Debug, PartialEq)]
pub struct FunnelDefinition {
    /// `[a-z0-9_-]{1,64}`.
    pub id: String,
    /// The steps, in order; the first one starts a user's attempt.
    pub steps: Vec<EventFilter>,
    /// How long after the first step the others may come.
    pub within: Duration,
    /// Whether the later steps must keep their order.
    pub order: StepOrder,
    /// The trait (a dot path) the report is broken down by, if any.
    pub breakdown: Option<String>,
    /// The definition as written.
    pub source: Json,
}

/// Validates a JSON array of funnel definitions (ids unique) under `limits`.
pub fn validate_funnels_with(json: &Json, limits: &Limits) -> Result<Vec<FunnelDefinition>, ValidationErrors> {
    let mut cx = Checker::new(*limits);
    let Some(items) = json.as_array() else {
        cx.error("$", format!("expected an array of funnel definitions, found {}", json_kind(json)));
        return Err(cx.finish());
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("$[{i}]");
        if let Some(f) = funnel(&mut cx, &path, item) {
            if !seen.insert(f.id.clone()) {
                cx.error(&format!("{path}.id"), format!("funnel {:?} is defined twice", f.id));
            }
            out.push(f);
        }
    }
    match cx.is_clean() {
        true => Ok(out),
        false => Err(cx.finish()),
    }
}

/// Validates one funnel definition (paths from `$`).
pub fn validate_funnel(json: &Json, limits: &Limits) -> Result<FunnelDefinition, Vec<ValidationError>> {
    let mut cx = Checker::new(*limits);
    match (funnel(&mut cx, "$", json), cx.is_clean()) {
        (Some(f), true) => Ok(f),
        _ => Err(cx.finish().0),
    }
}

fn funnel(cx: &mut Checker, path: &str, v: &Json) -> Option<FunnelDefinition> {
    let o = cx.object(path, v, &["id", "steps", "within", "order", "breakdown"])?;
    let id = cx.string(path, o, "id");
    if let Some(id) = &id {
        if !valid_id(id) {
            cx.error(&format!("{path}.id"), format!("id {id:?} must match [a-z0-9_-]{{1,64}}"));
        }
    }
    let steps = match o.get("steps") {
        None => {
            cx.error(path, "missing field \"steps\"");
            None
        }
        Some(Json::Array(items)) if items.len() < 2 || items.len() > MAX_STEPS => {
            cx.error(&format!("{path}.steps"), format!("a funnel has 2 to {MAX_STEPS} steps, not {}", items.len()));
            None
        }
        Some(Json::Array(items)) => {
            let parsed: Vec<Option<EventFilter>> =
                items.iter().enumerate().map(|(i, s)| cx.filter(&format!("{path}.steps[{i}]"), s)).collect();
            parsed.into_iter().collect::<Option<Vec<_>>>()
        }
        Some(other) => {
            cx.error(
                &format!("{path}.steps"),
                format!("expected an array of event filters, found {}", json_kind(other)),
            );
            None
        }
    };
    let within = positive_duration(cx, path, o, "within");
    let order = match cx.opt_string(path, o, "order").as_deref() {
        None | Some("strict") => Some(StepOrder::Strict),
        Some("any") => Some(StepOrder::Any),
        Some(other) => {
            cx.error(&format!("{path}.order"), format!("unknown order {other:?} (expected strict or any)"));
            None
        }
    };
    let breakdown = match o.get("breakdown") {
        None => None,
        Some(b) => {
            let b = cx.object(&format!("{path}.breakdown"), b, &["trait"])?;
            Some(cx.string(&format!("{path}.breakdown"), b, "trait")?)
        }
    };
    Some(FunnelDefinition { id: id?, steps: steps?, within: within?, order: order?, breakdown, source: v.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(v: Json) -> Vec<(String, String)> {
        validate_funnels_with(&v, &Limits::default()).unwrap_err().0.into_iter().map(|e| (e.path, e.message)).collect()
    }

    #[test]
    fn a_funnel_parses() {
        let f = validate_funnel(
            &json!({"id": "checkout", "steps": [{"event": "Product Viewed"}, {"event": "Order Completed",
                "where": [{"property": "revenue", "op": "gt", "value": 10}]}], "within": "7d",
                "order": "any", "breakdown": {"trait": "country"}}),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!((f.steps.len(), f.within.0, f.order), (2, 7 * 86_400_000, StepOrder::Any));
        assert_eq!(f.breakdown.as_deref(), Some("country"));
    }

    #[test]
    fn every_mistake_is_named_at_its_path() {
        let found = errors(json!([
            {"id": "Bad Id", "steps": [{"event": "A"}], "within": "0d", "order": "sideways", "extra": 1},
            {"id": "ok", "steps": [{"event": "A"}, {"where": []}], "within": "1d", "breakdown": {"trait": ""}},
            {"id": "ok", "steps": "A", "within": "1d"}
        ]));
        let paths: BTreeSet<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        for p in [
            "$[0].id",
            "$[0].steps",
            "$[0].within",
            "$[0].order",
            "$[0].extra",
            "$[1].steps[1]",
            "$[1].breakdown.trait",
            "$[2].steps",
        ] {
            assert!(paths.contains(p), "no error at {p}: {found:?}");
        }
        let twice = errors(json!([{"id": "a", "steps": [{"event": "A"}, {"event": "B"}], "within": "1d"},
            {"id": "a", "steps": [{"event": "A"}, {"event": "B"}], "within": "1d"}]));
        assert_eq!(twice, vec![("$[1].id".to_string(), "funnel \"a\" is defined twice".to_string())]);
    }
}
