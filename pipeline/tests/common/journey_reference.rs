//! A plain sequential interpreter of journeys, written for the tests only. It reads the
//! journey JSON and the raw events itself, walks each user through time one moment after the
//! other, and evaluates conditions with the segment reference evaluator: no dataflow, no
//! shared code with the engine. The rules it follows are the documented ones:
//!
//! - a moment is any time something may happen: an event, a possible condition change
//!   (event time plus a duration from the definitions), a lifecycle command, the schedule
//!   end, the user's timer;
//! - at one moment: lifecycle first (an end cancels; a resume applies the exit rule), then
//!   the exit rule and a segment entry, then a scheduled entry's occurrence (the segment's
//!   members then try to enter), then entries from outside (in request order), then the due
//!   timer, then events by `messageId`, each event
//!   doing at most one of: goal, awaited event, entry.
//!
//! Quiet hours and schedules are supported in UTC only; waits until a time of day read the
//! user's time zone from a trait (with chrono-tz). Action payloads are rendered with
//! minijinja (the template language users write), the context built here from the raw events.

use super::reference::{duration, filter_matches, lookup, RefEvent, Reference};
use serde_json::{json, Value as J};
use std::collections::{BTreeMap, BTreeSet};

/// A lifecycle command: `publish`, `pause`, `resume` or `end`.
#[derive(Clone, Debug)]
pub struct Cmd {
    pub time: u64,
    pub journey: usize,
    pub command: &'static str,
}

/// The filter inside `{"event": {...}}` or the object itself when `event` is a name.
fn filter_of(v: &J) -> &J {
    match v.get("event") {
        Some(inner @ J::Object(_)) => inner,
        _ => v,
    }
}

fn after(status: &'static str, command: &str) -> &'static str {
    match (status, command) {
        ("ended", _) | (_, "end") => "ended",
        ("draft", "publish") => "ongoing",
        ("ongoing", "pause") => "paused",
        ("paused", "resume") => "ongoing",
        (s, _) => s,
    }
}

fn clock(v: &J) -> u64 {
    let s = v.as_str().unwrap();
    let (h, m) = s.split_once(':').unwrap();
    (h.parse::<u64>().unwrap() * 60 + m.parse::<u64>().unwrap()) * 60_000
}

/// The release time of quiet hours (UTC) when `t` falls inside them.
fn quiet_release(q: &J, t: u64) -> Option<u64> {
    assert!(q.get("tz").is_none(), "the reference supports UTC quiet hours only");
    const DAY: u64 = 86_400_000;
    let (s, e) = (clock(&q["start"]), clock(&q["end"]));
    let tod = t % DAY;
    let midnight = t - tod;
    if s < e {
        (s <= tod && tod < e).then_some(midnight + e)
    } else if tod >= s {
        Some(midnight + DAY + e)
    } else {
        (tod < e).then_some(midnight + e)
    }
}

/// A scheduled entry's segment condition and its occurrences within `(from, to)` (a day on
/// either side), in UTC: once at `at`, or every day (week) at `at` o'clock, from `starting`
/// (whose day of the week a weekly one keeps), before `until`.
fn scheduled_of(j: &J, (from, to): (u64, u64)) -> Option<(J, BTreeSet<u64>)> {
    const DAY: u64 = 86_400_000;
    let entry = &j["entry"];
    let segment = entry.get("segment")?;
    assert!(entry.get("tz").is_none_or(|tz| tz == "UTC"), "the reference supports UTC schedules only");
    let cond = json!({"in_segment": segment});
    let Some(every) = entry.get("every") else {
        return Some((cond, BTreeSet::from([entry["at"].as_u64().unwrap()])));
    };
    let period = if every == "1w" { 7 } else { 1 };
    let starting = entry.get("starting").and_then(J::as_u64);
    let until = entry.get("until").and_then(J::as_u64);
    let anchor = starting.map_or(0, |s| s / DAY);
    let times = (from / DAY).saturating_sub(1)..=to / DAY + 1;
    let times = times
        .filter(|day| *day >= anchor && (day - anchor).is_multiple_of(period))
        .map(|day| day * DAY + clock(&entry["at"]))
        .filter(|t| starting.is_none_or(|s| *t >= s) && until.is_none_or(|u| *t < u))
        .collect();
    Some((cond, times))
}

fn split_point(journey: &str, node: &str, user: &str) -> u64 {
    let mut bytes = journey.as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(node.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(user.as_bytes()).to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes) % 10_000
}

fn action_id(journey: &str, version: u32, user: &str, node: &str, reached: u64) -> String {
    let mut bytes = journey.as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(user.as_bytes()).to_le_bytes());
    bytes.extend_from_slice(node.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&reached.to_le_bytes());
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes))
}

