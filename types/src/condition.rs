//! The segment language: conditions, event filters and predicates, and how a predicate
//! tests one value. Parsing and validation live in `definition`.

use crate::duration::Duration;
use crate::event::Kind;
use crate::record::EventView;
use crate::value::Value;
use crate::value_ref::ValueRef;
use serde_json::json;

/// A comparison operator of a predicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Equal (numbers numerically).
    Eq,
    /// Present and not equal.
    Ne,
    /// Greater than (numbers numerically, strings lexicographically).
    Gt,
    /// Greater than or equal.
    Gte,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// Equal to one of an array.
    In,
    /// Present and equal to none of an array.
    NotIn,
    /// Present (and not null).
    Exists,
    /// Absent or null.
    NotExists,
    /// Substring of a string, or member of an array.
    Contains,
    /// String prefix.
    StartsWith,
}

impl Op {
    /// All operators with their names, in the order documented.
    pub const ALL: [(&'static str, Op); 12] = [
        ("eq", Op::Eq),
        ("ne", Op::Ne),
        ("gt", Op::Gt),
        ("gte", Op::Gte),
        ("lt", Op::Lt),
        ("lte", Op::Lte),
        ("in", Op::In),
        ("not_in", Op::NotIn),
        ("exists", Op::Exists),
        ("not_exists", Op::NotExists),
        ("contains", Op::Contains),
        ("starts_with", Op::StartsWith),
    ];

    /// The operator's name in definitions.
    pub fn name(self) -> &'static str {
        Op::ALL.iter().find(|(_, op)| *op == self).map(|(n, _)| *n).unwrap_or("eq")
    }

    /// Parses an operator name.
    pub fn parse(name: &str) -> Option<Op> {
        Op::ALL.iter().find(|(n, _)| *n == name).map(|(_, op)| *op)
    }

    /// Whether the operator takes a `value`.
    pub fn takes_value(self) -> bool {
        !matches!(self, Op::Exists | Op::NotExists)
    }

    /// Tests a (possibly missing) value. A missing or null value makes every operator
    /// false except `not_exists`.
    pub fn test(self, actual: Option<&Value>, expected: Option<&Value>) -> bool {
        self.test_ref(actual.map(ValueRef::from), expected)
    }

    /// [`Op::test`] on a borrowed value.
    pub fn test_ref(self, actual: Option<ValueRef<'_>>, expected: Option<&Value>) -> bool {
        let actual = match actual {
            None | Some(ValueRef::Null) => return self == Op::NotExists,
            Some(v) => v,
        };
        let expected = expected.map_or(ValueRef::Null, ValueRef::from);
        match self {
            Op::Exists => true,
            Op::NotExists => false,
            Op::Eq => actual == expected,
            Op::Ne => actual != expected,
            Op::Gt => ordered(actual, expected).is_some_and(|o| o.is_gt()),
            Op::Gte => ordered(actual, expected).is_some_and(|o| o.is_ge()),
            Op::Lt => ordered(actual, expected).is_some_and(|o| o.is_lt()),
            Op::Lte => ordered(actual, expected).is_some_and(|o| o.is_le()),
            Op::In => matches!(expected, ValueRef::List(xs) if xs.contains(actual)),
            Op::NotIn => matches!(expected, ValueRef::List(xs) if !xs.contains(actual)),
            Op::Contains => match (actual, expected) {
                (ValueRef::Str(a), ValueRef::Str(e)) => a.contains(e),
                (ValueRef::List(items), e) => items.contains(e),
                _ => false,
            },
            Op::StartsWith => {
                matches!((actual, expected), (ValueRef::Str(a), ValueRef::Str(e)) if a.starts_with(e))
            }
        }
    }
}

