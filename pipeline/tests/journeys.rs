//! Hand-checked journey scenarios: each expected transition and action below is worked out
//! from the documented rules, not copied from a run. Every scenario runs with one worker and
//! with two (events dealt round-robin, small batches), which must agree.

mod common;

use common::scenario::{act, acts, identify, instant, moves, mv, run, track, Move, D, H, M, T0};
use common::{ingest, run_deleting, Plan};
use journeyflow::replay::RunOutput;
use journeyflow_operators::journey::record::Command;
use serde_json::{json, Value as J};

fn abandoned_cart() -> J {
    json!([{"id": "cart", "entry": {"event": "Cart Viewed"}, "start": "wait", "nodes": {
        "wait": {"wait_until": {"event": "Order Completed", "timeout": "1h", "on_event": "done", "on_timeout": "mail"}},
        "mail": {"action": {"channel": "email", "template": "cart_reminder"}, "next": "done"},
        "done": {"exit": {}}}}])
}

#[test]
fn abandoned_cart_reminds_only_those_who_did_not_order_within_the_hour() {
    let lines = vec![
        track("ann", "Cart Viewed", T0, "a1"),
        track("ann", "Order Completed", T0 + 30 * M, "a2"),
        track("bob", "Cart Viewed", T0 + M, "b1"),
        // Exactly at the timeout is too late: the timer fires first.
        track("cat", "Cart Viewed", T0 + 2 * M, "c1"),
        track("cat", "Order Completed", T0 + 2 * M + H, "c2"),
        // Keeps the watermark moving past every timer.
        track("zed", "Page Viewed", T0 + 3 * H, "z1"),
    ];
    let out = run("[]", abandoned_cart(), &[], &lines);
    assert_eq!(
        moves(&out),
        vec![
            mv("ann", None, Some("wait"), T0, "entry"),
            mv("bob", None, Some("wait"), T0 + M, "entry"),
            mv("cat", None, Some("wait"), T0 + 2 * M, "entry"),
            mv("ann", Some("wait"), Some("done"), T0 + 30 * M, "event"),
            mv("bob", Some("wait"), Some("mail"), T0 + M + H, "timeout"),
            mv("bob", Some("mail"), Some("done"), T0 + M + H, "next"),
            mv("cat", Some("wait"), Some("mail"), T0 + 2 * M + H, "timeout"),
            mv("cat", Some("mail"), Some("done"), T0 + 2 * M + H, "next"),
        ]
    );
    assert_eq!(acts(&out), vec![act("bob", "mail", T0 + M + H, "sent"), act("cat", "mail", T0 + 2 * M + H, "sent")]);
    let a = &out.actions[0];
    assert_eq!((&*a.channel, a.template.as_deref()), ("email", Some("cart_reminder")));
    assert_eq!(a.action_id.len(), 32);
    assert_ne!(out.actions[0].action_id, out.actions[1].action_id);
    let stats = &out.journey_stats[0];
    assert_eq!((stats.entered, stats.in_progress, stats.completed), (3, 0, 3));
    assert_eq!((stats.nodes["mail"].entered, stats.nodes["done"].current), (2, 3));
}

