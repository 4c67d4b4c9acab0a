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

/// Bytes one rendered payload may hold (as JSON text): larger ones fail to render.
pub const MAX_RENDERED_BYTES: usize = 256 << 10;

/// The widest indentation `tojson` takes (its builtin takes any, and allocates it).
const MAX_INDENT: usize = 8;

/// The deepest nesting [`unflatten`] builds: deeper dot paths stay flat at that depth.
const MAX_NESTING: usize = 16;

/// The engine's environment: strict about undefined values.
static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| environment(UndefinedBehavior::Strict));

/// The same, lenient: a dry run at validation finds unknown filters, tests and functions
/// without any user's data.
static DRY: LazyLock<Environment<'static>> = LazyLock::new(|| environment(UndefinedBehavior::Chainable));

fn environment(undefined: UndefinedBehavior) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(undefined);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(32);
    // `indent` allocates any width it is given; `tojson` only a narrow one.
    env.remove_filter("indent");
    env.add_filter(
        "tojson",
        |v: &minijinja::Value, indent: Option<minijinja::Value>, args: minijinja::value::Kwargs| {
            let named: Option<minijinja::Value> = args.get("indent")?;
            for width in indent.iter().chain(named.iter()) {
                if width.as_usize().is_some_and(|w| w > MAX_INDENT) {
                    let why = format!("tojson indents at most {MAX_INDENT} spaces");
                    return Err(minijinja::Error::new(ErrorKind::InvalidOperation, why));
                }
            }
            minijinja::filters::tojson(v, indent.or(named), args)
        },
    );
    env
}

/// An output that refuses to grow past [`MAX_RENDERED_BYTES`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_RENDERED_BYTES {
            return Err(std::io::Error::other(format!("renders more than {MAX_RENDERED_BYTES} bytes")));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

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
                let plain = !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                match plain {
                    true => strings(x, format!("{path}.{k}"), out),
                    false => strings(x, format!("{path}[{}]", Json::String(k.clone())), out),
                }
            }
        }
        _ => {}
    }
}