/// Numbers compare with numbers, strings with strings; anything else is incomparable.
fn ordered(a: ValueRef<'_>, b: ValueRef<'_>) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (ValueRef::Num(x), ValueRef::Num(y)) => x.0.partial_cmp(&y.0),
        (ValueRef::Str(x), ValueRef::Str(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// `{"property"|"name": path, "op", "value"?}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Predicate {
    /// Dot path into properties, or a trait name.
    pub path: String,
    /// The operator.
    pub op: Op,
    /// The operand, for operators that take one.
    pub value: Option<Value>,
}

impl Predicate {
    /// Tests the value found at `path` (or its absence).
    pub fn test(&self, actual: Option<&Value>) -> bool {
        self.op.test(actual, self.value.as_ref())
    }

    fn to_json(&self, key: &str) -> serde_json::Value {
        let mut o = serde_json::Map::new();
        o.insert(key.into(), json!(self.path));
        o.insert("op".into(), json!(self.op.name()));
        if let Some(v) = &self.value {
            o.insert("value".into(), v.to_json());
        }
        serde_json::Value::Object(o)
    }
}

/// `{"event": name, "where"?: [predicate, ...]}`: which `track` (or page/screen) events match.
#[derive(Clone, Debug, PartialEq)]
pub struct EventFilter {
    /// The event name.
    pub event: String,
    /// Every predicate must hold on the event's properties.
    pub predicates: Vec<Predicate>,
}

impl EventFilter {
    /// Whether an event matches. Identify calls never do.
    pub fn matches<E: EventView + ?Sized>(&self, e: &E) -> bool {
        e.kind() != Kind::Identify
            && e.named(&self.event)
            && self.predicates.iter().all(|p| p.op.test_ref(e.prop(&p.path), p.value.as_ref()))
    }

    fn to_json_into(&self, o: &mut serde_json::Map<String, serde_json::Value>) {
        o.insert("event".into(), json!(self.event));
        if !self.predicates.is_empty() {
            o.insert("where".into(), self.predicates.iter().map(|p| p.to_json("property")).collect());
        }
    }

    /// The filter as definition JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let mut o = serde_json::Map::new();
        self.to_json_into(&mut o);
        serde_json::Value::Object(o)
    }
}

/// Aggregate functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggFn {
    /// Sum of a numeric property.
    Sum,
    /// Mean of a numeric property.
    Avg,
    /// Minimum of a numeric property.
    Min,
    /// Maximum of a numeric property.
    Max,
    /// Number of distinct values of any property.
    CountDistinct,
}

impl AggFn {
    /// Names in definitions.
    pub const ALL: [(&'static str, AggFn); 5] = [
        ("sum", AggFn::Sum),
        ("avg", AggFn::Avg),
        ("min", AggFn::Min),
        ("max", AggFn::Max),
        ("count_distinct", AggFn::CountDistinct),
    ];

    /// The function's name.
    pub fn name(self) -> &'static str {
        AggFn::ALL.iter().find(|(_, f)| *f == self).map(|(n, _)| *n).unwrap_or("sum")
    }
}

/// `performed`: the count of matching events in `(T - within, T]` lies in `[at_least, at_most]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Performed {
    /// Which events count.
    pub filter: EventFilter,
    /// Window length; `None` is all history.
    pub within: Option<Duration>,
    /// Lower bound (inclusive).
    pub at_least: u64,
    /// Upper bound (inclusive), if any.
    pub at_most: Option<u64>,
}

/// `aggregate`: `fn` over `property` of matching events in the window compared with `value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate {
    /// Which events count.
    pub filter: EventFilter,
    /// The aggregated property (dot path).
    pub property: String,
    /// The function.
    pub func: AggFn,
    /// Window length; `None` is all history.
    pub within: Option<Duration>,
    /// Comparison (`eq ne gt gte lt lte`).
    pub op: Op,
    /// The number compared against.
    pub value: f64,
}

/// `sequence`: a chain of events matching `steps` in order, first step in the window,
/// last step at least `min_age` old, and no `then_not` event after the last step.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequence {
    /// The steps, in order.
    pub steps: Vec<EventFilter>,
    /// The first step lies in `(T - within, T]`.
    pub within: Duration,
    /// The last step lies at or before `T - min_age`.
    pub min_age: Duration,
    /// No event matching this may follow the last step.
    pub then_not: Option<EventFilter>,
}

/// A segment condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// Every sub-condition holds.
    All(Vec<Condition>),
    /// At least one holds.
    Any(Vec<Condition>),
    /// Relative to the universe (users with an event at or before T).
    Not(Box<Condition>),
    /// Member of another segment.
    InSegment(String),
    /// A predicate on the user's current merged traits.
    Trait(Predicate),
    /// Event counts in a window.
    Performed(Performed),
    /// An aggregate over a window.
    Aggregate(Aggregate),
    /// An ordered chain of events.
    Sequence(Sequence),
}

