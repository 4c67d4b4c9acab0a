//! Who may call what. With an API token configured, every control call (and `/metrics`, when
//! configured so) needs `Authorization: Bearer <token>`; write keys never open the control
//! API, since they ship inside browser and mobile SDKs. With write keys configured, ingest
//! calls need one as Segment's API takes it: Basic auth with the key as user name, checked
//! before the body is looked at, or `writeKey` in the body, read without building the events
//! (and never stored). `/healthz` and `/readyz` stay open.

use crate::problem::Problem;
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use std::borrow::Cow;

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

/// Middleware for control routes (and `/metrics` when it needs the token).
pub async fn control(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.auth.api_token else { return next.run(request).await };
    let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match given.and_then(|v| v.strip_prefix("Bearer ")) {
        Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => unauthorized("Bearer", "this call needs Authorization: Bearer <api token>"),
    }
}

/// Middleware for ingest routes: a call that brings an `Authorization` header is checked
/// before its body is read (401 at once when the key is not one of ours); one without is
/// checked by its handler, from the body's `writeKey`.
pub async fn ingest_header(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.auth.write_keys.is_empty() || !request.headers().contains_key(header::AUTHORIZATION) {
        return next.run(request).await;
    }
    match ingest(&state, request.headers(), &[]) {
        Some(denied) => denied,
        None => next.run(request).await,
    }
}

/// The only field of an ingest body read before its events: borrowed, nothing built.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "writeKey", borrow, default)]
    write_key: Option<Cow<'a, str>>,
}

/// Checks an ingest call's write key: Basic auth (the key as user name), or, when the call has
/// no `Authorization` header, a `writeKey` field in the body (as Segment's browser library
/// sends it). The 401 answer when it has neither.
pub fn ingest(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    if state.auth.write_keys.is_empty() {
        return None;
    }
    let known = |k: &str| state.auth.write_keys.iter().any(|w| constant_time_eq(w.as_bytes(), k.as_bytes()));
    let denied = || {
        unauthorized("Basic realm=\"journeyflow\"", "ingest needs a write key (Basic auth user name or \"writeKey\")")
    };
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
            .and_then(|raw| String::from_utf8(raw).ok())
            .map(|user_pass| user_pass.split_once(':').map_or(user_pass.clone(), |(u, _)| u.to_string()));
        return match key {
            Some(k) if known(&k) => None,
            _ => Some(denied()),
        };
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope { write_key: Some(k) }) if known(&k) => None,
        _ => Some(denied()),
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