/// The documented placeholder rules, written again: a string holding `{{`, `{%` or `{#` is a
/// template; one that is a single `{{ expression }}` becomes the expression's value; a
/// missing value is named by the first path in the template's text that does not resolve.
/// A rendering's failure: `(status, error)`.
type Failure = (&'static str, String);

fn render_payload(payload: &J, cx: &J) -> Result<J, Failure> {
    fn is_template(s: &str) -> bool {
        s.contains("{{") || s.contains("{%") || s.contains("{#")
    }
    fn first_missing(s: &str, cx: &J) -> Option<String> {
        let bytes = s.as_bytes();
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'.';
        let mut i = 0;
        while i < bytes.len() {
            if word(bytes[i]) && (i == 0 || !word(bytes[i - 1])) {
                let end = (i..bytes.len()).find(|j| !word(bytes[*j])).unwrap_or(bytes.len());
                let path = s[i..end].trim_end_matches('.');
                let root = path.split('.').next().unwrap();
                if ["traits", "event", "context", "journey", "node"].contains(&root) {
                    let mut at = cx;
                    let resolved = path.split('.').all(|part| match at.get(part) {
                        Some(x) => {
                            at = x;
                            true
                        }
                        None => false,
                    });
                    if !resolved {
                        return Some(path.to_string());
                    }
                }
                i = end;
            } else {
                i += 1;
            }
        }
        None
    }
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let render_one = |s: &str| -> Result<J, Failure> {
        let missing = || ("failed_missing_data", first_missing(s, cx).expect("a missing path"));
        let failed = |e: minijinja::Error| match e.kind() {
            minijinja::ErrorKind::UndefinedError => missing(),
            _ => ("failed_render", e.to_string()),
        };
        let trimmed = s.trim();
        let lone = trimmed
            .strip_prefix("{{")
            .and_then(|x| x.strip_suffix("}}"))
            .filter(|x| !x.contains("{{") && !x.contains("}}") && !x.contains("{%") && !x.contains("{#"));
        match lone {
            Some(expr) => {
                let expr = expr.trim_start_matches('-').trim_end_matches('-');
                let v = env.compile_expression(expr).unwrap().eval(cx).map_err(failed)?;
                if v.is_undefined() {
                    return Err(missing());
                }
                Ok(serde_json::to_value(&v).unwrap())
            }
            None => env.render_str(s, cx).map(J::String).map_err(failed),
        }
    };
    fn walk(v: &J, f: &dyn Fn(&str) -> Result<J, Failure>) -> Result<J, Failure> {
        Ok(match v {
            J::String(s) if is_template(s) => f(s)?,
            J::Array(xs) => J::Array(xs.iter().map(|x| walk(x, f)).collect::<Result<_, _>>()?),
            J::Object(m) => J::Object(m.iter().map(|(k, x)| Ok((k.clone(), walk(x, f)?))).collect::<Result<_, _>>()?),
            other => other.clone(),
        })
    }
    walk(payload, &render_one)
}

/// Whether a journey's action templates read `root` (`event`, `context`): a placeholder
/// naming it, found by scanning their text.
fn reads(j: &J, root: &str) -> bool {
    fn texts<'a>(v: &'a J, out: &mut Vec<&'a str>) {
        match v {
            J::String(s) if has_template(v) => out.push(s),
            J::Array(xs) => xs.iter().for_each(|x| texts(x, out)),
            J::Object(m) => m.values().for_each(|x| texts(x, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    for n in j["nodes"].as_object().unwrap().values() {
        if let Some(p) = n.get("action").and_then(|a| a.get("payload")) {
            texts(p, &mut found);
        }
    }
    found.iter().any(|s| {
        s.match_indices(root).any(|(i, _)| {
            let before = s[..i].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
            let after = s[i + root.len()..].chars().next().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            before && after
        })
    })
}

fn has_template(v: &J) -> bool {
    match v {
        J::String(s) => s.contains("{{") || s.contains("{%") || s.contains("{#"),
        J::Array(xs) => xs.iter().any(has_template),
        J::Object(m) => m.values().any(has_template),
        _ => false,
    }
}

/// The next `minute` o'clock strictly after `t` in the zone a trait names, else `tz`.
fn next_local(t: u64, minute: u64, zone: Option<&J>, tz: Option<&J>) -> u64 {
    use chrono::TimeZone;
    let named = zone.and_then(J::as_str).and_then(|z| z.parse::<chrono_tz::Tz>().ok());
    let tz: chrono_tz::Tz = named.unwrap_or_else(|| tz.and_then(J::as_str).unwrap_or("UTC").parse().unwrap());
    let now = chrono::DateTime::from_timestamp_millis(t as i64).unwrap().with_timezone(&tz);
    let day = now.date_naive();
    (-1..3)
        .map(|d| day + chrono::Duration::days(d))
        .map(|d| d.and_hms_opt(0, 0, 0).unwrap() + chrono::Duration::minutes(minute as i64))
        .map(|local| {
            tz.from_local_datetime(&local).earliest().expect("no gap at these times").timestamp_millis() as u64
        })
        .find(|at| *at > t)
        .unwrap()
}

/// The instant a trait value names: epoch ms, an RFC 3339 date-time or a `YYYY-MM-DD` date.
fn trait_instant(v: Option<&J>) -> Option<u64> {
    match v? {
        // Up to the end of year 9999, as the engine reads them.
        J::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64))
            .filter(|ms| *ms <= 253_402_300_799_999),
        J::String(s) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(at) => u64::try_from(at.timestamp_millis()).ok(),
            Err(_) => {
                let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
                u64::try_from(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis()).ok()
            }
        },
        _ => None,
    }
}

fn signed_ms(v: Option<&J>) -> i64 {
    let Some(text) = v.and_then(J::as_str) else { return 0 };
    match text.strip_prefix('-') {
        Some(rest) => -(duration(Some(&J::String(rest.into()))).unwrap() as i64),
        None => duration(Some(&J::String(text.trim_start_matches('+').into()))).unwrap() as i64,
    }
}

/// A new version published at `at`: its definition and the publish request's `migrate`.
#[derive(Clone, Debug)]
pub struct Upgrade {
    pub at: u64,
    pub next: J,
    pub migrate: J,
}

fn kind_of(j: &J, node: &str) -> Option<String> {
    j["nodes"]
        .get(node)
        .map(|n| n.as_object().unwrap().keys().find(|k| *k != "next" && *k != "if_missing").unwrap().clone())
}

/// Where a user at `node` of `old` goes in `new`: `(node, stays)`, or `None` to leave.
fn place(old: &J, new: &J, migrate: &J, node: &str) -> Option<(String, bool)> {
    if let Some(to) = migrate.get("node_map").and_then(|m| m.get(node)).and_then(J::as_str) {
        return Some((to.to_string(), false));
    }
    if let Some(kind) = kind_of(new, node) {
        let holds = ["wait", "wait_until", "wait_until_time", "action"].contains(&kind.as_str());
        return Some((node.to_string(), holds && kind_of(old, node) == Some(kind)));
    }
    let default = migrate.get("default").and_then(J::as_str).unwrap_or("exit");
    new["nodes"].get(default).map(|_| (default.to_string(), false))
}

/// One user walking through one journey.
struct Walk<'a> {
    j: &'a J,
    version: u64,
    id: &'a str,
    user: &'a str,
    evs: &'a [RefEvent],
    reference: &'a Reference<'a>,
    status: &'static str,
    /// (node, since, timer)
    at: Option<(String, u64, Option<u64>)>,
    entries: u64,
    last_entry: Option<u64>,
    sent: Vec<u64>,
    /// The event behind the entry or the last awaited event, as templates see it.
    cause: Option<J>,
    /// The context of an entry from outside.
    context: Option<J>,
    /// Split branches `(node, branch)` taken since entering.
    splits: Vec<(String, u64)>,
    transitions: Vec<J>,
    actions: Vec<J>,
}

