//! The event model (Segment spec) and its decoder: one JSON object in, one [`Record`] (or,
//! read back, one `Event`) or a `DecodeError` naming what is wrong out. Decoding never panics.

use crate::flatten::{flatten_entries, Leaf, Text};
use crate::key::Key;
use crate::record::{Head, Record};
use crate::time::{json_kind, parse_instant};
use crate::value::Props;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// What kind of Segment call an event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// `track`: a named action with properties.
    Track,
    /// `identify`: trait updates for the user.
    Identify,
    /// `page`: counts as an event named `page`.
    Page,
    /// `screen`: counts as an event named `screen`.
    Screen,
}

impl Kind {
    /// The call's `type` as written.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Track => "track",
            Kind::Identify => "identify",
            Kind::Page => "page",
            Kind::Screen => "screen",
        }
    }
}

/// One accepted event. Field order is the canonical processing order: `(ts, message_id)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Event {
    /// Event time, epoch milliseconds.
    pub ts: u64,
    /// `messageId`: repeated ids are duplicates.
    pub message_id: String,
    /// `userId`, else `anonymousId`.
    pub user_id: String,
    /// The key of `user_id`, what the dataflow groups by.
    pub user: Key,
    /// The Segment call.
    pub kind: Kind,
    /// Event name: the `event` of a track, `page` / `screen`, empty for identify.
    pub name: String,
    /// `properties` of a track/page/screen, `traits` of an identify, flattened.
    pub props: Props,
}

/// Why a record was rejected. The message names the field and the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON at all.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// JSON but not an object.
    #[error("record is {0}, expected a JSON object")]
    NotObject(&'static str),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field has the wrong type or an invalid value.
    #[error("field `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A `type` other than track, identify, page, screen.
    #[error("unsupported type {0:?} (accepted: track, identify, page, screen)")]
    UnsupportedType(String),
    /// Neither `userId` nor `anonymousId`.
    #[error("missing user: neither `userId` nor `anonymousId` is set")]
    NoUser,
    /// Longer than the configured record limit.
    #[error("record of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Record size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
}

/// The fields journeyflow reads, borrowed from the line; each is checked on its own so that
/// errors name the field. Unknown fields are ignored, as Segment's own API does.
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a RawValue>,
    #[serde(rename = "userId", borrow)]
    user_id: Option<&'a RawValue>,
    #[serde(rename = "anonymousId", borrow)]
    anonymous_id: Option<&'a RawValue>,
    #[serde(rename = "messageId", borrow)]
    message_id: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    /// Read in the same pass, straight into leaves.
    #[serde(borrow)]
    properties: Option<Leaf<'a>>,
    #[serde(borrow)]
    traits: Option<Leaf<'a>>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(rename = "receivedAt", borrow)]
    received_at: Option<&'a RawValue>,
}

/// Decodes one NDJSON line.
pub fn decode_line(line: &[u8]) -> Result<Event, DecodeError> {
    decode_record(line).map(|(record, _)| record.to_event())
}

/// Decodes one NDJSON line, with the time it was received (`receivedAt`, which HTTP ingest
/// sets) when it has a readable one.
pub fn decode_line_received(line: &[u8]) -> Result<(Event, Option<u64>), DecodeError> {
    decode_record(line).map(|(record, received)| (record.to_event(), received))
}

/// Decodes one NDJSON line straight into the record the engine keeps (nothing else is
/// allocated per field: keys and strings are read in place), with the time it was received
/// (`receivedAt`, which HTTP ingest sets) when it has a readable one. The one decoder: the
/// others read its record back.
pub fn decode_record(line: &[u8]) -> Result<(Record, Option<u64>), DecodeError> {
    let text = std::str::from_utf8(line).map_err(|e| DecodeError::Json(format!("invalid UTF-8: {e}")))?;
    match text.trim_start().as_bytes().first() {
        Some(b'{') => {}
        _ => {
            // Not an object: say what it is, or why it is not JSON.
            let value: serde_json::Value = serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))?;
            return Err(DecodeError::NotObject(json_kind(&value)));
        }
    }
    let raw: RawEvent = serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))?;
    let received = present(raw.received_at)
        .and_then(|v| serde_json::from_str::<serde_json::Value>(v.get()).ok())
        .and_then(|v| parse_instant(&v).ok());
    decode_raw(raw).map(|event| (event, received))
}

