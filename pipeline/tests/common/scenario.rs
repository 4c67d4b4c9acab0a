//! Helpers of the hand-computed journey scenarios: events written by hand, a run on one and
//! two workers that must agree, and the records reduced to tuples easy to write expectations in.

use super::{ingest, run_entering, Plan};
use journeyflow::replay::{JourneyEntries, RunOutput};
use journeyflow_operators::journey::record::Command;
use serde_json::{json, Value as J};

/// 2024-01-01T00:00:00Z.
pub const T0: u64 = 1_704_067_200_000;
pub const M: u64 = 60_000;
pub const H: u64 = 3_600_000;
pub const D: u64 = 86_400_000;

pub fn track(user: &str, event: &str, ts: u64, id: &str) -> String {
    json!({"type": "track", "event": event, "userId": user, "messageId": id, "timestamp": ts}).to_string()
}

/// Runs with 1 and with 2 workers, checks they agree, returns the 1-worker output.
pub fn run(segments: &str, journeys: J, commands: &[(u64, u32, Command)], lines: &[String]) -> RunOutput {
    run_with_entries(segments, journeys, commands, &[], lines)
}

/// As [`run`], with entries from outside.
pub fn run_with_entries(
    segments: &str,
    journeys: J,
    commands: &[(u64, u32, Command)],
    entries: &[JourneyEntries],
    lines: &[String],
) -> RunOutput {
    let text = journeys.to_string();
    let lateness = ingest(Some(D), D);
    let one = run_entering(segments, &text, commands, entries, lines, &Plan::simple(lines.len(), 1, 3), lateness, None);
    let two = run_entering(segments, &text, commands, entries, lines, &Plan::simple(lines.len(), 2, 2), lateness, None);
    assert_eq!(one.transitions, two.transitions, "1 and 2 workers disagree");
    assert_eq!(one.actions, two.actions, "1 and 2 workers disagree");
    assert_eq!(one.journey_stats, two.journey_stats, "1 and 2 workers disagree");
    one
}

/// `(user, from, to, time, reason)`.
pub type Move = (String, Option<String>, Option<String>, u64, String);

/// Every transition as a `Move`.
pub fn moves(out: &RunOutput) -> Vec<Move> {
    out.transitions
        .iter()
        .map(|t| {
            (
                t.user_id.to_string(),
                t.from.as_deref().map(String::from),
                t.to.as_deref().map(String::from),
                t.time,
                t.reason.to_string(),
            )
        })
        .collect()
}

pub fn mv(
    user: &str,
    from: Option<&str>,
    to: Option<&str>,
    time: u64,
    reason: &str,
) -> (String, Option<String>, Option<String>, u64, String) {
    (user.into(), from.map(String::from), to.map(String::from), time, reason.into())
}

/// `(user, node, time, status)` of every action record.
pub fn acts(out: &RunOutput) -> Vec<(String, String, u64, String)> {
    out.actions.iter().map(|a| (a.user_id.to_string(), a.node.to_string(), a.time, a.status.to_string())).collect()
}

pub fn act(user: &str, node: &str, time: u64, status: &str) -> (String, String, u64, String) {
    (user.into(), node.into(), time, status.into())
}

pub fn identify(user: &str, plan: &str, ts: u64, id: &str) -> String {
    json!({"type": "identify", "userId": user, "messageId": id, "timestamp": ts, "traits": {"plan": plan}}).to_string()
}

pub fn instant(text: &str) -> u64 {
    journeyflow_types::time::parse_instant_str(text).unwrap()
}