impl<'a> Walk<'a> {
    fn cond(&self, c: &J, t: u64) -> bool {
        self.evs.iter().any(|e| self.reference.counts(e, t)) && self.reference.holds(c, self.evs, t)
    }

    fn exit_holds(&self, t: u64) -> bool {
        self.j.get("exit_when").is_some_and(|c| self.cond(c, t))
    }

    fn move_(&mut self, from: Option<&str>, to: Option<&str>, t: u64, reason: String) {
        self.transitions.push(json!({"journey": self.id, "version": self.version, "user_id": self.user,
            "from": from, "to": to, "time": t, "reason": reason}));
    }

    fn leave(&mut self, t: u64, reason: &str) {
        (self.cause, self.context) = (None, None);
        self.splits.clear();
        if let Some((node, _, _)) = self.at.take() {
            self.move_(Some(&node), None, t, reason.to_string());
        }
    }

    /// An action record; `rendered` is the payload as sent, or why it could not be.
    fn action(&mut self, node: &str, reached: u64, t: u64, status: &str, rendered: Option<Result<J, String>>) {
        let a = &self.j["nodes"][node]["action"];
        let defined = a.get("payload").cloned().unwrap_or(J::Null);
        let (payload, error) = match rendered {
            None if has_template(&defined) => (J::Null, None),
            None => (defined, None),
            Some(Ok(p)) => (p, None),
            Some(Err(why)) => (J::Null, Some(why)),
        };
        let mut line = json!({"action_id": action_id(self.id, self.version as u32, self.user, node, reached), "journey": self.id,
            "version": self.version, "node": node, "user_id": self.user, "channel": a["channel"],
            "template": a.get("template").cloned().unwrap_or(J::Null), "payload": payload,
            "time": t, "status": status});
        if let Some(e) = error {
            line["error"] = J::String(e);
        }
        self.actions.push(line);
    }

