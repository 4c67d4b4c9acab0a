//! `GET /v1/users/{user_id}/segments`: the segments a user belongs to, as of a stated time.

use crate::handle::{Answer, Request};
use crate::problem::Problem;
use crate::AppState;
use axum::extract::{Path, State};
use axum::Json;
use journeyflow_types::Key;
use serde::Serialize;

/// A user's memberships.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserSegments {
    /// The user id.
    pub user_id: String,
    /// The event time the answer is complete up to (inclusive).
    pub as_of: u64,
    /// Segment ids, sorted.
    pub segments: Vec<String>,
}

/// `GET /v1/users/{user_id}/segments`; 404 for a user no event has named.
#[utoipa::path(get, path = "/v1/users/{user_id}/segments", tag = "users",
    params(("user_id" = String, Path, description = "user id")),
    responses((status = 200, body = UserSegments), crate::problem::NotFound, crate::problem::ControlAnswers))]
pub async fn segments(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Json<UserSegments>, Problem> {
    if state.engine.name(&Key::of(&user_id)).is_none() {
        return Err(Problem::not_found(format!("no events of user {user_id:?} have been read")));
    }
    let answers =
        state.engine.call(Request::UserSegments { user_id: user_id.clone() }, state.config.query_wait).await?;
    let mut out = UserSegments { user_id, as_of: 0, segments: Vec::new() };
    for answer in answers {
        match answer {
            Answer::Segments(t, ids) => {
                out.as_of = t;
                out.segments.extend(ids);
            }
            other => return Err(Problem::unavailable(format!("unexpected answer {other:?}"))),
        }
    }
    out.segments.sort();
    Ok(Json(out))
}
