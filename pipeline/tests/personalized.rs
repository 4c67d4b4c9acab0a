//! Hand-checked scenarios of what journeys read from users: action payloads rendered from
//! traits and the entry's event at the action's time, entries from outside with their
//! context, actions that fail for missing data,
//! waits until a local time in each user's own time zone (across a daylight-saving change),
//! and waits until a time a trait holds. Each expectation is worked out from the documented
//! rules; each runs on one and on two workers, which must agree.

mod common;

use common::scenario::{act, acts, instant, moves, mv, run, run_with_entries, track, D, H, M, T0};
use journeyflow::replay::JourneyEntries;
use journeyflow_operators::journey::record::Command;
use serde_json::{json, Value as J};

fn identify(user: &str, traits: J, ts: u64, id: &str) -> String {
    json!({"type": "identify", "userId": user, "messageId": id, "timestamp": ts, "traits": traits}).to_string()
}

fn cart(user: &str, sku: &str, price: u64, ts: u64, id: &str) -> String {
    json!({"type": "track", "event": "Cart Viewed", "userId": user, "messageId": id, "timestamp": ts,
        "properties": {"item": {"sku": sku, "price": price}}})
    .to_string()
}

#[test]
fn an_action_renders_traits_as_of_its_time_and_the_entry_event_and_fails_on_missing_data() {
    let journeys = json!([{"id": "cart", "entry": {"event": "Cart Viewed"}, "start": "wait", "nodes": {
        "wait": {"wait_until": {"event": "Order Completed", "timeout": "1h", "on_event": "done", "on_timeout": "mail"}},
        "mail": {"action": {"channel": "email", "template": "cart_reminder", "payload": {
            "to": "{{ traits.email }}",
            "greeting": "Hi {{ traits.first_name | default('there') }}",
            "sku": "{{ event.properties.item.sku }}",
            "price": "{{ event.properties.item.price }}",
            "from": "{{ journey.id }}/{{ node }} v{{ journey.version }}",
            "fixed": [1, "two"]}}, "next": "done"},
        "done": {"exit": {}}}}]);
    let lines = vec![
        identify("ann", json!({"email": "ann@old.example", "first_name": "Ann"}), T0, "a1"),
        cart("ann", "p-1", 12, T0 + 10 * M, "a2"),
        // Changed while she waits: the action reads the traits as of its own time.
        identify("ann", json!({"email": "ann@new.example"}), T0 + 30 * M, "a3"),
        // No email, ever.
        cart("bob", "p-2", 7, T0 + 5 * M, "b1"),
        // An email set at the very millisecond of the action counts.
        cart("cy", "p-3", 3, T0 + 20 * M, "c1"),
        identify("cy", json!({"email": "cy@example"}), T0 + 80 * M, "c2"),
        // Orders in time: no action.
        cart("dee", "p-4", 1, T0 + 15 * M, "d1"),
        track("dee", "Order Completed", T0 + 40 * M, "d2"),
    ];
    let out = run("[]", journeys, &[], &lines);
    assert_eq!(
        acts(&out),
        vec![
            act("bob", "mail", T0 + 65 * M, "failed_missing_data"),
            act("ann", "mail", T0 + 70 * M, "sent"),
            act("cy", "mail", T0 + 80 * M, "sent"),
        ]
    );
    let by = |user: &str| out.actions.iter().find(|a| &*a.user_id == user).unwrap();
    let ann = by("ann");
    assert_eq!(
        ann.payload.as_deref(),
        Some(&json!({"to": "ann@new.example", "greeting": "Hi Ann", "sku": "p-1", "price": 12,
            "from": "cart/mail v1", "fixed": [1, "two"]}))
    );
    assert_eq!(ann.error, None);
    assert_eq!(by("cy").payload.as_deref().map(|p| p["greeting"].clone()), Some(json!("Hi there")));
    let bob = by("bob");
    assert_eq!((bob.payload.as_deref(), bob.error.as_deref()), (None, Some("traits.email")));
    // The line as written (what the webhook sink posts) carries the rendered payload and the error.
    let line = serde_json::to_value(ann).unwrap();
    assert_eq!(line["payload"]["to"], "ann@new.example");
    assert!(line.get("error").is_none());
    assert_eq!(serde_json::to_value(bob).unwrap()["error"], "traits.email");
    // Reported by status; a failed action moves the user on as a sent one does.
    let mail = &out.journey_stats[0].nodes["mail"];
    assert_eq!(mail.actions.get("sent"), Some(&2));
    assert_eq!(mail.actions.get("failed_missing_data"), Some(&1));
    assert_eq!(out.journey_stats[0].completed, 4);
}