    /// What templates see at `t` at `node`.
    fn context(&self, node: &str, t: u64) -> J {
        let mut cx = json!({"traits": self.reference.traits(self.evs, t), "journey": {"id": self.id, "version": self.version},
            "node": node});
        if let Some(e) = &self.cause {
            cx["event"] = e.clone();
        }
        if let Some(c) = &self.context {
            cx["context"] = c.clone();
        }
        cx
    }

    fn send(&mut self, node: &str, reached: u64, t: u64) {
        if let Some(cap) = self.j.get("frequency_cap") {
            let per = duration(cap.get("per")).unwrap();
            let max = cap["max_actions"].as_u64().unwrap();
            let recent = self.sent.iter().filter(|s| **s + per > t).count() as u64;
            if recent >= max {
                return self.action(node, reached, t, "suppressed_by_cap", None);
            }
        }
        let payload = self.j["nodes"][node]["action"].get("payload").cloned().unwrap_or(J::Null);
        let (status, rendered) = if has_template(&payload) {
            match render_payload(&payload, &self.context(node, t)) {
                Ok(p) => ("sent", Some(Ok(p))),
                Err((status, why)) => (status, Some(Err(why))),
            }
        } else {
            ("sent", None)
        };
        if status == "sent" && self.j.get("frequency_cap").is_some() {
            self.sent.push(t);
        }
        self.action(node, reached, t, status, rendered);
    }

    fn arrive(&mut self, from: Option<String>, node: &str, t: u64, reason: String) {
        let (mut from, mut node, mut reason) = (from, node.to_string(), reason);
        loop {
            self.move_(from.as_deref(), Some(&node), t, reason.clone());
            let n = &self.j["nodes"][&node];
            let (kind, body) = n.as_object().unwrap().iter().find(|(k, _)| *k != "next" && *k != "if_missing").unwrap();
            let (next, why) = match kind.as_str() {
                "wait" => {
                    self.at = Some((node, t, Some(t + duration(body.get("duration")).unwrap())));
                    return;
                }
                "wait_until" => {
                    self.at = Some((node, t, Some(t + duration(body.get("timeout")).unwrap())));
                    return;
                }
                "wait_until_time" => {
                    let traits = self.reference.traits(self.evs, t);
                    let read = |name: &J| name.as_str().and_then(|n| traits.get(n)).cloned();
                    match body.get("trait") {
                        // The next `at` o'clock strictly after now, in the user's zone.
                        None => {
                            let zone = body.get("tz_trait").and_then(read);
                            let due = next_local(t, clock(&body["at"]) / 60_000, zone.as_ref(), body.get("tz"));
                            self.at = Some((node, t, Some(due)));
                            return;
                        }
                        // The trait's time moved by the offset; passed: on at once.
                        Some(name) => match trait_instant(read(name).as_ref()) {
                            Some(at) => {
                                let due = (at as i64 + signed_ms(body.get("offset"))).max(0) as u64;
                                if due > t {
                                    self.at = Some((node, t, Some(due)));
                                    return;
                                }
                                (n["next"].as_str().unwrap().to_string(), "next".to_string())
                            }
                            None => (n["if_missing"].as_str().unwrap().to_string(), "missing".to_string()),
                        },
                    }
                }
                "exit" => {
                    (self.at, self.cause, self.context) = (None, None, None);
                    self.splits.clear();
                    return;
                }
                "branch" => {
                    let cases = body["cases"].as_array().unwrap();
                    match cases.iter().position(|c| self.cond(&c["when"], t)) {
                        Some(i) => (cases[i]["next"].as_str().unwrap().to_string(), format!("case:{i}")),
                        None => (body["else"].as_str().unwrap().to_string(), "else".to_string()),
                    }
                }
                "split" => {
                    let point = split_point(self.id, &node, self.user);
                    let branches = body["branches"].as_array().unwrap();
                    let mut upper = 0;
                    let i = branches
                        .iter()
                        .position(|b| {
                            upper += (b["percent"].as_f64().unwrap() * 100.0).round() as u64;
                            point < upper
                        })
                        .unwrap();
                    if !self.splits.iter().any(|(n, _)| *n == node) {
                        self.splits.push((node.clone(), i as u64));
                    }
                    (branches[i]["next"].as_str().unwrap().to_string(), format!("split:{i}"))
                }
                "action" => {
                    if let Some(release) = self.j.get("quiet_hours").and_then(|q| quiet_release(q, t)) {
                        self.action(&node, t, t, "held_quiet_hours", None);
                        self.at = Some((node, t, Some(release)));
                        return;
                    }
                    self.send(&node, t, t);
                    (n["next"].as_str().unwrap().to_string(), "next".to_string())
                }
                other => panic!("reference: node kind {other}"),
            };
            (from, node, reason) = (Some(node), next, why);
        }
    }

