//! An event's properties, read straight from the JSON text into `(dot path, value)` pairs
//! sorted by path, borrowing keys and strings from the line where they have no escapes. The
//! rules: a nested object contributes its leaves as `outer.inner` paths and nothing for
//! itself; a key repeated in one object keeps its last value; where a dotted key and a nested
//! path name the same path, the one whose top-level key sorts first wins (`"a"` before
//! `"a.b"`); arrays are kept whole, an object inside one as its JSON text.

use crate::value::{Num, Value};
use crate::value_ref::{ListRef, ValueRef};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// One property value as read.
#[derive(Clone, Debug, PartialEq)]
pub enum Leaf<'a> {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Num(f64),
    /// A string, borrowed when it has no escapes.
    Str(Cow<'a, str>),
    /// An array, whole.
    List(Vec<Value>),
    /// An object, flattened by [`flatten`].
    Object(Vec<(Cow<'a, str>, Leaf<'a>)>),
}

impl Leaf<'_> {
    /// What kind of JSON value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Leaf::Null => "null",
            Leaf::Bool(_) => "a boolean",
            Leaf::Num(_) => "a number",
            Leaf::Str(_) => "a string",
            Leaf::List(_) => "an array",
            Leaf::Object(_) => "an object",
        }
    }

    /// The value, borrowed (objects never reach here: they are flattened).
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Leaf::Null | Leaf::Object(_) => ValueRef::Null,
            Leaf::Bool(b) => ValueRef::Bool(*b),
            Leaf::Num(x) => ValueRef::Num(Num(*x)),
            Leaf::Str(s) => ValueRef::Str(s),
            Leaf::List(items) => ValueRef::List(ListRef::Owned(items)),
        }
    }
}

/// Flattens an object's entries, as read, into pairs sorted by path, one per path.
pub fn flatten_entries<'a>(entries: Vec<(Cow<'a, str>, Leaf<'a>)>) -> Vec<(Cow<'a, str>, Leaf<'a>)> {
    let mut out = Vec::with_capacity(entries.len());
    flatten_into(None, entries, &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|later, first| later.0 == first.0);
    out
}

/// Appends the leaves of one object's entries under `prefix`, in key order, one per key (the last).
fn flatten_into<'a>(
    prefix: Option<&str>,
    mut entries: Vec<(Cow<'a, str>, Leaf<'a>)>,
    out: &mut Vec<(Cow<'a, str>, Leaf<'a>)>,
) {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut entries = entries.into_iter().peekable();
    while let Some((key, leaf)) = entries.next() {
        if entries.peek().is_some_and(|(next, _)| *next == key) {
            continue;
        }
        let path = match prefix {
            None => key,
            Some(prefix) => Cow::Owned(format!("{prefix}.{key}")),
        };
        match leaf {
            Leaf::Object(inner) => flatten_into(Some(&path), inner, out),
            leaf => out.push((path, leaf)),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Leaf<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LeafVisitor(PhantomData))
    }
}

struct LeafVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for LeafVisitor<'a> {
    type Value = Leaf<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Leaf<'a>, E> {
        Ok(Leaf::Null)
    }
    fn visit_none<E>(self) -> Result<Leaf<'a>, E> {
        Ok(Leaf::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Leaf<'a>, E> {
        Ok(Leaf::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Leaf<'a>, E> {
        Ok(Leaf::Num(v as f64))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Leaf<'a>, E> {
        Ok(Leaf::Num(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Leaf<'a>, E> {
        Ok(Leaf::Num(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Leaf<'a>, E> {
        Ok(Leaf::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Leaf<'a>, E> {
        Ok(Leaf::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Leaf<'a>, E> {
        Ok(Leaf::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Leaf<'a>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<serde_json::Value>()? {
            items.push(Value::from_json(&item));
        }
        Ok(Leaf::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Leaf<'a>, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Text<'a>>()? {
            entries.push((key.0, map.next_value::<Leaf<'a>>()?));
        }
        Ok(Leaf::Object(entries))
    }
}

/// A JSON string, borrowed when it has no escapes.
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules spelled out on a parsed `serde_json::Map` (sorted keys, the last of a repeated
    /// key), written apart from the streaming reader above.
    fn reference(text: &str) -> Vec<(String, Value)> {
        fn walk(prefix: &str, map: &serde_json::Map<String, serde_json::Value>, out: &mut Vec<(String, Value)>) {
            for (k, v) in map {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match v {
                    serde_json::Value::Object(inner) => walk(&path, inner, out),
                    other => out.push((path, Value::from_json(other))),
                }
            }
        }
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).unwrap();
        let mut out = Vec::new();
        walk("", &map, &mut out);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    /// An object's text, read into leaves and flattened.
    fn flatten(text: &str) -> serde_json::Result<Vec<(Cow<'_, str>, Leaf<'_>)>> {
        match serde_json::from_str::<Leaf>(text)? {
            Leaf::Object(entries) => Ok(flatten_entries(entries)),
            other => panic!("an object, found {other:?}"),
        }
    }

    fn ours(text: &str) -> Vec<(String, Value)> {
        flatten(text).unwrap().into_iter().map(|(k, v)| (k.into_owned(), v.as_ref().to_value())).collect()
    }

    #[test]
    fn follows_the_rules_of_a_parsed_map() {
        let cases = [
            r#"{}"#,
            r#"{"b": 1, "a": "x", "c": null, "d": true, "e": -0.0, "f": 1e3, "g": -7}"#,
            r#"{"a": {"b": 1, "c": {"d": "x"}}, "e": [1, {"z": 1, "y": [2]}, "s"]}"#,
            r#"{"a": 1, "a": 2}"#,
            r#"{"a.b": 1, "a": {"b": 2}}"#,
            r#"{"a": {"b": 2}, "a.b": 1}"#,
            r#"{"a": {}, "b": {"c": {}}}"#,
            r#"{"esc\"aped": "a\nb", "\u00e9": "\u00e9"}"#,
            r#"{"a": {"x": 1}, "a": {"y": 2}}"#,
            r#"{"n": 18446744073709551615, "m": -9223372036854775808, "f": 0.1}"#,
        ];
        for text in cases {
            assert_eq!(ours(text), reference(text), "{text}");
        }
    }

    #[test]
    fn borrows_plain_strings() {
        let props = flatten(r#"{"k": "plain", "e": "esc\n"}"#).unwrap();
        assert!(matches!(props[1], (Cow::Borrowed("k"), Leaf::Str(Cow::Borrowed("plain")))));
        assert!(matches!(props[0].1, Leaf::Str(Cow::Owned(_))));
    }
}
