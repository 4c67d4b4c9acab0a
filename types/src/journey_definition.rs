//! Journey definition files: parsing and validation of the journey JSON, reporting every
//! error with its JSON path (fields, node references, unreachable nodes, nodes with no way
//! out, cycles without a wait, split shares, unknown segments) so nothing is installed from a
//! file with a mistake in it.

use crate::condition::{Condition, EventFilter};
use crate::definition::{valid_id, Checker, ValidationError, ValidationErrors};
use crate::journey::{
    Action, Case, Entry, FrequencyCap, JourneyDefinition, Node, Occurrences, QuietHours, Quota, ReEntry, ReEntryMode,
    Schedule, SplitBranch, Until,
};
use crate::limits::{json_depth, Limits, MAX_PAYLOAD_DEPTH};
use crate::time::{json_kind, parse_instant};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

type Obj = serde_json::Map<String, Json>;

/// Parses and validates a file holding a JSON array of journey definitions; `segments` names
/// the segments that entries and conditions may refer to.
pub fn parse_journeys(text: &str, segments: &BTreeSet<String>) -> Result<Vec<JourneyDefinition>, ValidationErrors> {
    parse_journeys_with(text, segments, &Limits::default())
}

/// [`parse_journeys`] under the given limits.
pub fn parse_journeys_with(
    text: &str,
    segments: &BTreeSet<String>,
    limits: &Limits,
) -> Result<Vec<JourneyDefinition>, ValidationErrors> {
    let json: Json = serde_json::from_str(text).map_err(|e| {
        ValidationErrors(vec![ValidationError { path: "$".into(), message: format!("malformed JSON: {e}") }])
    })?;
    let mut cx = Checker::new(*limits);
    let Some(items) = json.as_array() else {
        cx.error("$", format!("expected an array of journey definitions, found {}", json_kind(&json)));
        return Err(cx.finish());
    };
    let mut defs: Vec<(String, JourneyDefinition)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("$[{i}]");
        if let Some(def) = journey(&mut cx, &path, item, segments) {
            defs.push((path, def));
        }
    }
    let mut seen = BTreeMap::new();
    for (path, def) in &defs {
        if let Some(first) = seen.insert(def.id.clone(), path.clone()) {
            cx.error(&format!("{path}.id"), format!("duplicate id {:?} (first defined at {first})", def.id));
        }
    }
    if !cx.is_clean() {
        return Err(cx.finish());
    }
    Ok(defs.into_iter().map(|(_, d)| d).collect())
}

/// Validates one journey given as JSON (the control API's entry point).
pub fn validate_journey(json: &Json, segments: &BTreeSet<String>) -> Result<JourneyDefinition, ValidationErrors> {
    validate_journey_with(json, segments, &Limits::default())
}

/// [`validate_journey`] under the given limits.
pub fn validate_journey_with(
    json: &Json,
    segments: &BTreeSet<String>,
    limits: &Limits,
) -> Result<JourneyDefinition, ValidationErrors> {
    let mut cx = Checker::new(*limits);
    match journey(&mut cx, "$", json, segments) {
        Some(def) if cx.is_clean() => Ok(def),
        _ => Err(cx.finish()),
    }
}

const FIELDS: [&str; 12] = [
    "id",
    "name",
    "entry",
    "start",
    "nodes",
    "goal",
    "exit_when",
    "re_entry",
    "schedule",
    "quiet_hours",
    "frequency_cap",
    "quota",
];

fn journey(cx: &mut Checker, path: &str, v: &Json, segments: &BTreeSet<String>) -> Option<JourneyDefinition> {
    let o = cx.object(path, v, &FIELDS)?;
    let id = cx.string(path, o, "id");
    if let Some(id) = &id {
        if !valid_id(id) {
            cx.error(&format!("{path}.id"), format!("id {id:?} must match [a-z0-9_-]{{1,64}}"));
        }
    }
    let name = cx.opt_string(path, o, "name");
    let entry = required(cx, path, o, "entry").and_then(|e| entry(cx, &format!("{path}.entry"), e, segments));
    let start = cx.string(path, o, "start");
    let nodes = required(cx, path, o, "nodes").and_then(|n| nodes(cx, &format!("{path}.nodes"), n, segments));
    let (goal, goal_value) = match o.get("goal") {
        Some(g) => {
            let (g, value) = goal(cx, &format!("{path}.goal"), g);
            (Some(g), value)
        }
        None => (None, None),
    };
    let exit_when = o.get("exit_when").map(|c| condition(cx, &format!("{path}.exit_when"), c, segments));
    let re_entry = o.get("re_entry").map_or(Some(ReEntry::default()), |r| re_entry(cx, &format!("{path}.re_entry"), r));
    let schedule =
        o.get("schedule").map_or(Some(Schedule::default()), |s| schedule(cx, &format!("{path}.schedule"), s));
    let quiet_hours = o.get("quiet_hours").map(|q| quiet_hours(cx, &format!("{path}.quiet_hours"), q));
    let frequency_cap = o.get("frequency_cap").map(|f| frequency_cap(cx, &format!("{path}.frequency_cap"), f));
    let quota = o.get("quota").map(|q| quota(cx, &format!("{path}.quota"), q));

    let nodes = nodes?;
    let start = start?;
    if !nodes.contains_key(&start) {
        cx.error(&format!("{path}.start"), format!("start node {start:?} is not in \"nodes\""));
        return None;
    }
    let entry = entry?;
    let exit_when = exit_when.map(|c| c.ok_or(())).transpose().ok()?;
    let conditions = usize::from(!matches!(entry, Entry::Event(_)))
        + usize::from(exit_when.is_some())
        + nodes.values().map(|n| if let Node::Branch { cases, .. } = n { cases.len() } else { 0 }).sum::<usize>();
    let max = cx.limits().journey_conditions;
    if conditions > max {
        cx.error(
            path,
            format!("uses {conditions} conditions (entry segment, branch cases, exit_when); at most {max} are allowed"),
        );
    }
    graph(cx, &format!("{path}.nodes"), &start, &nodes);
    Some(JourneyDefinition {
        id: id?,
        name,
        entry,
        start,
        nodes,
        goal: goal.map(|g| g.ok_or(())).transpose().ok()?,
        goal_value,
        exit_when,
        re_entry: re_entry?,
        schedule: schedule?,
        quiet_hours: quiet_hours.map(|q| q.ok_or(())).transpose().ok()?,
        frequency_cap: frequency_cap.map(|f| f.ok_or(())).transpose().ok()?,
        quota: quota.map(|q| q.ok_or(())).transpose().ok()?,
        source: v.clone(),
    })
}

