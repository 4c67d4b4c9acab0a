//! The engine's form of an accepted event: every field in one immutable, shared allocation,
//! read in place. The events arrangement keeps one of these per event for as long as events
//! are retained, so an event costs its encoded bytes (about its JSON size less the field
//! names) rather than a tree of heap strings, a property vector and their allocator slack.
//!
//! Layout: `ts` (u64 LE), user key (u128 LE), kind (u8), then `message_id`, `user_id` and
//! `name` as strings, then the properties: a count and `(path, value)` pairs sorted by path.
//! A string is a LEB128 length and its UTF-8 bytes; a value is a tag (null, false, true,
//! number as f64 LE, string, list of a count and values). The encoding is canonical (`-0`
//! is stored as `0`), so two records are equal exactly when their bytes are.

use crate::event::{Event, Kind};
use crate::key::Key;
use crate::value::{Num, Props};
use crate::value_ref::{ListRef, ValueRef};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::sync::Arc;

const TS: usize = 0;
const USER: usize = 8;
const KIND: usize = 24;
const STRINGS: usize = 25;

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const NUM: u8 = 3;
const STR: u8 = 4;
const LIST: u8 = 5;

/// What a filter reads of an event: its kind, its name and its properties by path.
pub trait EventView {
    /// The Segment call.
    fn kind(&self) -> Kind;
    /// The event name.
    fn name(&self) -> &str;
    /// Whether the event is named `name`.
    fn named(&self, name: &str) -> bool {
        self.name() == name
    }
    /// The property at a dot path, if present.
    fn prop(&self, path: &str) -> Option<ValueRef<'_>>;
}

impl EventView for Event {
    fn kind(&self) -> Kind {
        self.kind
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn prop(&self, path: &str) -> Option<ValueRef<'_>> {
        self.props.get(path).map(ValueRef::from)
    }
}

/// The fields of an event other than its properties, borrowed, to encode.
pub(crate) struct Head<'a> {
    pub(crate) ts: u64,
    pub(crate) user: Key,
    pub(crate) kind: Kind,
    pub(crate) message_id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) name: &'a str,
}

/// An accepted event, encoded (see the module doc). Cloning shares the bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Record(Arc<[u8]>);

impl Record {
    /// Encodes an event.
    pub fn new(event: &Event) -> Record {
        let head = Head {
            ts: event.ts,
            user: event.user,
            kind: event.kind,
            message_id: &event.message_id,
            user_id: &event.user_id,
            name: &event.name,
        };
        Record::encode(&head, event.props.0.iter().map(|(path, value)| (path.as_str(), ValueRef::from(value))))
    }

    /// Encodes the fields of an event and its properties, sorted by path, one per path: the
    /// one encoder, for decoded lines and for events.
    pub(crate) fn encode<'v>(head: &Head<'_>, props: impl ExactSizeIterator<Item = (&'v str, ValueRef<'v>)>) -> Record {
        let mut out = Vec::with_capacity(64 + head.message_id.len() + head.user_id.len() + head.name.len());
        out.extend_from_slice(&head.ts.to_le_bytes());
        out.extend_from_slice(&head.user.0.to_le_bytes());
        out.push(kind_byte(head.kind));
        put_str(&mut out, head.message_id);
        put_str(&mut out, head.user_id);
        put_str(&mut out, head.name);
        put_len(&mut out, props.len());
        for (path, value) in props {
            put_str(&mut out, path);
            put_value(&mut out, value);
        }
        Record(out.into())
    }

    /// Event time, epoch milliseconds.
    pub fn ts(&self) -> u64 {
        u64::from_le_bytes(self.fixed::<8>(TS))
    }

    /// The key of the user id.
    pub fn user(&self) -> Key {
        Key(u128::from_le_bytes(self.fixed::<16>(USER)))
    }

    /// The Segment call.
    pub fn kind(&self) -> Kind {
        match self.0.get(KIND) {
            Some(1) => Kind::Identify,
            Some(2) => Kind::Page,
            Some(3) => Kind::Screen,
            _ => Kind::Track,
        }
    }

    /// `messageId`.
    pub fn message_id(&self) -> &str {
        text(self.raw_strings()[0])
    }

    /// `userId`, else `anonymousId`.
    pub fn user_id(&self) -> &str {
        text(self.raw_strings()[1])
    }

    /// The event name.
    pub fn name(&self) -> &str {
        text(self.raw_strings()[2])
    }

    /// The bytes of `message_id`, `user_id` and `name`, unchecked (they order as the strings do).
    fn raw_strings(&self) -> [&[u8]; 3] {
        let mut r = self.strings();
        [r.bytes().unwrap_or(&[]), r.bytes().unwrap_or(&[]), r.bytes().unwrap_or(&[])]
    }

    /// The properties (traits of an identify), sorted by path.
    pub fn props(&self) -> PropsIter<'_> {
        let mut reader = self.strings();
        for _ in 0..3 {
            reader.bytes();
        }
        let left = reader.len().unwrap_or(0);
        PropsIter { left, reader }
    }

    /// The property at a dot path, if present.
    pub fn prop(&self, path: &str) -> Option<ValueRef<'_>> {
        let mut props = self.props();
        while props.left > 0 {
            props.left -= 1;
            let key = props.reader.bytes()?;
            let value = props.reader.value()?;
            match key.cmp(path.as_bytes()) {
                Ordering::Less => {}
                Ordering::Equal => return Some(value),
                Ordering::Greater => return None,
            }
        }
        None
    }

    /// The event, decoded.
    pub fn to_event(&self) -> Event {
        Event {
            ts: self.ts(),
            message_id: self.message_id().to_string(),
            user_id: self.user_id().to_string(),
            user: self.user(),
            kind: self.kind(),
            name: self.name().to_string(),
            props: Props(self.props().map(|(k, v)| (k.to_string(), v.to_value())).collect()),
        }
    }

    /// Bytes this record holds (its encoding, without the shared count).
    pub fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn fixed<const N: usize>(&self, at: usize) -> [u8; N] {
        self.0.get(at..at + N).and_then(|s| s.try_into().ok()).unwrap_or([0; N])
    }

    fn strings(&self) -> Reader<'_> {
        Reader::new(self.0.get(STRINGS..).unwrap_or(&[]))
    }
}

