//! A plain, from-scratch evaluator of segment definitions, written for the tests only. It
//! reads the raw event JSON and the definition JSON itself and shares no code with the
//! dataflow (nor with the definition parser): membership at time T is computed by looking
//! at every event with timestamp at most T (and, under a retention, within it of T).

use serde_json::Value as J;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// An accepted event, decoded independently.
#[derive(Clone, Debug)]
pub struct RefEvent {
    pub ts: u64,
    pub msg: String,
    pub user: String,
    pub kind: String,
    pub name: String,
    pub fields: J,
}

fn decode(line: &str) -> Option<RefEvent> {
    let v: J = serde_json::from_str(line).ok()?;
    let kind = v.get("type")?.as_str()?.to_string();
    let user = v.get("userId").and_then(J::as_str).or_else(|| v.get("anonymousId").and_then(J::as_str))?.to_string();
    let ts = v.get("timestamp")?.as_u64()?;
    let msg = v.get("messageId")?.as_str()?.to_string();
    let (name, fields) = match kind.as_str() {
        "track" => (v.get("event")?.as_str()?.to_string(), v.get("properties").cloned().unwrap_or(J::Null)),
        "identify" => (String::new(), v.get("traits").cloned().unwrap_or(J::Null)),
        "page" | "screen" => (kind.clone(), v.get("properties").cloned().unwrap_or(J::Null)),
        _ => return None,
    };
    Some(RefEvent { ts, msg, user, kind, name, fields })
}

/// Decodes lines and drops duplicates: an event whose messageId was accepted at most
/// `window` earlier (in timestamp order) is a duplicate.
pub fn accepted(lines: &[String], window: u64) -> Vec<RefEvent> {
    let mut events: Vec<RefEvent> = lines.iter().filter_map(|l| decode(l)).collect();
    events.sort_by(|a, b| (a.ts, &a.msg).cmp(&(b.ts, &b.msg)));
    let mut kept: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::new();
    for e in events {
        if let Some(&t) = kept.get(&e.msg) {
            if e.ts - t <= window {
                continue;
            }
        }
        kept.insert(e.msg.clone(), e.ts);
        out.push(e);
    }
    out
}

pub fn lookup<'a>(fields: &'a J, path: &str) -> Option<&'a J> {
    let mut cur = fields;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    (!cur.is_null()).then_some(cur)
}

fn op_holds(op: &str, actual: Option<&J>, expected: Option<&J>) -> bool {
    let Some(a) = actual else { return op == "not_exists" };
    let e = expected.unwrap_or(&J::Null);
    let eq = |x: &J, y: &J| match (x.as_f64(), y.as_f64()) {
        (Some(p), Some(q)) => p == q,
        _ => x == y,
    };
    let cmp = |x: &J, y: &J| match (x, y) {
        (J::Number(p), J::Number(q)) => p.as_f64().partial_cmp(&q.as_f64()),
        (J::String(p), J::String(q)) => Some(p.cmp(q)),
        _ => None,
    };
    match op {
        "exists" => true,
        "not_exists" => false,
        "eq" => eq(a, e),
        "ne" => !eq(a, e),
        "gt" => cmp(a, e) == Some(std::cmp::Ordering::Greater),
        "gte" => matches!(cmp(a, e), Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)),
        "lt" => cmp(a, e) == Some(std::cmp::Ordering::Less),
        "lte" => matches!(cmp(a, e), Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)),
        "in" => e.as_array().is_some_and(|xs| xs.iter().any(|x| eq(a, x))),
        "not_in" => e.as_array().is_some_and(|xs| !xs.iter().any(|x| eq(a, x))),
        "contains" => match (a, e) {
            (J::String(s), J::String(t)) => s.contains(t.as_str()),
            (J::Array(xs), y) => xs.iter().any(|x| eq(x, y)),
            _ => false,
        },
        "starts_with" => matches!((a, e), (J::String(s), J::String(t)) if s.starts_with(t.as_str())),
        other => panic!("reference: unknown op {other}"),
    }
}

pub fn duration(v: Option<&J>) -> Option<u64> {
    let s = v?.as_str()?;
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: u64 = digits.parse().ok()?;
    let unit = &s[digits.len()..];
    let scale = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => return None,
    };
    Some(n * scale)
}