fn required<'a>(cx: &mut Checker, path: &str, o: &'a Obj, key: &str) -> Option<&'a Json> {
    let v = o.get(key);
    if v.is_none() {
        cx.error(path, format!("missing field {key:?}"));
    }
    v
}

/// A condition whose `in_segment` references must name known segments.
fn condition(cx: &mut Checker, path: &str, v: &Json, segments: &BTreeSet<String>) -> Option<Condition> {
    let c = cx.condition(path, v)?;
    let mut refs = Vec::new();
    c.references(&mut refs);
    let unknown: Vec<String> = refs.into_iter().filter(|r| !segments.contains(r)).collect();
    for r in &unknown {
        cx.error(path, format!("in_segment refers to unknown segment {r:?}"));
    }
    unknown.is_empty().then_some(c)
}

/// An event filter written either as `{"event": "Name", "where"?: [...]}` or `{"event": {"event": "Name", ...}}`.
/// A goal: an event filter, with `value` (the property whose number a conversion is worth)
/// beside its fields.
fn goal(cx: &mut Checker, path: &str, v: &Json) -> (Option<EventFilter>, Option<String>) {
    let Some(o) = v.as_object().filter(|o| o.contains_key("value")) else { return (event_filter(cx, path, v), None) };
    let value = match &o["value"] {
        Json::String(p) if !p.is_empty() && p.len() <= cx.limits().string_bytes => Some(p.clone()),
        _ => {
            cx.error(
                &format!("{path}.value"),
                "expected the name of a property of the goal event, such as \"revenue\"",
            );
            None
        }
    };
    let mut filter = o.clone();
    filter.remove("value");
    (event_filter(cx, path, &Json::Object(filter)), value)
}

fn event_filter(cx: &mut Checker, path: &str, v: &Json) -> Option<EventFilter> {
    match v.get("event") {
        Some(inner @ Json::Object(_)) => {
            cx.object(path, v, &["event"])?;
            cx.filter(&format!("{path}.event"), inner)
        }
        _ => cx.filter(path, v),
    }
}

fn segment_ref(cx: &mut Checker, path: &str, v: &Json, segments: &BTreeSet<String>) -> Option<String> {
    let id = cx.string_value(path, v)?;
    if !segments.contains(&id) {
        cx.error(path, format!("unknown segment {id:?}"));
        return None;
    }
    Some(id)
}

fn entry(cx: &mut Checker, path: &str, v: &Json, segments: &BTreeSet<String>) -> Option<Entry> {
    const SCHEDULE: [&str; 5] = ["at", "every", "tz", "starting", "until"];
    let allowed = ["event", "where", "segment_enter", "segment_exit", "segment"];
    let o = cx.object(path, v, &[&allowed[..], &SCHEDULE[..]].concat())?;
    let kinds: Vec<&str> =
        ["event", "segment_enter", "segment_exit", "segment"].into_iter().filter(|k| o.contains_key(*k)).collect();
    if kinds.len() != 1 {
        cx.error(
            path,
            format!(
                "an entry needs exactly one of \"event\", \"segment_enter\", \"segment_exit\", \"segment\" (scheduled), found {kinds:?}"
            ),
        );
        return None;
    }
    if kinds[0] != "event" && o.contains_key("where") {
        cx.error(&format!("{path}.where"), "\"where\" applies to event entries only");
        return None;
    }
    if kinds[0] != "segment" {
        if let Some(key) = SCHEDULE.iter().find(|k| o.contains_key(**k)) {
            cx.error(&format!("{path}.{key}"), "applies to scheduled entries (\"segment\") only");
            return None;
        }
    }
    match kinds[0] {
        "event" => event_filter(cx, path, v).map(Entry::Event),
        "segment_enter" => {
            segment_ref(cx, &format!("{path}.segment_enter"), &o["segment_enter"], segments).map(Entry::SegmentEnter)
        }
        "segment_exit" => {
            segment_ref(cx, &format!("{path}.segment_exit"), &o["segment_exit"], segments).map(Entry::SegmentExit)
        }
        _ => {
            let segment = segment_ref(cx, &format!("{path}.segment"), &o["segment"], segments);
            let occurrences = occurrences(cx, path, o);
            Some(Entry::Scheduled { segment: segment?, occurrences: occurrences? })
        }
    }
}

/// A scheduled entry's occurrences: `at` an instant (once), or `every` (`1d`, `1w`) with `at` a
/// local time of day, `tz`, `starting` (required weekly: its weekday is kept) and `until`.
fn occurrences(cx: &mut Checker, path: &str, o: &Obj) -> Option<Occurrences> {
    // Up to the year 9999: past it the calendar (and so the zone's rules) has no date.
    const LAST: u64 = 253_402_300_799_999;
    let instant = |cx: &mut Checker, key: &str| -> Result<Option<u64>, ()> {
        let parsed = o.get(key).map(|t| parse_instant(t).map_err(|e| cx.error(&format!("{path}.{key}"), e)));
        match parsed.transpose()? {
            Some(t) if t > LAST => {
                cx.error(&format!("{path}.{key}"), "must be before the year 10000");
                Err(())
            }
            t => Ok(t),
        }
    };
    let Some(every) = o.get("every") else {
        for key in ["tz", "starting", "until"].into_iter().filter(|k| o.contains_key(*k)) {
            cx.error(&format!("{path}.{key}"), "applies to recurring entries (with \"every\") only");
        }
        if !o.contains_key("at") {
            cx.error(path, "a scheduled entry needs \"at\" (an instant, or a time of day with \"every\")");
            return None;
        }
        return instant(cx, "at").ok().flatten().map(Occurrences::Once);
    };
    let days = match every.as_str() {
        Some("1d") => Some(1),
        Some("1w") => Some(7),
        _ => {
            cx.error(&format!("{path}.every"), format!("expected \"1d\" or \"1w\", found {every}"));
            None
        }
    };
    let minute = match o.contains_key("at") {
        true => clock(cx, path, o, "at"),
        false => {
            cx.error(path, "a recurring entry needs \"at\", a time of day as \"HH:MM\"");
            None
        }
    };
    let tz = time_zone(cx, path, o);
    let (starting, until) = (instant(cx, "starting").ok()?, instant(cx, "until").ok()?);
    if days == Some(7) && starting.is_none() {
        cx.error(path, "a weekly entry needs \"starting\" (its local weekday is the entries' day)");
        return None;
    }
    if let (Some(s), Some(u)) = (starting, until) {
        if u <= s {
            cx.error(&format!("{path}.until"), "must be after starting");
            return None;
        }
    }
    Some(Occurrences::Every { days: days?, minute: minute?, tz: tz?, starting, until })
}