impl EventView for Record {
    fn kind(&self) -> Kind {
        Record::kind(self)
    }
    fn name(&self) -> &str {
        Record::name(self)
    }
    fn named(&self, name: &str) -> bool {
        self.raw_strings()[2] == name.as_bytes()
    }
    fn prop(&self, path: &str) -> Option<ValueRef<'_>> {
        Record::prop(self, path)
    }
}

impl From<&Event> for Record {
    fn from(event: &Event) -> Record {
        Record::new(event)
    }
}

impl From<Event> for Record {
    fn from(event: Event) -> Record {
        Record::new(&event)
    }
}

/// The order of [`Event`]: `(ts, message_id, user_id, user, kind, name, props)`, so that
/// every choice made by order (which duplicate survives, what happens first at one time)
/// is the same as for decoded events.
impl Ord for Record {
    fn cmp(&self, other: &Self) -> Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return Ordering::Equal;
        }
        self.ts().cmp(&other.ts()).then_with(|| {
            let ([m1, u1, n1], [m2, u2, n2]) = (self.raw_strings(), other.raw_strings());
            m1.cmp(m2)
                .then_with(|| u1.cmp(u2))
                .then_with(|| self.user().cmp(&other.user()))
                .then_with(|| self.kind().cmp(&other.kind()))
                .then_with(|| n1.cmp(n2))
                .then_with(|| self.props().cmp(other.props()))
        })
    }
}

impl PartialOrd for Record {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_event().fmt(f)
    }
}

/// Records travel between processes as their bytes.
impl Serialize for Record {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Record, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

/// Accepts the bytes of a record as any serde format gives them.
struct BytesVisitor;

impl<'de> serde::de::Visitor<'de> for BytesVisitor {
    type Value = Record;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the bytes of an encoded event")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Record, E> {
        Ok(Record(v.into()))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Record, E> {
        Ok(Record(v.into()))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Record, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(b) = seq.next_element::<u8>()? {
            bytes.push(b);
        }
        Ok(Record(bytes.into()))
    }
}

/// Iterates a record's `(path, value)` pairs.
pub struct PropsIter<'a> {
    left: usize,
    reader: Reader<'a>,
}

impl<'a> Iterator for PropsIter<'a> {
    type Item = (&'a str, ValueRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = self.reader.str()?;
        let value = self.reader.value()?;
        Some((key, value))
    }
}

/// A string field's bytes as text (empty if damaged).
fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

fn kind_byte(kind: Kind) -> u8 {
    match kind {
        Kind::Track => 0,
        Kind::Identify => 1,
        Kind::Page => 2,
        Kind::Screen => 3,
    }
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => out.push(NULL),
        ValueRef::Bool(false) => out.push(FALSE),
        ValueRef::Bool(true) => out.push(TRUE),
        ValueRef::Num(Num(x)) => {
            out.push(NUM);
            let x = if x == 0.0 { 0.0 } else { x };
            out.extend_from_slice(&x.to_le_bytes());
        }
        ValueRef::Str(s) => {
            out.push(STR);
            put_str(out, s);
        }
        ValueRef::List(items) => {
            out.push(LIST);
            put_len(out, items.len());
            items.iter().for_each(|item| put_value(out, item));
        }
    }
}