    fn try_enter(&mut self, t: u64, reason: &str, cause: Option<&RefEvent>, context: Option<&J>) {
        let schedule = self.j.get("schedule");
        let bound = |k: &str| schedule.and_then(|s| s.get(k)).and_then(J::as_u64);
        if bound("start_at").is_some_and(|s| t < s) || bound("end_at").is_some_and(|e| t >= e) {
            return;
        }
        if self.exit_holds(t) {
            return;
        }
        let re = self.j.get("re_entry");
        let mode = re.and_then(|r| r["mode"].as_str()).unwrap_or("once");
        let max = re.and_then(|r| r.get("max_times")).and_then(J::as_u64);
        let cooldown = re.and_then(|r| duration(r.get("cooldown")));
        let ok = match mode {
            "once" => self.entries == 0,
            _ => {
                (mode == "always" || self.at.is_none())
                    && max.is_none_or(|m| self.entries < m)
                    && self.last_entry.is_none_or(|l| cooldown.is_none_or(|c| t - l >= c))
            }
        };
        if !ok {
            return;
        }
        self.entries += 1;
        self.last_entry = Some(t);
        self.splits.clear();
        // Kept only by a version whose templates read them (what a migration carries over).
        self.cause = cause.map(event_json).filter(|_| reads(self.j, "event"));
        self.context = context.cloned().filter(|_| reads(self.j, "context"));
        let from = self.at.take().map(|a| a.0);
        let start = self.j["start"].as_str().unwrap().to_string();
        self.arrive(from, &start, t, reason.into());
    }

    /// The next version takes over at `t`: the user is placed, then its exit rule applies.
    fn migrate(&mut self, next: &'a J, migrate: &J, t: u64) {
        let old = self.j;
        self.j = next;
        // The next version keeps what its own templates read.
        self.cause = self.cause.take().filter(|_| reads(next, "event"));
        self.context = self.context.take().filter(|_| reads(next, "context"));
        self.version += 1;
        let Some((node, since, timer)) = self.at.take() else {
            let end = next.get("schedule").and_then(|s| s.get("end_at")).and_then(J::as_u64);
            if end.is_some_and(|e| e <= t) {
                self.status = "ended";
            }
            return;
        };
        match place(old, next, migrate, &node) {
            Some((to, true)) => {
                self.move_(Some(&node), Some(&to), t, "migrated".into());
                self.at = Some((to, since, timer));
            }
            Some((to, false)) => self.arrive(Some(node), &to, t, "migrated".into()),
            None => self.move_(Some(&node), None, t, "migrated".into()),
        }
        let end = next.get("schedule").and_then(|s| s.get("end_at")).and_then(J::as_u64);
        if end.is_some_and(|e| e <= t) {
            // Published after its own end: it ends at once.
            self.status = "ended";
            self.leave(t, "ended");
        } else if self.status == "ongoing" && self.at.is_some() && self.exit_holds(t) {
            self.leave(t, "exit_when");
        }
    }

