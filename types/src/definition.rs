//! Segment definition files: parsing and validation that reports every error with its
//! JSON path at once, so nothing is installed from a file with a mistake in it.

use crate::condition::{AggFn, Aggregate, Condition, EventFilter, Op, Performed, Predicate, Sequence};
use crate::duration::Duration;
use crate::limits::Limits;
use crate::time::json_kind;
use crate::value::Value;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

/// A validated segment definition.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentDefinition {
    /// `[a-z0-9_-]{1,64}`.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Who is a member.
    pub condition: Condition,
}

impl SegmentDefinition {
    /// The definition as JSON, in the shape it is written in.
    pub fn to_json(&self) -> Json {
        let mut o = serde_json::Map::new();
        o.insert("id".into(), Json::String(self.id.clone()));
        if let Some(n) = &self.name {
            o.insert("name".into(), Json::String(n.clone()));
        }
        if let Some(d) = &self.description {
            o.insert("description".into(), Json::String(d.clone()));
        }
        o.insert("condition".into(), self.condition.to_json());
        Json::Object(o)
    }
}

/// One problem in a definition, at a JSON path such as `$[0].condition.all[1].trait.op`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ValidationError {
    /// Where.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in a definition file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} validation error(s):\n{}", .0.len(), .0.iter().map(|e| format!("  {}: {}", e.path, e.message)).collect::<Vec<_>>().join("\n"))]
pub struct ValidationErrors(pub Vec<ValidationError>);

/// Parses and validates a file holding a JSON array of segment definitions. The result is
/// in dependency order: a segment comes after every segment it refers to.
pub fn parse_segments(text: &str) -> Result<Vec<SegmentDefinition>, ValidationErrors> {
    parse_segments_with(text, &Limits::default())
}

/// [`parse_segments`] under the given limits.
pub fn parse_segments_with(text: &str, limits: &Limits) -> Result<Vec<SegmentDefinition>, ValidationErrors> {
    let json: Json = serde_json::from_str(text).map_err(|e| {
        ValidationErrors(vec![ValidationError { path: "$".into(), message: format!("malformed JSON: {e}") }])
    })?;
    validate_segments_with(&json, &BTreeSet::new(), limits)
}

/// Validates JSON already parsed. `known` names segments installed elsewhere that
/// `in_segment` may refer to.
pub fn validate_segments(json: &Json, known: &BTreeSet<String>) -> Result<Vec<SegmentDefinition>, ValidationErrors> {
    validate_segments_with(json, known, &Limits::default())
}

/// [`validate_segments`] under the given limits.
pub fn validate_segments_with(
    json: &Json,
    known: &BTreeSet<String>,
    limits: &Limits,
) -> Result<Vec<SegmentDefinition>, ValidationErrors> {
    let mut cx = Checker::new(*limits);
    let Some(items) = json.as_array() else {
        cx.error("$", format!("expected an array of segment definitions, found {}", json_kind(json)));
        return Err(cx.finish());
    };
    let mut defs = Vec::new();
    let mut paths = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("$[{i}]");
        if let Some(def) = cx.definition(&path, item) {
            defs.push(def);
            paths.push(path);
        }
    }
    let mut seen = BTreeMap::new();
    for (def, path) in defs.iter().zip(&paths) {
        if let Some(first) = seen.insert(def.id.clone(), path.clone()) {
            cx.error(&format!("{path}.id"), format!("duplicate id {:?} (first defined at {first})", def.id));
        }
    }
    // References: unknown ids and cycles.
    let by_id: BTreeMap<&str, &SegmentDefinition> = defs.iter().map(|d| (d.id.as_str(), d)).collect();
    for (def, path) in defs.iter().zip(&paths) {
        let mut refs = Vec::new();
        def.condition.references(&mut refs);
        for r in refs {
            if !by_id.contains_key(r.as_str()) && !known.contains(&r) {
                cx.error(&format!("{path}.condition"), format!("in_segment refers to unknown segment {r:?}"));
            }
        }
    }
    let order = match topo_order(&defs) {
        Ok(order) => order,
        Err(cycle) => {
            let path = paths[defs.iter().position(|d| d.id == cycle[0]).unwrap_or(0)].clone();
            cx.error(&format!("{path}.condition"), format!("in_segment cycle: {}", cycle.join(" -> ")));
            Vec::new()
        }
    };
    if !cx.errors.is_empty() {
        return Err(cx.finish());
    }
    Ok(order.into_iter().map(|i| defs[i].clone()).collect())
}

