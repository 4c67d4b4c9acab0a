//! Who may call what: with an API token configured, every control call needs
//! `Authorization: Bearer <token>`; with write keys configured, ingest calls need a write key
//! as Segment's API takes it: Basic auth with the key as user name, or `writeKey` in the
//! body. `/healthz`, `/readyz` and `/metrics` stay open.

use crate::problem::Problem;
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

/// Credentials the server accepts.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    /// The control API's bearer token.
    pub api_token: Option<String>,
    /// Accepted Segment write keys.
    pub write_keys: Vec<String>,
}

fn unauthorized(challenge: &'static str, detail: &str) -> Response {
    let mut response = Problem::new(StatusCode::UNAUTHORIZED, detail).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static(challenge));
    response
}

/// Middleware for control routes.
pub async fn control(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.auth.api_token else { return next.run(request).await };
    let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match given.and_then(|v| v.strip_prefix("Bearer ")) {
        Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => unauthorized("Bearer", "this call needs Authorization: Bearer <api token>"),
    }
}

/// Checks an ingest call's write key: Basic auth (the key as user name) or, as Segment's
/// libraries send it, a `writeKey` field in the body; the 401 answer when it has neither.
pub fn ingest(state: &AppState, headers: &HeaderMap, body: &serde_json::Value) -> Option<Response> {
    if state.auth.write_keys.is_empty() {
        return None;
    }
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .map(|user_pass| user_pass.split_once(':').map_or(user_pass.clone(), |(u, _)| u.to_string()));
    let from_body = body.get("writeKey").and_then(|k| k.as_str()).map(String::from);
    let known = |k: &String| state.auth.write_keys.iter().any(|w| constant_time_eq(w.as_bytes(), k.as_bytes()));
    if from_header.iter().chain(from_body.iter()).any(known) {
        None
    } else {
        Some(unauthorized(
            "Basic realm=\"journeyflow\"",
            "ingest needs a write key (Basic auth user name or \"writeKey\")",
        ))
    }
}

/// Compares without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_secrets() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"a", b"ab"));
    }
}
