//! Placeholders in an action's payload. Every string in a payload that holds `{{`, `{%` or
//! `{#` is a template (minijinja syntax, strict about undefined values); a string that is one
//! placeholder and nothing else (`"{{ traits.age }}"`) becomes the value itself (a number
//! stays a number). They read five names: `traits` (the user's merged traits), `event` (the
//! event that caused the entry, or the awaited event of the last `wait_until`), `context` (an
//! API entry's context), `journey` (`id`, `version`) and `node` (the action node's id). This
//! module checks templates, says what they read, and renders them.

use crate::record::Record;
use crate::value::Value;
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde_json::{Map, Value as Json};
use std::collections::BTreeSet;
use std::sync::LazyLock;

/// The names a placeholder can read.
pub const ROOTS: [&str; 5] = ["traits", "event", "context", "journey", "node"];

/// Instructions one rendering may run: a template looping without end fails, not hangs.
const FUEL: u64 = 20_000;

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(32);
    env
});

/// Which traits templates read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraitUse {
    /// All of them (`traits` read as a whole, or by a computed key).
    All,
    /// Traits under these dot paths (`traits.address.city` reads `address.city`).
    Paths(BTreeSet<String>),
}

impl TraitUse {
    /// Whether a trait key (a flattened dot path) is read.
    pub fn reads(&self, key: &str) -> bool {
        match self {
            TraitUse::All => true,
            TraitUse::Paths(paths) => paths.iter().any(|p| {
                let (short, long) = if p.len() <= key.len() { (p.as_str(), key) } else { (key, p.as_str()) };
                long.starts_with(short) && (long.len() == short.len() || long.as_bytes()[short.len()] == b'.')
            }),
        }
    }

    /// The union of two uses.
    pub fn union(a: Option<TraitUse>, b: Option<TraitUse>) -> Option<TraitUse> {
        match (a, b) {
            (Some(TraitUse::All), _) | (_, Some(TraitUse::All)) => Some(TraitUse::All),
            (Some(TraitUse::Paths(mut x)), Some(TraitUse::Paths(y))) => {
                x.extend(y);
                Some(TraitUse::Paths(x))
            }
            (x, None) | (None, x) => x,
        }
    }
}

/// What a payload's templates read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uses {
    /// Traits read, if any.
    pub traits: Option<TraitUse>,
    /// Whether `event` is read.
    pub event: bool,
    /// Whether `context` is read.
    pub context: bool,
}

/// Why a payload could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenderError {
    /// A value it reads is not there (the dot path of the first one, in the template's text).
    Missing(String),
    /// Anything else (a type error, a template out of fuel): the template engine's message.
    Failed(String),
}

fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// The expression of a string that is one placeholder and nothing else.
fn lone_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%") && !inner.contains("{#")).then_some(inner)
}