#[test]
fn a_failed_action_does_not_count_to_the_frequency_cap_and_a_held_one_renders_when_released() {
    // Quiet hours 00:00-01:00 UTC; at most one sent action a day.
    let journeys = json!([{"id": "j", "entry": {"event": "Go"}, "start": "send",
        "re_entry": {"mode": "after_exit"},
        "quiet_hours": {"start": "00:00", "end": "01:00"},
        "frequency_cap": {"max_actions": 1, "per": "1d"},
        "nodes": {
            "send": {"action": {"channel": "sms", "payload": {"to": "{{ traits.phone }}"}}, "next": "done"},
            "done": {"exit": {}}}}]);
    let lines = vec![
        // Held at 00:30 without a phone; the phone comes at 00:45; sent at the release, 01:00.
        track("ann", "Go", T0 + 30 * M, "a1"),
        identify("ann", json!({"phone": "+100"}), T0 + 45 * M, "a2"),
        // Over the cap at 05:00 (one sent within the day).
        track("ann", "Go", T0 + 5 * H, "a3"),
        // Bob fails at 02:00 (no phone): not counted, so his 03:00 action is sent.
        track("bob", "Go", T0 + 2 * H, "b1"),
        identify("bob", json!({"phone": "+200"}), T0 + 150 * M, "b2"),
        track("bob", "Go", T0 + 3 * H, "b3"),
    ];
    let out = run("[]", journeys, &[], &lines);
    assert_eq!(
        acts(&out),
        vec![
            act("ann", "send", T0 + 30 * M, "held_quiet_hours"),
            act("ann", "send", T0 + H, "sent"),
            act("bob", "send", T0 + 2 * H, "failed_missing_data"),
            act("bob", "send", T0 + 3 * H, "sent"),
            act("ann", "send", T0 + 5 * H, "suppressed_by_cap"),
        ]
    );
    let payloads: Vec<Option<J>> = out.actions.iter().map(|a| a.payload.as_deref().cloned()).collect();
    // A held or suppressed record carries no payload: its templates were not rendered.
    assert_eq!(payloads, vec![None, Some(json!({"to": "+100"})), None, Some(json!({"to": "+200"})), None]);
}