#[test]
fn win_back_enters_when_a_buyer_lapses_and_converts_on_a_new_order() {
    let segments = r#"[{"id": "lapsed", "condition": {"all": [{"performed": {"event": "Order Completed"}},
        {"not": {"performed": {"event": "Order Completed", "within": "30d"}}}]}}]"#;
    let journeys = json!([{"id": "win_back", "entry": {"segment_enter": "lapsed"}, "goal": {"event": "Order Completed"},
        "start": "email", "nodes": {
            "email": {"action": {"channel": "email", "template": "we_miss_you"}, "next": "wait"},
            "wait": {"wait": {"duration": "3d"}, "next": "sms"},
            "sms": {"action": {"channel": "sms"}, "next": "done"},
            "done": {"exit": {}}}}]);
    let lines = vec![
        track("ann", "Order Completed", T0, "a1"),
        track("bob", "Order Completed", T0 + H, "b1"),
        // Bob buys again a day after lapsing: converted from the wait.
        track("bob", "Order Completed", T0 + H + 31 * D, "b2"),
        track("zed", "Page Viewed", T0 + 40 * D, "z1"),
    ];
    let out = run(segments, journeys, &[], &lines);
    // The segment is entered the moment the 30-day window passes: T0 + 30d.
    assert_eq!(
        moves(&out),
        vec![
            mv("ann", None, Some("email"), T0 + 30 * D, "entry"),
            mv("ann", Some("email"), Some("wait"), T0 + 30 * D, "next"),
            mv("bob", None, Some("email"), T0 + H + 30 * D, "entry"),
            mv("bob", Some("email"), Some("wait"), T0 + H + 30 * D, "next"),
            mv("bob", Some("wait"), None, T0 + H + 31 * D, "goal"),
            mv("ann", Some("wait"), Some("sms"), T0 + 33 * D, "next"),
            mv("ann", Some("sms"), Some("done"), T0 + 33 * D, "next"),
        ]
    );
    assert_eq!(
        acts(&out),
        vec![
            act("ann", "email", T0 + 30 * D, "sent"),
            act("bob", "email", T0 + H + 30 * D, "sent"),
            act("ann", "sms", T0 + 33 * D, "sent")
        ]
    );
    let s = &out.journey_stats[0];
    assert_eq!((s.entered, s.converted, s.completed, s.in_progress), (2, 1, 1, 0));
}

#[test]
fn a_fifty_fifty_split_shares_ten_thousand_users_evenly() {
    let journeys = json!([{"id": "ab", "entry": {"event": "Signed Up"}, "start": "split", "nodes": {
        "split": {"split": {"branches": [{"percent": 50, "next": "a"}, {"percent": 50, "next": "b"}]}},
        "a": {"exit": {}}, "b": {"exit": {}}}}]);
    let lines: Vec<String> =
        (0..10_000).map(|i| track(&format!("user{i}"), "Signed Up", T0 + i, &format!("m{i}"))).collect();
    let out = run("[]", journeys, &[], &lines);
    let to_a = out.transitions.iter().filter(|t| t.to.as_deref() == Some("a")).count();
    let to_b = out.transitions.iter().filter(|t| t.to.as_deref() == Some("b")).count();
    assert_eq!(to_a + to_b, 10_000);
    assert!((4_700..=5_300).contains(&to_a), "{to_a} of 10000 went to a");
    // The reason names the share taken.
    assert!(out.transitions.iter().filter(|t| t.to.as_deref() == Some("a")).all(|t| t.reason.to_string() == "split:0"));
}

#[test]
fn quiet_hours_hold_an_action_overnight_and_the_user_waits_with_it() {
    let journeys = json!([{"id": "qh", "entry": {"event": "Cart Viewed"}, "start": "push",
        "quiet_hours": {"start": "22:00", "end": "08:00"}, "nodes": {
            "push": {"action": {"channel": "push", "payload": {"title": "Still there?"}}, "next": "done"},
            "done": {"exit": {}}}}]);
    let lines = vec![
        // 23:00 UTC: inside quiet hours, held until 08:00 the next morning.
        track("ann", "Cart Viewed", T0 + 23 * H, "a1"),
        // 12:00 UTC: outside, sent at once.
        track("bob", "Cart Viewed", T0 + 12 * H, "b1"),
        track("zed", "Page Viewed", T0 + 2 * D, "z1"),
    ];
    let out = run("[]", journeys, &[], &lines);
    let release = T0 + D + 8 * H;
    assert_eq!(
        acts(&out),
        vec![
            act("bob", "push", T0 + 12 * H, "sent"),
            act("ann", "push", T0 + 23 * H, "held_quiet_hours"),
            act("ann", "push", release, "sent"),
        ]
    );
    // The held record and the sending share the action id; the payload is passed through.
    assert_eq!(out.actions[1].action_id, out.actions[2].action_id);
    assert_eq!(out.actions[2].payload.as_deref(), Some(&json!({"title": "Still there?"})));
    assert!(moves(&out).contains(&mv("ann", Some("push"), Some("done"), release, "next")));
}