/// The `tz` of `o` (UTC when not given): an IANA name.
fn time_zone(cx: &mut Checker, path: &str, o: &Obj) -> Option<chrono_tz::Tz> {
    match cx.opt_string(path, o, "tz") {
        None => Some(chrono_tz::UTC),
        Some(name) => name.parse::<chrono_tz::Tz>().ok().or_else(|| {
            cx.error(
                &format!("{path}.tz"),
                format!("unknown time zone {name:?} (expected an IANA name such as \"Europe/Paris\")"),
            );
            None
        }),
    }
}

/// A duration with an optional sign (`"-3d"`, `"12h"`), in milliseconds.
fn signed_duration(text: &str) -> Result<i64, String> {
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    // At most 100 years: well inside an i64.
    Ok(sign * crate::Duration::parse(rest)?.0 as i64)
}

fn nodes(cx: &mut Checker, path: &str, v: &Json, segments: &BTreeSet<String>) -> Option<BTreeMap<String, Node>> {
    let Some(o) = v.as_object() else {
        cx.error(path, format!("expected an object of nodes by id, found {}", json_kind(v)));
        return None;
    };
    if o.is_empty() {
        cx.error(path, "must not be empty");
        return None;
    }
    if !cx.few_enough(path, o.len(), cx.limits().journey_nodes, "nodes") {
        return None;
    }
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (id, body) in o {
        let p = format!("{path}.{id}");
        if !valid_id(id) {
            cx.error(&p, format!("node id {id:?} must match [a-z0-9_-]{{1,64}}"));
            ok = false;
            continue;
        }
        match node(cx, &p, body, segments) {
            Some(n) => {
                out.insert(id.clone(), n);
            }
            None => ok = false,
        }
    }
    // References, checked here so each error points at the field holding the bad id.
    for (id, body) in o {
        for (target, p) in target_paths(&format!("{path}.{id}"), body) {
            if !o.contains_key(&target) {
                cx.error(&p, format!("unknown node {target:?}"));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// Every `(target id, JSON path)` a node's JSON refers to, as far as it is well-formed.
fn target_paths(path: &str, body: &Json) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut push = |v: Option<&Json>, p: String| {
        if let Some(Json::String(s)) = v {
            out.push((s.clone(), p));
        }
    };
    push(body.get("next"), format!("{path}.next"));
    push(body.get("if_missing"), format!("{path}.if_missing"));
    if let Some(w) = body.get("wait_until") {
        push(w.get("on_event"), format!("{path}.wait_until.on_event"));
        push(w.get("on_timeout"), format!("{path}.wait_until.on_timeout"));
    }
    if let Some(b) = body.get("branch") {
        if let Some(cases) = b.get("cases").and_then(Json::as_array) {
            for (i, c) in cases.iter().enumerate() {
                push(c.get("next"), format!("{path}.branch.cases[{i}].next"));
            }
        }
        push(b.get("else"), format!("{path}.branch.else"));
    }
    if let Some(branches) = body.get("split").and_then(|s| s.get("branches")).and_then(Json::as_array) {
        for (i, b) in branches.iter().enumerate() {
            push(b.get("next"), format!("{path}.split.branches[{i}].next"));
        }
    }
    out
}

const NODE_KINDS: [&str; 7] = ["wait", "wait_until", "wait_until_time", "branch", "split", "action", "exit"];

fn node(cx: &mut Checker, path: &str, v: &Json, segments: &BTreeSet<String>) -> Option<Node> {
    let o = cx.object(path, v, &[&NODE_KINDS[..], &["next", "if_missing"]].concat())?;
    let kinds: Vec<&str> = NODE_KINDS.into_iter().filter(|k| o.contains_key(*k)).collect();
    if kinds.len() != 1 {
        cx.error(path, format!("a node needs exactly one of {}, found {kinds:?}", NODE_KINDS.join(", ")));
        return None;
    }
    let kind = kinds[0];
    let body = &o[kind];
    let p = format!("{path}.{kind}");
    let takes_next = matches!(kind, "wait" | "wait_until_time" | "action");
    if kind != "wait_until_time" && o.contains_key("if_missing") {
        cx.error(&format!("{path}.if_missing"), "only a wait until a trait's time has users without the time");
        return None;
    }
    if takes_next != o.contains_key("next") {
        if takes_next {
            cx.error(path, format!("missing field \"next\" (a {kind} node says where to go next)"));
        } else {
            cx.error(
                &format!("{path}.next"),
                format!("a {kind} node names its targets inside {kind:?}, not in \"next\""),
            );
        }
        return None;
    }
    let next = if takes_next { cx.string(path, o, "next") } else { None };
    match kind {
        "wait" => {
            let w = cx.object(&p, body, &["duration"])?;
            let duration = positive_duration(cx, &p, w, "duration");
            Some(Node::Wait { duration: duration?, next: next? })
        }
        "wait_until_time" => {
            let w = cx.object(&p, body, &["at", "tz", "tz_trait", "trait", "offset"])?;
            let if_missing = cx.opt_string(path, o, "if_missing");
            let until = if w.contains_key("trait") {
                for key in ["at", "tz", "tz_trait"].into_iter().filter(|k| w.contains_key(*k)) {
                    cx.error(&format!("{p}.{key}"), "a wait until a trait's time takes \"trait\" and \"offset\" only");
                }
                if if_missing.is_none() {
                    cx.error(path, "missing field \"if_missing\" (where users go when the trait holds no time)");
                }
                let name = cx.string(&p, w, "trait");
                let offset_ms = match w.get("offset") {
                    None => Some(0),
                    Some(Json::String(text)) => {
                        signed_duration(text).map_err(|m| cx.error(&format!("{p}.offset"), m)).ok()
                    }
                    Some(other) => {
                        cx.error(
                            &format!("{p}.offset"),
                            format!("expected a duration such as \"-3d\", found {}", json_kind(other)),
                        );
                        None
                    }
                };
                Until::Trait { name: name?, offset_ms: offset_ms? }
            } else {
                if w.contains_key("offset") {
                    cx.error(&format!("{p}.offset"), "an offset goes with \"trait\" (a wait until a trait's time)");
                }
                if o.contains_key("if_missing") {
                    cx.error(
                        &format!("{path}.if_missing"),
                        "only a wait until a trait's time has users without the time",
                    );
                }
                let minute = clock(cx, &p, w, "at");
                let tz = time_zone(cx, &p, w);
                let tz_trait = match w.get("tz_trait") {
                    None => None,
                    Some(_) => Some(cx.string(&p, w, "tz_trait")?),
                };
                Until::Clock { minute: minute?, tz: tz?, tz_trait }
            };
            Some(Node::WaitUntilTime { until, next: next?, if_missing })
        }
        "wait_until" => {
            let w = cx.object(&p, body, &["event", "where", "timeout", "on_event", "on_timeout"])?;
            let event = {
                let mut filter_only = w.clone();
                filter_only.retain(|k, _| k == "event" || k == "where");
                if w.contains_key("event") {
                    event_filter(cx, &p, &Json::Object(filter_only))
                } else {
                    cx.error(&p, "missing field \"event\"");
                    None
                }
            };
            let timeout = positive_duration(cx, &p, w, "timeout");
            let on_event = cx.string(&p, w, "on_event");
            let on_timeout = cx.string(&p, w, "on_timeout");
            Some(Node::WaitUntil { event: event?, timeout: timeout?, on_event: on_event?, on_timeout: on_timeout? })
        }
        "branch" => {
            let b = cx.object(&p, body, &["cases", "else"])?;
            let otherwise = cx.string(&p, b, "else");
            let cases = match b.get("cases") {
                None => {
                    cx.error(&p, "missing field \"cases\"");
                    None
                }
                Some(Json::Array(items)) if items.is_empty() => {
                    cx.error(&format!("{p}.cases"), "must not be empty");
                    None
                }
                Some(Json::Array(items)) => {
                    let parsed: Vec<Option<Case>> = items
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            let cp = format!("{p}.cases[{i}]");
                            let co = cx.object(&cp, c, &["when", "next"])?;
                            let when = required(cx, &cp, co, "when")
                                .and_then(|w| condition(cx, &format!("{cp}.when"), w, segments));
                            let next = cx.string(&cp, co, "next");
                            Some(Case { when: when?, next: next? })
                        })
                        .collect();
                    parsed.into_iter().collect()
                }
                Some(other) => {
                    cx.error(&format!("{p}.cases"), format!("expected an array of cases, found {}", json_kind(other)));
                    None
                }
            };
            Some(Node::Branch { cases: cases?, otherwise: otherwise? })
        }
        "split" => {
            let s = cx.object(&p, body, &["branches"])?;
            let bp = format!("{p}.branches");
            let items = match s.get("branches") {
                Some(Json::Array(items)) if items.len() >= 2 => items,
                Some(Json::Array(_)) => {
                    cx.error(&bp, "a split needs at least two branches");
                    return None;
                }
                Some(other) => {
                    cx.error(&bp, format!("expected an array of branches, found {}", json_kind(other)));
                    return None;
                }
                None => {
                    cx.error(&p, "missing field \"branches\"");
                    return None;
                }
            };
            let parsed: Vec<Option<SplitBranch>> = items
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let ip = format!("{bp}[{i}]");
                    let bo = cx.object(&ip, b, &["percent", "next"])?;
                    let next = cx.string(&ip, bo, "next");
                    let basis_points = match bo.get("percent").and_then(Json::as_f64) {
                        Some(pc) if pc > 0.0 && pc <= 100.0 && ((pc * 100.0).round() - pc * 100.0).abs() < 1e-6 => {
                            Some((pc * 100.0).round() as u32)
                        }
                        Some(_) | None => {
                            cx.error(
                                &format!("{ip}.percent"),
                                "expected a percentage above 0 and at most 100, with at most two decimals",
                            );
                            None
                        }
                    };
                    Some(SplitBranch { basis_points: basis_points?, next: next? })
                })
                .collect();
            let branches: Vec<SplitBranch> = parsed.into_iter().collect::<Option<_>>()?;
            let total: u32 = branches.iter().map(|b| b.basis_points).sum();
            if total != 10_000 {
                cx.error(&bp, format!("percents sum to {}, not 100", f64::from(total) / 100.0));
                return None;
            }
            Some(Node::Split { branches })
        }
        "action" => {
            let a = cx.object(&p, body, &["channel", "template", "payload"])?;
            let channel = cx.string(&p, a, "channel");
            let template = cx.opt_string(&p, a, "template");
            let payload = a.get("payload").cloned();
            if let Some(p) = &payload {
                if json_depth(p) > MAX_PAYLOAD_DEPTH {
                    cx.error(
                        &format!("{path}.action.payload"),
                        format!("nests more than {MAX_PAYLOAD_DEPTH} levels deep"),
                    );
                    return None;
                }
                let errors = crate::template::check(p, &format!("{path}.action.payload"));
                let failed = !errors.is_empty();
                for (at, message) in errors {
                    cx.error(&at, message);
                }
                if failed {
                    return None;
                }
            }
            Some(Node::Action { action: Action { channel: channel?, template, payload }, next: next? })
        }
        _ => {
            cx.object(&p, body, &[])?;
            Some(Node::Exit)
        }
    }
}

