//! Errors as RFC 9457 problem documents (`application/problem+json`): a client's mistake is
//! a 4xx naming what is wrong (every validation error with its JSON path), a passing condition
//! (the workers busy or behind, a full disk) a 429/503/507 with `Retry-After`, never a 500.

use crate::catalog::Refusal;
use crate::handle::CallError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use journeyflow_types::ValidationError;
use serde_json::json;

/// An error answer.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    detail: String,
    errors: Vec<ValidationError>,
    retry_after: Option<u64>,
}

impl Problem {
    /// A problem with a status and a detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem { status, detail: detail.into(), errors: Vec::new(), retry_after: None }
    }

    /// 400: the body is not what the endpoint reads.
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }

    /// 409.
    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, detail)
    }

    /// 503: try again later.
    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail).retry_after(1)
    }

    /// 422 with every validation error.
    pub fn invalid(errors: Vec<ValidationError>) -> Problem {
        let detail = format!("{} validation error(s)", errors.len());
        Problem { status: StatusCode::UNPROCESSABLE_ENTITY, detail, errors, retry_after: None }
    }

    /// The same problem, telling the client to try again after `seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Problem {
        self.retry_after = Some(seconds);
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<CallError> for Problem {
    fn from(e: CallError) -> Problem {
        Problem::unavailable(e.to_string())
    }
}

impl From<Refusal> for Problem {
    fn from(r: Refusal) -> Problem {
        match r {
            Refusal::Invalid(errors) => Problem::invalid(errors),
            Refusal::NotFound(why) => Problem::not_found(why),
            Refusal::Conflict(why) => Problem::conflict(why),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            // What Segment's client libraries read from an error answer.
            "code": self.status.canonical_reason().unwrap_or("error").to_lowercase().replace(' ', "_"),
            "message": self.detail,
        });
        if !self.errors.is_empty() {
            body["errors"] = json!(self.errors);
        }
        let mut response =
            (self.status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The shape of a problem document, for the OpenAPI description.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ProblemDoc {
    /// Always `about:blank`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What is wrong.
    pub detail: String,
    /// Segment's error code field.
    pub code: String,
    /// Segment's error message field (the detail).
    pub message: String,
    /// Validation errors, each with its JSON path.
    pub errors: Option<Vec<ErrorDoc>>,
}

/// One validation error in a problem document.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDoc {
    /// JSON path, such as `$.condition.performed.within`.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

/// Parses a JSON body, or says why not (400).
pub fn parse_json(body: &[u8]) -> Result<serde_json::Value, Problem> {
    serde_json::from_slice(body).map_err(|e| Problem::bad_request(format!("malformed JSON body: {e}")))
}