#[test]
fn quiet_hours_follow_the_time_zone() {
    let journeys = json!([{"id": "qh", "entry": {"event": "X"}, "start": "sms",
        "quiet_hours": {"start": "21:00", "end": "09:00", "tz": "America/New_York"}, "nodes": {
            "sms": {"action": {"channel": "sms"}, "next": "done"}, "done": {"exit": {}}}}]);
    // 03:00 UTC on 1 January is 22:00 in New York (EST, UTC-5): held until 09:00 EST = 14:00 UTC.
    let lines = vec![track("ann", "X", T0 + 3 * H, "a1"), track("zed", "Y", T0 + D, "z1")];
    let out = run("[]", journeys, &[], &lines);
    assert_eq!(
        acts(&out),
        vec![act("ann", "sms", T0 + 3 * H, "held_quiet_hours"), act("ann", "sms", T0 + 14 * H, "sent")]
    );
}

#[test]
fn a_frequency_cap_of_two_suppresses_the_third_action() {
    let journeys = json!([{"id": "cap", "entry": {"event": "X"}, "start": "one",
        "frequency_cap": {"max_actions": 2, "per": "1d"}, "nodes": {
            "one": {"action": {"channel": "email"}, "next": "two"},
            "two": {"action": {"channel": "sms"}, "next": "three"},
            "three": {"action": {"channel": "push"}, "next": "wait"},
            "wait": {"wait": {"duration": "1d"}, "next": "four"},
            "four": {"action": {"channel": "push"}, "next": "done"},
            "done": {"exit": {}}}}]);
    let lines = vec![track("ann", "X", T0, "a1"), track("zed", "Y", T0 + 2 * D, "z1")];
    let out = run("[]", journeys, &[], &lines);
    // A day later the first two have left the window (`per` is half-open): sent again.
    assert_eq!(
        acts(&out),
        vec![
            act("ann", "one", T0, "sent"),
            act("ann", "two", T0, "sent"),
            act("ann", "three", T0, "suppressed_by_cap"),
            act("ann", "four", T0 + D, "sent"),
        ]
    );
    // Suppressed or not, the user moves on.
    assert!(moves(&out).contains(&mv("ann", Some("three"), Some("wait"), T0, "next")));
    assert_eq!(out.journey_stats[0].nodes["three"].actions["suppressed_by_cap"], 1);
}

fn waiting_journey(re_entry: J) -> J {
    json!([{"id": "re", "entry": {"event": "X"}, "re_entry": re_entry, "start": "w", "nodes": {
        "w": {"wait": {"duration": "1h"}, "next": "done"}, "done": {"exit": {}}}}])
}

fn entries(out: &RunOutput) -> Vec<(Option<String>, u64)> {
    out.transitions
        .iter()
        .filter(|t| t.reason.to_string() == "entry")
        .map(|t| (t.from.as_deref().map(String::from), t.time))
        .collect()
}

