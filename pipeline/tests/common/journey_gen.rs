//! Random events and random journeys for the property tests: users, event names and two
//! segments to refer to; journeys over every node kind with event, segment and scheduled entries, goals, exit rules, re-entry,
//! schedules, quiet hours, caps and quotas, shaped so every node reaches an exit; and how a worker of
//! the live engine is fed such a stream in random batches.

use proptest::prelude::*;
use serde_json::{json, Value as J};
use std::collections::BTreeSet;

/// 2024-01-01T00:00:00Z: quiet hours are written against this day.
pub const T0: u64 = 1_704_067_200_000;
pub const STEP: u64 = 300_000;
pub const JITTER: u64 = 120_000;
pub const LATENESS: u64 = 1_800_000;
pub const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
pub const NAMES: [&str; 3] = ["A", "B", "C"];

pub const SEGMENTS: &str = r#"[
  {"id": "sa", "condition": {"performed": {"event": "A", "within": "30m", "at_least": 2}}},
  {"id": "sp", "condition": {"trait": {"name": "plan", "op": "eq", "value": "pro"}}}
]"#;

#[derive(Clone, Debug)]
pub enum Draft {
    Track { user: usize, name: usize },
    Identify { user: usize, pro: bool, more: usize },
    Copy { back: usize },
}

pub fn draft() -> impl Strategy<Value = Draft> {
    prop_oneof![
        7 => (0..USERS.len(), 0..NAMES.len()).prop_map(|(user, name)| Draft::Track { user, name }),
        2 => (0..USERS.len(), prop::bool::ANY, 0..MORE_TRAITS).prop_map(|(user, pro, more)| Draft::Identify { user, pro, more }),
        1 => (1..4usize).prop_map(|back| Draft::Copy { back }),
    ]
}

/// How many sets of traits beside `plan` an identify may carry.
const MORE_TRAITS: usize = 8;

/// Traits beside `plan` for templates and waits: names set and removed, time zones (one not
/// a zone), instants as epoch ms, date-times and dates (and one not an instant).
fn more_traits(more: usize, i: usize) -> J {
    let ends = T0 + (i as u64 * 37 % 300) * 60_000;
    match more {
        1 => json!({"name": "Ada", "tz": "Europe/Paris"}),
        2 => json!({"name": null, "tz": "America/New_York", "ends_at": ends}),
        3 => json!({"age": 36, "ends_at": "2024-01-01T03:00:00Z"}),
        4 => json!({"tz": "Nowhere/Bad", "age": 2.5, "name": "Bo"}),
        5 => json!({"ends_at": "soon", "tz": null}),
        6 => json!({"ends_at": "2024-01-01", "name": "Cy"}),
        7 => json!({"ends_at": null, "age": null}),
        _ => json!({}),
    }
}

/// Lines in arrival order, five minutes apart with up to two minutes of jitter.
pub fn render(drafts: &[Draft], jitters: &[u64]) -> Vec<String> {
    let mut values: Vec<J> = Vec::new();
    for (i, d) in drafts.iter().enumerate() {
        let ts = T0 + STEP * i as u64 + jitters[i % jitters.len()] % JITTER;
        let v = match d {
            Draft::Track { user, name } => {
                let mut e = json!({"type": "track", "event": NAMES[*name], "userId": USERS[*user], "messageId": format!("m{i}"), "timestamp": ts});
                if i % 3 != 0 {
                    e["properties"] = json!({"sku": format!("p{}", i % 4), "price": i % 5});
                }
                e
            }
            Draft::Identify { user, pro, more } => {
                let mut traits = more_traits(*more, i);
                traits["plan"] = json!(if *pro { "pro" } else { "free" });
                json!({"type": "identify", "userId": USERS[*user], "messageId": format!("m{i}"), "timestamp": ts, "traits": traits})
            }
            // A copy of a recent event (a copy of an old copy would be late).
            Draft::Copy { back }
                if *back <= values.len()
                    && values[values.len() - back]["timestamp"].as_u64().unwrap() + LATENESS / 2 >= ts =>
            {
                values[values.len() - back].clone()
            }
            Draft::Copy { .. } => {
                json!({"type": "track", "event": "A", "userId": USERS[i % USERS.len()], "messageId": format!("m{i}"), "timestamp": ts})
            }
        };
        values.push(v);
    }
    values.iter().map(J::to_string).collect()
}

