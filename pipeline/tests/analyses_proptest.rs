//! Property tests of the analyses: random event streams (tracks with a numeric property,
//! identifies setting a country (a string or a number) or removing it, exact copies) and
//! random funnels (2 to 4 steps, strict or any order, a window, a predicate, a breakdown) or
//! retention cohorts (a first and a return event, a period, 1 to 8 periods) or path analyses
//! (after or before an anchor, 1 to 5 steps, names, collapsed or not, a window), fed in random
//! batches to 1 and 2 workers, with events retained forever or for a random span; reports
//! asked as of several times during the run, over random ranges and buckets, must equal what
//! DuckDB computes from scratch over the same events with SQL written for the tests
//! (`python/{funnel,cohort,paths}_reference.py`).

mod common;

use common::funnels::{duckdb_cohort_reports, duckdb_paths_reports, duckdb_reports, row};
use common::{ingest, run_analyses, Plan};
use journeyflow::analysis::Analysis;
use journeyflow_control_api::buckets::Buckets;
use journeyflow_types::cohort::validate_cohorts_with;
use journeyflow_types::funnel::validate_funnels_with;
use journeyflow_types::paths::validate_paths_with;
use journeyflow_types::Limits;
use proptest::prelude::*;
use serde_json::{json, Value as J};

const USERS: [&str; 6] = ["u0", "u1", "u2", "u3", "u4", "u5"];
const NAMES: [&str; 3] = ["A", "B", "C"];
/// Trait values: strings and numbers (a whole number is one value however it is written).
const COUNTRIES: [&str; 5] = ["\"us\"", "\"de\"", "1", "2.5", "3.0"];
const JITTER: u64 = 15;
/// Above the jitter: every event is admitted, and the watermark moves with the batches.
const LATENESS: u64 = 80;

#[derive(Clone, Debug)]
enum Draft {
    Track {
        user: usize,
        name: usize,
        n: i64,
    },
    /// `None`: the country removed (null).
    Identify {
        user: usize,
        country: Option<usize>,
    },
    /// An exact copy of an earlier event (same messageId).
    Copy {
        back: usize,
    },
}

fn draft() -> impl Strategy<Value = Draft> {
    prop_oneof![
        8 => (0..USERS.len(), 0..NAMES.len(), 0i64..10).prop_map(|(user, name, n)| Draft::Track { user, name, n }),
        2 => (0..USERS.len(), prop::option::of(0..COUNTRIES.len())).prop_map(|(user, country)| Draft::Identify { user, country }),
        1 => (1..6usize).prop_map(|back| Draft::Copy { back }),
    ]
}

/// The lines the engine reads and the rows the reference reads (copies once: they are one
/// event).
fn render(drafts: &[Draft], jitters: &[u64]) -> (Vec<String>, Vec<J>) {
    let (mut lines, mut rows): (Vec<String>, Vec<J>) = (Vec::new(), Vec::new());
    for (i, d) in drafts.iter().enumerate() {
        let ts = 1_000 + 10 * i as u64 + jitters[i % jitters.len()];
        let mid = format!("m{i:04}");
        let (line, row) = match d {
            Draft::Track { user, name, n } => (
                json!({"type": "track", "userId": USERS[*user], "event": NAMES[*name], "messageId": mid,
                    "timestamp": ts, "properties": {"n": n}}),
                row(USERS[*user], ts, &mid, "track", NAMES[*name], json!({"n": n})),
            ),
            Draft::Identify { user, country } => {
                let country = country.map_or(J::Null, |c| serde_json::from_str(COUNTRIES[c]).unwrap());
                (
                    json!({"type": "identify", "userId": USERS[*user], "messageId": mid, "timestamp": ts,
                        "traits": {"country": country.clone()}}),
                    row(USERS[*user], ts, &mid, "identify", "", json!({"country": country})),
                )
            }
            Draft::Copy { back } => match lines.len().checked_sub(*back) {
                Some(j) => {
                    lines.push(lines[j].clone());
                    continue;
                }
                None => continue,
            },
        };
        lines.push(line.to_string());
        rows.push(row);
    }
    (lines, rows)
}

#[derive(Clone, Debug)]
struct FunnelDraft {
    steps: Vec<(usize, Option<i64>)>,
    within: u64,
    strict: bool,
    breakdown: bool,
}

fn funnel_draft() -> impl Strategy<Value = FunnelDraft> {
    (
        prop::collection::vec((0..NAMES.len(), prop::option::of(0i64..8)), 2..=4),
        20u64..400,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(steps, within, strict, breakdown)| FunnelDraft { steps, within, strict, breakdown })
}