#[test]
fn re_entry_modes() {
    // X at 0, 30m (inside), 2h, 2h10m, 5h (each after an exit except the second and fourth).
    let lines: Vec<String> = [0, 30 * M, 2 * H, 2 * H + 10 * M, 5 * H, 8 * H]
        .iter()
        .enumerate()
        .map(|(i, t)| track("ann", if i == 5 { "Y" } else { "X" }, T0 + t, &format!("m{i}")))
        .collect();
    let once = run("[]", waiting_journey(json!({"mode": "once"})), &[], &lines);
    assert_eq!(entries(&once), vec![(None, T0)]);
    let after_exit = run("[]", waiting_journey(json!({"mode": "after_exit"})), &[], &lines);
    assert_eq!(entries(&after_exit), vec![(None, T0), (None, T0 + 2 * H), (None, T0 + 5 * H)]);
    let capped = run("[]", waiting_journey(json!({"mode": "after_exit", "max_times": 2})), &[], &lines);
    assert_eq!(entries(&capped), vec![(None, T0), (None, T0 + 2 * H)]);
    // A cooldown of 3h between entries skips the one at 2h.
    let cooled = run("[]", waiting_journey(json!({"mode": "after_exit", "cooldown": "3h"})), &[], &lines);
    assert_eq!(entries(&cooled), vec![(None, T0), (None, T0 + 5 * H)]);
    // Always: a user inside restarts at the start node.
    let always = run("[]", waiting_journey(json!({"mode": "always"})), &[], &lines);
    assert_eq!(
        entries(&always),
        vec![
            (None, T0),
            (Some("w".into()), T0 + 30 * M),
            (None, T0 + 2 * H),
            (Some("w".into()), T0 + 2 * H + 10 * M),
            (None, T0 + 5 * H)
        ]
    );
    assert_eq!(always.journey_stats[0].entered, 5);
    // The restart dropped the first timer: the exit after it comes an hour after the restart.
    assert!(moves(&always).contains(&mv("ann", Some("w"), Some("done"), T0 + 90 * M, "next")));
    assert!(!moves(&always).iter().any(|m| m.3 == T0 + H));
}

#[test]
fn pause_holds_timers_and_movement_and_resume_fires_what_came_due() {
    let journeys = json!([{"id": "p", "entry": {"event": "X"}, "goal": {"event": "G"}, "start": "w", "nodes": {
        "w": {"wait": {"duration": "1h"}, "next": "done"}, "done": {"exit": {}}}}]);
    let lines = vec![
        track("dan", "X", T0, "d1"),
        track("ann", "X", T0 + 30 * M, "a1"),
        // While paused (40m to 70m): no entry for cat, no conversion for ann.
        track("cat", "X", T0 + 50 * M, "c1"),
        track("ann", "G", T0 + 55 * M, "a2"),
        track("bob", "X", T0 + 80 * M, "b1"),
        track("zed", "Y", T0 + 5 * H, "z1"),
    ];
    let commands = [(T0 + 40 * M, 0, Command::Pause), (T0 + 70 * M, 0, Command::Resume)];
    let out = run("[]", journeys, &commands, &lines);
    assert_eq!(
        moves(&out),
        vec![
            mv("dan", None, Some("w"), T0, "entry"),
            mv("ann", None, Some("w"), T0 + 30 * M, "entry"),
            // Dan's timer came due at 60m, during the pause: it fires at the resume.
            mv("dan", Some("w"), Some("done"), T0 + 70 * M, "next"),
            mv("bob", None, Some("w"), T0 + 80 * M, "entry"),
            // Ann kept her timer through the pause: it fires at its own time.
            mv("ann", Some("w"), Some("done"), T0 + 90 * M, "next"),
            mv("bob", Some("w"), Some("done"), T0 + 140 * M, "next"),
        ]
    );
    assert_eq!(out.journey_stats[0].converted, 0);
}

#[test]
fn end_cancels_users_still_inside_and_admits_nobody_after() {
    let journeys = json!([{"id": "e", "entry": {"event": "X"}, "start": "w", "nodes": {
        "w": {"wait_until": {"event": "Y", "timeout": "1d", "on_event": "done", "on_timeout": "done"}}, "done": {"exit": {}}}}]);
    let lines = vec![
        track("ann", "X", T0, "a1"),
        track("bob", "X", T0 + M, "b1"),
        track("bob", "Y", T0 + 2 * M, "b2"),
        track("cat", "X", T0 + 2 * H, "c1"),
        track("zed", "Z", T0 + 2 * D, "z1"),
    ];
    let out = run("[]", journeys, &[(T0 + H, 0, Command::End)], &lines);
    assert_eq!(
        moves(&out),
        vec![
            mv("ann", None, Some("w"), T0, "entry"),
            mv("bob", None, Some("w"), T0 + M, "entry"),
            mv("bob", Some("w"), Some("done"), T0 + 2 * M, "event"),
            mv("ann", Some("w"), None, T0 + H, "ended"),
        ]
    );
    let s = &out.journey_stats[0];
    assert_eq!((s.entered, s.canceled, s.completed, s.in_progress), (2, 1, 1, 0));
}

