//! One test per condition kind and operator, with expectations computed by hand,
//! including membership changes caused only by time passing.

mod common;

use common::{ingest, run_lines, Plan};
use journeyflow::admission::{IngestConfig, LatePolicy};
use serde_json::json;

fn track(user: &str, msg: &str, ts: u64, event: &str, props: serde_json::Value) -> String {
    json!({"type": "track", "userId": user, "messageId": msg, "timestamp": ts, "event": event, "properties": props})
        .to_string()
}

fn identify(user: &str, msg: &str, ts: u64, traits: serde_json::Value) -> String {
    json!({"type": "identify", "userId": user, "messageId": msg, "timestamp": ts, "traits": traits}).to_string()
}

/// `(segment, user, +1/-1, time)` for one segment definition list, run to `as_of`.
fn changes_with(
    defs: serde_json::Value,
    lines: &[String],
    as_of: Option<u64>,
    config: IngestConfig,
) -> Vec<(String, String, isize, u64)> {
    let text = defs.to_string();
    let order = common::parsed_order(defs.as_array().unwrap());
    let out = run_lines(&text, lines, &Plan::simple(lines.len(), 1, 2), config, as_of);
    out.changes.into_iter().map(|c| (order[c.segment as usize].clone(), c.user, c.diff, c.time)).collect()
}

fn changes(defs: serde_json::Value, lines: &[String], as_of: Option<u64>) -> Vec<(String, String, isize, u64)> {
    changes_with(defs, lines, as_of, ingest(Some(0), 1000))
}

fn ch(seg: &str, user: &str, diff: isize, time: u64) -> (String, String, isize, u64) {
    (seg.to_string(), user.to_string(), diff, time)
}

#[test]
fn trait_follows_latest_identify_per_key() {
    let defs = json!([{"id": "pro", "condition": {"trait": {"name": "plan", "op": "eq", "value": "pro"}}}]);
    let lines = vec![
        identify("u", "1", 100, json!({"plan": "pro"})),
        identify("u", "2", 150, json!({"country": "US"})), // other keys leave plan alone
        identify("u", "3", 200, json!({"plan": "free"})),
        identify("u", "4", 300, json!({"plan": "pro"})),
        identify("u", "5", 400, json!({"plan": null})), // null removes the trait
    ];
    assert_eq!(
        changes(defs, &lines, None),
        vec![ch("pro", "u", 1, 100), ch("pro", "u", -1, 200), ch("pro", "u", 1, 300), ch("pro", "u", -1, 400)]
    );
}

#[test]
fn same_timestamp_identifies_resolve_by_message_id() {
    let defs = json!([{"id": "pro", "condition": {"trait": {"name": "plan", "op": "eq", "value": "pro"}}}]);
    // At ts 100, message "b" comes after "a" whatever the arrival order.
    let lines = vec![identify("u", "b", 100, json!({"plan": "pro"})), identify("u", "a", 100, json!({"plan": "free"}))];
    assert_eq!(changes(defs, &lines, None), vec![ch("pro", "u", 1, 100)]);
}

#[test]
fn trait_not_exists_is_relative_to_the_universe() {
    let defs = json!([{"id": "no_email", "condition": {"trait": {"name": "email", "op": "not_exists"}}}]);
    let lines = vec![track("u", "1", 10, "A", json!({})), identify("u", "2", 20, json!({"email": "a@b"}))];
    assert_eq!(changes(defs, &lines, None), vec![ch("no_email", "u", 1, 10), ch("no_email", "u", -1, 20)]);
}

#[test]
fn performed_in_a_sliding_window_expires_with_time() {
    let defs = json!([{"id": "twice", "condition": {"performed": {"event": "A", "within": "100ms", "at_least": 2}}}]);
    let lines = vec![
        track("u", "1", 10, "A", json!({})),
        track("u", "2", 50, "A", json!({})),
        track("u", "3", 60, "B", json!({})),
        track("u", "4", 120, "A", json!({})),
    ];
    // In at 50 (10 and 50), out at 110 when 10 leaves, in at 120 (50 and 120), out at 150 when 50 leaves.
    assert_eq!(
        changes(defs, &lines, Some(1000)),
        vec![ch("twice", "u", 1, 50), ch("twice", "u", -1, 110), ch("twice", "u", 1, 120), ch("twice", "u", -1, 150)]
    );
}

#[test]
fn performed_where_filters_properties() {
    let defs = json!([{"id": "big", "condition": {"performed": {"event": "A", "where": [{"property": "item.price", "op": "gte", "value": 10}]}}}]);
    let lines = vec![
        track("u", "1", 10, "A", json!({"item": {"price": 5}})),
        track("u", "2", 20, "A", json!({"item": {"price": 12}})),
    ];
    assert_eq!(changes(defs, &lines, None), vec![ch("big", "u", 1, 20)]);
}