fn funnel_json(i: usize, f: &FunnelDraft, breakdown: bool) -> J {
    let steps: Vec<J> = f
        .steps
        .iter()
        .map(|(name, gt)| match gt {
            None => json!({"event": NAMES[*name]}),
            Some(v) => json!({"event": NAMES[*name], "where": [{"property": "n", "op": "gt", "value": v}]}),
        })
        .collect();
    let mut def = json!({"id": format!("f{i}"), "steps": steps, "within": format!("{}ms", f.within),
        "order": if f.strict { "strict" } else { "any" }});
    if breakdown && f.breakdown {
        def["breakdown"] = json!({"trait": "country"});
    }
    def
}

#[derive(Clone, Debug)]
struct Ask {
    /// As of this share of the run (in hundredths; the last ones are the run's end).
    at: u64,
    /// The range starts at this share of the time before `at` (in hundredths).
    from: u64,
    span: u64,
    step: Option<u64>,
}

fn ask() -> impl Strategy<Value = Ask> {
    (20u64..120, 0u64..100, 1u64..3_000, prop::option::of(30u64..600)).prop_map(|(at, from, span, step)| Ask {
        at,
        from,
        span,
        step,
    })
}

/// The reports asked: for each ask, as of a time during the run, over a range before it, of
/// analysis `i % analyses`.
fn asked(asks: &[Ask], rows: &[J], analyses: usize) -> Vec<(u64, u32, Buckets)> {
    let last = rows.iter().filter_map(|r| r["ts"].as_u64()).max().unwrap_or(990);
    let mut reports = Vec::new();
    for (i, a) in asks.iter().enumerate() {
        let at = (990 + (last - 990) * a.at / 100).min(last);
        let from = 990 + (at - 990) * a.from / 100;
        let query = Buckets::new(from, from + a.span, a.step).unwrap();
        reports.push((at, (i % analyses) as u32, query));
    }
    reports
}

#[derive(Clone, Debug)]
struct CohortDraft {
    first: (usize, Option<i64>),
    returns: (usize, Option<i64>),
    period: u64,
    periods: u32,
}

fn cohort_draft() -> impl Strategy<Value = CohortDraft> {
    ((0..NAMES.len(), prop::option::of(0i64..8)), (0..NAMES.len(), prop::option::of(0i64..8)), 10u64..300, 1u32..=8)
        .prop_map(|(first, returns, period, periods)| CohortDraft { first, returns, period, periods })
}

fn filter_json((name, gt): (usize, Option<i64>)) -> J {
    match gt {
        None => json!({"event": NAMES[name]}),
        Some(v) => json!({"event": NAMES[name], "where": [{"property": "n", "op": "gt", "value": v}]}),
    }
}

proptest! {
    #![proptest_config(common::proptest_config(64, "tests/proptest-regressions/funnels_proptest.txt"))]

    #[test]
    fn funnel_reports_equal_duckdb_from_scratch(
        drafts in prop::collection::vec(draft(), 10..150),
        jitters in prop::collection::vec(0..JITTER, 1..8),
        funnels in prop::collection::vec(funnel_draft(), 1..3),
        asks in prop::collection::vec(ask(), 1..4),
        workers in 1usize..=2,
        batch in 1usize..20,
        retention in prop::option::of(100u64..1_500),
    ) {
        let (lines, rows) = render(&drafts, &jitters);
        prop_assume!(!rows.is_empty());
        // Breakdowns only with events kept forever: a user whose events all expire is forgotten,
        // traits and all, which the SQL here does not model.
        let defs = J::Array(funnels.iter().enumerate().map(|(i, f)| funnel_json(i, f, retention.is_none())).collect());
        let parsed = validate_funnels_with(&defs, &Limits::default()).unwrap();
        let reports = asked(&asks, &rows, parsed.len());
        let plan = Plan::simple(lines.len(), workers, batch);
        let config = journeyflow::admission::IngestConfig { retention, ..ingest(Some(LATENESS), 86_400_000) };
        let analyses: Vec<Analysis> = parsed.into_iter().map(Analysis::Funnel).collect();
        let output = run_analyses(&analyses, &reports, &lines, &plan, config);
        let expected = duckdb_reports(&rows, &defs, &reports, retention);
        let got = J::Array(output.reports.clone());
        prop_assert_eq!(&got, &expected, "lines: {:#?}\nfunnels: {}", lines, defs);
    }
}