#[test]
fn a_schedule_bounds_entries_and_its_end_cancels() {
    let journeys = json!([{"id": "s", "entry": {"event": "X"}, "re_entry": {"mode": "always"}, "start": "w",
        "schedule": {"start_at": "2024-01-01T01:00:00Z", "end_at": T0 + 3 * H}, "nodes": {
            "w": {"wait": {"duration": "1d"}, "next": "done"}, "done": {"exit": {}}}}]);
    let lines = vec![
        track("ann", "X", T0 + 30 * M, "a1"),
        track("bob", "X", T0 + H, "b1"),
        track("cat", "X", T0 + 3 * H, "c1"),
        track("zed", "Z", T0 + 2 * D, "z1"),
    ];
    let out = run("[]", journeys, &[], &lines);
    assert_eq!(
        moves(&out),
        vec![mv("bob", None, Some("w"), T0 + H, "entry"), mv("bob", Some("w"), None, T0 + 3 * H, "ended")]
    );
}

#[test]
fn goal_converts_from_a_waiting_node_and_exit_when_takes_users_out() {
    let segments = r#"[{"id": "unsubscribed", "condition": {"performed": {"event": "Unsubscribed"}}}]"#;
    let journeys = json!([{"id": "g", "entry": {"event": "X"}, "goal": {"event": "Order Completed", "where": [{"property": "revenue", "op": "gt", "value": 10}]},
        "exit_when": {"in_segment": "unsubscribed"}, "start": "w", "nodes": {
            "w": {"wait_until": {"event": "Never", "timeout": "7d", "on_event": "done", "on_timeout": "done"}}, "done": {"exit": {}}}}]);
    let order = |user: &str, revenue: f64, ts: u64, id: &str| {
        json!({"type": "track", "event": "Order Completed", "userId": user, "messageId": id, "timestamp": ts, "properties": {"revenue": revenue}}).to_string()
    };
    let lines = vec![
        track("ann", "X", T0, "a1"),
        order("ann", 5.0, T0 + H, "a2"),
        order("ann", 25.0, T0 + 2 * H, "a3"),
        track("bob", "X", T0, "b1"),
        track("bob", "Unsubscribed", T0 + 3 * H, "b2"),
        // Cat is unsubscribed already: not let in.
        track("cat", "Unsubscribed", T0, "c1"),
        track("cat", "X", T0 + H, "c2"),
        track("zed", "Z", T0 + 10 * D, "z1"),
    ];
    let out = run(segments, journeys, &[], &lines);
    assert_eq!(
        moves(&out),
        vec![
            mv("ann", None, Some("w"), T0, "entry"),
            mv("bob", None, Some("w"), T0, "entry"),
            mv("ann", Some("w"), None, T0 + 2 * H, "goal"),
            mv("bob", Some("w"), None, T0 + 3 * H, "exit_when"),
        ]
    );
    let s = &out.journey_stats[0];
    assert_eq!((s.entered, s.converted, s.exited, s.in_progress), (2, 1, 1, 0));
}