/// A required duration longer than 0 at `key`.
pub(crate) fn positive_duration(cx: &mut Checker, path: &str, o: &Obj, key: &str) -> Option<crate::Duration> {
    match cx.opt_duration(path, o, key) {
        Ok(Some(d)) if d.0 > 0 => Some(d),
        Ok(Some(_)) => {
            cx.error(&format!("{path}.{key}"), "must be longer than 0");
            None
        }
        Ok(None) => {
            cx.error(path, format!("missing field {key:?}"));
            None
        }
        Err(_) => None,
    }
}

fn re_entry(cx: &mut Checker, path: &str, v: &Json) -> Option<ReEntry> {
    let o = cx.object(path, v, &["mode", "max_times", "cooldown"])?;
    let mode = match cx.string(path, o, "mode").as_deref() {
        Some("once") => Some(ReEntryMode::Once),
        Some("after_exit") => Some(ReEntryMode::AfterExit),
        Some("always") => Some(ReEntryMode::Always),
        Some(other) => {
            cx.error(&format!("{path}.mode"), format!("unknown mode {other:?} (expected once, after_exit or always)"));
            None
        }
        None => None,
    };
    let max_times = cx.opt_count(path, o, "max_times").ok()?;
    if max_times == Some(0) {
        cx.error(&format!("{path}.max_times"), "must be at least 1");
        return None;
    }
    let cooldown = cx.opt_duration(path, o, "cooldown").ok()?;
    if mode == Some(ReEntryMode::Once) && (max_times.is_some() || cooldown.is_some()) {
        cx.error(path, "max_times and cooldown apply to the after_exit and always modes");
        return None;
    }
    Some(ReEntry { mode: mode?, max_times, cooldown })
}

