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
    /// What went wrong, for people.
    pub fn detail(&self) -> &str {
        &self.detail
    }

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

    /// The validation errors (of a 422).
    pub fn errors(&self) -> &[ValidationError] {
        &self.errors
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

/// Answers every control call may get.
#[derive(utoipa::IntoResponses)]
pub enum ControlAnswers {
    /// No `Authorization: Bearer <api token>` (when a token is configured).
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(#[to_schema] ProblemDoc),
    /// The request (its body included) took longer than the request timeout.
    #[response(status = 408, content_type = "application/problem+json")]
    Timeout(#[to_schema] ProblemDoc),
    /// Busy: too many requests at once, or the workers did not answer in time (nothing was
    /// changed); try again after `Retry-After` seconds.
    #[response(status = 503, content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "seconds to wait")))]
    Unavailable(#[to_schema] ProblemDoc),
}

/// The answer of a call about something that may not exist.
#[derive(utoipa::IntoResponses)]
pub enum NotFound {
    /// No such segment, journey, user or request.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(#[to_schema] ProblemDoc),
}

/// A change's answer before it is decided.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PendingDoc {
    /// The request id.
    pub request: String,
    /// `pending`.
    pub status: String,
    /// Where the outcome appears (`/v1/requests/{id}`).
    pub location: String,
}

/// A change's 202: not decided within the configured wait.
#[derive(utoipa::IntoResponses)]
pub enum ChangeAnswers {
    /// Not decided within the configured wait: it will be applied or refused in order; its
    /// outcome appears at the `Location`.
    #[response(status = 202, headers(("Location" = String, description = "/v1/requests/{id}")))]
    Accepted(#[to_schema] PendingDoc),
}

/// Why a change may be refused (every change lists these, and [`ChangeAnswers`] unless its
/// own success is a 202).
#[derive(utoipa::IntoResponses)]
pub enum ChangeRefusals {
    /// The body is not JSON, or not what the call reads.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(#[to_schema] ProblemDoc),
    /// It conflicts with what is installed now (exists, in use, status, version changed).
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(#[to_schema] ProblemDoc),
    /// The body is larger than the body limit.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(#[to_schema] ProblemDoc),
    /// The definition (or the body) is invalid or over a limit: every error with its JSON path.
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(#[to_schema] ProblemDoc),
}

/// Answers an ingest call may get besides 200.
#[derive(utoipa::IntoResponses)]
pub enum IngestAnswers {
    /// The body is not JSON, or (single calls) the event is refused, with the reason.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(#[to_schema] ProblemDoc),
    /// No valid write key (when write keys are configured).
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(#[to_schema] ProblemDoc),
    /// The request (its body included) took longer than the request timeout.
    #[response(status = 408, content_type = "application/problem+json")]
    Timeout(#[to_schema] ProblemDoc),
    /// The body is larger than the body limit, or the batch has more events than allowed.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(#[to_schema] ProblemDoc),
    /// The workers are behind the ingest log by more than the configured lag: nothing was
    /// stored; try again after `Retry-After` seconds.
    #[response(status = 429, content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "seconds to wait")))]
    TooMany(#[to_schema] ProblemDoc),
    /// Busy, or the ingest log could not be written: nothing was stored.
    #[response(status = 503, content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "seconds to wait")))]
    Unavailable(#[to_schema] ProblemDoc),
    /// The disk is full: nothing was stored; ingest takes events again once there is space.
    #[response(status = 507, content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "seconds to wait")))]
    Full(#[to_schema] ProblemDoc),
}

/// Turns every error answer that is not a problem document yet (a malformed path or query
/// string, a body over the limit, an unknown route or method) into one, keeping its status
/// and saying what was wrong.
pub async fn as_problem(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let retry = response.headers().get(header::RETRY_AFTER).cloned();
    let text = axum::body::to_bytes(response.into_body(), 16 << 10).await.unwrap_or_default();
    let detail = match String::from_utf8_lossy(&text).trim() {
        "" => status.canonical_reason().unwrap_or("error").to_string(),
        text => text.to_string(),
    };
    let mut problem = Problem::new(status, detail).into_response();
    if let Some(retry) = retry {
        problem.headers_mut().insert(header::RETRY_AFTER, retry);
    }
    problem
}

/// Parses a JSON body, or says why not (400).
pub fn parse_json(body: &[u8]) -> Result<serde_json::Value, Problem> {
    serde_json::from_slice(body).map_err(|e| Problem::bad_request(format!("malformed JSON body: {e}")))
}
