//! A borrowed view of a value: of an owned [`Value`] (a definition's operand, a trait) or of a
//! value read in place from a [`Record`](crate::record::Record). Predicates test these views,
//! so one set of comparison rules serves both and testing an event allocates nothing.

use crate::record::Reader;
use crate::value::{Num, Value};
use std::cmp::Ordering;

/// A value, borrowed. Ordered and compared exactly as [`Value`] is.
#[derive(Clone, Copy, Debug)]
pub enum ValueRef<'a> {
    /// JSON `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Num(Num),
    /// A string.
    Str(&'a str),
    /// An array.
    List(ListRef<'a>),
}

/// The items of an array value: owned, or still encoded in a record.
#[derive(Clone, Copy, Debug)]
pub enum ListRef<'a> {
    /// The items of a [`Value::List`].
    Owned(&'a [Value]),
    /// `len` items encoded one after the other in `bytes`.
    Encoded {
        /// Number of items.
        len: usize,
        /// Their encoding.
        bytes: &'a [u8],
    },
}

impl<'a> ListRef<'a> {
    /// The items in order.
    pub fn iter(self) -> ListIter<'a> {
        match self {
            ListRef::Owned(items) => ListIter::Owned(items.iter()),
            ListRef::Encoded { len, bytes } => ListIter::Encoded { left: len, reader: Reader::new(bytes) },
        }
    }

    /// Number of items.
    pub(crate) fn len(self) -> usize {
        match self {
            ListRef::Owned(items) => items.len(),
            ListRef::Encoded { len, .. } => len,
        }
    }

    /// Whether any item equals `value`.
    pub fn contains(self, value: ValueRef<'_>) -> bool {
        self.iter().any(|item| item == value)
    }
}

/// Iterates the items of a [`ListRef`].
pub enum ListIter<'a> {
    /// Over owned items.
    Owned(std::slice::Iter<'a, Value>),
    /// Over encoded items.
    Encoded {
        /// Items still to read.
        left: usize,
        /// Positioned at the next item.
        reader: Reader<'a>,
    },
}

impl<'a> Iterator for ListIter<'a> {
    type Item = ValueRef<'a>;

    fn next(&mut self) -> Option<ValueRef<'a>> {
        match self {
            ListIter::Owned(items) => items.next().map(ValueRef::from),
            ListIter::Encoded { left, reader } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                reader.value()
            }
        }
    }
}

impl<'a> From<&'a Value> for ValueRef<'a> {
    fn from(value: &'a Value) -> ValueRef<'a> {
        match value {
            Value::Null => ValueRef::Null,
            Value::Bool(b) => ValueRef::Bool(*b),
            Value::Num(n) => ValueRef::Num(*n),
            Value::Str(s) => ValueRef::Str(s),
            Value::List(items) => ValueRef::List(ListRef::Owned(items)),
        }
    }
}

impl ValueRef<'_> {
    /// An owned copy.
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Null => Value::Null,
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::Num(n) => Value::Num(n),
            ValueRef::Str(s) => Value::Str(s.to_string()),
            ValueRef::List(items) => Value::List(items.iter().map(ValueRef::to_value).collect()),
        }
    }

    /// The variant's place in [`Value`]'s order.
    fn rank(&self) -> u8 {
        match self {
            ValueRef::Null => 0,
            ValueRef::Bool(_) => 1,
            ValueRef::Num(_) => 2,
            ValueRef::Str(_) => 3,
            ValueRef::List(_) => 4,
        }
    }
}

impl PartialEq for ValueRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for ValueRef<'_> {}
impl PartialOrd for ValueRef<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ValueRef<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (ValueRef::Bool(a), ValueRef::Bool(b)) => a.cmp(b),
            (ValueRef::Num(a), ValueRef::Num(b)) => a.cmp(b),
            (ValueRef::Str(a), ValueRef::Str(b)) => a.cmp(b),
            (ValueRef::List(a), ValueRef::List(b)) => a.iter().cmp(b.iter()),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The borrowed order is the owned order, across variants and inside lists.
    #[test]
    fn orders_as_owned_values() {
        let values = [
            Value::Null,
            Value::Bool(false),
            Value::Bool(true),
            Value::Num(Num(-1.0)),
            Value::Num(Num(0.0)),
            Value::Num(Num(-0.0)),
            Value::Num(Num(2.5)),
            Value::Str(String::new()),
            Value::Str("a".into()),
            Value::Str("ab".into()),
            Value::List(vec![]),
            Value::List(vec![Value::Num(Num(1.0))]),
            Value::List(vec![Value::Num(Num(1.0)), Value::Null]),
            Value::List(vec![Value::Str("a".into())]),
        ];
        for a in &values {
            for b in &values {
                assert_eq!(ValueRef::from(a).cmp(&ValueRef::from(b)), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(ValueRef::from(a).to_value(), *a);
            }
        }
    }
}