    fn fire(&mut self, t: u64) {
        let Some((node, since, _)) = self.at.clone() else { return };
        let n = &self.j["nodes"][&node];
        if let Some(w) = n.get("wait_until") {
            self.arrive(Some(node), w["on_timeout"].as_str().unwrap(), t, "timeout".into());
        } else if n.get("action").is_some() {
            self.send(&node, since, t);
            let next = n["next"].as_str().unwrap().to_string();
            self.arrive(Some(node), &next, t, "next".into());
        } else {
            let next = n["next"].as_str().unwrap().to_string();
            self.arrive(Some(node), &next, t, "next".into());
        }
    }

    fn event(&mut self, e: &RefEvent, t: u64) {
        if let Some((node, _, _)) = self.at.clone() {
            if self.j.get("goal").is_some_and(|g| filter_matches(filter_of(g), e)) {
                // The goal transition carries, for the reports only, what the conversion was
                // worth (in millionths) and the split branches taken.
                let path = self.j["goal"].get("value").and_then(J::as_str);
                let value = path
                    .and_then(|p| lookup(&e.fields, p))
                    .and_then(J::as_f64)
                    .filter(|v| v.abs() <= 1e9)
                    .map_or(0, |v| (v * 1e6).round() as i64);
                let splits: Vec<J> = self.splits.iter().map(|(n, b)| json!([n, b])).collect();
                self.leave(t, "goal");
                let last = self.transitions.last_mut().unwrap();
                last["_value"] = json!(value);
                last["_splits"] = J::Array(splits);
                return;
            }
            if let Some(w) = self.j["nodes"][&node].get("wait_until") {
                if filter_matches(filter_of(w), e) {
                    self.cause = Some(event_json(e)).filter(|_| reads(self.j, "event"));
                    self.arrive(Some(node), w["on_event"].as_str().unwrap(), t, "event".into());
                    return;
                }
            }
        }
        let entry = &self.j["entry"];
        if entry.get("event").is_some() && filter_matches(filter_of(entry), e) {
            self.try_enter(t, "entry", Some(e), None);
        }
    }
}

/// A quota of `def` (version `version`) applied to action lines: a sent one (of its channel)
/// finding `max_actions` sends let through within the trailing `per` (or at all) before it,
/// in `(time, action_id)` order, is `suppressed_by_quota` instead, its payload unwritten.
fn apply_quota<'a>(def: &J, version: u64, actions: impl Iterator<Item = &'a mut J>) {
    let Some(q) = def.get("quota") else { return };
    let max = q["max_actions"].as_u64().unwrap() as usize;
    let per = duration(q.get("per"));
    let id = def["id"].as_str().unwrap();
    let mut mine: Vec<&mut J> = actions
        .filter(|a| a["journey"] == id && a["version"] == version && a["status"] == "sent")
        .filter(|a| q.get("channel").is_none_or(|c| a["channel"] == *c))
        .collect();
    mine.sort_by(|a, b| {
        (a["time"].as_u64(), a["action_id"].as_str()).cmp(&(b["time"].as_u64(), b["action_id"].as_str()))
    });
    let mut passed: Vec<u64> = Vec::new();
    for a in mine {
        let t = a["time"].as_u64().unwrap();
        let counted = passed.iter().filter(|s| per.is_none_or(|p| **s + p > t)).count();
        if counted >= max {
            a["status"] = json!("suppressed_by_quota");
            if has_template(&a["payload"])
                || def["nodes"][a["node"].as_str().unwrap()]["action"].get("payload").is_some_and(has_template)
            {
                a["payload"] = J::Null;
            }
        } else {
            passed.push(t);
        }
    }
}

/// An event as templates see it.
fn event_json(e: &RefEvent) -> J {
    let props = if e.fields.is_object() { e.fields.clone() } else { json!({}) };
    json!({"type": e.kind, "event": e.name, "messageId": e.msg, "timestamp": e.ts, "properties": props})
}

/// Runs every journey for every user up to `as_of`; returns `(transitions, actions)` as the
/// engine writes them: sorted by `(time, journey, user)`, each user's in the order they happened.
/// With `since`, the journeys were installed then: moments up to it only set condition states.
pub fn interpret(
    journeys: &[J],
    reference: &Reference,
    spans: &BTreeSet<u64>,
    commands: &[Cmd],
    as_of: u64,
    since: Option<u64>,
) -> (Vec<J>, Vec<J>) {
    interpret_versions(journeys, &vec![None; journeys.len()], reference, spans, commands, as_of, since)
}

