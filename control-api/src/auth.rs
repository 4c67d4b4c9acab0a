//! Who may call what: with an API token configured, every control call needs
//! `Authorization: Bearer <token>`; with write keys configured, ingest calls need Segment's
//! write-key Basic auth (the key as the user name, any password). `/healthz` stays open.

use crate::problem::Problem;
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
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

/// Middleware for ingest routes.
pub async fn ingest(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.auth.write_keys.is_empty() {
        return next.run(request).await;
    }
    let key = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .map(|user_pass| user_pass.split_once(':').map_or(user_pass.clone(), |(u, _)| u.to_string()));
    match key {
        Some(k) if state.auth.write_keys.iter().any(|w| constant_time_eq(w.as_bytes(), k.as_bytes())) => {
            next.run(request).await
        }
        _ => unauthorized("Basic realm=\"journeyflow\"", "ingest needs a write key as Basic auth user name"),
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