#[test]
fn branches_take_the_first_case_that_holds_at_the_branch_time() {
    let segments = r#"[{"id": "pro", "condition": {"trait": {"name": "plan", "op": "eq", "value": "pro"}}}]"#;
    let journeys = json!([{"id": "b", "entry": {"event": "X"}, "start": "w", "nodes": {
        "w": {"wait": {"duration": "1h"}, "next": "check"},
        "check": {"branch": {"cases": [{"when": {"in_segment": "pro"}, "next": "pro_mail"},
                                        {"when": {"performed": {"event": "Y", "within": "30m"}}, "next": "y_mail"}], "else": "done"}},
        "pro_mail": {"action": {"channel": "email", "template": "pro"}, "next": "done"},
        "y_mail": {"action": {"channel": "email", "template": "y"}, "next": "done"},
        "done": {"exit": {}}}}]);
    let identify = |user: &str, plan: &str, ts: u64, id: &str| {
        json!({"type": "identify", "userId": user, "messageId": id, "timestamp": ts, "traits": {"plan": plan}})
            .to_string()
    };
    let lines = vec![
        // Ann becomes pro while waiting: case 0 at the branch time.
        track("ann", "X", T0, "a1"),
        identify("ann", "pro", T0 + 20 * M, "a2"),
        // Bob did Y 40 minutes before the branch: outside the 30-minute window, so else.
        track("bob", "X", T0, "b1"),
        track("bob", "Y", T0 + 20 * M, "b2"),
        // Cat did Y 10 minutes before: case 1.
        track("cat", "X", T0, "c1"),
        track("cat", "Y", T0 + 50 * M, "c2"),
        track("zed", "Z", T0 + D, "z1"),
    ];
    let out = run(segments, journeys, &[], &lines);
    let branch: Vec<_> = moves(&out).into_iter().filter(|m| m.1.as_deref() == Some("check")).collect();
    assert_eq!(
        branch,
        vec![
            mv("ann", Some("check"), Some("pro_mail"), T0 + H, "case:0"),
            mv("bob", Some("check"), Some("done"), T0 + H, "else"),
            mv("cat", Some("check"), Some("y_mail"), T0 + H, "case:1"),
        ]
    );
}

#[test]
fn a_deleted_user_is_canceled_loses_a_held_action_and_comes_back_as_new() {
    let journeys = json!([{"id": "qh", "entry": {"event": "Cart Viewed"}, "start": "wait",
        "re_entry": {"mode": "once"},
        "quiet_hours": {"start": "22:00", "end": "08:00"}, "nodes": {
            "wait": {"wait": {"duration": "1h"}, "next": "push"},
            "push": {"action": {"channel": "push"}, "next": "done"},
            "done": {"exit": {}}}}]);
    let lines = vec![
        // Both wait an hour, reach the push at 23:00 (quiet hours) and are held until 08:00.
        track("ann", "Cart Viewed", T0 + 22 * H, "a1"),
        track("bob", "Cart Viewed", T0 + 22 * H, "b1"),
        // After ann's deletion: a new ann, whom "once" lets in.
        track("ann", "Cart Viewed", T0 + D + 12 * H, "a2"),
        track("zed", "Page Viewed", T0 + 3 * D, "z1"),
    ];
    let deleted = T0 + D + 2 * H;
    let deletions = [(deleted, "ann".to_string())];
    let text = journeys.to_string();
    let lateness = ingest(Some(D), D);
    let runs: Vec<RunOutput> = [(1, 3), (2, 2)]
        .into_iter()
        .map(|(workers, batch)| {
            let plan = Plan::simple(lines.len(), workers, batch);
            run_deleting("[]", &text, &[], &deletions, &lines, &plan, lateness, None)
        })
        .collect();
    assert_eq!(runs[0].transitions, runs[1].transitions, "1 and 2 workers disagree");
    assert_eq!(runs[0].actions, runs[1].actions, "1 and 2 workers disagree");
    let out = &runs[0];
    let release = T0 + D + 8 * H;
    assert_eq!(
        acts(out),
        vec![
            act("ann", "push", T0 + 23 * H, "held_quiet_hours"),
            act("bob", "push", T0 + 23 * H, "held_quiet_hours"),
            act("bob", "push", release, "sent"),
            act("ann", "push", T0 + D + 13 * H, "sent"),
        ]
    );
    let ann: Vec<Move> = moves(out).into_iter().filter(|m| m.0 == "ann").collect();
    assert_eq!(
        ann,
        vec![
            mv("ann", None, Some("wait"), T0 + 22 * H, "entry"),
            mv("ann", Some("wait"), Some("push"), T0 + 23 * H, "next"),
            mv("ann", Some("push"), None, deleted, "deleted"),
            mv("ann", None, Some("wait"), T0 + D + 12 * H, "entry"),
            mv("ann", Some("wait"), Some("push"), T0 + D + 13 * H, "next"),
            mv("ann", Some("push"), Some("done"), T0 + D + 13 * H, "next"),
        ]
    );
    // Canceled in the report, as a user inside when the journey ends is.
    assert_eq!(out.journey_stats[0].canceled, 1);
}