/// Dependency order of definitions, or a cycle as the list of ids around it.
fn topo_order(defs: &[SegmentDefinition]) -> Result<Vec<usize>, Vec<String>> {
    let index: BTreeMap<&str, usize> = defs.iter().enumerate().map(|(i, d)| (d.id.as_str(), i)).collect();
    // 0 = unvisited, 1 = on the stack, 2 = done
    let mut state = vec![0u8; defs.len()];
    let mut order = Vec::new();
    fn visit(
        i: usize,
        defs: &[SegmentDefinition],
        index: &BTreeMap<&str, usize>,
        state: &mut [u8],
        stack: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) -> Result<(), Vec<String>> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                let start = stack.iter().position(|&j| j == i).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..].iter().map(|&j| defs[j].id.clone()).collect();
                cycle.push(defs[i].id.clone());
                return Err(cycle);
            }
            _ => {}
        }
        state[i] = 1;
        stack.push(i);
        let mut refs = Vec::new();
        defs[i].condition.references(&mut refs);
        for r in refs {
            if let Some(&j) = index.get(r.as_str()) {
                visit(j, defs, index, state, stack, order)?;
            }
        }
        stack.pop();
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..defs.len() {
        visit(i, defs, &index, &mut state, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

/// Whether `id` matches `[a-z0-9_-]{1,64}`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Marks a value whose error has already been recorded in the `Checker`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reported;

/// Collects errors while walking definition JSON, under size and depth limits.
#[derive(Default)]
pub struct Checker {
    errors: Vec<ValidationError>,
    limits: Limits,
    /// Conditions entered and not left yet.
    depth: usize,
}

pub(crate) type Obj = serde_json::Map<String, Json>;

impl Checker {
    /// A checker enforcing `limits`.
    pub fn new(limits: Limits) -> Checker {
        Checker { errors: Vec::new(), limits, depth: 0 }
    }

    /// The limits enforced.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Records an error at a path.
    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ValidationError { path: path.to_string(), message: message.into() });
    }

    /// Whether no error has been recorded.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    /// All errors, sorted by path.
    pub fn finish(mut self) -> ValidationErrors {
        self.errors.sort();
        self.errors.dedup();
        ValidationErrors(self.errors)
    }

    /// An object whose keys are all in `allowed`; reports unknown keys.
    pub fn object<'a>(&mut self, path: &str, v: &'a Json, allowed: &[&str]) -> Option<&'a Obj> {
        let Some(o) = v.as_object() else {
            self.error(path, format!("expected an object, found {}", json_kind(v)));
            return None;
        };
        for k in o.keys() {
            if !allowed.contains(&k.as_str()) {
                self.error(
                    &format!("{path}.{k}"),
                    format!("unknown field {k:?} (expected one of: {})", allowed.join(", ")),
                );
            }
        }
        Some(o)
    }

    /// A required non-empty string field.
    pub fn string(&mut self, path: &str, o: &Obj, key: &str) -> Option<String> {
        match o.get(key) {
            None => {
                self.error(path, format!("missing field {key:?}"));
                None
            }
            Some(v) => self.string_value(&format!("{path}.{key}"), v),
        }
    }

    pub(crate) fn string_value(&mut self, path: &str, v: &Json) -> Option<String> {
        match v {
            Json::String(s) if !self.short_enough(path, s) => None,
            Json::String(s) if !s.is_empty() => Some(s.clone()),
            Json::String(_) => {
                self.error(path, "must not be empty");
                None
            }
            other => {
                self.error(path, format!("expected a string, found {}", json_kind(other)));
                None
            }
        }
    }

    /// An optional string field.
    pub fn opt_string(&mut self, path: &str, o: &Obj, key: &str) -> Option<String> {
        o.get(key).and_then(|v| match v {
            Json::String(s) if !self.short_enough(&format!("{path}.{key}"), s) => None,
            Json::String(s) => Some(s.clone()),
            other => {
                self.error(&format!("{path}.{key}"), format!("expected a string, found {}", json_kind(other)));
                None
            }
        })
    }

    /// Whether a string is within the length limit; records an error when not.
    fn short_enough(&mut self, path: &str, s: &str) -> bool {
        let ok = s.len() <= self.limits.string_bytes;
        if !ok {
            self.error(
                path,
                format!("a string of {} bytes; at most {} are allowed", s.len(), self.limits.string_bytes),
            );
        }
        ok
    }

    /// At most `max` items of what `path` names (`what`); records an error when more.
    pub(crate) fn few_enough(&mut self, path: &str, n: usize, max: usize, what: &str) -> bool {
        if n > max {
            self.error(path, format!("{n} {what}; at most {max} are allowed"));
        }
        n <= max
    }

    /// An optional duration field (`Ok(None)` when absent, `Err` when invalid).
    pub fn opt_duration(&mut self, path: &str, o: &Obj, key: &str) -> Result<Option<Duration>, Reported> {
        match o.get(key) {
            None => Ok(None),
            Some(Json::String(s)) => Duration::parse(s).map(Some).map_err(|e| {
                self.error(&format!("{path}.{key}"), e);
                Reported
            }),
            Some(other) => {
                self.error(
                    &format!("{path}.{key}"),
                    format!("expected a duration string such as \"7d\", found {}", json_kind(other)),
                );
                Err(Reported)
            }
        }
    }

    /// A window's `within`: longer than 0, and reaching back no further than events are
    /// retained (`limits.retention`).
    fn within(&mut self, path: &str, o: &Obj) -> Result<Option<Duration>, Reported> {
        let within = self.opt_duration(path, o, "within")?;
        let at = format!("{path}.within");
        match (within, self.limits.retention) {
            (Some(w), _) if w.0 == 0 => self.error(&at, "must be longer than 0"),
            (Some(w), Some(kept)) if w.0 > kept => self.error(
                &at,
                format!(
                    "{w} reaches back further than events are retained ({}: retention.events, \
                     --retention-events): shorten the window or raise the retention",
                    Duration(kept)
                ),
            ),
            _ => return Ok(within),
        }
        Err(Reported)
    }

    pub(crate) fn opt_count(&mut self, path: &str, o: &Obj, key: &str) -> Result<Option<u64>, Reported> {
        match o.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                self.error(&format!("{path}.{key}"), format!("expected a non-negative integer, found {v}"));
                Reported
            }),
        }
    }

    fn definition(&mut self, path: &str, v: &Json) -> Option<SegmentDefinition> {
        let o = self.object(path, v, &["id", "name", "description", "condition"])?;
        let id = self.string(path, o, "id");
        if let Some(id) = &id {
            if !valid_id(id) {
                self.error(&format!("{path}.id"), format!("id {id:?} must match [a-z0-9_-]{{1,64}}"));
            }
        }
        let name = self.opt_string(path, o, "name");
        let description = self.opt_string(path, o, "description");
        let condition = match o.get("condition") {
            None => {
                self.error(path, "missing field \"condition\"");
                None
            }
            Some(c) => self.condition(&format!("{path}.condition"), c),
        };
        Some(SegmentDefinition { id: id?, name, description, condition: condition? })
    }

    /// A condition: an object with exactly one key naming its kind, nested at most
    /// `limits.condition_depth` deep.
    pub fn condition(&mut self, path: &str, v: &Json) -> Option<Condition> {
        if self.depth >= self.limits.condition_depth {
            let max = self.limits.condition_depth;
            self.error(path, format!("conditions nest more than {max} deep; at most {max} levels are allowed"));
            return None;
        }
        self.depth += 1;
        let c = self.condition_at_depth(path, v);
        self.depth -= 1;
        c
    }

    fn condition_at_depth(&mut self, path: &str, v: &Json) -> Option<Condition> {
        const KINDS: [&str; 8] = ["all", "any", "not", "in_segment", "trait", "performed", "aggregate", "sequence"];
        let Some(o) = v.as_object() else {
            self.error(
                path,
                format!(
                    "a condition must be an object with one of the keys {}, found {}",
                    KINDS.join(", "),
                    json_kind(v)
                ),
            );
            return None;
        };
        if o.len() != 1 {
            let keys: Vec<&str> = o.keys().map(String::as_str).collect();
            self.error(
                path,
                format!("a condition must have exactly one key (one of {}), found {:?}", KINDS.join(", "), keys),
            );
            return None;
        }
        let (kind, body) = o.iter().next()?;
        let p = format!("{path}.{kind}");
        match kind.as_str() {
            "all" | "any" => {
                let Some(items) = body.as_array() else {
                    self.error(&p, format!("expected an array of conditions, found {}", json_kind(body)));
                    return None;
                };
                if items.is_empty() {
                    self.error(&p, "must not be empty");
                    return None;
                }
                if !self.few_enough(&p, items.len(), self.limits.condition_width, "conditions") {
                    return None;
                }
                let parsed: Vec<Option<Condition>> =
                    items.iter().enumerate().map(|(i, c)| self.condition(&format!("{p}[{i}]"), c)).collect();
                let parsed: Option<Vec<Condition>> = parsed.into_iter().collect();
                Some(if kind == "all" { Condition::All(parsed?) } else { Condition::Any(parsed?) })
            }
            "not" => self.condition(&p, body).map(|c| Condition::Not(Box::new(c))),
            "in_segment" => {
                let id = self.string_value(&p, body)?;
                if !valid_id(&id) {
                    self.error(&p, format!("segment id {id:?} must match [a-z0-9_-]{{1,64}}"));
                    return None;
                }
                Some(Condition::InSegment(id))
            }
            "trait" => {
                let o = self.object(&p, body, &["name", "op", "value"])?;
                self.predicate(&p, o, "name").map(Condition::Trait)
            }
            "performed" => self.performed(&p, body).map(Condition::Performed),
            "aggregate" => self.aggregate(&p, body).map(Condition::Aggregate),
            "sequence" => self.sequence(&p, body).map(Condition::Sequence),
            other => {
                self.error(path, format!("unknown condition {other:?} (expected one of {})", KINDS.join(", ")));
                None
            }
        }
    }

    /// A predicate object whose path field is `path_key` (`name` for traits, `property` in filters).
    fn predicate(&mut self, path: &str, o: &Obj, path_key: &str) -> Option<Predicate> {
        let name = self.string(path, o, path_key);
        let op = match o.get("op") {
            None => {
                self.error(path, "missing field \"op\"");
                None
            }
            Some(Json::String(s)) => {
                let op = Op::parse(s);
                if op.is_none() {
                    let names: Vec<&str> = Op::ALL.iter().map(|(n, _)| *n).collect();
                    self.error(
                        &format!("{path}.op"),
                        format!("unknown op {s:?} (expected one of {})", names.join(", ")),
                    );
                }
                op
            }
            Some(other) => {
                self.error(&format!("{path}.op"), format!("expected a string, found {}", json_kind(other)));
                None
            }
        };
        let value = o.get("value");
        let op = op?;
        let vpath = format!("{path}.value");
        match (op.takes_value(), value) {
            (false, Some(_)) => {
                self.error(&vpath, format!("op {:?} takes no value", op.name()));
                return None;
            }
            (true, None) => {
                self.error(path, format!("missing field \"value\" (op {:?} needs one)", op.name()));
                return None;
            }
            _ => {}
        }
        if let Some(v) = value {
            if !self.operand(&vpath, v) {
                return None;
            }
            let ok = match op {
                Op::In | Op::NotIn => v.is_array(),
                Op::Gt | Op::Gte | Op::Lt | Op::Lte => v.is_number() || v.is_string(),
                Op::StartsWith => v.is_string(),
                Op::Eq | Op::Ne | Op::Contains => !v.is_object() && !v.is_null(),
                Op::Exists | Op::NotExists => true,
            };
            if !ok {
                let want = match op {
                    Op::In | Op::NotIn => "an array",
                    Op::Gt | Op::Gte | Op::Lt | Op::Lte => "a number or a string",
                    Op::StartsWith => "a string",
                    _ => "a string, number, boolean or array",
                };
                self.error(&vpath, format!("op {:?} needs {want}, found {}", op.name(), json_kind(v)));
                return None;
            }
        }
        Some(Predicate { path: name?, op, value: value.map(Value::from_json) })
    }

    /// A predicate's operand is a scalar or a list of scalars, within the size limits.
    fn operand(&mut self, path: &str, v: &Json) -> bool {
        match v {
            Json::String(s) => self.short_enough(path, s),
            Json::Array(items) => {
                if !self.few_enough(path, items.len(), self.limits.list_values, "values") {
                    return false;
                }
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    ok &= match item {
                        Json::Array(_) | Json::Object(_) => {
                            self.error(
                                &format!("{path}[{i}]"),
                                format!("expected a string, number or boolean, found {}", json_kind(item)),
                            );
                            false
                        }
                        Json::String(s) => self.short_enough(&format!("{path}[{i}]"), s),
                        _ => true,
                    };
                }
                ok
            }
            _ => true,
        }
    }

    fn filter_fields(&mut self, path: &str, o: &Obj) -> Option<EventFilter> {
        let event = self.string(path, o, "event");
        let mut predicates = Vec::new();
        let mut ok = true;
        if let Some(w) = o.get("where") {
            let wp = format!("{path}.where");
            match w.as_array() {
                Some(items) if items.is_empty() => {
                    self.error(&wp, "must not be empty (leave \"where\" out instead)");
                    ok = false;
                }
                Some(items) if !self.few_enough(&wp, items.len(), self.limits.condition_width, "predicates") => {
                    ok = false;
                }
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let ip = format!("{wp}[{i}]");
                        match self
                            .object(&ip, item, &["property", "op", "value"])
                            .and_then(|po| self.predicate(&ip, po, "property"))
                        {
                            Some(p) => predicates.push(p),
                            None => ok = false,
                        }
                    }
                }
                None => {
                    self.error(&wp, format!("expected an array of predicates, found {}", json_kind(w)));
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        Some(EventFilter { event: event?, predicates })
    }

    /// An event filter object `{"event", "where"?}`.
    pub fn filter(&mut self, path: &str, v: &Json) -> Option<EventFilter> {
        let o = self.object(path, v, &["event", "where"])?;
        self.filter_fields(path, o)
    }

    fn performed(&mut self, path: &str, v: &Json) -> Option<Performed> {
        let o = self.object(path, v, &["event", "where", "within", "at_least", "at_most"])?;
        let filter = self.filter_fields(path, o);
        let within = self.within(path, o);
        let at_least = self.opt_count(path, o, "at_least");
        let at_most = self.opt_count(path, o, "at_most");
        let (at_least, at_most) = (at_least.ok()?, at_most.ok()?);
        let at_least = at_least.unwrap_or(if at_most.is_some() { 0 } else { 1 });
        if let Some(m) = at_most {
            if m < at_least {
                self.error(path, format!("at_most ({m}) is less than at_least ({at_least})"));
                return None;
            }
        }
        Some(Performed { filter: filter?, within: within.ok()?, at_least, at_most })
    }

    fn aggregate(&mut self, path: &str, v: &Json) -> Option<Aggregate> {
        let o = self.object(path, v, &["event", "where", "property", "fn", "within", "op", "value"])?;
        let filter = self.filter_fields(path, o);
        let property = self.string(path, o, "property");
        let func = match self.string(path, o, "fn") {
            Some(f) => {
                let func = AggFn::ALL.iter().find(|(n, _)| *n == f).map(|(_, x)| *x);
                if func.is_none() {
                    self.error(
                        &format!("{path}.fn"),
                        format!("unknown fn {f:?} (expected one of sum, avg, min, max, count_distinct)"),
                    );
                }
                func
            }
            None => None,
        };
        let within = self.within(path, o);
        let op = match self.string(path, o, "op") {
            Some(s) => match Op::parse(&s) {
                Some(op @ (Op::Eq | Op::Ne | Op::Gt | Op::Gte | Op::Lt | Op::Lte)) => Some(op),
                _ => {
                    self.error(
                        &format!("{path}.op"),
                        format!("op {s:?} does not compare numbers (expected one of eq, ne, gt, gte, lt, lte)"),
                    );
                    None
                }
            },
            None => None,
        };
        let value = match o.get("value") {
            None => {
                self.error(path, "missing field \"value\"");
                None
            }
            Some(v) => match v.as_f64() {
                Some(x) => Some(x),
                None => {
                    self.error(&format!("{path}.value"), format!("expected a number, found {}", json_kind(v)));
                    None
                }
            },
        };
        Some(Aggregate {
            filter: filter?,
            property: property?,
            func: func?,
            within: within.ok()?,
            op: op?,
            value: value?,
        })
    }

    fn sequence(&mut self, path: &str, v: &Json) -> Option<Sequence> {
        let o = self.object(path, v, &["steps", "within", "min_age", "then_not"])?;
        let steps = match o.get("steps") {
            None => {
                self.error(path, "missing field \"steps\"");
                None
            }
            Some(Json::Array(items)) if items.is_empty() => {
                self.error(&format!("{path}.steps"), "must not be empty");
                None
            }
            Some(Json::Array(items))
                if !self.few_enough(&format!("{path}.steps"), items.len(), self.limits.sequence_steps, "steps") =>
            {
                None
            }
            Some(Json::Array(items)) => {
                let parsed: Vec<Option<EventFilter>> =
                    items.iter().enumerate().map(|(i, s)| self.filter(&format!("{path}.steps[{i}]"), s)).collect();
                parsed.into_iter().collect::<Option<Vec<_>>>()
            }
            Some(other) => {
                self.error(
                    &format!("{path}.steps"),
                    format!("expected an array of event filters, found {}", json_kind(other)),
                );
                None
            }
        };
        let within = match self.within(path, o) {
            Ok(Some(w)) => Some(w),
            Ok(None) => {
                self.error(path, "missing field \"within\"");
                None
            }
            Err(Reported) => None,
        };
        let min_age = self.opt_duration(path, o, "min_age");
        let then_not = match o.get("then_not") {
            None => Some(None),
            Some(t) => self.filter(&format!("{path}.then_not"), t).map(Some),
        };
        let min_age = min_age.ok()?.unwrap_or(Duration(0));
        if let Some(w) = within {
            if min_age >= w {
                self.error(
                    &format!("{path}.min_age"),
                    format!("min_age ({min_age}) must be shorter than within ({w}), or no user can ever match"),
                );
                return None;
            }
        }
        Some(Sequence { steps: steps?, within: within?, min_age, then_not: then_not? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<(String, String)> {
        parse_segments(text).unwrap_err().0.into_iter().map(|e| (e.path, e.message)).collect()
    }

    #[test]
    fn standard_segments_parse_in_dependency_order() {
        let text = r#"[
          {"id": "s5", "condition": {"all": [{"in_segment": "s2"}, {"not": {"performed": {"event": "Order Completed", "within": "7d"}}}]}},
          {"id": "s2", "condition": {"performed": {"event": "Product Viewed", "within": "7d", "at_least": 5}}},
          {"id": "s1", "condition": {"trait": {"name": "plan", "op": "eq", "value": "pro"}}},
          {"id": "s4", "condition": {"aggregate": {"event": "Order Completed", "property": "revenue", "fn": "sum", "within": "30d", "op": "gte", "value": 100}}},
          {"id": "s6", "condition": {"sequence": {"steps": [{"event": "Cart Viewed"}], "within": "24h", "min_age": "1h", "then_not": {"event": "Order Completed"}}}}
        ]"#;
        let defs = parse_segments(text).unwrap();
        let ids: Vec<&str> = defs.iter().map(|d| d.id.as_str()).collect();
        assert!(ids.iter().position(|&i| i == "s2") < ids.iter().position(|&i| i == "s5"));
        // Round trip through to_json.
        let again: Vec<Json> = defs.iter().map(SegmentDefinition::to_json).collect();
        let reparsed = parse_segments(&Json::Array(again).to_string()).unwrap();
        assert_eq!(reparsed, defs);
    }

    #[test]
    fn reports_every_error_with_its_path() {
        let text = r#"[
          {"id": "Bad Id", "condition": {"trait": {"name": "plan", "op": "equals", "value": "pro"}}},
          {"id": "ok", "colour": "red", "condition": {"all": []}},
          {"id": "w", "condition": {"performed": {"event": "x", "within": "7y", "at_least": 3, "at_most": 1}}},
          {"id": "q", "condition": {"sequence": {"steps": [], "within": "1h"}}},
          {"id": "r", "condition": {"in_segment": "nowhere"}},
          {"id": "a", "condition": {"aggregate": {"event": "x", "property": "p", "fn": "median", "op": "contains", "value": "v"}}}
        ]"#;
        let errs = errors(text);
        let expect = [
            ("$[0].id", "must match"),
            ("$[0].condition.trait.op", "unknown op \"equals\""),
            ("$[1].colour", "unknown field \"colour\""),
            ("$[1].condition.all", "must not be empty"),
            ("$[2].condition.performed.within", "unit \"y\""),
            ("$[3].condition.sequence.steps", "must not be empty"),
            ("$[4].condition", "unknown segment \"nowhere\""),
            ("$[5].condition.aggregate.fn", "unknown fn \"median\""),
            ("$[5].condition.aggregate.op", "does not compare numbers"),
            ("$[5].condition.aggregate.value", "expected a number"),
        ];
        for (path, fragment) in expect {
            assert!(
                errs.iter().any(|(p, m)| p == path && m.contains(fragment)),
                "no error at {path} containing {fragment:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn rejects_cycles_and_duplicates() {
        let errs = errors(
            r#"[
          {"id": "a", "condition": {"in_segment": "b"}},
          {"id": "b", "condition": {"any": [{"in_segment": "a"}]}},
          {"id": "a", "condition": {"trait": {"name": "x", "op": "exists"}}}
        ]"#,
        );
        assert!(errs.iter().any(|(p, m)| p == "$[2].id" && m.contains("duplicate id \"a\"")), "{errs:?}");
        let errs = errors(
            r#"[{"id": "a", "condition": {"in_segment": "b"}}, {"id": "b", "condition": {"not": {"in_segment": "a"}}}]"#,
        );
        assert!(errs.iter().any(|(_, m)| m.contains("cycle: a -> b -> a")), "{errs:?}");
        let errs = errors(r#"[{"id": "a", "condition": {"in_segment": "a"}}]"#);
        assert!(errs.iter().any(|(_, m)| m.contains("cycle: a -> a")), "{errs:?}");
    }

    #[test]
    fn value_rules_per_op() {
        let errs = errors(
            r#"[{"id": "a", "condition": {"any": [
            {"trait": {"name": "x", "op": "in", "value": "US"}},
            {"trait": {"name": "x", "op": "exists", "value": 1}},
            {"trait": {"name": "x", "op": "eq"}},
            {"performed": {"event": "x", "where": [{"property": "p", "op": "starts_with", "value": 3}]}},
            {"sequence": {"steps": [{"event": "x"}], "within": "1h", "min_age": "2h"}},
            {"not": "x"},
            {"trait": {}, "performed": {}}
        ]}}]"#,
        );
        for (path, fragment) in [
            ("$[0].condition.any[0].trait.value", "needs an array"),
            ("$[0].condition.any[1].trait.value", "takes no value"),
            ("$[0].condition.any[2].trait", "missing field \"value\""),
            ("$[0].condition.any[3].performed.where[0].value", "needs a string"),
            ("$[0].condition.any[4].sequence.min_age", "must be shorter"),
            ("$[0].condition.any[5].not", "must be an object"),
            ("$[0].condition.any[6]", "exactly one key"),
        ] {
            assert!(
                errs.iter().any(|(p, m)| p == path && m.contains(fragment)),
                "no error at {path} containing {fragment:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn limits_are_errors_at_their_paths() {
        // 123 nested `not`s: refused at the level past the limit, without descending further.
        let mut condition = serde_json::json!({"performed": {"event": "x"}});
        for _ in 0..123 {
            condition = serde_json::json!({ "not": condition });
        }
        let deep = serde_json::json!([{"id": "deep", "condition": condition}]);
        let errs = validate_segments(&deep, &BTreeSet::new()).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, format!("$[0].condition{}", ".not".repeat(32)));
        assert!(errs[0].message.contains("at most 32 levels"), "{errs:?}");
        // Exactly at the limit is fine.
        let mut condition = serde_json::json!({"performed": {"event": "x"}});
        for _ in 0..31 {
            condition = serde_json::json!({ "not": condition });
        }
        validate_segments(&serde_json::json!([{"id": "ok", "condition": condition}]), &BTreeSet::new()).unwrap();

        let steps: Vec<Json> = (0..65).map(|i| serde_json::json!({"event": format!("e{i}")})).collect();
        let wide: Vec<Json> = (0..257).map(|_| serde_json::json!({"trait": {"name": "a", "op": "exists"}})).collect();
        let text = serde_json::json!([
            {"id": "steps", "condition": {"sequence": {"steps": steps, "within": "1d"}}},
            {"id": "wide", "condition": {"any": wide}},
            {"id": "nested", "condition": {"trait": {"name": "a", "op": "in", "value": [1, [2]]}}},
            {"id": "long", "name": "n".repeat(4097), "condition": {"trait": {"name": "a", "op": "exists"}}},
            {"id": "far", "condition": {"performed": {"event": "x", "within": "36501d"}}}
        ]);
        let errs = validate_segments(&text, &BTreeSet::new()).unwrap_err().0;
        for (path, fragment) in [
            ("$[0].condition.sequence.steps", "65 steps; at most 64"),
            ("$[1].condition.any", "257 conditions; at most 256"),
            ("$[2].condition.trait.value[1]", "expected a string, number or boolean"),
            ("$[3].name", "4097 bytes; at most 4096"),
            ("$[4].condition.performed.within", "at most 36500d"),
        ] {
            assert!(
                errs.iter().any(|e| e.path == path && e.message.contains(fragment)),
                "no error at {path} containing {fragment:?} in {errs:#?}"
            );
        }
        // Limits can be lowered.
        let lower = Limits { sequence_steps: 2, ..Limits::default() };
        let three = serde_json::json!([{"id": "s", "condition": {"sequence": {"steps": [{"event": "a"}, {"event": "b"}, {"event": "c"}], "within": "1d"}}}]);
        assert!(validate_segments_with(&three, &BTreeSet::new(), &lower).is_err());
        assert!(validate_segments(&three, &BTreeSet::new()).is_ok());
    }

    #[test]
    fn windows_reaching_back_past_the_retention_are_refused_at_their_path() {
        let defs = serde_json::json!([
            {"id": "p", "condition": {"performed": {"event": "x", "within": "31d"}}},
            {"id": "a", "condition": {"aggregate": {"event": "x", "property": "v", "fn": "sum", "within": "5w", "op": "gt", "value": 1}}},
            {"id": "q", "condition": {"not": {"sequence": {"steps": [{"event": "x"}], "within": "40d"}}}},
            {"id": "ok", "condition": {"all": [{"performed": {"event": "x", "within": "30d"}}, {"performed": {"event": "y"}}]}}
        ]);
        let limits = Limits { retention: Some(30 * 86_400_000), ..Limits::default() };
        let errs = validate_segments_with(&defs, &BTreeSet::new(), &limits).unwrap_err().0;
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$[0].condition.performed.within",
                "$[1].condition.aggregate.within",
                "$[2].condition.not.sequence.within"
            ]
        );
        assert!(
            errs[0].message.contains("31d reaches back further than events are retained (30d"),
            "{}",
            errs[0].message
        );
        // Windows as long as the retention, and windows without a bound (all retained events), pass.
        let ok = serde_json::json!([defs[3].clone()]);
        assert!(validate_segments_with(&ok, &BTreeSet::new(), &limits).is_ok());
        assert!(validate_segments(&defs, &BTreeSet::new()).is_ok());
    }

    #[test]
    fn at_least_defaults() {
        let defs = parse_segments(
            r#"[{"id": "a", "condition": {"performed": {"event": "x", "at_most": 2}}},
                                     {"id": "b", "condition": {"performed": {"event": "x"}}}]"#,
        )
        .unwrap();
        let bounds: Vec<(u64, Option<u64>)> = defs
            .iter()
            .map(|d| match &d.condition {
                Condition::Performed(p) => (p.at_least, p.at_most),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(bounds, vec![(0, Some(2)), (1, None)]);
    }
}
