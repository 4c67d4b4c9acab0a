//! What the analysis endpoints (funnels, cohorts, paths) share: installing, replacing and removing a
//! definition through the catalog, and a report's range from its query string. Each kind's
//! module names its routes and documents them; the work is here, once.

use crate::buckets::Buckets;
use crate::catalog::{Catalog, Change};
use crate::changes::{id_from_path, prepare, submit};
use crate::problem::Problem;
use crate::AppState;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use journeyflow_types::{Limits, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// An analysis as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct View {
    /// Id.
    pub id: String,
    /// The definition as written.
    pub definition: Value,
}

/// How one kind of analysis is checked and changed.
#[derive(Clone, Copy)]
pub struct Kind {
    /// Its name in messages (`funnel`, `cohort`).
    pub name: &'static str,
    /// Validates a definition.
    pub validate: fn(&Value, &Limits) -> Result<(), Vec<ValidationError>>,
    /// Whether the catalog has one of this id.
    pub exists: fn(&Catalog, &str) -> bool,
    /// The change installing a definition.
    pub install: fn(Value) -> Change,
    /// The change replacing one.
    pub replace: fn(Value) -> Change,
    /// The change removing one.
    pub remove: fn(String) -> Change,
    /// How far back a report's range goes when `from` is not given.
    pub span: u64,
    /// Whether its reports are cut into buckets (a step given to one that is not is not used).
    pub bucketed: bool,
}

impl Kind {
    /// The range of a report asked with `range` (400 for a mistake).
    pub fn buckets(&self, range: &Range) -> Result<Buckets, Problem> {
        match self.bucketed {
            true => range.buckets(self.span),
            false => Range { step: None, ..range.clone() }.buckets(self.span),
        }
    }
}

/// Answers a report request: 404 for an id not installed, 400 for a range it cannot take, else
/// what `made` makes of the range.
pub async fn report<M, Fut>(
    state: &AppState,
    kind: Kind,
    id: String,
    range: Range,
    made: M,
) -> Result<Json<Value>, Problem>
where
    M: FnOnce(AppState, String, Buckets) -> Fut,
    Fut: std::future::Future<Output = Result<Value, Problem>>,
{
    if !(kind.exists)(&state.engine.catalog.get(), &id) {
        return Err(Problem::not_found(format!("no {} {id:?}", kind.name)));
    }
    let query = kind.buckets(&range)?;
    Ok(Json(made(state.clone(), id, query).await?))
}

/// Answers a report stream request: 404 and 400 as [`report`] does, before any stream; then the
/// report as [`crate::streams::reports`] sends it, made again at each heartbeat (without `to`,
/// each one's range ends when it is made).
pub fn stream<M, Fut>(
    state: &AppState,
    kind: Kind,
    id: String,
    range: Range,
    made: M,
) -> Result<crate::streams::Events, Problem>
where
    M: Fn(AppState, String, Buckets) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, Problem>> + Send + 'static,
{
    if !(kind.exists)(&state.engine.catalog.get(), &id) {
        return Err(Problem::not_found(format!("no {} {id:?}", kind.name)));
    }
    kind.buckets(&range)?;
    let made = std::sync::Arc::new(made);
    crate::streams::reports(state, move |state| {
        let (id, range, made) = (id.clone(), range.clone(), made.clone());
        async move {
            if !(kind.exists)(&state.engine.catalog.get(), &id) {
                return None;
            }
            Some(match kind.buckets(&range) {
                Ok(query) => made(state, id, query).await,
                Err(p) => Err(p),
            })
        }
    })
}

/// Installs the body's definition: 201 with `installed_at`, or the refusal.
pub async fn create(state: &AppState, kind: Kind, body: Bytes) -> Result<Response, Problem> {
    let (change, _) = prepare(state, body, move |body, _, limits| {
        (kind.validate)(&body, limits).map_err(Problem::invalid)?;
        Ok((kind.install)(body))
    })
    .await?;
    let definition = change.definition().cloned().unwrap_or_default();
    Ok(match submit(state, change).await? {
        Ok(at) => {
            let id = definition["id"].clone();
            (StatusCode::CREATED, Json(json!({"id": id, "installed_at": at, "definition": definition}))).into_response()
        }
        Err(accepted) => accepted,
    })
}

/// Replaces the definition of `id` with the body's (whose id may be left out).
pub async fn replace(state: &AppState, kind: Kind, id: String, body: Bytes) -> Result<Response, Problem> {
    let path_id = id.clone();
    let (change, _) = prepare(state, body, move |mut body, catalog, limits| {
        if !(kind.exists)(catalog, &path_id) {
            return Err(Problem::not_found(format!("no {} {path_id:?}", kind.name)));
        }
        id_from_path(&mut body, &path_id)?;
        (kind.validate)(&body, limits).map_err(Problem::invalid)?;
        Ok((kind.replace)(body))
    })
    .await?;
    let definition = change.definition().cloned().unwrap_or_default();
    Ok(match submit(state, change).await? {
        Ok(at) => Json(json!({"id": id, "installed_at": at, "definition": definition})).into_response(),
        Err(accepted) => accepted,
    })
}

/// Removes `id`: 204.
pub async fn delete(state: &AppState, kind: Kind, id: String) -> Result<Response, Problem> {
    let (change, _) = prepare(state, Bytes::new(), move |_, _, _| Ok((kind.remove)(id))).await?;
    Ok(match submit(state, change).await? {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(accepted) => accepted,
    })
}

/// The range of a report.
#[derive(Clone, Debug, Deserialize, utoipa::IntoParams)]
pub struct Range {
    /// The first entry time counted: epoch ms or RFC 3339 (default: `to` less the default span).
    pub from: Option<String>,
    /// The end of the range, exclusive (default: now).
    pub to: Option<String>,
    /// The buckets' length (`1h`, `1d`, `7d`, ...); one bucket without it.
    pub step: Option<String>,
}

impl Range {
    /// The buckets asked for, `from` defaulting to `span` before `to` (400 for a mistake).
    pub fn buckets(&self, span: u64) -> Result<Buckets, Problem> {
        let instant = |name: &str, v: &str| {
            journeyflow_types::time::parse_instant_str(v).map_err(|e| Problem::bad_request(format!("{name}: {e}")))
        };
        let to = match &self.to {
            Some(t) => instant("to", t)?,
            None => journeyflow_types::time::now_ms(),
        };
        let from = match &self.from {
            Some(f) => instant("from", f)?,
            None => to.saturating_sub(span),
        };
        let step = match &self.step {
            Some(text) => Some(
                journeyflow_types::Duration::parse(text).map_err(|e| Problem::bad_request(format!("step: {e}")))?.0,
            ),
            None => None,
        };
        Buckets::new(from, to, step).map_err(Problem::bad_request)
    }
}
