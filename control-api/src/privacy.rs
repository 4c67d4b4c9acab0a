//! A person's data rights: `DELETE /v1/users/{user_id}` deletes a user (optionally keeping
//! their later events out), `GET /v1/deletions/{id}` says how far a deletion has got, and
//! `/v1/suppressions` lists and lifts suppressions. Deletions and suppressions are changes
//! like any other: sequenced, logged (by the user's key, never their id) and applied as of
//! their time.

use crate::catalog::{Change, Deletion};
use crate::changes::{prepare, submit};
use crate::problem::Problem;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use journeyflow_types::{Key, ValidationError};
use serde::Serialize;
use serde_json::Value;

/// How far a deletion has got.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeletionStatus {
    /// The deletion id.
    pub id: u64,
    /// The user's key (the hex of the 128-bit hash of their id): the id itself is kept nowhere.
    pub user_key: String,
    /// The time it applies as of: every event of the user's that entered by then is gone.
    pub as_of: u64,
    /// Whether the user's later events are refused (until the suppression is lifted).
    pub suppress: bool,
    /// Whether every output through `as_of` (the exits and cancellations it caused among
    /// them) is durable.
    pub outputs_durable: bool,
    /// Whether the user's records through `as_of` are gone from every file of every process
    /// (the ingest log, checkpoints, outputs, dead letters, the archive): done once the outputs
    /// are durable and `retention.deleted_users` has passed.
    pub files_scrubbed: bool,
    /// `complete` once both, else `pending`.
    pub status: &'static str,
}

impl DeletionStatus {
    fn new(d: &Deletion, engine: &crate::handle::EngineHandle) -> DeletionStatus {
        let outputs_durable = engine.durable() > d.at;
        let files_scrubbed = engine.progress.scrubbed.load(std::sync::atomic::Ordering::Relaxed) >= d.id;
        DeletionStatus {
            id: d.id,
            user_key: d.user.clone(),
            as_of: d.at,
            suppress: d.suppress,
            outputs_durable,
            files_scrubbed,
            status: if outputs_durable && files_scrubbed { "complete" } else { "pending" },
        }
    }
}

/// Reads `{"suppress": bool}` (or nothing).
fn suppress_of(body: &Value) -> Result<bool, Problem> {
    let field = |message: &str| ValidationError { path: "$.suppress".into(), message: message.into() };
    match body {
        Value::Null => Ok(false),
        Value::Object(o) => {
            if let Some(other) = o.keys().find(|k| *k != "suppress") {
                let error = ValidationError { path: format!("$.{other}"), message: "unknown field".into() };
                return Err(Problem::invalid(vec![error]));
            }
            match o.get("suppress") {
                None => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(_) => Err(Problem::invalid(vec![field("expected true or false")])),
            }
        }
        _ => Err(Problem::invalid(vec![ValidationError { path: "$".into(), message: "expected an object".into() }])),
    }
}

/// `DELETE /v1/users/{user_id}`: deletes everything held about the user as of now (events,
/// traits, memberships: each segment they were in gets an exit marked `deleted`; journeys:
/// each they are inside cancels them, reason `deleted`, and no action of theirs is sent
/// after). With `{"suppress": true}`, their later events are refused too. `202` with the
/// deletion's id and where to follow it, for a user never seen as well (nothing is held).
#[utoipa::path(delete, path = "/v1/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "user id")),
    request_body(content = Option<serde_json::Value>, description = "`{\"suppress\": true}` to refuse their later events"),
    responses((status = 202, body = serde_json::Value,
        description = "a `DeletionStatus`; or, when not decided within the change wait, `{\"request\", \"status\": \"pending\", \"location\"}`",
        headers(("Location" = String, description = "/v1/deletions/{id}, or /v1/requests/{id}"))),
        crate::problem::ChangeRefusals, crate::problem::ControlAnswers))]
pub async fn delete_user(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let key = Key::of(&user_id).to_string();
    let user = key.clone();
    let (change, _) =
        prepare(&state, body, move |value, _, _| Ok(Change::DeleteUser { user, suppress: suppress_of(&value)? }))
            .await?;
    let at = match submit(&state, change).await? {
        Ok(at) => at,
        Err(accepted) => return Ok(accepted),
    };
    let catalog = state.engine.catalog.get();
    let deletion = catalog
        .deletions
        .iter()
        .rev()
        .find(|d| d.user == key && d.at == at)
        .ok_or_else(|| Problem::unavailable("the deletion was applied but is not in the catalog yet"))?;
    let status = DeletionStatus::new(deletion, &state.engine);
    let location = format!("/v1/deletions/{}", status.id);
    let mut response = (StatusCode::ACCEPTED, Json(status)).into_response();
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `GET /v1/deletions/{id}`: a deletion and how far it has got.
#[utoipa::path(get, path = "/v1/deletions/{id}", tag = "users",
    params(("id" = u64, Path, description = "deletion id")),
    responses((status = 200, body = DeletionStatus), crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn deletion(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<DeletionStatus>, Problem> {
    let catalog = state.engine.catalog.get();
    let found = id.parse::<u64>().ok().and_then(|id| catalog.deletions.get((id as usize).checked_sub(1)?));
    let deletion = found.ok_or_else(|| Problem::not_found(format!("no deletion {id:?}")))?;
    Ok(Json(DeletionStatus::new(deletion, &state.engine)))
}

/// A suppressed user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Suppression {
    /// The user's key (hex).
    pub user_key: String,
    /// Events entering after this time are refused.
    pub since: u64,
}

/// `GET /v1/suppressions`: the suppressed users, by key.
#[utoipa::path(get, path = "/v1/suppressions", tag = "users",
    responses((status = 200, body = Vec<Suppression>), crate::problem::ControlAnswers))]
pub async fn suppressions(State(state): State<AppState>) -> Json<Vec<Suppression>> {
    let catalog = state.engine.catalog.get();
    Json(
        catalog
            .suppressed
            .iter()
            .map(|(user_key, since)| Suppression { user_key: user_key.clone(), since: *since })
            .collect(),
    )
}

/// `DELETE /v1/suppressions/{user_id}`: the user's events that enter from now on count again;
/// 404 when the user is not suppressed.
#[utoipa::path(delete, path = "/v1/suppressions/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "user id")),
    responses((status = 204), crate::problem::ChangeAnswers, crate::problem::ChangeRefusals, crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn unsuppress(State(state): State<AppState>, Path(user_id): Path<String>) -> Result<Response, Problem> {
    let user = Key::of(&user_id).to_string();
    let (change, _) = prepare(&state, Bytes::new(), move |_, _, _| Ok(Change::Unsuppress { user })).await?;
    Ok(match submit(&state, change).await? {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(accepted) => accepted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_body_says_whether_to_suppress_and_nothing_else() {
        assert_eq!(suppress_of(&Value::Null).ok(), Some(false));
        assert_eq!(suppress_of(&json!({})).ok(), Some(false));
        assert_eq!(suppress_of(&json!({"suppress": true})).ok(), Some(true));
        for bad in [json!({"suppress": "yes"}), json!({"supress": true}), json!([true])] {
            assert_eq!(suppress_of(&bad).err().map(|p| p.status()), Some(StatusCode::UNPROCESSABLE_ENTITY), "{bad}");
        }
    }
}