#[test]
fn a_wait_until_nine_reads_each_users_time_zone_and_keeps_nine_across_a_daylight_saving_change() {
    let journeys = json!([{"id": "morning", "entry": {"event": "Signed Up"}, "start": "nine", "nodes": {
        "nine": {"wait_until_time": {"at": "09:00", "tz_trait": "timezone", "tz": "Europe/Paris"}, "next": "done"},
        "done": {"exit": {}}}}]);
    let noon = T0 + 12 * H;
    let zone = |user: &str, tz: &str, ts: u64| identify(user, json!({"timezone": tz}), ts, &format!("{user}-tz"));
    let lines = vec![
        zone("ann", "Asia/Tokyo", T0),
        zone("bob", "America/New_York", T0),
        // Not a zone: the node's own (Paris).
        zone("dee", "Mars/Olympus", T0),
        track("ann", "Signed Up", noon, "a1"),
        track("bob", "Signed Up", noon, "b1"),
        // No zone at all: Paris too.
        track("cy", "Signed Up", noon, "c1"),
        track("dee", "Signed Up", noon, "d1"),
        // The zone is read at arrival: a later change does not move the wait.
        zone("fay", "Asia/Tokyo", T0),
        track("fay", "Signed Up", noon, "f1"),
        identify("fay", json!({"timezone": "UTC"}), noon + H, "f2"),
        // Saturday 2024-03-09 15:00 in New York; clocks go forward that night.
        zone("eve", "America/New_York", instant("2024-03-09T19:00:00Z")),
        track("eve", "Signed Up", instant("2024-03-09T20:00:00Z"), "e1"),
        // Time goes on past every wait.
        track("zed", "Tick", instant("2024-03-12T00:00:00Z"), "z1"),
    ];
    let out = run("[]", journeys, &[], &lines);
    let done: Vec<(String, u64)> =
        moves(&out).into_iter().filter(|m| m.2.as_deref() == Some("done")).map(|m| (m.0, m.3)).collect();
    let mut done = done;
    done.sort();
    assert_eq!(
        done,
        vec![
            // 09:00 in Tokyo (UTC+9) is midnight UTC.
            ("ann".into(), T0 + D),
            // 07:00 in New York at noon UTC: 09:00 (UTC-5) comes the same day.
            ("bob".into(), T0 + 14 * H),
            // 09:00 in Paris (UTC+1) the next day.
            ("cy".into(), T0 + D + 8 * H),
            ("dee".into(), T0 + D + 8 * H),
            // Sunday 09:00 in New York is on daylight time (UTC-4).
            ("eve".into(), instant("2024-03-10T13:00:00Z")),
            ("fay".into(), T0 + D),
        ]
    );
}

#[test]
fn a_wait_until_three_days_before_a_trial_ends_reads_the_trait_at_arrival() {
    let journeys = json!([{"id": "trial", "entry": {"event": "Trial Started"}, "start": "before", "nodes": {
        "before": {"wait_until_time": {"trait": "trial_ends_at", "offset": "-3d"}, "next": "remind", "if_missing": "ask"},
        "remind": {"action": {"channel": "email", "template": "trial_ending"}, "next": "done"},
        "ask": {"action": {"channel": "email", "template": "trial_date_unknown"}, "next": "done"},
        "done": {"exit": {}}}}]);
    let ends = |user: &str, v: J, ts: u64, id: &str| identify(user, json!({"trial_ends_at": v}), ts, id);
    let lines = vec![
        ends("ann", json!("2024-01-20T00:00:00Z"), T0, "a1"),
        track("ann", "Trial Started", T0 + H, "a2"),
        // No such trait: on to `if_missing` at once.
        track("bob", "Trial Started", T0 + H, "b1"),
        // Ends in two days (epoch ms): three days before is past, so on at once.
        ends("cy", json!(T0 + 2 * D), T0, "c1"),
        track("cy", "Trial Started", T0 + H, "c2"),
        // A date: 2024-01-12 is midnight UTC; moved after arrival, which does not count.
        ends("dee", json!("2024-01-12"), T0, "d1"),
        track("dee", "Trial Started", T0 + H, "d2"),
        ends("dee", json!("2024-02-12"), T0 + 2 * H, "d3"),
        // Not a time.
        ends("eve", json!("next month"), T0, "e1"),
        track("eve", "Trial Started", T0 + H, "e2"),
        // Time goes on past every wait.
        track("zed", "Tick", instant("2024-01-18T00:00:00Z"), "z1"),
    ];
    let out = run("[]", journeys, &[], &lines);
    let mut got: Vec<_> = moves(&out).into_iter().filter(|m| m.1.as_deref() == Some("before")).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            mv("ann", Some("before"), Some("remind"), instant("2024-01-17T00:00:00Z"), "next"),
            mv("bob", Some("before"), Some("ask"), T0 + H, "missing"),
            mv("cy", Some("before"), Some("remind"), T0 + H, "next"),
            mv("dee", Some("before"), Some("remind"), instant("2024-01-09T00:00:00Z"), "next"),
            mv("eve", Some("before"), Some("ask"), T0 + H, "missing"),
        ]
    );
}