proptest! {
    #![proptest_config(common::proptest_config(64, "tests/proptest-regressions/cohorts_proptest.txt"))]

    #[test]
    fn cohort_reports_equal_duckdb_from_scratch(
        drafts in prop::collection::vec(draft(), 10..150),
        jitters in prop::collection::vec(0..JITTER, 1..8),
        cohorts in prop::collection::vec(cohort_draft(), 1..3),
        asks in prop::collection::vec(ask(), 1..4),
        workers in 1usize..=2,
        batch in 1usize..20,
        retention in prop::option::of(100u64..1_500),
    ) {
        let (lines, rows) = render(&drafts, &jitters);
        prop_assume!(!rows.is_empty());
        let defs = J::Array(cohorts.iter().enumerate().map(|(i, c)| json!({"id": format!("c{i}"),
            "first": filter_json(c.first), "return": filter_json(c.returns), "period": format!("{}ms", c.period),
            "periods": c.periods})).collect());
        let parsed = validate_cohorts_with(&defs, &Limits::default()).unwrap();
        let reports = asked(&asks, &rows, parsed.len());
        let plan = Plan::simple(lines.len(), workers, batch);
        let config = journeyflow::admission::IngestConfig { retention, ..ingest(Some(LATENESS), 86_400_000) };
        let analyses: Vec<Analysis> = parsed.into_iter().map(Analysis::Cohort).collect();
        let output = run_analyses(&analyses, &reports, &lines, &plan, config);
        let expected = duckdb_cohort_reports(&rows, &defs, &reports, retention);
        let got = J::Array(output.reports.clone());
        prop_assert_eq!(&got, &expected, "lines: {:#?}\ncohorts: {}", lines, defs);
    }
}

#[derive(Clone, Debug)]
struct PathsDraft {
    anchor: (usize, Option<i64>),
    after: bool,
    depth: u64,
    names: Vec<usize>,
    collapse: bool,
    within: Option<u64>,
    top: u64,
}

fn paths_draft() -> impl Strategy<Value = PathsDraft> {
    (
        (0..NAMES.len(), prop::option::of(0i64..8)),
        any::<bool>(),
        1u64..=5,
        prop::collection::vec(0..NAMES.len(), 1..4),
        any::<bool>(),
        prop::option::of(20u64..300),
        1u64..6,
    )
        .prop_map(|(anchor, after, depth, names, collapse, within, top)| PathsDraft {
            anchor,
            after,
            depth,
            names,
            collapse,
            within,
            top,
        })
}

fn paths_json(i: usize, p: &PathsDraft) -> J {
    let mut def = json!({"id": format!("p{i}"), "depth": p.depth, "collapse": p.collapse, "top": p.top});
    def[if p.after { "start" } else { "end" }] = filter_json(p.anchor);
    def["events"] = json!(p.names.iter().map(|n| NAMES[*n]).collect::<Vec<_>>());
    if let Some(w) = p.within {
        def["within"] = json!(format!("{w}ms"));
    }
    def
}

proptest! {
    #![proptest_config(common::proptest_config(64, "tests/proptest-regressions/paths_proptest.txt"))]

    #[test]
    fn path_reports_equal_duckdb_from_scratch(
        drafts in prop::collection::vec(draft(), 10..150),
        jitters in prop::collection::vec(0..JITTER, 1..8),
        analyses in prop::collection::vec(paths_draft(), 1..3),
        asks in prop::collection::vec(ask(), 1..4),
        workers in 1usize..=2,
        batch in 1usize..20,
        retention in prop::option::of(100u64..1_500),
    ) {
        let (lines, rows) = render(&drafts, &jitters);
        prop_assume!(!rows.is_empty());
        let defs = J::Array(analyses.iter().enumerate().map(|(i, p)| paths_json(i, p)).collect());
        let parsed = validate_paths_with(&defs, &Limits::default()).unwrap();
        // Paths take no buckets.
        let reports: Vec<_> =
            asked(&asks, &rows, parsed.len()).into_iter().map(|(t, i, q)| (t, i, Buckets { step: None, ..q })).collect();
        let plan = Plan::simple(lines.len(), workers, batch);
        let config = journeyflow::admission::IngestConfig { retention, ..ingest(Some(LATENESS), 86_400_000) };
        let analyses: Vec<Analysis> = parsed.into_iter().map(Analysis::Paths).collect();
        let output = run_analyses(&analyses, &reports, &lines, &plan, config);
        let expected = duckdb_paths_reports(&rows, &defs, &reports, retention);
        let got = J::Array(output.reports.clone());
        prop_assert_eq!(&got, &expected, "lines: {:#?}\npaths: {}", lines, defs);
    }
}