#[test]
fn performed_at_most_counts_users_without_events() {
    let defs = json!([{"id": "quiet", "condition": {"performed": {"event": "A", "within": "100ms", "at_most": 0}}}]);
    let lines = vec![identify("u", "1", 0, json!({})), track("u", "2", 30, "A", json!({}))];
    assert_eq!(
        changes(defs, &lines, Some(500)),
        vec![ch("quiet", "u", 1, 0), ch("quiet", "u", -1, 30), ch("quiet", "u", 1, 130)]
    );
}

#[test]
fn lapsed_buyer_enters_when_time_passes() {
    let defs = json!([{"id": "lapsed", "condition": {"all": [
        {"performed": {"event": "Order Completed"}},
        {"not": {"performed": {"event": "Order Completed", "within": "1s"}}}]}}]);
    let lines =
        vec![track("u", "1", 100, "Order Completed", json!({})), track("v", "2", 200, "Page Viewed", json!({}))];
    // No event at 1100: the user lapses because the window moved.
    assert_eq!(changes(defs.clone(), &lines, Some(5000)), vec![ch("lapsed", "u", 1, 1100)]);
    // Up to 1099 nothing has happened yet.
    assert_eq!(changes(defs, &lines, Some(1099)), vec![]);
}

#[test]
fn aggregate_sum_over_a_window() {
    let defs = json!([{"id": "high", "condition": {"aggregate": {"event": "O", "property": "revenue", "fn": "sum", "within": "100ms", "op": "gte", "value": 100}}}]);
    let lines = vec![
        track("u", "1", 0, "O", json!({"revenue": 60.10})),
        track("u", "2", 10, "O", json!({"revenue": 39.90})),
        track("u", "3", 20, "O", json!({"revenue": "n/a"})),
    ];
    // 60.10 + 39.90 is exactly 100 in fixed point; at 100 the first order leaves the window.
    assert_eq!(changes(defs, &lines, Some(1000)), vec![ch("high", "u", 1, 10), ch("high", "u", -1, 100)]);
}

#[test]
fn aggregate_avg_min_max_count_distinct() {
    let defs = json!([
        {"id": "avg", "condition": {"aggregate": {"event": "O", "property": "x", "fn": "avg", "op": "gt", "value": 2}}},
        {"id": "min", "condition": {"aggregate": {"event": "O", "property": "x", "fn": "min", "op": "lt", "value": 2}}},
        {"id": "max", "condition": {"aggregate": {"event": "O", "property": "x", "fn": "max", "op": "gte", "value": 5}}},
        {"id": "distinct", "condition": {"aggregate": {"event": "O", "property": "sku", "fn": "count_distinct", "op": "gte", "value": 2}}}
    ]);
    let lines = vec![
        track("u", "1", 10, "O", json!({"x": 3, "sku": "a"})), // avg 3, min 3, max 3, 1 sku
        track("u", "2", 20, "O", json!({"x": 1, "sku": "a"})), // avg 2, min 1, max 3, 1 sku
        track("u", "3", 30, "O", json!({"x": 5, "sku": "b"})), // avg 3, min 1, max 5, 2 skus
    ];
    let mut got = changes(defs, &lines, None);
    got.sort_by(|a, b| (a.3, &a.0).cmp(&(b.3, &b.0)));
    assert_eq!(
        got,
        vec![
            ch("avg", "u", 1, 10),
            ch("avg", "u", -1, 20),
            ch("min", "u", 1, 20),
            ch("avg", "u", 1, 30),
            ch("distinct", "u", 1, 30),
            ch("max", "u", 1, 30),
        ]
    );
}

#[test]
fn abandoned_cart_enters_after_min_age_and_leaves_on_order() {
    let defs = json!([{"id": "cart", "condition": {"sequence": {"steps": [{"event": "Cart Viewed"}], "within": "1s", "min_age": "60ms", "then_not": {"event": "Order Completed"}}}}]);
    let lines = vec![
        track("u", "1", 0, "Cart Viewed", json!({})),
        track("u", "2", 500, "Order Completed", json!({})),
        track("u", "3", 600, "Cart Viewed", json!({})),
    ];
    // In at 60 (old enough), out at 500 (ordered), in at 660, out at 1600 (cart leaves the 1s window).
    assert_eq!(
        changes(defs, &lines, Some(5000)),
        vec![ch("cart", "u", 1, 60), ch("cart", "u", -1, 500), ch("cart", "u", 1, 660), ch("cart", "u", -1, 1600)]
    );
}

