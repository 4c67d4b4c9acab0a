//! Hand-checked journey quotas: a quota over all users decides which actions pass in the
//! documented order `(time, action_id)`, so users on two workers hitting it at the same
//! millisecond get the same answer as on one; it counts its channel only, over a trailing
//! window. Each scenario runs on one and on two workers, which must agree.

mod common;

use common::scenario::{act, acts, run, track, M, T0};
use journeyflow_types::journey::action_id;
use journeyflow_types::Key;
use serde_json::json;

#[test]
fn a_quota_hit_by_two_workers_at_the_same_millisecond_lets_the_lowest_action_ids_pass() {
    let journeys = json!([{"id": "flash", "entry": {"event": "Go"}, "start": "sms",
        "quota": {"max_actions": 2, "per": "1h", "channel": "sms"},
        "nodes": {
            "sms": {"action": {"channel": "sms", "template": "flash"}, "next": "mail"},
            "mail": {"action": {"channel": "email", "template": "flash"}, "next": "done"},
            "done": {"exit": {}}}}]);
    let at = T0 + 10 * M;
    let users = ["u1", "u2", "u3", "u4"];
    let mut lines: Vec<String> = users.iter().enumerate().map(|(i, u)| track(u, "Go", at, &format!("g{i}"))).collect();
    // Within the hour of the first four: over the quota. After it: sent.
    lines.push(track("u5", "Go", T0 + 30 * M, "g5"));
    lines.push(track("u6", "Go", T0 + 71 * M, "g6"));
    let out = run("[]", journeys, &[], &lines);
    // Of the four at one millisecond, the two with the lowest action ids pass.
    let mut order: Vec<(String, &str)> =
        users.iter().map(|u| (action_id("flash", 1, Key::of(u), "sms", at), *u)).collect();
    order.sort();
    let passing: Vec<&str> = order[..2].iter().map(|(_, u)| *u).collect();
    let mut expected = Vec::new();
    for u in users {
        let status = if passing.contains(&u) { "sent" } else { "suppressed_by_quota" };
        expected.push(act(u, "sms", at, status));
        // Email is not counted: every one is sent.
        expected.push(act(u, "mail", at, "sent"));
    }
    expected.push(act("u5", "sms", T0 + 30 * M, "suppressed_by_quota"));
    expected.push(act("u5", "mail", T0 + 30 * M, "sent"));
    // 71 minutes: the sends of minute 10 are out of the trailing hour.
    expected.push(act("u6", "sms", T0 + 71 * M, "sent"));
    expected.push(act("u6", "mail", T0 + 71 * M, "sent"));
    assert_eq!(acts(&out), expected);
    let sms = &out.journey_stats[0].nodes["sms"];
    assert_eq!((sms.actions.get("sent"), sms.actions.get("suppressed_by_quota")), (Some(&3), Some(&3)));
    // Suppressed users move on as sent ones do.
    assert_eq!(out.journey_stats[0].completed, 6);
}

#[test]
fn a_quota_without_a_window_counts_every_send_of_the_journey() {
    let journeys = json!([{"id": "once", "entry": {"event": "Go"}, "start": "mail",
        "re_entry": {"mode": "always"}, "quota": {"max_actions": 3},
        "nodes": {"mail": {"action": {"channel": "email"}, "next": "done"}, "done": {"exit": {}}}}]);
    let lines: Vec<String> = (0..5).map(|i| track("ann", "Go", T0 + i * 24 * 60 * M, &format!("g{i}"))).collect();
    let out = run("[]", journeys, &[], &lines);
    let statuses: Vec<String> = acts(&out).into_iter().map(|a| a.3).collect();
    assert_eq!(statuses, ["sent", "sent", "sent", "suppressed_by_quota", "suppressed_by_quota"]);
}