fn schedule(cx: &mut Checker, path: &str, v: &Json) -> Option<Schedule> {
    let o = cx.object(path, v, &["start_at", "end_at"])?;
    let mut instant = |key: &str| -> Result<Option<u64>, ()> {
        o.get(key).map(|t| parse_instant(t).map_err(|e| cx.error(&format!("{path}.{key}"), e))).transpose()
    };
    let (start_at, end_at) = (instant("start_at").ok()?, instant("end_at").ok()?);
    if let (Some(s), Some(e)) = (start_at, end_at) {
        if s >= e {
            cx.error(&format!("{path}.end_at"), "must be after start_at");
            return None;
        }
    }
    Some(Schedule { start_at, end_at })
}

fn clock(cx: &mut Checker, path: &str, o: &Obj, key: &str) -> Option<u32> {
    let text = cx.string(path, o, key)?;
    let parsed = text.split_once(':').and_then(|(h, m)| {
        let ok = h.len() == 2 && m.len() == 2 && (h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit());
        let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
        (ok && h < 24 && m < 60).then_some(h * 60 + m)
    });
    if parsed.is_none() {
        cx.error(&format!("{path}.{key}"), format!("{text:?} is not a time of day as \"HH:MM\" (00:00 to 23:59)"));
    }
    parsed
}

fn quiet_hours(cx: &mut Checker, path: &str, v: &Json) -> Option<QuietHours> {
    let o = cx.object(path, v, &["start", "end", "tz"])?;
    let start = clock(cx, path, o, "start");
    let end = clock(cx, path, o, "end");
    let tz = time_zone(cx, path, o);
    let (start_minute, end_minute) = (start?, end?);
    if start_minute == end_minute {
        cx.error(path, "start and end must differ");
        return None;
    }
    Some(QuietHours { start_minute, end_minute, tz: tz? })
}

fn quota(cx: &mut Checker, path: &str, v: &Json) -> Option<Quota> {
    let o = cx.object(path, v, &["max_actions", "per", "channel"])?;
    let max_actions = at_least_one(cx, path, o);
    let per = match o.contains_key("per") {
        true => Some(positive_duration(cx, path, o, "per")?),
        false => None,
    };
    // A windowed quota remembers each send in its window (in the journey's snapshots).
    if per.is_some() && max_actions.is_some_and(|m| m > MAX_WINDOWED_QUOTA) {
        cx.error(&format!("{path}.max_actions"), format!("a quota with \"per\" counts at most {MAX_WINDOWED_QUOTA}"));
        return None;
    }
    let channel = cx.opt_string(path, o, "channel");
    if channel.as_deref() == Some("") {
        cx.error(&format!("{path}.channel"), "must not be empty");
        return None;
    }
    Some(Quota { max_actions: max_actions?, per, channel })
}

/// The largest quota over a trailing window.
pub const MAX_WINDOWED_QUOTA: u64 = 100_000;

/// `max_actions`: a whole number of at least 1.
fn at_least_one(cx: &mut Checker, path: &str, o: &Obj) -> Option<u64> {
    match cx.opt_count(path, o, "max_actions") {
        Ok(Some(n)) if n >= 1 => Some(n),
        Ok(Some(_)) => {
            cx.error(&format!("{path}.max_actions"), "must be at least 1");
            None
        }
        Ok(None) => {
            cx.error(path, "missing field \"max_actions\"");
            None
        }
        Err(_) => None,
    }
}

fn frequency_cap(cx: &mut Checker, path: &str, v: &Json) -> Option<FrequencyCap> {
    let o = cx.object(path, v, &["max_actions", "per"])?;
    let max_actions = at_least_one(cx, path, o);
    let per = positive_duration(cx, path, o, "per");
    Some(FrequencyCap { max_actions: max_actions?, per: per? })
}