fn entries(time: u64, users: &[&str], context: Option<J>) -> JourneyEntries {
    JourneyEntries {
        time,
        journey: "promo".into(),
        users: users.iter().map(|u| u.to_string()).collect(),
        context: context.map(|c| c.to_string().into()),
    }
}

#[test]
fn entries_from_outside_follow_the_re_entry_rules_and_carry_their_context_to_the_actions() {
    let journeys = json!([{"id": "promo", "entry": {"event": "Signup"}, "start": "mail",
        "re_entry": {"mode": "after_exit"},
        "nodes": {
            "mail": {"action": {"channel": "email", "payload": {"coupon": "{{ context.coupon }}",
                "name": "{{ traits.name | default('friend') }}"}}, "next": "wait"},
            "wait": {"wait": {"duration": "1h"}, "next": "done"},
            "done": {"exit": {}}}}]);
    let lines = vec![
        identify("ann", json!({"name": "Ann"}), T0, "a1"),
        // Cy comes in by an event: no context, so his action misses its coupon.
        track("cy", "Signup", T0 + 30 * M, "c1"),
        track("zed", "Tick", T0 + 5 * H, "z1"),
    ];
    let given = vec![
        // Ann, and Bob who has sent no event at all.
        entries(T0 + 10 * M, &["ann", "bob"], Some(json!({"coupon": "SPRING"}))),
        // Ann is inside: under after_exit she cannot enter again.
        entries(T0 + 20 * M, &["ann"], Some(json!({"coupon": "SUMMER"}))),
        // Out since 01:10: she enters again, named twice (the second mention finds her inside).
        entries(T0 + 2 * H, &["ann", "ann"], Some(json!({"coupon": "AUTUMN"}))),
        // Paused at 03:00: nobody enters.
        entries(T0 + 3 * H + M, &["dee"], None),
    ];
    let out = run_with_entries("[]", journeys, &[(T0 + 3 * H, 0, Command::Pause)], &given, &lines);
    let mut entered: Vec<(String, u64, String)> =
        moves(&out).into_iter().filter(|m| m.1.is_none()).map(|m| (m.0, m.3, m.4)).collect();
    entered.sort();
    assert_eq!(
        entered,
        vec![
            ("ann".into(), T0 + 10 * M, "api".into()),
            ("ann".into(), T0 + 2 * H, "api".into()),
            ("bob".into(), T0 + 10 * M, "api".into()),
            ("cy".into(), T0 + 30 * M, "entry".into()),
        ]
    );
    let sent: Vec<(String, u64, Option<J>, Option<String>)> = out
        .actions
        .iter()
        .map(|a| (a.user_id.to_string(), a.time, a.payload.as_deref().cloned(), a.error.as_deref().map(String::from)))
        .collect();
    assert_eq!(
        sent,
        vec![
            ("ann".into(), T0 + 10 * M, Some(json!({"coupon": "SPRING", "name": "Ann"})), None),
            ("bob".into(), T0 + 10 * M, Some(json!({"coupon": "SPRING", "name": "friend"})), None),
            ("cy".into(), T0 + 30 * M, None, Some("context.coupon".into())),
            ("ann".into(), T0 + 2 * H, Some(json!({"coupon": "AUTUMN", "name": "Ann"})), None),
        ]
    );
    assert_eq!(out.journey_stats[0].entered, 4);
    // Bob is named in the outputs by his id, though no event of his was ever seen.
    assert!(out.transitions.iter().any(|t| &*t.user_id == "bob"));
}
