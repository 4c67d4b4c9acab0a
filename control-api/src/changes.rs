//! How a control call changes what runs: the request body is read and turned into a
//! [`Change`] off the async runtime (validation takes time linear in the body), checked
//! against the current catalog (422, 404 or 409 with the reason), then sent to worker 0, which
//! checks it again against the catalog as it is then, logs it and applies it, or refuses it.
//! When worker 0 does not decide within the configured wait, the call is answered
//! `202 Accepted` with a `Location` (`/v1/requests/{id}`) where the outcome appears; the change
//! is neither lost nor applied twice.

use crate::catalog::{Catalog, Change, Refusal};
use crate::handle::{Changed, Outcome, Time};
use crate::problem::{parse_json, Problem};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use journeyflow_types::Limits;
use serde_json::{json, Value};
use std::sync::Arc;

/// Reads `body` and builds a change from it with `build`, off the async runtime, and checks it
/// against the current catalog. `build` gets the parsed body (`Value::Null` for an empty one),
/// the catalog and the configured limits.
pub async fn prepare<F>(state: &AppState, body: Bytes, build: F) -> Result<(Change, Arc<Catalog>), Problem>
where
    F: FnOnce(Value, &Catalog, &Limits) -> Result<Change, Problem> + Send + 'static,
{
    let catalog = state.engine.catalog.get();
    let limits = state.config.limits;
    tokio::task::spawn_blocking(move || {
        let value = if body.iter().all(u8::is_ascii_whitespace) { Value::Null } else { parse_json(&body)? };
        let change = build(value, &catalog, &limits)?;
        catalog.check(&change, &limits)?;
        Ok((change, catalog))
    })
    .await
    .map_err(|e| Problem::unavailable(format!("the request could not be handled: {e}")))?
}

/// Gives a replacement's body the id of its path when it has none; 400 when it names another.
pub fn id_from_path(body: &mut Value, path_id: &str) -> Result<(), Problem> {
    match body.get("id") {
        None => {
            if let Some(o) = body.as_object_mut() {
                o.insert("id".into(), Value::String(path_id.to_string()));
            }
            Ok(())
        }
        Some(Value::String(given)) if given == path_id => Ok(()),
        Some(other) => Err(Problem::bad_request(format!("the body's id {other} is not the path's {path_id:?}"))),
    }
}

/// Sends a checked change to worker 0: `Ok(time)` once applied, `Err(response)` with the
/// `202 Accepted` answer when it was not decided in time.
pub async fn submit(state: &AppState, change: Change) -> Result<Result<Time, Response>, Problem> {
    match state.engine.change(change, state.config.change_wait).await? {
        Changed::Applied(at) => Ok(Ok(at)),
        Changed::Refused(why) => Err(why.into()),
        Changed::Pending(id) => Ok(Err(accepted(&id))),
    }
}

/// `202 Accepted`: the change is queued and will be applied or refused in order.
fn accepted(id: &str) -> Response {
    let location = format!("/v1/requests/{id}");
    let body = json!({"request": id, "status": "pending", "location": location});
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// `GET /v1/requests/{id}`: what became of a change answered `202 Accepted`: `pending`,
/// `applied` (with its time), `refused` (with the problem, as the change's own answer would
/// have had it) or `lost` (the workers stopped before taking it: not applied). The latest
/// 1,024 are kept, until the process stops.
#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests",
    params(("id" = String, Path, description = "the request id of a 202 answer")),
    responses((status = 200, body = serde_json::Value), crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn outcome(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    let Some(outcome) = state.engine.outcomes.get(&id) else {
        return Err(Problem::not_found(format!("no request {id:?} (outcomes are kept for the latest 1024)")));
    };
    Ok(Json(match outcome {
        Outcome::Pending => json!({"request": id, "status": "pending"}),
        Outcome::Applied(at) => json!({"request": id, "status": "applied", "at": at}),
        Outcome::Refused(why) => {
            let status = Problem::from(why.clone()).status().as_u16();
            let errors = match &why {
                Refusal::Invalid(errors) => json!(errors),
                _ => json!([]),
            };
            json!({"request": id, "status": "refused", "problem": {"status": status, "detail": why.to_string(), "errors": errors}})
        }
        Outcome::Lost(why) => json!({"request": id, "status": "lost", "detail": why}),
    }))
}