/// As [`interpret`], with journey `i` replaced by `upgrades[i]` (if any) at its time: the
/// version before handles that time, then users move to the next one.
pub fn interpret_versions(
    journeys: &[J],
    upgrades: &[Option<Upgrade>],
    reference: &Reference,
    spans: &BTreeSet<u64>,
    commands: &[Cmd],
    as_of: u64,
    since: Option<u64>,
) -> (Vec<J>, Vec<J>) {
    let (transitions, actions) = interpret_all(journeys, upgrades, &[], reference, spans, commands, as_of, since);
    (without_notes(transitions), actions)
}

/// Transitions as the engine writes them: goal transitions without the notes (`_value`,
/// `_splits`) the interpreter adds for the reports.
pub fn without_notes(mut transitions: Vec<J>) -> Vec<J> {
    for t in &mut transitions {
        if let Some(o) = t.as_object_mut() {
            o.remove("_value");
            o.remove("_splits");
        }
    }
    transitions
}

/// As [`interpret`], with entries from outside; goal transitions carry notes for the reports
/// (`_value`: the conversion's worth in millionths, `_splits`: `[node, branch]` taken), which
/// [`without_notes`] takes off.
pub fn interpret_entering(
    journeys: &[J],
    entries: &[ApiEntry],
    reference: &Reference,
    spans: &BTreeSet<u64>,
    commands: &[Cmd],
    as_of: u64,
) -> (Vec<J>, Vec<J>) {
    interpret_all(journeys, &vec![None; journeys.len()], entries, reference, spans, commands, as_of, None)
}

/// Users let into journey `journey` at `time` from outside, with a context.
#[derive(Clone, Debug)]
pub struct ApiEntry {
    pub time: u64,
    pub journey: usize,
    pub users: Vec<String>,
    pub context: Option<J>,
}