#[test]
fn funnel_needs_steps_in_order() {
    let defs = json!([{"id": "funnel", "condition": {"sequence": {"steps": [{"event": "View"}, {"event": "Add"}, {"event": "Buy"}], "within": "1s"}}}]);
    let lines = vec![
        track("u", "1", 0, "Add", json!({})),
        track("u", "2", 10, "View", json!({})),
        track("u", "3", 20, "Buy", json!({})), // View, Buy: no Add in between yet
        track("u", "4", 30, "Add", json!({})),
        track("u", "5", 40, "Buy", json!({})),
    ];
    // Complete at 40; the first step (10) leaves the window at 1010.
    assert_eq!(changes(defs, &lines, Some(5000)), vec![ch("funnel", "u", 1, 40), ch("funnel", "u", -1, 1010)]);
}

#[test]
fn composition_all_any_not_in_segment() {
    let defs = json!([
        {"id": "a", "condition": {"performed": {"event": "A"}}},
        {"id": "b", "condition": {"performed": {"event": "B"}}},
        {"id": "a_and_b", "condition": {"all": [{"in_segment": "a"}, {"in_segment": "b"}]}},
        {"id": "a_or_b", "condition": {"any": [{"in_segment": "a"}, {"in_segment": "b"}]}},
        {"id": "not_a", "condition": {"not": {"in_segment": "a"}}}
    ]);
    let lines = vec![track("u", "1", 10, "B", json!({})), track("u", "2", 20, "A", json!({}))];
    let mut got = changes(defs, &lines, None);
    got.sort_by(|a, b| (a.3, &a.0).cmp(&(b.3, &b.0)));
    assert_eq!(
        got,
        vec![
            ch("a_or_b", "u", 1, 10),
            ch("b", "u", 1, 10),
            ch("not_a", "u", 1, 10),
            ch("a", "u", 1, 20),
            ch("a_and_b", "u", 1, 20),
            ch("not_a", "u", -1, 20),
        ]
    );
}

#[test]
fn duplicates_count_once_within_the_dedup_window() {
    let defs = json!([{"id": "twice", "condition": {"performed": {"event": "A", "at_least": 2}}}]);
    let lines = vec![
        track("u", "same", 10, "A", json!({})),
        track("u", "same", 20, "A", json!({})), // duplicate: 10 ms after the kept copy
        track("u", "same", 1500, "A", json!({})), // beyond the 1 s window: a new event
    ];
    let out = run_lines(&defs.to_string(), &lines, &Plan::simple(3, 1, 1), ingest(Some(0), 1000), None);
    assert_eq!(out.stats.engine.duplicates, 1);
    assert_eq!(out.changes.iter().map(|c| (c.diff, c.time)).collect::<Vec<_>>(), vec![(1, 1500)]);
}

#[test]
fn late_events_follow_the_policy() {
    let defs = json!([{"id": "any", "condition": {"performed": {"event": "A", "within": "1s"}}}]);
    // Batches of one: the watermark reaches 500 before the event at 100 arrives.
    let lines = vec![track("u", "1", 500, "A", json!({})), track("v", "2", 100, "A", json!({}))];
    let dead = IngestConfig {
        allowed_lateness: Some(0),
        late_policy: LatePolicy::DeadLetter,
        dedup_window: 1000,
        retention: None,
    };
    let out = run_lines(&defs.to_string(), &lines, &Plan::simple(2, 1, 1), dead, None);
    assert_eq!(out.stats.engine.late_rejected, 1);
    assert_eq!(out.dead_letters.len(), 1);
    assert!(out.dead_letters[0].reason.contains("timestamp 100 is behind the watermark 500"), "{:?}", out.dead_letters);
    assert_eq!(out.dead_letters[0].line, Some(2));
    let clamp = IngestConfig { late_policy: LatePolicy::Clamp, ..dead };
    let out = run_lines(&defs.to_string(), &lines, &Plan::simple(2, 1, 1), clamp, Some(2000));
    assert_eq!(out.stats.engine.late_clamped, 1);
    // Clamped to 500, the late event still leaves its window at its own 100 + 1000.
    let v: Vec<(String, isize, u64)> =
        out.changes.iter().filter(|c| c.user == "v").map(|c| (c.user.clone(), c.diff, c.time)).collect();
    assert_eq!(v, vec![("v".to_string(), 1, 500), ("v".to_string(), -1, 1100)]);
}

#[test]
fn anonymous_page_and_screen_events_count() {
    let defs = json!([{"id": "pages", "condition": {"performed": {"event": "page", "where": [{"property": "name", "op": "eq", "value": "Home"}]}}},
                      {"id": "screens", "condition": {"performed": {"event": "screen"}}}]);
    let lines = vec![
        json!({"type": "page", "anonymousId": "anon", "messageId": "1", "timestamp": 5, "name": "Home"}).to_string(),
        json!({"type": "screen", "anonymousId": "anon", "messageId": "2", "timestamp": 6}).to_string(),
    ];
    let mut got = changes(defs, &lines, None);
    got.sort();
    assert_eq!(got, vec![ch("pages", "anon", 1, 5), ch("screens", "anon", 1, 6)]);
}
