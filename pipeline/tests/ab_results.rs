//! Hand-checked conversion value and A/B results: a 50/50 split whose users order within the
//! hour or not; each branch's users, conversions and revenue, the journey's and each node's
//! converted value, worked out from the documented split rule and summed exactly. Runs on one
//! and on two workers, which must agree.

mod common;

use common::scenario::{run, track, H, M, T0};
use journeyflow_types::journey::split_point;
use journeyflow_types::Key;
use serde_json::json;

#[test]
fn a_split_reports_each_branch_side_by_side_with_its_conversions_and_revenue() {
    let journeys = json!([{"id": "ab", "entry": {"event": "Visit"}, "start": "split",
        "goal": {"event": "Order Completed", "value": "revenue"},
        "nodes": {
            "split": {"split": {"branches": [{"percent": 50, "next": "a"}, {"percent": 50, "next": "b"}]}},
            "a": {"wait": {"duration": "1h"}, "next": "done"},
            "b": {"wait": {"duration": "1h"}, "next": "done"},
            "done": {"exit": {}}}}]);
    let mut lines = Vec::new();
    // (entered, converted, revenue in cents) per branch, worked out here.
    let mut want = [(0i64, 0i64, 0i64); 2];
    for i in 0..40u64 {
        let user = format!("u{i}");
        lines.push(track(&user, "Visit", T0 + i * M, &format!("v{i}")));
        let branch = usize::from(split_point("ab", "split", Key::of(&user)) >= 5_000);
        want[branch].0 += 1;
        // Every third orders within the hour, for 12.25 + i; every fifth orders too late.
        if i % 3 == 0 {
            let cents = 1225 + 100 * i as i64;
            let order = json!({"type": "track", "event": "Order Completed", "userId": user, "messageId": format!("o{i}"),
                "timestamp": T0 + i * M + 30 * M, "properties": {"revenue": cents as f64 / 100.0}});
            lines.push(order.to_string());
            want[branch].1 += 1;
            want[branch].2 += cents;
        } else if i % 5 == 0 {
            lines.push(track(&user, "Order Completed", T0 + i * M + 2 * H, &format!("o{i}")));
        }
    }
    lines.sort_by_key(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["timestamp"].as_u64().unwrap());
    let out = run("[]", journeys, &[], &lines);
    let report = serde_json::to_value(&out.journey_stats[0]).unwrap();
    let branches = report["splits"]["split"].as_array().unwrap();
    assert_eq!(branches.len(), 2);
    assert!(want[0].0 > 5 && want[1].0 > 5, "both branches have users: {want:?}");
    for (b, (entered, converted, cents)) in branches.iter().zip(want) {
        assert_eq!((b["entered"].as_i64(), b["converted"].as_i64()), (Some(entered), Some(converted)), "{b}");
        assert_eq!(b["converted_value"], json!(cents as f64 / 100.0), "{b}");
        assert_eq!(b["conversion_rate"], json!(converted as f64 / entered as f64), "{b}");
        let (lo, hi) = (b["interval_95"][0].as_f64().unwrap(), b["interval_95"][1].as_f64().unwrap());
        let rate = converted as f64 / entered as f64;
        assert!(lo < rate && rate < hi && hi - lo < 0.6, "{b}");
    }
    assert_eq!((branches[0]["next"].as_str(), branches[1]["next"].as_str()), (Some("a"), Some("b")));
    // The journey and each waiting node: conversions there and their worth.
    let cents: i64 = want.iter().map(|w| w.2).sum();
    assert_eq!(report["converted"], want[0].1 + want[1].1);
    assert_eq!(report["converted_value"], json!(cents as f64 / 100.0));
    for (node, w) in [("a", want[0]), ("b", want[1])] {
        assert_eq!(report["nodes"][node]["converted"], w.1, "{node}");
        assert_eq!(report["nodes"][node]["converted_value"], json!(w.2 as f64 / 100.0), "{node}");
    }
    // Late orders count for nothing: the users had left.
    assert_eq!(report["completed"], 40 - (want[0].1 + want[1].1));
}