/// Reads a record's encoding from the front. Every read checks its bounds: a truncated or
/// damaged encoding reads as absent fields, never as a panic.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            self.buf = &[];
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn len(&mut self) -> Option<usize> {
        let mut n = 0usize;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    /// A string's bytes, not checked to be UTF-8 (they compare as the string does).
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// The next value.
    pub(crate) fn value(&mut self) -> Option<ValueRef<'a>> {
        Some(match self.byte()? {
            NULL => ValueRef::Null,
            FALSE => ValueRef::Bool(false),
            TRUE => ValueRef::Bool(true),
            NUM => ValueRef::Num(Num(f64::from_le_bytes(self.take(8)?.try_into().ok()?))),
            STR => ValueRef::Str(self.str()?),
            LIST => {
                let len = self.len()?;
                let start = self.buf;
                for _ in 0..len {
                    self.skip_value()?;
                }
                let used = start.len() - self.buf.len();
                ValueRef::List(ListRef::Encoded { len, bytes: &start[..used] })
            }
            _ => return None,
        })
    }

    fn skip_value(&mut self) -> Option<()> {
        match self.byte()? {
            NULL | FALSE | TRUE => {}
            NUM => {
                self.take(8)?;
            }
            STR => {
                let n = self.len()?;
                self.take(n)?;
            }
            LIST => {
                for _ in 0..self.len()? {
                    self.skip_value()?;
                }
            }
            _ => return None,
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::decode_line;

    fn event(line: &str) -> Event {
        decode_line(line.as_bytes()).unwrap()
    }

    #[test]
    fn round_trips_every_field() {
        let lines = [
            r#"{"type":"track","event":"Order Completed","userId":"u1","messageId":"m1","timestamp":5,"properties":{"revenue":12.5,"items":[1,"a",[true,null]],"a":{"b":"x"},"ok":false,"none":null}}"#,
            r#"{"type":"identify","anonymousId":"a1","messageId":"m2","timestamp":7,"traits":{"plan":"pro"}}"#,
            r#"{"type":"page","userId":"ü","messageId":"m3","timestamp":1704067200000,"name":"Home"}"#,
            r#"{"type":"screen","userId":"u","messageId":"m4","timestamp":0}"#,
        ];
        for line in lines {
            let e = event(line);
            let r = Record::new(&e);
            assert_eq!(r.to_event(), e);
            assert_eq!((r.ts(), r.user(), r.kind(), r.name()), (e.ts, e.user, e.kind, e.name.as_str()));
            for (path, value) in &e.props.0 {
                assert_eq!(r.prop(path).map(ValueRef::to_value).as_ref(), Some(value));
            }
            assert_eq!(r.prop("absent"), None);
            let bytes = serde_json::to_vec(&r).unwrap();
            assert_eq!(serde_json::from_slice::<Record>(&bytes).unwrap(), r);
        }
    }

    #[test]
    fn orders_as_events() {
        let lines = [
            r#"{"type":"track","event":"b","userId":"u1","messageId":"m1","timestamp":5}"#,
            r#"{"type":"track","event":"a","userId":"u1","messageId":"m1","timestamp":5}"#,
            r#"{"type":"track","event":"a","userId":"u0","messageId":"m1","timestamp":5}"#,
            r#"{"type":"track","event":"a","userId":"u0","messageId":"m0","timestamp":5}"#,
            r#"{"type":"track","event":"a","userId":"u0","messageId":"m0","timestamp":4}"#,
            r#"{"type":"identify","userId":"u0","messageId":"m0","timestamp":4}"#,
            r#"{"type":"track","event":"a","userId":"u0","messageId":"m0","timestamp":4,"properties":{"x":1}}"#,
            r#"{"type":"track","event":"a","userId":"u0","messageId":"m0","timestamp":4,"properties":{"x":2}}"#,
            r#"{"type":"track","event":"a","userId":"u0","messageId":"m0","timestamp":4,"properties":{"x":2,"y":0}}"#,
            r#"{"type":"track","event":"a","userId":"u0","messageId":"m0","timestamp":4,"properties":{"w":[]}}"#,
        ];
        let events: Vec<Event> = lines.iter().map(|l| event(l)).collect();
        for a in &events {
            for b in &events {
                assert_eq!(Record::new(a).cmp(&Record::new(b)), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(Record::new(a) == Record::new(b), a == b);
            }
        }
    }

    #[test]
    fn negative_zero_is_zero() {
        let a =
            event(r#"{"type":"track","event":"a","userId":"u","messageId":"m","timestamp":4,"properties":{"x":0}}"#);
        let b =
            event(r#"{"type":"track","event":"a","userId":"u","messageId":"m","timestamp":4,"properties":{"x":-0.0}}"#);
        assert_eq!(Record::new(&a), Record::new(&b));
    }

    #[test]
    fn damaged_bytes_read_as_absent_fields() {
        let e =
            event(r#"{"type":"track","event":"a","userId":"u","messageId":"m","timestamp":4,"properties":{"x":"y"}}"#);
        let full = Record::new(&e).0.to_vec();
        for cut in 0..full.len() {
            let r = Record(full[..cut].to_vec().into());
            let _ = (r.ts(), r.user(), r.kind(), r.message_id(), r.user_id(), r.name(), r.prop("x"), r.to_event());
        }
    }
}