#[allow(clippy::too_many_arguments)]
fn interpret_all(
    journeys: &[J],
    upgrades: &[Option<Upgrade>],
    entries: &[ApiEntry],
    reference: &Reference,
    spans: &BTreeSet<u64>,
    commands: &[Cmd],
    as_of: u64,
    since: Option<u64>,
) -> (Vec<J>, Vec<J>) {
    let mut transitions: Vec<(u64, usize, String, J)> = Vec::new();
    let mut actions: Vec<(u64, usize, String, J)> = Vec::new();
    for (ji, j) in journeys.iter().enumerate() {
        let id = j["id"].as_str().unwrap();
        let end_of = |j: &J| j.get("schedule").and_then(|s| s.get("end_at")).and_then(J::as_u64);
        let cmds: Vec<&Cmd> = commands.iter().filter(|c| c.journey == ji).collect();
        let entry_of = |j: &J| {
            ["segment_enter", "segment_exit"]
                .iter()
                .find_map(|k| j["entry"].get(*k).map(|s| (json!({"in_segment": s}), *k == "segment_enter")))
        };
        let upgrade = upgrades[ji].as_ref();
        // Users with events, and users only ever named by an entry from outside.
        let mut users: BTreeMap<&String, &[RefEvent]> = reference.by_user.iter().map(|(u, e)| (u, &e[..])).collect();
        for u in entries.iter().flat_map(|e| &e.users) {
            users.entry(u).or_insert(&[]);
        }
        for (user, evs) in users {
            let mut entry_seg = entry_of(j);
            let mut end_at = end_of(j);
            let span = (evs.first().map_or(0, |e| e.ts), as_of);
            let mut scheduled = scheduled_of(j, span);
            let mut upgrading = upgrade.filter(|u| u.at <= as_of);
            let mut w = Walk {
                j,
                version: 1,
                id,
                user,
                evs,
                reference,
                status: "ongoing",
                at: None,
                entries: 0,
                last_entry: None,
                sent: Vec::new(),
                cause: None,
                context: None,
                splits: Vec::new(),
                transitions: Vec::new(),
                actions: Vec::new(),
            };
            let mut moments: BTreeSet<u64> = BTreeSet::new();
            for e in evs.iter() {
                for d in spans.iter().chain([&0]) {
                    moments.insert(e.ts + d);
                }
            }
            moments.extend(cmds.iter().map(|c| c.time));
            // This user's entries from outside, in request order (once per mention).
            let mine: Vec<&ApiEntry> = entries
                .iter()
                .filter(|e| e.journey == ji)
                .flat_map(|e| e.users.iter().filter(|u| *u == user).map(move |_| e))
                .collect();
            moments.extend(mine.iter().map(|e| e.time));
            moments.extend(scheduled.iter().flat_map(|(_, times)| times.iter().copied()));
            moments.extend(upgrade.and_then(|u| scheduled_of(&u.next, span)).into_iter().flat_map(|(_, times)| times));
            moments.extend(end_at);
            moments.extend(upgrade.and_then(|u| end_of(&u.next)));
            moments.extend(since);
            moments.extend(upgrade.map(|u| u.at));
            let mut seg_before = false;
            let mut cursor = 0;
            loop {
                let timer = w.at.as_ref().and_then(|a| a.2).filter(|_| w.status == "ongoing");
                let next = moments.range(cursor..).next().copied();
                let next = [next, timer.map(|x| x.max(cursor))].into_iter().flatten().min();
                // Once the version before has handled the publish time, the next one takes over.
                if let Some(u) = upgrading.filter(|u| next.is_none_or(|t| t > u.at)) {
                    upgrading = None;
                    if w.status != "ended" {
                        w.migrate(&u.next, &u.migrate, u.at);
                    }
                    entry_seg = entry_of(&u.next);
                    scheduled = scheduled_of(&u.next, span);
                    end_at = end_of(&u.next);
                    seg_before = entry_seg.as_ref().is_some_and(|(c, _)| w.cond(c, u.at));
                    continue;
                }
                let Some(t) = next else { break };
                if t > as_of || w.status == "ended" {
                    break;
                }
                cursor = t + 1;
                if since.is_some_and(|s| t <= s) {
                    seg_before = entry_seg.as_ref().is_some_and(|(c, _)| w.cond(c, t));
                    continue;
                }
                // 0. Lifecycle.
                let mut resumed = false;
                for c in cmds.iter().filter(|c| c.time == t) {
                    let before = w.status;
                    w.status = after(w.status, c.command);
                    resumed |= before == "paused" && w.status == "ongoing";
                }
                if end_at == Some(t) {
                    w.status = "ended";
                }
                if w.status == "ended" {
                    w.leave(t, "ended");
                    continue;
                }
                if resumed && w.at.is_some() && w.exit_holds(t) {
                    w.leave(t, "exit_when");
                }
                // 1. Conditions.
                let seg_now = entry_seg.as_ref().is_some_and(|(c, _)| w.cond(c, t));
                let triggered =
                    entry_seg.as_ref().is_some_and(|(_, on_enter)| seg_now != seg_before && seg_now == *on_enter);
                seg_before = seg_now;
                if w.status != "ongoing" {
                    continue;
                }
                if w.at.is_some() && w.exit_holds(t) {
                    w.leave(t, "exit_when");
                }
                if triggered {
                    w.try_enter(t, "entry", None, None);
                }
                // 1b. A scheduled entry's occurrence: the segment's members then.
                if let Some((c, times)) = &scheduled {
                    if times.contains(&t) && w.cond(c, t) {
                        w.try_enter(t, "scheduled", None, None);
                    }
                }
                // 1c. Entries from outside, in request order.
                for e in mine.iter().filter(|e| e.time == t) {
                    w.try_enter(t, "api", None, e.context.as_ref());
                }
                // 2. The due timer.
                if w.at.as_ref().and_then(|a| a.2).is_some_and(|due| due <= t) {
                    w.fire(t);
                }
                // 3. Events by messageId.
                let mut now: Vec<&RefEvent> = evs.iter().filter(|e| e.ts == t).collect();
                now.sort_by(|a, b| a.msg.cmp(&b.msg));
                for e in now {
                    w.event(e, t);
                }
            }
            for tr in w.transitions {
                transitions.push((tr["time"].as_u64().unwrap(), ji, user.clone(), tr));
            }
            for a in w.actions {
                actions.push((a["time"].as_u64().unwrap(), ji, user.clone(), a));
            }
        }
    }
    // Each version's quota over all its users' sent actions, in (time, action_id) order.
    for (ji, j) in journeys.iter().enumerate() {
        let versions = std::iter::once((1, j)).chain(upgrades[ji].as_ref().map(|u| (2, &u.next)));
        for (version, def) in versions {
            apply_quota(def, version, actions.iter_mut().map(|a| &mut a.3));
        }
    }
    // Stable: each user's records keep the order they happened in.
    transitions.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
    actions.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
    (transitions.into_iter().map(|x| x.3).collect(), actions.into_iter().map(|x| x.3).collect())
}