pub fn condition() -> impl Strategy<Value = J> {
    prop::sample::select(vec![
        json!({"performed": {"event": "B", "within": "1h"}}),
        json!({"in_segment": "sp"}),
        json!({"not": {"performed": {"event": "C", "within": "30m"}}}),
        json!({"in_segment": "sa"}),
        json!({"performed": {"event": "C", "at_least": 2}}),
        json!({"all": [{"in_segment": "sp"}, {"performed": {"event": "A", "within": "1h"}}]}),
    ])
}

pub fn wait_duration() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["10m", "30m", "1h", "2h"])
}

/// What a node is before its targets are chosen.
#[derive(Clone, Debug)]
pub enum Shape {
    Wait(&'static str),
    WaitUntilTime(&'static str, bool),
    WaitUntilTrait(Option<&'static str>),
    WaitUntil(usize, &'static str),
    Branch(Vec<J>),
    Split(u32),
    Action(usize, usize),
    Exit,
}

/// Action payloads: none, plain, and templates over traits (some defaulted), the event behind
/// the entry or the awaited one, the journey and the node.
pub fn payload(p: usize, i: usize) -> Option<J> {
    match p {
        0 => None,
        1 => Some(json!({"n": i})),
        2 => Some(json!({"to": "{{ traits.name }}", "at": "{{ journey.id }}/{{ node }} v{{ journey.version }}"})),
        3 => Some(
            json!({"hi": "{{ traits.name | default('friend') }}", "age": "{{ traits.age }}", "plan": "{{ traits.plan }}"}),
        ),
        4 => Some(json!({"sku": "{{ event.properties.sku }}", "what": ["{{ event.event }}", "{{ event.timestamp }}"]})),
        5 => Some(
            json!({"price": "{{ event.properties.price | default(0) }}", "m": "{{ event.messageId }}", "tz": "{{ traits.tz }}"}),
        ),
        _ => Some(json!({"all": "{{ traits | tojson }}"})),
    }
}

pub fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        3 => wait_duration().prop_map(Shape::Wait),
        1 => (prop::sample::select(vec!["00:20", "01:30", "03:00", "04:45", "08:10"]), prop::bool::ANY)
            .prop_map(|(at, zoned)| Shape::WaitUntilTime(at, zoned)),
        1 => prop::option::of(prop::sample::select(vec!["-30m", "+1h", "-2h", "10m"])).prop_map(Shape::WaitUntilTrait),
        3 => (1..NAMES.len(), wait_duration()).prop_map(|(n, d)| Shape::WaitUntil(n, d)),
        2 => prop::collection::vec(condition(), 1..3).prop_map(Shape::Branch),
        2 => (1u32..100).prop_map(Shape::Split),
        3 => (0..3usize, 0..8usize).prop_map(|(c, p)| Shape::Action(c, p)),
        1 => Just(Shape::Exit),
    ]
}

/// Nodes `n0..nk`, the last an exit; pass-through nodes point forward only and an awaited
/// event may lead back, so every node reaches an exit and every cycle has a wait. Nodes the
/// start cannot reach are dropped.
pub fn graph(shapes: &[Shape], picks: &[usize]) -> serde_json::Map<String, J> {
    let k = shapes.len() + 1;
    let mut pick = picks.iter().cycle();
    let mut forward = |i: usize| format!("n{}", i + 1 + pick.next().unwrap() % (k - 1 - i));
    let mut nodes = serde_json::Map::new();
    for (i, s) in shapes.iter().enumerate() {
        let node = match s {
            Shape::Wait(d) => json!({"wait": {"duration": d}, "next": forward(i)}),
            Shape::WaitUntilTime(at, false) => json!({"wait_until_time": {"at": at}, "next": forward(i)}),
            Shape::WaitUntilTime(at, true) => {
                json!({"wait_until_time": {"at": at, "tz_trait": "tz"}, "next": forward(i)})
            }
            Shape::WaitUntilTrait(offset) => {
                let mut until = json!({"trait": "ends_at"});
                if let Some(o) = offset {
                    until["offset"] = json!(o);
                }
                json!({"wait_until_time": until, "next": forward(i), "if_missing": forward(i)})
            }
            Shape::WaitUntil(n, d) => {
                let back = format!("n{}", picks[i % picks.len()] % k);
                json!({"wait_until": {"event": NAMES[*n], "timeout": d, "on_event": back, "on_timeout": forward(i)}})
            }
            Shape::Branch(cases) => {
                let cases: Vec<J> = cases.iter().map(|c| json!({"when": c, "next": forward(i)})).collect();
                json!({"branch": {"cases": cases, "else": forward(i)}})
            }
            Shape::Split(p) => json!({"split": {"branches": [
                {"percent": *p as f64 / 4.0 + 0.25, "next": forward(i)},
                {"percent": 100.0 - (*p as f64 / 4.0 + 0.25), "next": forward(i)}]}}),
            Shape::Action(c, p) => {
                let channel = ["email", "sms", "webhook"][*c];
                let mut a = json!({"channel": channel});
                if *c != 2 {
                    a["template"] = json!(format!("t{c}"));
                }
                if let Some(p) = payload(*p, i) {
                    a["payload"] = p;
                }
                json!({"action": a, "next": forward(i)})
            }
            Shape::Exit => json!({"exit": {}}),
        };
        nodes.insert(format!("n{i}"), node);
    }
    nodes.insert(format!("n{}", k - 1), json!({"exit": {}}));
    // Keep what the start reaches.
    let mut seen = BTreeSet::from(["n0".to_string()]);
    let mut stack = vec!["n0".to_string()];
    while let Some(id) = stack.pop() {
        let mut targets = Vec::new();
        collect_targets(&nodes[&id], &mut targets);
        for t in targets {
            if seen.insert(t.clone()) {
                stack.push(t);
            }
        }
    }
    nodes.retain(|id, _| seen.contains(id));
    nodes
}

pub fn collect_targets(v: &J, out: &mut Vec<String>) {
    if let J::Object(o) = v {
        for (k, x) in o {
            match (k.as_str(), x) {
                ("next" | "else" | "on_event" | "on_timeout" | "if_missing", J::String(s)) => out.push(s.clone()),
                _ => collect_targets(x, out),
            }
        }
    } else if let J::Array(xs) = v {
        xs.iter().for_each(|x| collect_targets(x, out));
    }
}

pub fn journey(id: &'static str) -> impl Strategy<Value = J> {
    (
        prop::collection::vec(shape(), 1..6),
        prop::collection::vec(0usize..100, 1..8),
        prop::sample::select(vec![
            json!({"event": "A"}),
            json!({"event": {"event": "B"}}),
            json!({"segment_enter": "sa"}),
            json!({"segment_exit": "sa"}),
            json!({"segment_enter": "sp"}),
            // Scheduled: once, and daily (the events span five hours from midnight).
            json!({"segment": "sa", "at": T0 + 90 * 60_000}),
            json!({"segment": "sp", "every": "1d", "at": "02:10"}),
            json!({"segment": "sa", "every": "1d", "at": "00:45", "starting": T0 + 30 * 60_000, "until": T0 + 280 * 60_000}),
            // Weekly from a week before, on the same weekday.
            json!({"segment": "sp", "every": "1w", "at": "03:20", "starting": T0 - 7 * 86_400_000}),
        ]),
        prop::option::of(prop::sample::select(vec![
            json!({"event": "C"}),
            json!({"event": "B"}),
            json!({"event": "B", "value": "price"}),
            json!({"event": {"event": "C"}, "value": "price"}),
        ])),
        prop::option::weighted(0.3, condition()),
        prop::option::of((0..3usize, prop::option::of(1u64..4), prop::option::of(wait_duration()))),
        (prop::option::weighted(0.25, 0u64..100), prop::option::weighted(0.25, 100u64..300)),
        prop::option::weighted(
            0.4,
            prop::sample::select(vec![("01:00", "02:00"), ("00:30", "01:10"), ("02:00", "00:40")]),
        ),
        (
            prop::option::weighted(0.4, (1u64..3, prop::sample::select(vec!["30m", "1h", "3h"]))),
            prop::option::weighted(
                0.35,
                (
                    1u64..4,
                    prop::option::of(prop::sample::select(vec!["20m", "1h", "2h"])),
                    prop::option::weighted(0.3, Just("sms")),
                ),
            ),
        ),
    )
        .prop_map(move |(shapes, picks, entry, goal, exit_when, re_entry, (start, end), quiet, (cap, quota))| {
            let mut j = json!({"id": id, "entry": entry, "start": "n0", "nodes": graph(&shapes, &picks)});
            if let Some(g) = goal {
                j["goal"] = g;
            }
            if let Some(c) = exit_when {
                j["exit_when"] = c;
            }
            if let Some((mode, max, cooldown)) = re_entry {
                let mode = ["once", "after_exit", "always"][mode];
                let mut r = json!({"mode": mode});
                if mode != "once" {
                    if let Some(m) = max {
                        r["max_times"] = json!(m);
                    }
                    if let Some(c) = cooldown {
                        r["cooldown"] = json!(c);
                    }
                }
                j["re_entry"] = r;
            }
            if start.is_some() || end.is_some() {
                let mut s = json!({});
                if let Some(m) = start {
                    s["start_at"] = json!(T0 + m * 60_000);
                }
                if let Some(m) = end {
                    s["end_at"] = json!(T0 + m * 60_000);
                }
                j["schedule"] = s;
            }
            if let Some((s, e)) = quiet {
                j["quiet_hours"] = json!({"start": s, "end": e});
            }
            if let Some((max, per)) = cap {
                j["frequency_cap"] = json!({"max_actions": max, "per": per});
            }
            if let Some((max, per, channel)) = quota {
                let mut q = json!({"max_actions": max});
                if let Some(per) = per {
                    q["per"] = json!(per);
                }
                if let Some(c) = channel {
                    q["channel"] = json!(c);
                }
                j["quota"] = q;
            }
            j
        })
}

/// Entries from outside: `(minute, journey index, users, context)`, users possibly repeated
/// and possibly never seen in the events.
pub fn api_entries() -> impl Strategy<Value = Vec<(u64, usize, Vec<String>, Option<J>)>> {
    let user = prop::sample::select(vec!["u0", "u1", "u2", "u3", "u9"]).prop_map(String::from);
    let context = prop::option::of(prop::sample::select(vec![
        json!({"coupon": "C1"}),
        json!({"coupon": "C2", "source": "crm"}),
        json!({"source": "crm"}),
    ]));
    prop::collection::vec((0u64..300, 0usize..2, prop::collection::vec(user, 1..4), context), 0..4)
}

/// A stream dealt to workers: worker `worker_of[i]` offers line `i`, and every worker moves its
/// watermark after the lines marked in `boundary_after`.
pub struct Deal<'a> {
    pub lines: &'a [String],
    pub worker_of: &'a [usize],
    pub boundary_after: &'a [bool],
}

/// Feeds this worker its share of the stream on the live engine, from watermark `start`:
/// after each marked line the watermark moves as far as no later event can be older (copies
/// are at most `LATENESS / 2` back) and `taken` is called; then it runs through `end` and
/// settles. Sequenced commands go to `apply`.
pub fn feed<F, B>(
    programs: &mut journeyflow::programs::Programs,
    worker: &mut timely::worker::Worker,
    deal: &Deal,
    (start, end): (u64, u64),
    mut apply: F,
    mut taken: B,
) where
    F: FnMut(&mut journeyflow::programs::Programs, &mut timely::worker::Worker, journeyflow::programs::Sequenced),
    B: FnMut(&mut journeyflow::programs::Programs),
{
    let me = worker.index();
    for (i, line) in deal.lines.iter().enumerate() {
        if deal.worker_of[i] == me {
            programs.offer(journeyflow_types::decode_line(line.as_bytes()).unwrap()).unwrap();
        }
        if deal.boundary_after[i] {
            let safe = (T0 + STEP * i as u64).saturating_sub(LATENESS);
            programs.advance(worker, Some(safe.max(start)), &mut apply);
            taken(programs);
        }
    }
    programs.advance(worker, Some(end), &mut apply);
    programs.advance(worker, Some(end + 1), &mut apply);
    programs.settle(worker, end);
    taken(programs);
}
