//! Entries from outside: users named by a request (`POST /v1/journeys/{id}/entries`, a line
//! of a replay's entries file) to enter a journey, with a context the journey's templates
//! read. One set of checks wherever they come from.

use crate::definition::ValidationError;
use crate::limits::{json_depth, Limits, MAX_PAYLOAD_DEPTH};
use serde_json::Value;

/// Users one request may name.
pub const MAX_ENTRY_USERS: usize = 1_000;

/// Bytes of one request's context, as JSON text.
pub const MAX_CONTEXT_BYTES: usize = 16 << 10;

/// A checked entry request.
#[derive(Clone, Debug, PartialEq)]
pub struct EntryRequest {
    /// User ids, in the order given (a repeated one enters once per mention).
    pub users: Vec<String>,
    /// The context: an object, if given.
    pub context: Option<Value>,
}

fn error(path: &str, message: impl Into<String>) -> ValidationError {
    ValidationError { path: path.to_string(), message: message.into() }
}

/// Reads `{"users": [...], "context"?: {...}}` (fields under `path`; `extra` names fields the
/// caller reads itself), reporting every mistake with its JSON path.
pub fn parse_entry(
    value: &Value,
    path: &str,
    extra: &[&str],
    limits: &Limits,
) -> Result<EntryRequest, Vec<ValidationError>> {
    let Some(o) = value.as_object() else {
        return Err(vec![error(path, "expected an object {\"users\": [...], \"context\"?: {...}}")]);
    };
    let mut errors = Vec::new();
    for k in o.keys().filter(|k| !["users", "context"].contains(&k.as_str()) && !extra.contains(&k.as_str())) {
        errors.push(error(&format!("{path}.{k}"), "unknown field (expected users, context)"));
    }
    let mut users = Vec::new();
    match o.get("users") {
        None => errors.push(error(path, "missing field \"users\"")),
        Some(Value::Array(items)) if items.is_empty() => {
            errors.push(error(&format!("{path}.users"), "must not be empty"))
        }
        Some(Value::Array(items)) if items.len() > MAX_ENTRY_USERS => errors.push(error(
            &format!("{path}.users"),
            format!("names {} users, more than {MAX_ENTRY_USERS} in one request", items.len()),
        )),
        Some(Value::Array(items)) => {
            for (i, u) in items.iter().enumerate() {
                match u.as_str() {
                    Some("") => errors.push(error(&format!("{path}.users[{i}]"), "must not be empty")),
                    Some(s) if s.len() > limits.string_bytes => errors.push(error(
                        &format!("{path}.users[{i}]"),
                        format!("is {} bytes, more than {}", s.len(), limits.string_bytes),
                    )),
                    Some(s) => users.push(s.to_string()),
                    None => errors.push(error(&format!("{path}.users[{i}]"), "expected a user id (a string)")),
                }
            }
        }
        Some(_) => errors.push(error(&format!("{path}.users"), "expected an array of user ids")),
    }
    let context = match o.get("context") {
        None | Some(Value::Null) => None,
        Some(c @ Value::Object(_)) => {
            let bytes = c.to_string().len();
            if bytes > MAX_CONTEXT_BYTES {
                errors.push(error(
                    &format!("{path}.context"),
                    format!("is {bytes} bytes of JSON, more than {MAX_CONTEXT_BYTES}"),
                ));
            } else if json_depth(c) > MAX_PAYLOAD_DEPTH {
                errors.push(error(
                    &format!("{path}.context"),
                    format!("nests more than {MAX_PAYLOAD_DEPTH} levels deep"),
                ));
            }
            Some(c.clone())
        }
        Some(_) => {
            errors.push(error(&format!("{path}.context"), "expected an object"));
            None
        }
    };
    match errors.is_empty() {
        true => Ok(EntryRequest { users, context }),
        false => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(v: Value) -> Vec<String> {
        parse_entry(&v, "$", &[], &Limits::default()).unwrap_err().into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn reads_users_and_a_context() {
        let ok = parse_entry(&json!({"users": ["u1", "u2"], "context": {"coupon": "X"}}), "$", &[], &Limits::default());
        assert_eq!(
            ok,
            Ok(EntryRequest { users: vec!["u1".into(), "u2".into()], context: Some(json!({"coupon": "X"})) })
        );
    }

    #[test]
    fn names_every_mistake() {
        assert_eq!(paths(json!({"users": []})), vec!["$.users"]);
        assert_eq!(
            paths(json!({"users": ["a", 3, ""], "context": [1]})),
            vec!["$.users[1]", "$.users[2]", "$.context"]
        );
        assert_eq!(paths(json!({"user": ["a"]})), vec!["$.user", "$"]);
        let many: Vec<String> = (0..=MAX_ENTRY_USERS).map(|i| i.to_string()).collect();
        assert_eq!(paths(json!({"users": many})), vec!["$.users"]);
        let mut deep = json!(1);
        for _ in 0..20 {
            deep = json!({"a": deep});
        }
        assert_eq!(paths(json!({"users": ["a"], "context": deep})), vec!["$.context"]);
        let big = "x".repeat(MAX_CONTEXT_BYTES);
        assert_eq!(paths(json!({"users": ["a"], "context": {"big": big}})), vec!["$.context"]);
    }
}