/// Graph rules: every node reachable from the start, every node able to reach an exit, and
/// no cycle through pass-through nodes only (it would loop forever at one instant). Each rule
/// is one walk of the graph: time linear in its nodes and edges.
fn graph(cx: &mut Checker, path: &str, start: &str, nodes: &BTreeMap<String, Node>) {
    let ids: Vec<&str> = nodes.keys().map(String::as_str).collect();
    let index = |id: &str| ids.binary_search(&id).ok();
    let edges: Vec<Vec<usize>> = nodes.values().map(|n| n.targets().into_iter().filter_map(&index).collect()).collect();
    let walk = |from: Vec<usize>, next: &dyn Fn(usize) -> Vec<usize>| -> Vec<bool> {
        let mut seen = vec![false; ids.len()];
        let mut stack = from;
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut seen[i], true) {
                stack.extend(next(i));
            }
        }
        seen
    };
    let reachable = walk(index(start).into_iter().collect(), &|i| edges[i].clone());
    for id in ids.iter().zip(&reachable).filter(|(_, r)| !**r).map(|(id, _)| id) {
        cx.error(&format!("{path}.{id}"), format!("unreachable: no path from the start node {start:?} leads here"));
    }
    // Nodes that can reach an exit: a walk back from the exits.
    let mut back: Vec<Vec<usize>> = vec![Vec::new(); ids.len()];
    for (i, targets) in edges.iter().enumerate() {
        for t in targets {
            back[*t].push(i);
        }
    }
    let exits: Vec<usize> =
        nodes.values().enumerate().filter(|(_, n)| matches!(n, Node::Exit)).map(|(i, _)| i).collect();
    let reach_exit = walk(exits, &|i| back[i].clone());
    for id in ids.iter().zip(&reach_exit).filter(|(_, r)| !**r).map(|(id, _)| id) {
        cx.error(&format!("{path}.{id}"), "no way out: no path from this node reaches an exit node");
    }
    // Cycles through pass-through nodes only: the strongly connected components (Tarjan's,
    // without recursion) of the graph of pass-through nodes, reported at their first node.
    // A wait until a trait's time lets users through at once when that time has passed.
    let passes: Vec<bool> = nodes
        .values()
        .map(|n| !n.waits() || matches!(n, Node::WaitUntilTime { until: Until::Trait { .. }, .. }))
        .collect();
    let through = |i: usize| edges[i].iter().copied().filter(|t| passes[*t]).collect::<Vec<usize>>();
    let mut order = vec![usize::MAX; ids.len()];
    let mut low = vec![0; ids.len()];
    let mut on_stack = vec![false; ids.len()];
    let (mut stack, mut counter) = (Vec::new(), 0);
    for root in (0..ids.len()).filter(|i| passes[*i]) {
        if order[root] != usize::MAX {
            continue;
        }
        // Frames: (node, its pass-through targets, how many were visited).
        let mut frames: Vec<(usize, Vec<usize>, usize)> = vec![(root, through(root), 0)];
        order[root] = counter;
        low[root] = counter;
        counter += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some((v, targets, next)) = frames.last_mut() {
            let v = *v;
            if let Some(&w) = targets.get(*next) {
                *next += 1;
                if order[w] == usize::MAX {
                    order[w] = counter;
                    low[w] = counter;
                    counter += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    frames.push((w, through(w), 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(order[w]);
                }
                continue;
            }
            frames.pop();
            if let Some((parent, _, _)) = frames.last() {
                low[*parent] = low[*parent].min(low[v]);
            }
            if low[v] == order[v] {
                let mut members = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    members.push(w);
                    if w == v {
                        break;
                    }
                }
                let looped = members.len() > 1 || edges[v].contains(&v);
                if looped {
                    members.sort_unstable();
                    let names: Vec<&str> = members.iter().map(|m| ids[*m]).collect();
                    cx.error(
                        &format!("{path}.{}", names[0]),
                        format!(
                            "cycle without a wait through {}: users would loop forever at one instant",
                            names.join(", ")
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs() -> BTreeSet<String> {
        ["lapsed".to_string()].into()
    }

    fn errors(text: &str) -> Vec<(String, String)> {
        parse_journeys(text, &segs()).unwrap_err().0.into_iter().map(|e| (e.path, e.message)).collect()
    }

    #[test]
    fn abandoned_cart_parses() {
        let text = r#"[{"id": "cart", "entry": {"event": "Cart Viewed"}, "start": "w",
          "nodes": {"w": {"wait_until": {"event": "Order Completed", "timeout": "1h", "on_event": "done", "on_timeout": "mail"}},
                    "mail": {"action": {"channel": "email", "template": "cart"}, "next": "done"},
                    "done": {"exit": {}}},
          "goal": {"event": "Order Completed"}, "re_entry": {"mode": "after_exit", "cooldown": "1d"},
          "quiet_hours": {"start": "22:00", "end": "08:00", "tz": "Europe/Paris"},
          "frequency_cap": {"max_actions": 2, "per": "1d"}}]"#;
        let defs = parse_journeys(text, &segs()).unwrap();
        assert_eq!(defs[0].nodes.len(), 3);
        assert_eq!(defs[0].quiet_hours.unwrap().start_minute, 22 * 60);
        assert_eq!(defs[0].re_entry.mode, ReEntryMode::AfterExit);
        // The nested filter form means the same.
        let nested =
            text.replace(r#""entry": {"event": "Cart Viewed"}"#, r#""entry": {"event": {"event": "Cart Viewed"}}"#);
        assert_eq!(parse_journeys(&nested, &segs()).unwrap()[0].entry, defs[0].entry);
    }

    #[test]
    fn scheduled_entries_and_waits_until_a_time_parse_and_their_mistakes_are_named() {
        let journey = |entry: &str| {
            format!(r#"[{{"id": "j", "entry": {entry}, "start": "a", "nodes": {{"a": {{"exit": {{}}}}}}}}]"#)
        };
        let once = parse_journeys(&journey(r#"{"segment": "lapsed", "at": "2025-02-01T09:00:00Z"}"#), &segs()).unwrap();
        let at = crate::time::parse_instant_str("2025-02-01T09:00:00Z").unwrap();
        assert_eq!(once[0].entry, Entry::Scheduled { segment: "lapsed".into(), occurrences: Occurrences::Once(at) });
        let daily = journey(r#"{"segment": "lapsed", "every": "1d", "at": "09:00", "tz": "Europe/Paris"}"#);
        let Entry::Scheduled { occurrences: Occurrences::Every { days, minute, .. }, .. } =
            &parse_journeys(&daily, &segs()).unwrap()[0].entry
        else {
            panic!("not recurring");
        };
        assert_eq!((*days, *minute), (1, 540));
        for (entry, path, message) in [
            (r#"{"segment": "lapsed", "every": "1d"}"#, "$[0].entry", "needs \"at\""),
            (r#"{"segment": "lapsed", "every": "2d", "at": "09:00"}"#, "$[0].entry.every", "\"1d\" or \"1w\""),
            (r#"{"segment": "lapsed", "every": "1w", "at": "09:00"}"#, "$[0].entry", "needs \"starting\""),
            (r#"{"segment": "lapsed", "every": "1d", "at": "9am"}"#, "$[0].entry.at", "HH:MM"),
            (
                r#"{"segment": "lapsed", "every": "1d", "at": "09:00", "tz": "Mars/Base"}"#,
                "$[0].entry.tz",
                "unknown time zone",
            ),
            (r#"{"segment": "lapsed", "at": "2025-02-01T09:00:00Z", "tz": "UTC"}"#, "$[0].entry.tz", "recurring"),
            (r#"{"segment": "lapsed"}"#, "$[0].entry", "needs \"at\""),
            (r#"{"segment": "nowhere", "at": "2025-02-01T09:00:00Z"}"#, "$[0].entry.segment", "unknown segment"),
            (r#"{"event": "X", "every": "1d"}"#, "$[0].entry.every", "scheduled entries"),
            (
                r#"{"segment": "lapsed", "every": "1d", "at": "09:00", "tz": "Asia/Tokyo", "starting": "8210298412799999"}"#,
                "$[0].entry.starting",
                "year 10000",
            ),
            (
                r#"{"segment": "lapsed", "every": "1d", "at": "09:00", "starting": "2025-02-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}"#,
                "$[0].entry.until",
                "after starting",
            ),
        ] {
            let found = errors(&journey(entry));
            assert!(found.iter().any(|(p, m)| p == path && m.contains(message)), "{entry}: {found:?}");
        }
        // A wait until a time of day: its clock, zone and next are checked too.
        let waits = |node: &str| {
            format!(
                r#"[{{"id": "j", "entry": {{"event": "X"}}, "start": "w", "nodes": {{"w": {node}, "e": {{"exit": {{}}}}}}}}]"#
            )
        };
        let ok = waits(r#"{"wait_until_time": {"at": "09:00", "tz": "Europe/Paris"}, "next": "e"}"#);
        assert!(parse_journeys(&ok, &segs()).unwrap()[0].nodes["w"].waits());
        let trial = waits(
            r#"{"wait_until_time": {"trait": "trial_ends_at", "offset": "-3d"}, "next": "e", "if_missing": "e"}"#,
        );
        let Node::WaitUntilTime { until, if_missing, .. } = &parse_journeys(&trial, &segs()).unwrap()[0].nodes["w"]
        else {
            panic!("not a wait until a time");
        };
        assert_eq!(*until, Until::Trait { name: "trial_ends_at".into(), offset_ms: -3 * 86_400_000 });
        assert_eq!(if_missing.as_deref(), Some("e"));
        let local = waits(r#"{"wait_until_time": {"at": "09:00", "tz_trait": "timezone"}, "next": "e"}"#);
        let Node::WaitUntilTime { until: Until::Clock { tz_trait, .. }, .. } =
            &parse_journeys(&local, &segs()).unwrap()[0].nodes["w"]
        else {
            panic!("not a clock");
        };
        assert_eq!(tz_trait.as_deref(), Some("timezone"));
        for (node, path, message) in [
            (r#"{"wait_until_time": {"at": "25:00"}, "next": "e"}"#, "$[0].nodes.w.wait_until_time.at", "HH:MM"),
            (r#"{"wait_until_time": {"at": "+9:05"}, "next": "e"}"#, "$[0].nodes.w.wait_until_time.at", "HH:MM"),
            (
                r#"{"wait_until_time": {"at": "09:00", "tz": "Nowhere"}, "next": "e"}"#,
                "$[0].nodes.w.wait_until_time.tz",
                "unknown time zone",
            ),
            (r#"{"wait_until_time": {"at": "09:00"}}"#, "$[0].nodes.w", "missing field \"next\""),
            (
                r#"{"wait_until_time": {"at": "09:00", "offset": "1h"}, "next": "e"}"#,
                "$[0].nodes.w.wait_until_time.offset",
                "goes with \"trait\"",
            ),
            (
                r#"{"wait_until_time": {"at": "09:00", "tz_trait": ""}, "next": "e"}"#,
                "$[0].nodes.w.wait_until_time.tz_trait",
                "must not be empty",
            ),
            (r#"{"wait_until_time": {"trait": "ends"}, "next": "e"}"#, "$[0].nodes.w", "missing field \"if_missing\""),
            (
                r#"{"wait_until_time": {"trait": "ends", "offset": "-3x"}, "next": "e", "if_missing": "e"}"#,
                "$[0].nodes.w.wait_until_time.offset",
                "unit",
            ),
            (
                r#"{"wait_until_time": {"trait": "ends", "at": "09:00"}, "next": "e", "if_missing": "e"}"#,
                "$[0].nodes.w.wait_until_time.at",
                "\"trait\" and \"offset\" only",
            ),
            (
                r#"{"wait_until_time": {"trait": "ends"}, "next": "e", "if_missing": "nowhere"}"#,
                "$[0].nodes.w.if_missing",
                "nowhere",
            ),
            (
                r#"{"wait_until_time": {"at": "09:00"}, "next": "e", "if_missing": "e"}"#,
                "$[0].nodes.w.if_missing",
                "only a wait",
            ),
            (
                r#"{"wait_until_time": {"trait": "ends"}, "next": "w", "if_missing": "e"}"#,
                "$[0].nodes.w",
                "cycle without a wait",
            ),
            (
                r#"{"wait": {"duration": "1d"}, "next": "e", "if_missing": "e"}"#,
                "$[0].nodes.w.if_missing",
                "only a wait",
            ),
            (
                r#"{"action": {"channel": "sms", "payload": {"to": ["{{ traits.phone }}", "{{ who }}"]}}, "next": "e"}"#,
                "$[0].nodes.w.action.payload.to[1]",
                "unknown name \"who\"",
            ),
            (
                r#"{"action": {"channel": "sms", "payload": {"text": "Hi {{ traits.name "}}, "next": "e"}"#,
                "$[0].nodes.w.action.payload.text",
                "not a valid template",
            ),
        ] {
            let found = errors(&waits(node));
            assert!(found.iter().any(|(p, m)| p == path && m.contains(message)), "{node}: {found:?}");
        }
    }

    #[test]
    fn reports_every_graph_and_field_error() {
        let text = r#"[{"id": "j", "entry": {"segment_enter": "nowhere"}, "start": "a",
          "nodes": {
            "a": {"branch": {"cases": [{"when": {"in_segment": "ghost"}, "next": "b"}], "else": "missing"}},
            "b": {"split": {"branches": [{"percent": 60, "next": "c"}, {"percent": 30, "next": "a"}]}},
            "c": {"action": {"channel": "sms"}, "next": "b"},
            "loner": {"exit": {}},
            "w": {"wait": {"duration": "0s"}, "next": "loner"}
          },
          "re_entry": {"mode": "sometimes"},
          "quiet_hours": {"start": "25:00", "end": "08:00", "tz": "Mars/Base"},
          "frequency_cap": {"max_actions": 0, "per": "1d"},
          "quota": {"max_actions": 0, "per": "0s", "channel": ""},
          "schedule": {"start_at": "2024-02-01T00:00:00Z", "end_at": "2024-01-01T00:00:00Z"}}]"#;
        let errs = errors(text);
        let expect = [
            ("$[0].entry.segment_enter", "unknown segment \"nowhere\""),
            ("$[0].nodes.a.branch.cases[0].when", "unknown segment \"ghost\""),
            ("$[0].nodes.a.branch.else", "unknown node \"missing\""),
            ("$[0].nodes.b.split.branches", "percents sum to 90"),
            ("$[0].nodes.w.wait.duration", "must be longer than 0"),
            ("$[0].re_entry.mode", "unknown mode"),
            ("$[0].quiet_hours.start", "not a time of day"),
            ("$[0].quiet_hours.tz", "unknown time zone"),
            ("$[0].frequency_cap.max_actions", "at least 1"),
            ("$[0].quota.max_actions", "at least 1"),
            ("$[0].quota.per", ""),
            ("$[0].schedule.end_at", "after start_at"),
        ];
        for (path, msg) in expect {
            assert!(errs.iter().any(|(p, m)| p == path && m.contains(msg)), "missing {path}: {msg} in {errs:#?}");
        }
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    }

    #[test]
    fn journeys_over_the_limits_are_refused_at_their_paths() {
        let mut nodes = serde_json::Map::new();
        for i in 0..257 {
            nodes.insert(format!("w{i}"), serde_json::json!({"wait": {"duration": "1h"}, "next": "e"}));
        }
        nodes.insert("e".into(), serde_json::json!({"exit": {}}));
        let many = serde_json::json!({"id": "j", "entry": {"event": "X"}, "start": "w0", "nodes": nodes});
        let errs = validate_journey(&many, &segs()).unwrap_err().0;
        assert!(errs.iter().any(|e| e.path == "$.nodes" && e.message.contains("258 nodes; at most 256")), "{errs:#?}");
        let mut payload = serde_json::json!(1);
        for _ in 0..17 {
            payload = serde_json::json!([payload]);
        }
        let deep = serde_json::json!({"id": "j", "entry": {"event": "X"}, "start": "a",
            "nodes": {"a": {"action": {"channel": "c", "payload": payload}, "next": "e"}, "e": {"exit": {}}}});
        let errs = validate_journey(&deep, &segs()).unwrap_err().0;
        assert!(
            errs.iter().any(|e| e.path == "$.nodes.a.action.payload" && e.message.contains("16 levels")),
            "{errs:#?}"
        );
        let mut when = serde_json::json!({"in_segment": "lapsed"});
        for _ in 0..40 {
            when = serde_json::json!({"not": when});
        }
        let nested = serde_json::json!({"id": "j", "entry": {"event": "X"}, "start": "a", "exit_when": when,
            "nodes": {"a": {"exit": {}}}});
        let errs = validate_journey(&nested, &segs()).unwrap_err().0;
        assert!(errs.iter().any(|e| e.message.contains("at most 32 levels")), "{errs:#?}");
    }

    #[test]
    fn unreachable_stuck_and_instant_cycles() {
        let text = r#"[{"id": "j", "entry": {"event": "X"}, "start": "a",
          "nodes": {
            "a": {"branch": {"cases": [{"when": {"performed": {"event": "Y"}}, "next": "b"}], "else": "e"}},
            "b": {"action": {"channel": "push"}, "next": "c"},
            "c": {"split": {"branches": [{"percent": 50, "next": "b"}, {"percent": 50, "next": "b"}]}},
            "e": {"exit": {}},
            "orphan": {"wait": {"duration": "1h"}, "next": "e"},
            "w1": {"wait": {"duration": "1h"}, "next": "w2"},
            "w2": {"wait": {"duration": "1h"}, "next": "w1"}
          }}]"#;
        let errs = errors(text);
        let has = |path: &str, msg: &str| errs.iter().any(|(p, m)| p == path && m.contains(msg));
        assert!(has("$[0].nodes.orphan", "unreachable"), "{errs:#?}");
        assert!(has("$[0].nodes.w1", "unreachable"), "{errs:#?}");
        assert!(has("$[0].nodes.b", "no way out"), "{errs:#?}");
        assert!(has("$[0].nodes.w2", "no way out"), "{errs:#?}");
        assert!(has("$[0].nodes.b", "cycle without a wait through b, c"), "{errs:#?}");
        // A loop through a wait is fine.
        let ok = r#"[{"id": "j", "entry": {"event": "X"}, "start": "a",
          "nodes": {"a": {"action": {"channel": "push"}, "next": "w"},
                    "w": {"wait_until": {"event": "Y", "timeout": "1d", "on_event": "e", "on_timeout": "a"}},
                    "e": {"exit": {}}}}]"#;
        parse_journeys(ok, &segs()).unwrap();
    }
}