/// What a dry run (no data, undefined values allowed) of a template says is wrong with it,
/// whatever the data: an unknown filter, test, function or method, or an include.
fn dry_run(s: &str) -> Option<String> {
    let cx = minijinja::Value::from_serialize(serde_json::json!({}));
    let result = match lone_expression(s) {
        Some(e) => DRY.compile_expression(e).and_then(|x| x.eval(&cx)).map(|_| ()),
        None => DRY.render_str(s, &cx).map(|_| ()),
    };
    let e = result.err()?;
    match e.kind() {
        ErrorKind::UnknownFilter
        | ErrorKind::UnknownTest
        | ErrorKind::UnknownFunction
        | ErrorKind::UnknownMethod
        | ErrorKind::TemplateNotFound
        | ErrorKind::BadInclude => Some(e.detail().map_or_else(|| e.to_string(), |d| format!("{}: {d}", e.kind()))),
        _ => None,
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
                if let Some(why) = dry_run(s) {
                    errors.push((p, format!("not a valid template: {why}")));
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
    // Every undefined value is missing data: named by the first path in the text that does not
    // resolve, else by the placeholder the engine points at.
    let missing = |e: Option<&minijinja::Error>| {
        let first = variables(s).unwrap_or_default().into_iter().find(|v| !resolves(cx, v));
        let pointed = e.and_then(|e| e.range()).and_then(|r| s.get(r)).map(|t| t.trim().to_string());
        RenderError::Missing(first.or(pointed).unwrap_or_else(|| s.trim().to_string()))
    };
    let fail = |e: minijinja::Error| match e.kind() {
        ErrorKind::UndefinedError => missing(Some(&e)),
        // Only the capped output fails to write.
        ErrorKind::WriteFailure => {
            RenderError::Failed(format!("the template renders more than {MAX_RENDERED_BYTES} bytes"))
        }
        _ => RenderError::Failed(e.to_string()),
    };
    let root = minijinja::Value::from_serialize(cx);
    match lone_expression(s) {
        Some(e) => {
            let value = ENV.compile_expression(e).and_then(|x| x.eval(&root)).map_err(fail)?;
            if value.is_undefined() {
                return Err(missing(None));
            }
            let json = serde_json::to_value(&value).map_err(|e| RenderError::Failed(e.to_string()))?;
            match json.to_string().len() > MAX_RENDERED_BYTES {
                true => Err(RenderError::Failed(format!("renders more than {MAX_RENDERED_BYTES} bytes"))),
                false => Ok(json),
            }
        }
        None => {
            let mut out = Capped(Vec::new());
            let template = ENV.template_from_str(s).map_err(fail)?;
            template.render_captured_to(&root, &mut out).map(drop).map_err(fail)?;
            String::from_utf8(out.0).map(Json::String).map_err(|e| RenderError::Failed(e.to_string()))
        }
    }
}

/// Renders every template of `payload` against `cx` (an object holding the [`ROOTS`] known);
/// the payload rendered holds at most [`MAX_RENDERED_BYTES`] as JSON text.
pub fn render(payload: &Json, cx: &Json) -> Result<Json, RenderError> {
    let out = render_value(payload, cx)?;
    match out.to_string().len() > MAX_RENDERED_BYTES {
        true => Err(RenderError::Failed(format!("the payload renders more than {MAX_RENDERED_BYTES} bytes"))),
        false => Ok(out),
    }
}

fn render_value(payload: &Json, cx: &Json) -> Result<Json, RenderError> {
    Ok(match payload {
        Json::String(s) if is_template(s) => render_string(s, cx)?,
        Json::Array(items) => Json::Array(items.iter().map(|x| render_value(x, cx)).collect::<Result<_, _>>()?),
        Json::Object(m) => {
            Json::Object(m.iter().map(|(k, x)| Ok((k.clone(), render_value(x, cx)?))).collect::<Result<_, _>>()?)
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
/// `{"address": {"city": ..}}`); a path under one already holding a value keeps its dots, as
/// does one with an empty part, and nesting stops 16 levels deep.
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
        // Nested at most MAX_NESTING deep: the rest of a longer path is one key there.
        let mut parts: Vec<&str> = path.splitn(MAX_NESTING, '.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            parts = vec![path];
        }
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
    fn unknown_filters_and_wide_output_are_refused() {
        let errors =
            check(&json!({"a b": "{{ traits.x | shout }}", "c": "{{ traits.y | indent(1000000000000) }}"}), "$");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].0, "$[\"a b\"]");
        assert!(errors[0].1.contains("shout"), "{errors:?}");
        let wide = render(&json!("{{ traits | tojson(indent=1000000000000) }}"), &cx());
        assert!(matches!(wide, Err(RenderError::Failed(m)) if m.contains("indents at most")));
        let big = render(&json!("{% for i in range(100) %}{{ 'x' * 10000 }}{% endfor %}"), &cx());
        assert!(matches!(&big, Err(RenderError::Failed(m)) if m.contains("bytes")), "{big:?}");
        assert_eq!(
            render(&json!("{{ traits | tojson(indent=2) }}"), &cx()).map(|v| v.as_str().unwrap().contains('\n')),
            Ok(true)
        );
    }

    #[test]
    fn a_key_with_thousands_of_dots_nests_at_most_sixteen_deep() {
        let key = vec!["a"; 5000].join(".");
        let out = unflatten([(key.as_str(), json!(1))]);
        let mut at = &out;
        for _ in 0..15 {
            at = &at["a"];
        }
        assert_eq!(at.as_object().unwrap().keys().next().unwrap().len(), vec!["a"; 4985].join(".").len());
        assert_eq!(unflatten([("a..b", json!(1))]), json!({"a..b": 1}));
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
