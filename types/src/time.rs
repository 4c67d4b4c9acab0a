//! Event-time instants: epoch milliseconds, parsed from RFC 3339 strings or numbers.

/// Parses an instant given as RFC 3339 text or as epoch milliseconds (integer text or a JSON number).
pub fn parse_instant(v: &serde_json::Value) -> Result<u64, String> {
    match v {
        serde_json::Value::String(s) => parse_instant_str(s),
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(ms) => Ok(ms),
            None => Err(format!("timestamp {n} is not a non-negative integer of epoch milliseconds")),
        },
        other => Err(format!("timestamp must be an RFC 3339 string or epoch milliseconds, not {}", json_kind(other))),
    }
}

/// Parses RFC 3339 text, or a string of digits as epoch milliseconds.
pub fn parse_instant_str(s: &str) -> Result<u64, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("timestamp {s:?} is out of range"));
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| format!("timestamp {s:?} is not RFC 3339 ({e})"))?;
    u64::try_from(t.timestamp_millis()).map_err(|_| format!("timestamp {s:?} is before 1970"))
}

/// The wall clock in epoch milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds.
pub fn format_instant(ms: u64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms as i64) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

/// A short name for the kind of a JSON value, for error messages.
pub fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_rfc3339_and_epoch_ms() {
        assert_eq!(parse_instant(&json!("1970-01-01T00:00:01Z")), Ok(1000));
        assert_eq!(parse_instant(&json!("1970-01-01T01:00:00.5+01:00")), Ok(500));
        assert_eq!(parse_instant(&json!(1234)), Ok(1234));
        assert_eq!(parse_instant_str("1234"), Ok(1234));
        assert!(parse_instant(&json!(-5)).is_err());
        assert!(parse_instant(&json!(1.5)).is_err());
        assert!(parse_instant(&json!("yesterday")).is_err());
        assert!(parse_instant(&json!(true)).is_err());
    }

    #[test]
    fn formats_back() {
        assert_eq!(format_instant(1000), "1970-01-01T00:00:01.000Z");
    }
}