impl Condition {
    /// The condition as definition JSON (the same shape it was parsed from, durations normalised).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Condition::All(cs) => {
                json!({"all": cs.iter().map(Condition::to_json).collect::<Vec<_>>()})
            }
            Condition::Any(cs) => {
                json!({"any": cs.iter().map(Condition::to_json).collect::<Vec<_>>()})
            }
            Condition::Not(c) => json!({"not": c.to_json()}),
            Condition::InSegment(id) => json!({"in_segment": id}),
            Condition::Trait(p) => json!({"trait": p.to_json("name")}),
            Condition::Performed(p) => {
                let mut o = serde_json::Map::new();
                p.filter.to_json_into(&mut o);
                if let Some(w) = p.within {
                    o.insert("within".into(), json!(w.to_string()));
                }
                o.insert("at_least".into(), json!(p.at_least));
                if let Some(m) = p.at_most {
                    o.insert("at_most".into(), json!(m));
                }
                json!({"performed": o})
            }
            Condition::Aggregate(a) => {
                let mut o = serde_json::Map::new();
                a.filter.to_json_into(&mut o);
                o.insert("property".into(), json!(a.property));
                o.insert("fn".into(), json!(a.func.name()));
                if let Some(w) = a.within {
                    o.insert("within".into(), json!(w.to_string()));
                }
                o.insert("op".into(), json!(a.op.name()));
                o.insert("value".into(), json!(a.value));
                json!({"aggregate": o})
            }
            Condition::Sequence(s) => {
                let mut o = serde_json::Map::new();
                o.insert("steps".into(), s.steps.iter().map(EventFilter::to_json).collect());
                o.insert("within".into(), json!(s.within.to_string()));
                o.insert("min_age".into(), json!(s.min_age.to_string()));
                if let Some(t) = &s.then_not {
                    o.insert("then_not".into(), t.to_json());
                }
                json!({"sequence": o})
            }
        }
    }

    /// Ids of segments this condition refers to with `in_segment`.
    pub fn references(&self, out: &mut Vec<String>) {
        match self {
            Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| c.references(out)),
            Condition::Not(c) => c.references(out),
            Condition::InSegment(id) => out.push(id.clone()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Num;

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }
    fn n(x: f64) -> Value {
        Value::Num(Num(x))
    }

    #[test]
    fn missing_values_fail_every_op_but_not_exists() {
        for (_, op) in Op::ALL {
            assert_eq!(op.test(None, Some(&n(1.0))), op == Op::NotExists, "{op:?}");
            assert_eq!(op.test(Some(&Value::Null), Some(&n(1.0))), op == Op::NotExists, "{op:?}");
        }
    }

    #[test]
    fn numbers_compare_numerically_strings_lexicographically() {
        assert!(Op::Gt.test(Some(&n(10.0)), Some(&n(9.0))));
        assert!(!Op::Gt.test(Some(&s("10")), Some(&n(9.0))));
        assert!(Op::Lt.test(Some(&s("2024-01-01")), Some(&s("2024-02-01"))));
        assert!(Op::Eq.test(Some(&n(1.0)), Some(&n(1.0))));
        assert!(Op::Ne.test(Some(&s("a")), Some(&n(1.0))));
    }

    #[test]
    fn set_and_string_ops() {
        let us_ca = Value::List(vec![s("US"), s("CA")]);
        assert!(Op::In.test(Some(&s("US")), Some(&us_ca)));
        assert!(!Op::In.test(Some(&s("FR")), Some(&us_ca)));
        assert!(Op::NotIn.test(Some(&s("FR")), Some(&us_ca)));
        assert!(Op::Contains.test(Some(&s("hello world")), Some(&s("o w"))));
        assert!(Op::Contains.test(Some(&us_ca), Some(&s("CA"))));
        assert!(Op::StartsWith.test(Some(&s("hello")), Some(&s("he"))));
        assert!(!Op::StartsWith.test(Some(&n(1.0)), Some(&s("1"))));
    }
}
