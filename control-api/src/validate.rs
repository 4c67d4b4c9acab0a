//! Checking a definition without installing it, as the console's editor does while one types:
//! the same checks an install runs (the definition, the catalog's limits, conflicts),
//! answered as a document (every error with its JSON path) rather than as a refusal.

use crate::catalog::{Change, Refusal};
use crate::problem::{parse_json, Problem};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

/// `POST /v1/validate/{kind}` (`segment`, `journey`, `funnel`, `cohort` or `paths`).
#[utoipa::path(post, path = "/v1/validate/{kind}", tag = "validation",
    params(("kind" = String, Path, description = "`segment`, `journey`, `funnel`, `cohort` or `paths`")),
    request_body(content = serde_json::Value, description = "a definition, as it would be installed", example = json!({"id": "recent_buyer", "condition": {"performed": {"event": "Order Completed", "within": "30d"}}})),
    responses((status = 200, description = "`{\"valid\": bool, \"errors\": [{\"path\", \"message\"}], \"conflict\": null | why}`: the errors an install would answer with 422, and why it would answer 409 (a segment whose id is installed is checked as a replacement, a journey whose id exists as its next version, an analysis whose id is installed as a replacement)", body = serde_json::Value),
        (status = 400, body = crate::problem::ProblemDoc, content_type = "application/problem+json", description = "the body is not JSON"),
        (status = 413, body = crate::problem::ProblemDoc, content_type = "application/problem+json", description = "the body is larger than the body limit"),
        crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn check(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    if !["segment", "journey", "funnel", "cohort", "paths"].contains(&kind.as_str()) {
        return Err(Problem::not_found(format!(
            "no kind of definition {kind:?} (segment, journey, funnel, cohort or paths)"
        )));
    }
    let catalog = state.engine.catalog.get();
    let limits = state.config.limits;
    // The change an install (or, for an id in use, a replacement) would make, checked as the
    // install checks it: the definition's errors, the catalog's limits, and conflicts.
    let checked = tokio::task::spawn_blocking(move || {
        let value = parse_json(&body)?;
        let id = value.get("id").and_then(Value::as_str).map(str::to_string).unwrap_or_default();
        let change = match kind.as_str() {
            "segment" => {
                let exists = catalog.segments.contains_key(&id);
                let definition = crate::segments::normalised(value, &catalog, exists.then_some(id.as_str()), &limits)?;
                match exists {
                    true => Change::ReplaceSegment { definition },
                    false => Change::InstallSegment { definition },
                }
            }
            "funnel" => match catalog.funnels.contains_key(&id) {
                true => Change::ReplaceFunnel { definition: value },
                false => Change::InstallFunnel { definition: value },
            },
            "cohort" => match catalog.cohorts.contains_key(&id) {
                true => Change::ReplaceCohort { definition: value },
                false => Change::InstallCohort { definition: value },
            },
            "paths" => match catalog.paths.contains_key(&id) {
                true => Change::ReplacePaths { definition: value },
                false => Change::InstallPaths { definition: value },
            },
            _ => {
                crate::journeys::validated(&catalog, &value, &limits)?;
                match catalog.journeys.contains_key(&id) {
                    true => Change::ReviseJourney { definition: value },
                    false => Change::DraftJourney { definition: value },
                }
            }
        };
        Ok::<_, Problem>(catalog.check(&change, &limits))
    })
    .await
    .map_err(|e| Problem::unavailable(format!("the request could not be handled: {e}")))?;
    Ok(Json(match checked {
        Ok(Ok(())) => json!({"valid": true, "errors": [], "conflict": null}),
        Ok(Err(Refusal::Invalid(errors))) => json!({"valid": false, "errors": errors, "conflict": null}),
        Ok(Err(Refusal::Conflict(why) | Refusal::NotFound(why))) => {
            json!({"valid": true, "errors": [], "conflict": why})
        }
        Err(p) if p.status() == StatusCode::UNPROCESSABLE_ENTITY => {
            json!({"valid": false, "errors": p.errors(), "conflict": null})
        }
        Err(p) => return Err(p),
    }))
}