pub fn filter_matches(filter: &J, e: &RefEvent) -> bool {
    if e.kind == "identify" || filter.get("event").and_then(J::as_str) != Some(e.name.as_str()) {
        return false;
    }
    let preds = filter.get("where").and_then(J::as_array).cloned().unwrap_or_default();
    preds.iter().all(|p| {
        let path = p["property"].as_str().unwrap();
        op_holds(p["op"].as_str().unwrap(), lookup(&e.fields, path), p.get("value"))
    })
}

fn in_window(ts: u64, t: u64, within: Option<u64>) -> bool {
    ts <= t && within.is_none_or(|w| ts + w > t)
}

fn micros(x: f64) -> i128 {
    (x * 1e6).round() as i64 as i128
}

/// Evaluates definitions (JSON) over accepted events.
pub struct Reference<'a> {
    pub defs: &'a [J],
    pub by_user: BTreeMap<String, Vec<RefEvent>>,
    /// How long an event counts after its timestamp (`None`: forever).
    pub retention: Option<u64>,
}

impl<'a> Reference<'a> {
    pub fn new(defs: &'a [J], events: &[RefEvent]) -> Self {
        let mut by_user: BTreeMap<String, Vec<RefEvent>> = BTreeMap::new();
        for e in events {
            by_user.entry(e.user.clone()).or_default().push(e.clone());
        }
        Reference { defs, by_user, retention: None }
    }

    /// Events count for `retention` after their timestamps: at `t`, an event with `ts <= t <
    /// ts + retention`; a user with none is forgotten, traits and all.
    pub fn retained_for(mut self, retention: Option<u64>) -> Self {
        self.retention = retention;
        self
    }

    /// Whether `e` counts at `t`.
    pub fn counts(&self, e: &RefEvent, t: u64) -> bool {
        e.ts <= t && self.retention.is_none_or(|r| e.ts + r > t)
    }