#[test]
fn a_daily_campaign_at_nine_in_paris_keeps_nine_across_the_change_to_summer_time() {
    let segments = r#"[{"id": "pro", "condition": {"trait": {"name": "plan", "op": "eq", "value": "pro"}}}]"#;
    let journeys = json!([{"id": "daily", "re_entry": {"mode": "always"}, "start": "a",
        "entry": {"segment": "pro", "every": "1d", "at": "09:00", "tz": "Europe/Paris",
                  "starting": "2025-03-28T00:00:00Z", "until": "2025-04-01T00:00:00Z"},
        "nodes": {"a": {"exit": {}}}}]);
    // Ann is pro from 27 March; Bob from 09:30 in Paris on 30 March (07:30 UTC, summer time
    // since 02:00 that night), after that day's campaign; Cid stops being pro on the 29th at
    // noon. Zed's event moves time past the end.
    let lines = vec![
        identify("ann", "pro", instant("2025-03-27T12:00:00Z"), "a1"),
        identify("cid", "pro", instant("2025-03-27T12:00:00Z"), "c1"),
        identify("cid", "free", instant("2025-03-29T11:00:00Z"), "c2"),
        identify("bob", "pro", instant("2025-03-30T07:30:00Z"), "b1"),
        track("zed", "Y", instant("2025-04-03T00:00:00Z"), "z1"),
    ];
    let out = run(segments, journeys, &[], &lines);
    // 09:00 in Paris: 08:00 UTC in winter time (28, 29 March), 07:00 UTC in summer time.
    let (d28, d29, d30, d31) = (
        instant("2025-03-28T08:00:00Z"),
        instant("2025-03-29T08:00:00Z"),
        instant("2025-03-30T07:00:00Z"),
        instant("2025-03-31T07:00:00Z"),
    );
    let entered = |user, t| mv(user, None, Some("a"), t, "scheduled");
    assert_eq!(
        moves(&out),
        vec![
            entered("ann", d28),
            entered("cid", d28),
            entered("ann", d29),
            entered("cid", d29),
            entered("ann", d30),
            entered("ann", d31),
            entered("bob", d31),
        ]
    );
    assert_eq!(out.journey_stats[0].entered, 7);
}

#[test]
fn a_one_time_campaign_admits_the_members_then_and_a_pause_skips_an_occurrence() {
    let segments = r#"[{"id": "pro", "condition": {"trait": {"name": "plan", "op": "eq", "value": "pro"}}}]"#;
    let journeys = json!([
        {"id": "once", "start": "a", "entry": {"segment": "pro", "at": T0 + 2 * H}, "nodes": {"a": {"exit": {}}}},
        {"id": "daily", "start": "a", "re_entry": {"mode": "always"},
         "entry": {"segment": "pro", "every": "1d", "at": "06:00"}, "nodes": {"a": {"exit": {}}}}]);
    let lines = vec![
        identify("ann", "pro", T0 + H, "a1"),
        identify("bob", "pro", T0 + 3 * H, "b1"),
        track("zed", "Y", T0 + 3 * D, "z1"),
    ];
    // The daily one is paused over the second day's 06:00 and resumed after it.
    let commands = [(T0 + D, 1, Command::Pause), (T0 + D + 12 * H, 1, Command::Resume)];
    let out = run(segments, journeys, &commands, &lines);
    let entered = |user, t| mv(user, None, Some("a"), t, "scheduled");
    // Bob became pro after the one-time campaign: he is in the daily ones only.
    assert_eq!(
        moves(&out),
        vec![
            entered("ann", T0 + 2 * H),
            entered("ann", T0 + 6 * H),
            entered("bob", T0 + 6 * H),
            entered("ann", T0 + 2 * D + 6 * H),
            entered("bob", T0 + 2 * D + 6 * H),
        ]
    );
}

