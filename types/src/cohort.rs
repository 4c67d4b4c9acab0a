//! Retention cohort definitions (issue 19) and their validation: users grouped by when they
//! first performed an event, and whether they performed a return event in each period after
//! it. Every mistake is reported with its JSON path; nothing invalid is installed.

use crate::condition::EventFilter;
use crate::definition::{valid_id, Checker, ValidationError, ValidationErrors};
use crate::duration::Duration;
use crate::journey_definition::positive_duration;
use crate::limits::Limits;
use crate::time::json_kind;
use serde_json::Value as Json;
use std::collections::BTreeSet;

/// The most periods a cohort reports (each is a bit of a 64-bit mask).
pub const MAX_PERIODS: u64 = 64;

/// A validated cohort definition.
#[derive(Clone, Debug, PartialEq)]
pub struct CohortDefinition {
    /// `[a-z0-9_-]{1,64}`.
    pub id: String,
    /// The event whose first occurrence puts a user in a cohort.
    pub first: EventFilter,
    /// The event that counts as coming back.
    pub returns: EventFilter,
    /// The length of one period after the first event.
    pub period: Duration,
    /// How many periods are reported (1 to 64).
    pub periods: u32,
    /// The definition as written.
    pub source: Json,
}

/// Validates a JSON array of cohort definitions (ids unique) under `limits`.
pub fn validate_cohorts_with(json: &Json, limits: &Limits) -> Result<Vec<CohortDefinition>, ValidationErrors> {
    let mut cx = Checker::new(*limits);
    let Some(items) = json.as_array() else {
        cx.error("$", format!("expected an array of cohort definitions, found {}", json_kind(json)));
        return Err(cx.finish());
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("$[{i}]");
        if let Some(c) = cohort(&mut cx, &path, item) {
            if !seen.insert(c.id.clone()) {
                cx.error(&format!("{path}.id"), format!("cohort {:?} is defined twice", c.id));
            }
            out.push(c);
        }
    }
    match cx.is_clean() {
        true => Ok(out),
        false => Err(cx.finish()),
    }
}

/// Validates one cohort definition (paths from `$`).
pub fn validate_cohort(json: &Json, limits: &Limits) -> Result<CohortDefinition, Vec<ValidationError>> {
    let mut cx = Checker::new(*limits);
    match (cohort(&mut cx, "$", json), cx.is_clean()) {
        (Some(c), true) => Ok(c),
        _ => Err(cx.finish().0),
    }
}

fn cohort(cx: &mut Checker, path: &str, v: &Json) -> Option<CohortDefinition> {
    let o = cx.object(path, v, &["id", "first", "return", "period", "periods"])?;
    let id = cx.string(path, o, "id");
    if let Some(id) = &id {
        if !valid_id(id) {
            cx.error(&format!("{path}.id"), format!("id {id:?} must match [a-z0-9_-]{{1,64}}"));
        }
    }
    let filter = |cx: &mut Checker, key: &str| match o.get(key) {
        Some(f) => cx.filter(&format!("{path}.{key}"), f),
        None => {
            cx.error(path, format!("missing field {key:?}"));
            None
        }
    };
    let first = filter(cx, "first");
    let returns = filter(cx, "return");
    let period = positive_duration(cx, path, o, "period");
    let periods = match cx.opt_count(path, o, "periods") {
        Ok(Some(n)) if (1..=MAX_PERIODS).contains(&n) => Some(n as u32),
        Ok(Some(n)) => {
            cx.error(&format!("{path}.periods"), format!("a cohort reports 1 to {MAX_PERIODS} periods, not {n}"));
            None
        }
        Ok(None) => {
            cx.error(path, "missing field \"periods\"");
            None
        }
        Err(_) => None,
    };
    Some(CohortDefinition {
        id: id?,
        first: first?,
        returns: returns?,
        period: period?,
        periods: periods?,
        source: v.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cohort_parses() {
        let c = validate_cohort(
            &json!({"id": "buyers", "first": {"event": "Signed Up"}, "return": {"event": "Order Completed",
                "where": [{"property": "revenue", "op": "gt", "value": 0}]}, "period": "7d", "periods": 8}),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(
            (c.first.event.as_str(), c.returns.predicates.len(), c.period.0, c.periods),
            ("Signed Up", 1, 7 * 86_400_000, 8)
        );
    }

    #[test]
    fn every_mistake_is_named_at_its_path() {
        let found = validate_cohorts_with(
            &json!([
                {"id": "Bad", "first": {"nope": 1}, "return": {"event": "B"}, "period": "0d", "periods": 65, "x": 1},
                {"id": "ok", "first": {"event": "A"}, "period": "1d", "periods": 0},
                {"id": "ok", "first": {"event": "A"}, "return": {"event": "A"}, "period": "1d", "periods": 2}
            ]),
            &Limits::default(),
        )
        .unwrap_err();
        let paths: BTreeSet<String> = found.0.iter().map(|e| e.path.clone()).collect();
        for p in ["$[0].id", "$[0].first", "$[0].period", "$[0].periods", "$[0].x", "$[1]", "$[1].periods"] {
            assert!(paths.contains(p), "no error at {p}: {:?}", found.0);
        }
        assert!(!paths.contains("$[2].id"), "{:?}", found.0);
    }
}