/// A present, non-null field.
fn present(v: Option<&RawValue>) -> Option<&RawValue> {
    v.filter(|r| r.get() != "null")
}

/// The kind of a raw JSON value, for error messages.
fn raw_kind(v: &RawValue) -> &'static str {
    match v.get().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn string_field<'a>(v: &'a RawValue, field: &'static str) -> Result<Cow<'a, str>, DecodeError> {
    serde_json::from_str::<Text<'a>>(v.get())
        .map(|text| text.0)
        .map_err(|_| DecodeError::Invalid { field, reason: format!("expected a string, found {}", raw_kind(v)) })
}

fn decode_raw(raw: RawEvent) -> Result<Record, DecodeError> {
    let kind = match present(raw.kind) {
        None => return Err(DecodeError::Missing("type")),
        Some(v) => match string_field(v, "type")?.as_ref() {
            "track" => Kind::Track,
            "identify" => Kind::Identify,
            "page" => Kind::Page,
            "screen" => Kind::Screen,
            other => return Err(DecodeError::UnsupportedType(other.to_string())),
        },
    };
    let user_id = match (id_field(raw.user_id, "userId")?, id_field(raw.anonymous_id, "anonymousId")?) {
        (Some(u), _) | (None, Some(u)) => u,
        (None, None) => return Err(DecodeError::NoUser),
    };
    let message_id = id_field(raw.message_id, "messageId")?.ok_or(DecodeError::Missing("messageId"))?;
    let ts = match present(raw.timestamp) {
        None => return Err(DecodeError::Missing("timestamp")),
        Some(v) => {
            let value: serde_json::Value =
                serde_json::from_str(v.get()).map_err(|e| DecodeError::Json(e.to_string()))?;
            parse_instant(&value).map_err(|reason| DecodeError::Invalid { field: "timestamp", reason })?
        }
    };
    let (name, props_field, props_raw) = match kind {
        Kind::Track => {
            let name = match present(raw.event) {
                None => return Err(DecodeError::Missing("event")),
                Some(v) => string_field(v, "event")?,
            };
            if name.is_empty() {
                return Err(DecodeError::Invalid { field: "event", reason: "must not be empty".into() });
            }
            (name, "properties", raw.properties)
        }
        Kind::Identify => (Cow::Borrowed(""), "traits", raw.traits),
        Kind::Page => (Cow::Borrowed("page"), "properties", raw.properties),
        Kind::Screen => (Cow::Borrowed("screen"), "properties", raw.properties),
    };
    let mut props = match props_raw {
        None | Some(Leaf::Null) => Vec::new(),
        Some(Leaf::Object(entries)) => flatten_entries(entries),
        Some(other) => {
            return Err(DecodeError::Invalid {
                field: props_field,
                reason: format!("expected an object, found {}", other.kind()),
            })
        }
    };
    // A page or screen call names the page in `name`; keep it as the property `name`.
    if matches!(kind, Kind::Page | Kind::Screen) {
        if let Err(at) = props.binary_search_by(|(k, _)| k.as_ref().cmp("name")) {
            if let Some(Ok(n)) = present(raw.name).map(|v| string_field(v, "name")) {
                props.insert(at, (Cow::Borrowed("name"), Leaf::Str(n)));
            }
        }
    }
    let head = Head { ts, user: Key::of(&user_id), kind, message_id: &message_id, user_id: &user_id, name: &name };
    Ok(Record::encode(&head, props.iter().map(|(path, leaf)| (path.as_ref(), leaf.as_ref()))))
}

