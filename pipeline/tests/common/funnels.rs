//! The analysis references: funnel, cohort and path reports computed by DuckDB from scratch (SQL
//! written for the tests, `python/{funnel,cohort,paths}_reference.py`) over
//! the same events the engine read.

use super::reference::RefEvent;
use journeyflow_control_api::buckets::Buckets;
use serde_json::{json, Value as J};
use std::process::Command;

/// An event as the reference reads it.
pub fn row(user: &str, ts: u64, mid: &str, kind: &str, name: &str, props: J) -> J {
    json!({"user_id": user, "ts": ts, "mid": mid, "kind": kind, "name": name, "props": props})
}

/// The reference's rows of accepted events.
pub fn rows_of(events: &[RefEvent]) -> Vec<J> {
    events.iter().map(|e| row(&e.user, e.ts, &e.msg, &e.kind, &e.name, e.fields.clone())).collect()
}

/// The reports `(as of, funnel index, range)` of `funnels` (their JSON) over `rows`, events
/// retained for `retention`.
pub fn duckdb_reports(rows: &[J], funnels: &J, reports: &[(u64, u32, Buckets)], retention: Option<u64>) -> J {
    reference("funnel", "funnels", rows, funnels, reports, retention)
}

/// The reports `(as of, cohort index, range)` of `cohorts` (their JSON) over `rows`, events
/// retained for `retention`.
pub fn duckdb_cohort_reports(rows: &[J], cohorts: &J, reports: &[(u64, u32, Buckets)], retention: Option<u64>) -> J {
    reference("cohort", "cohorts", rows, cohorts, reports, retention)
}

/// The reports `(as of, analysis index, range)` of path analyses `defs` (their JSON) over
/// `rows`, events retained for `retention`.
pub fn duckdb_paths_reports(rows: &[J], defs: &J, reports: &[(u64, u32, Buckets)], retention: Option<u64>) -> J {
    reference("paths", "paths", rows, defs, reports, retention)
}

fn reference(
    kind: &str,
    key: &str,
    rows: &[J],
    defs: &J,
    reports: &[(u64, u32, Buckets)],
    retention: Option<u64>,
) -> J {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.json");
    let asked: Vec<J> = reports
        .iter()
        .map(|(t, i, q)| {
            let mut one = json!({"as_of": t, "from": q.from, "to": q.to, "step": q.step});
            one[kind] = json!(i);
            one
        })
        .collect();
    let mut spec = json!({"events": rows, "reports": asked, "retention": retention});
    spec[key] = defs.clone();
    std::fs::write(&input, spec.to_string()).unwrap();
    let python = std::env::var("JOURNEYFLOW_PYTHON")
        .expect("JOURNEYFLOW_PYTHON names a Python with duckdb (scripts/test.sh installs it)");
    let script = super::repo(&format!("pipeline/tests/python/{kind}_reference.py"));
    let out = Command::new(python).arg(script).arg(&input).output().unwrap();
    assert!(out.status.success(), "{kind}_reference.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