/// The strings of a payload with their JSON paths under `path`.
fn strings<'a>(v: &'a Json, path: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        Json::String(s) => out.push((path, s)),
        Json::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                strings(x, format!("{path}[{i}]"), out);
            }
        }
        Json::Object(m) => {
            for (k, x) in m {
                strings(x, format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// The variables (dot paths) a template string reads.
fn variables(s: &str) -> Result<Vec<String>, minijinja::Error> {
    let found = match lone_expression(s) {
        Some(e) => ENV.compile_expression(e)?.undeclared_variables(true),
        None => ENV.template_from_str(s)?.undeclared_variables(true),
    };
    let mut found: Vec<String> = found.into_iter().collect();
    // In the order they are written, so the first missing one named is the first in the text.
    found.sort_by_key(|v| (s.find(v.as_str()).unwrap_or(usize::MAX), v.clone()));
    Ok(found)
}

/// Whether a payload holds any template.
pub fn has_templates(payload: &Json) -> bool {
    let mut found = Vec::new();
    strings(payload, String::new(), &mut found);
    found.iter().any(|(_, s)| is_template(s))
}

/// Checks every template of `payload` (at JSON path `path`): each error with its path.
pub fn check(payload: &Json, path: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    strings(payload, path.to_string(), &mut found);
    let mut errors = Vec::new();
    for (p, s) in found.into_iter().filter(|(_, s)| is_template(s)) {
        match variables(s) {
            Err(e) => errors.push((p, format!("not a valid template: {}", e.detail().unwrap_or(&e.to_string())))),
            Ok(vars) => {
                for v in vars {
                    let root = v.split('.').next().unwrap_or_default();
                    if !ROOTS.contains(&root) {
                        errors.push((
                            p.clone(),
                            format!("unknown name {root:?} in a placeholder (it can read {})", ROOTS.join(", ")),
                        ));
                    }
                }
            }
        }
    }
    errors
}

/// What `payload`'s templates read (templates that do not compile read nothing: they are
/// refused when the definition is checked).
pub fn uses(payload: &Json) -> Uses {
    let mut found = Vec::new();
    strings(payload, String::new(), &mut found);
    let mut uses = Uses::default();
    for (_, s) in found.into_iter().filter(|(_, s)| is_template(s)) {
        for v in variables(s).unwrap_or_default() {
            let (root, rest) = v.split_once('.').unwrap_or((v.as_str(), ""));
            match root {
                "traits" if rest.is_empty() => uses.traits = Some(TraitUse::All),
                "traits" => {
                    uses.traits = TraitUse::union(uses.traits, Some(TraitUse::Paths([rest.to_string()].into())))
                }
                "event" => uses.event = true,
                "context" => uses.context = true,
                _ => {}
            }
        }
    }
    uses
}

/// Whether a dot path resolves in `cx`.
fn resolves(cx: &Json, path: &str) -> bool {
    let mut at = cx;
    for part in path.split('.') {
        match at.get(part) {
            Some(x) => at = x,
            None => return false,
        }
    }
    true
}

fn render_string(s: &str, cx: &Json) -> Result<Json, RenderError> {
    let missing = |e: Option<minijinja::Error>| {
        let first = variables(s).unwrap_or_default().into_iter().find(|v| !resolves(cx, v));
        match (first, e) {
            (Some(path), _) => RenderError::Missing(path),
            (None, Some(e)) => RenderError::Failed(e.to_string()),
            (None, None) => RenderError::Missing(s.trim().to_string()),
        }
    };
    let fail = |e: minijinja::Error| match e.kind() {
        ErrorKind::UndefinedError => missing(Some(e)),
        _ => RenderError::Failed(e.to_string()),
    };
    let root = minijinja::Value::from_serialize(cx);
    match lone_expression(s) {
        Some(e) => {
            let value = ENV.compile_expression(e).and_then(|x| x.eval(&root)).map_err(fail)?;
            if value.is_undefined() {
                return Err(missing(None));
            }
            serde_json::to_value(&value).map_err(|e| RenderError::Failed(e.to_string()))
        }
        None => ENV.render_str(s, &root).map(Json::String).map_err(fail),
    }
}

/// Renders every template of `payload` against `cx` (an object holding the [`ROOTS`] known).
pub fn render(payload: &Json, cx: &Json) -> Result<Json, RenderError> {
    Ok(match payload {
        Json::String(s) if is_template(s) => render_string(s, cx)?,
        Json::Array(items) => Json::Array(items.iter().map(|x| render(x, cx)).collect::<Result<_, _>>()?),
        Json::Object(m) => {
            Json::Object(m.iter().map(|(k, x)| Ok((k.clone(), render(x, cx)?))).collect::<Result<_, _>>()?)
        }
        other => other.clone(),
    })
}

/// A value as templates see it: a whole number is an integer (`3`, not `3.0`).
pub fn json_of(v: &Value) -> Json {
    match v {
        Value::Num(n) if n.0.fract() == 0.0 && n.0.abs() <= 9_007_199_254_740_992.0 => Json::from(n.0 as i64),
        Value::List(items) => Json::Array(items.iter().map(json_of).collect()),
        other => other.to_json(),
    }
}

/// Flattened `(dot path, value)` pairs as nested objects (`address.city` is
/// `{"address": {"city": ..}}`); a path under one already holding a value keeps its dots.
pub fn unflatten<'a>(pairs: impl IntoIterator<Item = (&'a str, Json)>) -> Json {
    fn place(at: &mut Map<String, Json>, parts: &[&str], value: Json) -> Result<(), Json> {
        let [first, rest @ ..] = parts else { return Err(value) };
        if rest.is_empty() {
            at.insert(first.to_string(), value);
            return Ok(());
        }
        match at.entry(first.to_string()).or_insert_with(|| Json::Object(Map::new())) {
            Json::Object(inner) => place(inner, rest, value),
            _ => Err(value),
        }
    }
    let mut root = Map::new();
    for (path, value) in pairs {
        let parts: Vec<&str> = path.split('.').collect();
        if let Err(value) = place(&mut root, &parts, value) {
            root.insert(path.to_string(), value);
        }
    }
    Json::Object(root)
}

/// An event as templates see it: `type`, `event` (a track's name), `messageId`, `timestamp`
/// (epoch ms) and `properties` (an identify's traits), nested.
pub fn event_json(e: &Record) -> Json {
    let props = unflatten(e.props().map(|(k, v)| (k, json_of(&v.to_value()))));
    serde_json::json!({
        "type": e.kind().name(),
        "event": e.name(),
        "messageId": e.message_id(),
        "timestamp": e.ts(),
        "properties": props,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cx() -> Json {
        json!({"traits": {"name": "Ada", "age": 36, "address": {"city": "Paris"}}, "journey": {"id": "j", "version": 2},
               "node": "mail"})
    }

    #[test]
    fn strings_render_and_lone_placeholders_keep_their_type() {
        let payload = json!({"to": "{{ traits.name }} in {{ traits.address.city }}", "age": "{{ traits.age }}",
            "n": ["{{ journey.version + 1 }}", 4], "plain": "no placeholder", "who": "{{ traits.nick | default('friend') }}"});
        let out = render(&payload, &cx()).unwrap();
        assert_eq!(
            out,
            json!({"to": "Ada in Paris", "age": 36, "n": [3, 4], "plain": "no placeholder", "who": "friend"})
        );
    }

    #[test]
    fn a_missing_value_names_its_path() {
        let payload = json!({"a": "{{ traits.name }} {{ traits.email }}"});
        assert_eq!(render(&payload, &cx()), Err(RenderError::Missing("traits.email".into())));
        assert_eq!(
            render(&json!("{{ event.properties.sku }}"), &cx()),
            Err(RenderError::Missing("event.properties.sku".into()))
        );
        assert_eq!(render(&json!("{{ traits.nick }}"), &cx()), Err(RenderError::Missing("traits.nick".into())));
        assert!(matches!(render(&json!("{{ traits.name + 1 }}"), &cx()), Err(RenderError::Failed(_))));
    }

    #[test]
    fn a_template_without_end_runs_out_of_fuel() {
        let payload = json!("{% for i in range(100000) %}{{ i }}{% endfor %}");
        assert!(matches!(render(&payload, &cx()), Err(RenderError::Failed(m)) if m.contains("fuel")));
    }

    #[test]
    fn checks_name_paths_and_unknown_names() {
        let errors = check(&json!({"a": ["ok", "{{ user.email }}"], "b": "{{ traits.x", "c": "{{ traits.y }}"}), "$.p");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].0, "$.p.a[1]");
        assert!(errors[0].1.contains("unknown name \"user\""));
        assert_eq!(errors[1].0, "$.p.b");
        assert!(errors[1].1.contains("not a valid template"));
    }

    #[test]
    fn uses_say_what_is_read() {
        let u = uses(&json!({"a": "{{ traits.address.city }} {{ event.properties.sku }}", "b": "{{ traits.name }}"}));
        assert_eq!(u.traits, Some(TraitUse::Paths(["address.city".to_string(), "name".to_string()].into())));
        assert!(u.event && !u.context);
        let reads = u.traits.unwrap();
        assert!(reads.reads("name") && reads.reads("address.city") && !reads.reads("names") && !reads.reads("age"));
        assert!(TraitUse::Paths(["address".to_string()].into()).reads("address.city"));
        assert_eq!(uses(&json!("{{ traits['na' ~ 'me'] }}")).traits, Some(TraitUse::All));
        assert_eq!(uses(&json!("{{ traits | tojson }}")).traits, Some(TraitUse::All));
    }

    #[test]
    fn unflatten_nests_and_keeps_clashes() {
        let out = unflatten([("a.b", json!(1)), ("a.c", json!(2)), ("x", json!(3)), ("x.y", json!(4))]);
        assert_eq!(out, json!({"a": {"b": 1, "c": 2}, "x": 3, "x.y": 4}));
        assert_eq!(json_of(&Value::Num(crate::Num(3.0))), json!(3));
        assert_eq!(json_of(&Value::Num(crate::Num(2.5))), json!(2.5));
    }
}
