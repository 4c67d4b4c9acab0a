//! Checking a definition without installing it, as the console's editor does while one types:
//! the same validation an install runs, answered as a document (every error with its JSON
//! path) rather than as a refusal.

use crate::problem::{parse_json, Problem};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

/// `POST /v1/validate/{kind}` (`segment` or `journey`).
#[utoipa::path(post, path = "/v1/validate/{kind}", tag = "validation",
    params(("kind" = String, Path, description = "`segment` or `journey`")),
    request_body(content = serde_json::Value, description = "a definition, as it would be installed", example = json!({"id": "recent_buyer", "condition": {"performed": {"event": "Order Completed", "within": "30d"}}})),
    responses((status = 200, description = "`{\"valid\": bool, \"errors\": [{\"path\", \"message\"}]}`: the errors an install would answer with 422 (a segment is checked as a replacement when the id is installed)", body = serde_json::Value),
        (status = 400, body = crate::problem::ProblemDoc, content_type = "application/problem+json", description = "the body is not JSON"),
        (status = 413, body = crate::problem::ProblemDoc, content_type = "application/problem+json", description = "the body is larger than the body limit"),
        crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn check(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    if kind != "segment" && kind != "journey" {
        return Err(Problem::not_found(format!("no kind of definition {kind:?} (segment or journey)")));
    }
    let catalog = state.engine.catalog.get();
    let limits = state.config.limits;
    let checked = tokio::task::spawn_blocking(move || {
        let value = parse_json(&body)?;
        match kind.as_str() {
            "segment" => {
                let id = value.get("id").and_then(Value::as_str).filter(|id| catalog.segments.contains_key(*id));
                let id = id.map(str::to_string);
                crate::segments::normalised(value, &catalog, id.as_deref(), &limits).map(|_| ())
            }
            _ => crate::journeys::validated(&catalog, &value, &limits).map(|_| ()),
        }
    })
    .await
    .map_err(|e| Problem::unavailable(format!("the request could not be handled: {e}")))?;
    match checked {
        Ok(()) => Ok(Json(json!({"valid": true, "errors": []}))),
        Err(p) if p.status() == StatusCode::UNPROCESSABLE_ENTITY => {
            Ok(Json(json!({"valid": false, "errors": p.errors()})))
        }
        Err(p) => Err(p),
    }
}
