//! Property and trait values: a totally ordered, hashable mirror of JSON scalars and
//! arrays, so events can live inside differential-dataflow collections.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// A JSON number with a total order (`f64::total_cmp`), so it can be a collection key.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Num(pub f64);

impl PartialEq for Num {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Num {}
impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Num {
    fn cmp(&self, other: &Self) -> Ordering {
        // -0.0 and 0.0 are one number for users.
        let a = if self.0 == 0.0 { 0.0 } else { self.0 };
        let b = if other.0 == 0.0 { 0.0 } else { other.0 };
        a.total_cmp(&b)
    }
}
impl std::hash::Hash for Num {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let v = if self.0 == 0.0 { 0.0 } else { self.0 };
        v.to_bits().hash(state)
    }
}

/// A property or trait value. Objects never appear: they are flattened into dot paths
/// (`{"a": {"b": 1}}` is the property `a.b`); objects inside arrays are kept as their JSON text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Value {
    /// JSON `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// Any JSON number.
    Num(Num),
    /// A string.
    Str(String),
    /// An array of values.
    List(Vec<Value>),
}

impl Value {
    /// Converts a JSON value that is not an object (objects are flattened by the caller).
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Num(Num(n.as_f64().unwrap_or(f64::NAN))),
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(items) => Value::List(items.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(_) => Value::Str(v.to_string()),
        }
    }

    /// Back to JSON, for outputs and error messages.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Num(n) => {
                serde_json::Number::from_f64(n.0).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null)
            }
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::List(items) => serde_json::Value::Array(items.iter().map(Value::to_json).collect()),
        }
    }

    /// The number, when this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Num(n) if n.0.is_finite() => Some(n.0),
            _ => None,
        }
    }
}

/// Flattened properties (or traits) of one event: `(dot path, value)` sorted by path.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Props(pub Vec<(String, Value)>);

impl Props {
    /// The value at a dot path, if present.
    pub fn get(&self, path: &str) -> Option<&Value> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(path)).ok().map(|i| &self.0[i].1)
    }

    /// Number of flattened entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_signs_are_one_number() {
        assert_eq!(Num(0.0), Num(-0.0));
        assert!(Num(-1.0) < Num(0.0));
    }
}