/// A string identifier (numbers are accepted and kept as their decimal text, as Segment does).
fn id_field<'a>(v: Option<&'a RawValue>, field: &'static str) -> Result<Option<Cow<'a, str>>, DecodeError> {
    let Some(v) = present(v) else { return Ok(None) };
    match v.get().as_bytes().first() {
        Some(b'"') => Ok(Some(string_field(v, field)?).filter(|s| !s.is_empty())),
        Some(b'-' | b'0'..=b'9') => Ok(Some(Cow::Borrowed(v.get()))),
        _ => Err(DecodeError::Invalid { field, reason: format!("expected a string, found {}", raw_kind(v)) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Num, Value};

    fn ok(line: &str) -> Event {
        decode_line(line.as_bytes()).unwrap()
    }
    fn err(line: &str) -> String {
        decode_line(line.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn decodes_track_identify_page() {
        let e = ok(
            r#"{"type":"track","event":"Order Completed","userId":"u1","messageId":"m1","timestamp":"2024-01-01T00:00:00Z","properties":{"revenue":12.5}}"#,
        );
        assert_eq!(
            (e.kind, e.name.as_str(), e.user_id.as_str(), e.ts),
            (Kind::Track, "Order Completed", "u1", 1_704_067_200_000)
        );
        assert_eq!(e.props.get("revenue"), Some(&Value::Num(Num(12.5))));
        let i = ok(
            r#"{"type":"identify","anonymousId":"a1","messageId":"m2","timestamp":5,"traits":{"plan":"pro","gone":null}}"#,
        );
        assert_eq!((i.kind, i.user_id.as_str(), i.ts), (Kind::Identify, "a1", 5));
        assert_eq!(i.props.get("gone"), Some(&Value::Null));
        let p = ok(r#"{"type":"page","userId":"u1","messageId":"m3","timestamp":7,"name":"Home"}"#);
        assert_eq!((p.kind, p.name.as_str()), (Kind::Page, "page"));
        assert_eq!(p.props.get("name"), Some(&Value::Str("Home".into())));
    }

    #[test]
    fn user_id_wins_over_anonymous_id() {
        let e = ok(r#"{"type":"identify","userId":"u","anonymousId":"a","messageId":"m","timestamp":1}"#);
        assert_eq!(e.user_id, "u");
    }

    #[test]
    fn every_bad_record_says_why() {
        assert!(err("{not json").starts_with("malformed JSON"));
        assert_eq!(err("[1]"), "record is an array, expected a JSON object");
        assert_eq!(err(r#"{"userId":"u","messageId":"m","timestamp":1}"#), "missing field `type`");
        assert_eq!(
            err(r#"{"type":"alias","userId":"u","messageId":"m","timestamp":1}"#),
            "unsupported type \"alias\" (accepted: track, identify, page, screen)"
        );
        assert_eq!(
            err(r#"{"type":"track","event":"x","messageId":"m","timestamp":1}"#),
            "missing user: neither `userId` nor `anonymousId` is set"
        );
        assert_eq!(err(r#"{"type":"track","event":"x","userId":"u","timestamp":1}"#), "missing field `messageId`");
        assert_eq!(err(r#"{"type":"track","event":"x","userId":"u","messageId":"m"}"#), "missing field `timestamp`");
        assert!(err(r#"{"type":"track","event":"x","userId":"u","messageId":"m","timestamp":"soon"}"#)
            .starts_with("field `timestamp`"));
        assert_eq!(err(r#"{"type":"track","userId":"u","messageId":"m","timestamp":1}"#), "missing field `event`");
        assert_eq!(
            err(r#"{"type":"track","event":3,"userId":"u","messageId":"m","timestamp":1}"#),
            "field `event`: expected a string, found a number"
        );
        assert_eq!(
            err(r#"{"type":"track","event":"x","userId":"u","messageId":"m","timestamp":1,"properties":[]}"#),
            "field `properties`: expected an object, found an array"
        );
        assert_eq!(
            err(r#"{"type":"identify","userId":"u","messageId":"m","timestamp":1,"traits":"x"}"#),
            "field `traits`: expected an object, found a string"
        );
        assert_eq!(
            err(r#"{"type":"track","event":"x","userId":{},"messageId":"m","timestamp":1}"#),
            "field `userId`: expected a string, found an object"
        );
    }
}