#[test]
fn a_wait_until_nine_in_paris_lands_on_nine_across_both_daylight_saving_changes() {
    let journeys = json!([{"id": "nine", "entry": {"event": "X"}, "start": "wait", "re_entry": {"mode": "always"},
        "nodes": {"wait": {"wait_until_time": {"at": "09:00", "tz": "Europe/Paris"}, "next": "mail"},
                  "mail": {"action": {"channel": "email"}, "next": "done"}, "done": {"exit": {}}}}]);
    let (ann, bob, cid) = (
        instant("2025-03-29T20:00:00Z"), // 21:00 in winter time: to 09:00 summer time (07:00 UTC)
        instant("2025-03-30T07:00:00Z"), // exactly 09:00: the next one, a day later
        instant("2025-10-25T22:00:00Z"), // midnight in summer time: to 09:00 winter time (08:00 UTC)
    );
    let lines = vec![
        track("ann", "X", ann, "a1"),
        track("bob", "X", bob, "b1"),
        track("cid", "X", cid, "c1"),
        track("zed", "Y", instant("2025-10-28T00:00:00Z"), "z1"),
    ];
    let out = run("[]", journeys, &[], &lines);
    assert_eq!(
        acts(&out),
        vec![
            act("ann", "mail", instant("2025-03-30T07:00:00Z"), "sent"),
            act("bob", "mail", instant("2025-03-31T07:00:00Z"), "sent"),
            act("cid", "mail", instant("2025-10-26T08:00:00Z"), "sent"),
        ]
    );
    assert!(moves(&out).contains(&mv("ann", Some("wait"), Some("mail"), instant("2025-03-30T07:00:00Z"), "next")));
}

#[test]
fn a_resume_applies_the_exit_rule_with_the_condition_changes_at_its_time() {
    let segments = r#"[{"id": "free", "condition": {"trait": {"name": "plan", "op": "eq", "value": "free"}}}]"#;
    let journeys = json!([{"id": "j", "entry": {"event": "X"}, "start": "wait",
        "exit_when": {"in_segment": "free"},
        "nodes": {"wait": {"wait": {"duration": "1d"}, "next": "done"}, "done": {"exit": {}}}}]);
    // Ann and Bob enter; while the journey is paused both turn free (the exit rule holds), and
    // at the very time of the resume Ann turns pro again: only Bob leaves then.
    let lines = vec![
        track("ann", "X", T0, "a1"),
        track("bob", "X", T0, "b1"),
        identify("ann", "free", T0 + H, "a2"),
        identify("bob", "free", T0 + H, "b2"),
        identify("ann", "pro", T0 + 2 * H, "a3"),
        track("zed", "Y", T0 + 2 * D, "z1"),
    ];
    let commands = [(T0 + 30 * M, 0, Command::Pause), (T0 + 2 * H, 0, Command::Resume)];
    let out = run(segments, journeys, &commands, &lines);
    assert_eq!(
        moves(&out),
        vec![
            mv("ann", None, Some("wait"), T0, "entry"),
            mv("bob", None, Some("wait"), T0, "entry"),
            mv("bob", Some("wait"), None, T0 + 2 * H, "exit_when"),
            mv("ann", Some("wait"), Some("done"), T0 + D, "next"),
        ]
    );
}