    /// Members of segment `id` at time `t`.
    pub fn members(&self, id: &str, t: u64) -> BTreeSet<String> {
        let def = self.defs.iter().find(|d| d["id"] == id).expect("segment exists");
        self.by_user
            .iter()
            .filter(|(_, evs)| evs.iter().any(|e| self.counts(e, t)))
            .filter(|(_, evs)| self.holds(&def["condition"], evs, t))
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// The identify calls that set a user's traits at `t`: those of their current profile,
    /// which began with the first event after the last instant none of their events counted.
    fn profile<'e>(&self, evs: &'e [RefEvent], t: u64) -> Vec<&'e RefEvent> {
        let mut upto: Vec<&RefEvent> = evs.iter().filter(|e| e.ts <= t).collect();
        upto.sort_by(|a, b| (a.ts, &a.msg).cmp(&(b.ts, &b.msg)));
        let Some(r) = self.retention else { return upto };
        // Each event counts during [ts, ts + r); a gap between them (or at t) forgets the user.
        let mut start = 0;
        let mut end = 0;
        for (i, e) in upto.iter().enumerate() {
            if i > 0 && end < e.ts {
                start = i;
            }
            end = end.max(e.ts + r);
        }
        if end <= t {
            return Vec::new();
        }
        upto.split_off(start)
    }

    /// A user's merged traits at `t`, nested as sent: each identify of the current profile, in
    /// order, sets the leaves it carries (`null` removes one).
    pub fn traits(&self, evs: &[RefEvent], t: u64) -> J {
        fn merge(into: &mut serde_json::Map<String, J>, from: &J) {
            let Some(from) = from.as_object() else { return };
            for (k, v) in from {
                match v {
                    J::Null => {
                        into.remove(k);
                    }
                    J::Object(_) => {
                        let inner = into.entry(k.clone()).or_insert_with(|| J::Object(Default::default()));
                        if !inner.is_object() {
                            *inner = J::Object(Default::default());
                        }
                        merge(inner.as_object_mut().unwrap(), v);
                    }
                    other => {
                        into.insert(k.clone(), other.clone());
                    }
                }
            }
        }
        let mut traits = serde_json::Map::new();
        for e in self.profile(evs, t).into_iter().filter(|e| e.kind == "identify") {
            merge(&mut traits, &e.fields);
        }
        J::Object(traits)
    }

    pub fn holds(&self, c: &J, evs: &[RefEvent], t: u64) -> bool {
        let (kind, body) = c.as_object().unwrap().iter().next().unwrap();
        let upto: Vec<&RefEvent> = evs.iter().filter(|e| self.counts(e, t)).collect();
        match kind.as_str() {
            "all" => body.as_array().unwrap().iter().all(|x| self.holds(x, evs, t)),
            "any" => body.as_array().unwrap().iter().any(|x| self.holds(x, evs, t)),
            "not" => !upto.is_empty() && !self.holds(body, evs, t),
            "in_segment" => {
                let def = self.defs.iter().find(|d| d["id"] == *body).unwrap();
                !upto.is_empty() && self.holds(&def["condition"], evs, t)
            }
            "trait" => {
                let name = body["name"].as_str().unwrap();
                let ids = self.profile(evs, t).into_iter().filter(|e| e.kind == "identify");
                let mut value: Option<J> = None;
                for e in ids {
                    if let Some(v) = e.fields.get(name) {
                        value = (!v.is_null()).then(|| v.clone());
                    }
                }
                op_holds(body["op"].as_str().unwrap(), value.as_ref(), body.get("value"))
            }
            "performed" => {
                let within = duration(body.get("within"));
                let at_most = body.get("at_most").and_then(J::as_u64);
                let at_least =
                    body.get("at_least").and_then(J::as_u64).unwrap_or(if at_most.is_some() { 0 } else { 1 });
                let n = upto.iter().filter(|e| filter_matches(body, e) && in_window(e.ts, t, within)).count() as u64;
                n >= at_least && at_most.is_none_or(|m| n <= m)
            }
            "aggregate" => {
                let within = duration(body.get("within"));
                let prop = body["property"].as_str().unwrap();
                let values: Vec<&J> = upto
                    .iter()
                    .filter(|e| filter_matches(body, e) && in_window(e.ts, t, within))
                    .filter_map(|e| lookup(&e.fields, prop))
                    .collect();
                let target = micros(body["value"].as_f64().unwrap());
                let nums: Vec<i128> = values.iter().filter_map(|v| v.as_f64()).map(micros).collect();
                let (num, den) = match body["fn"].as_str().unwrap() {
                    "sum" if !nums.is_empty() => (nums.iter().sum::<i128>(), 1),
                    "avg" if !nums.is_empty() => (nums.iter().sum::<i128>(), nums.len() as i128),
                    "min" if !nums.is_empty() => (*nums.iter().min().unwrap(), 1),
                    "max" if !nums.is_empty() => (*nums.iter().max().unwrap(), 1),
                    "count_distinct" if !values.is_empty() => {
                        let mut distinct: Vec<String> = values
                            .iter()
                            .map(|v| v.as_f64().map(|x| format!("n{x}")).unwrap_or_else(|| v.to_string()))
                            .collect();
                        distinct.sort();
                        distinct.dedup();
                        (distinct.len() as i128 * 1_000_000, 1)
                    }
                    _ => return false,
                };
                let (l, r) = (num, target * den);
                match body["op"].as_str().unwrap() {
                    "eq" => l == r,
                    "ne" => l != r,
                    "gt" => l > r,
                    "gte" => l >= r,
                    "lt" => l < r,
                    "lte" => l <= r,
                    other => panic!("reference: aggregate op {other}"),
                }
            }
            "sequence" => {
                let steps = body["steps"].as_array().unwrap();
                let within = duration(body.get("within")).unwrap();
                let min_age = duration(body.get("min_age")).unwrap_or(0);
                let then_not = body.get("then_not");
                let mut sorted: Vec<&RefEvent> = upto.clone();
                sorted.sort_by(|a, b| (a.ts, &a.msg).cmp(&(b.ts, &b.msg)));
                // Any chain: try every first step in the window, then search forward.
                fn chain(steps: &[J], from: usize, sorted: &[&RefEvent], ok_last: &dyn Fn(&RefEvent) -> bool) -> bool {
                    let Some((step, rest)) = steps.split_first() else { return false };
                    (from..sorted.len()).any(|i| {
                        filter_matches(step, sorted[i])
                            && if rest.is_empty() { ok_last(sorted[i]) } else { chain(rest, i + 1, sorted, ok_last) }
                    })
                }
                let ok_last = |last: &RefEvent| {
                    last.ts + min_age <= t
                        && !then_not
                            .is_some_and(|f| sorted.iter().any(|e| e.ts > last.ts && e.ts <= t && filter_matches(f, e)))
                };
                (0..sorted.len()).any(|i| {
                    let first = sorted[i];
                    first.ts + within > t
                        && filter_matches(&steps[0], first)
                        && (steps.len() == 1 && ok_last(first)
                            || steps.len() > 1 && chain(&steps[1..], i + 1, &sorted, &ok_last))
                })
            }
            other => panic!("reference: unknown condition {other}"),
        }
    }
}
