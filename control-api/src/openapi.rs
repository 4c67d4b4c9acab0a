//! The OpenAPI document at `/v1/openapi.json`, generated (utoipa) from the handlers'
//! annotations and the same types they answer with; its description lists the limits this
//! server runs with.

use crate::config::HttpConfig;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use utoipa::OpenApi;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "journeyflow", description = "Segment-compatible ingest and the journeyflow control API."),
    paths(
        crate::ingest::track,
        crate::ingest::identify,
        crate::ingest::page,
        crate::ingest::screen,
        crate::ingest::batch,
        crate::segments::create,
        crate::segments::list,
        crate::segments::get,
        crate::segments::replace,
        crate::segments::delete,
        crate::segments::members,
        crate::users::segments,
        crate::profile::export,
        crate::privacy::delete_user,
        crate::privacy::deletion,
        crate::privacy::suppressions,
        crate::privacy::unsuppress,
        crate::journeys::create,
        crate::journeys::list,
        crate::journeys::get,
        crate::journeys::replace,
        crate::journeys::delete,
        crate::journeys::lifecycle,
        crate::journeys::stats,
        crate::journeys::user,
        crate::changes::outcome,
        crate::journeys::migration_preview,
        crate::journeys::enter,
        crate::validate::check,
        crate::funnels::create,
        crate::funnels::list,
        crate::funnels::get,
        crate::funnels::replace,
        crate::funnels::delete,
        crate::funnels::report_of,
        crate::funnels::report_stream,
        crate::cohorts::create,
        crate::cohorts::list,
        crate::cohorts::get,
        crate::cohorts::replace,
        crate::cohorts::delete,
        crate::cohorts::report_of,
        crate::cohorts::report_stream,
        crate::paths::create,
        crate::paths::list,
        crate::paths::get,
        crate::paths::replace,
        crate::paths::delete,
        crate::paths::report_of,
        crate::paths::report_stream,
        crate::streams::sizes,
        crate::streams::overview,
        crate::streams::segments,
        crate::streams::dead_letters,
        crate::streams::segment,
        crate::streams::segment_changes,
        crate::streams::journey,
        crate::streams::journey_transitions,
    ),
    tags((name = "ingest"), (name = "segments"), (name = "users"), (name = "journeys"), (name = "requests"), (name = "validation"), (name = "streams"), (name = "funnels"), (name = "cohorts"), (name = "paths"))
)]
pub struct ApiDoc;

/// `GET /v1/openapi.json`: the document, with the limits of this server.
pub async fn document(State(state): State<AppState>) -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    doc.info.description = Some(describe(&state.config));
    Json(doc)
}

/// The description: what the API is, and every limit a request meets here.
fn describe(c: &HttpConfig) -> String {
    let l = &c.limits;
    format!(
        "Segment-compatible ingest and the journeyflow control API. Errors are \
         `application/problem+json` documents.\n\n\
         Limits of this server (a request over one gets the status named):\n\n\
         | limit | value |\n| --- | --- |\n\
         | request body | {} bytes (413) |\n\
         | events of one batch | {} (413) |\n\
         | one event as stored | {} bytes (the event refused) |\n\
         | event time after receipt (after clock-skew correction with `sentAt`) | {} ms (the event refused) |\n\
         | ingest log the workers have not read | {} bytes (429) |\n\
         | request time, body included | {} ms (408) |\n\
         | ingest requests at once | {} (503) |\n\
         | control requests at once | {} (503) |\n\
         | connections at once | {} (more are closed) |\n\
         | live streams at once | {} (503) |\n\
         | time to send a request's headers | {} ms (the connection is closed) |\n\
         | wait for a change to be decided | {} ms (then 202) |\n\
         | wait for a membership answer | {} ms (503) |\n\
         | condition nesting | {} levels (422) |\n\
         | conditions of one `all`/`any`, predicates of one `where` | {} (422) |\n\
         | values of one list operand | {} (422) |\n\
         | steps of one sequence | {} (422) |\n\
         | nodes of one journey | {} (422) |\n\
         | conditions of one journey | {} (422) |\n\
         | bytes of any string in a definition | {} (422) |\n\
         | installed segments | {} (422) |\n\
         | journeys, drafts included | {} (422) |\n\
         | nesting of an action's payload | 16 levels (422) |\n\
         | any duration | 36500d (422) |\n",
        c.max_body_bytes,
        c.max_batch_events,
        c.max_event_bytes,
        c.max_future_skew,
        c.max_ingest_lag_bytes,
        c.request_timeout.as_millis(),
        c.concurrency,
        c.control_concurrency,
        c.max_connections,
        c.max_streams,
        c.header_timeout.as_millis(),
        c.change_wait.as_millis(),
        c.query_wait.as_millis(),
        l.condition_depth,
        l.condition_width,
        l.list_values,
        l.sequence_steps,
        l.journey_nodes,
        l.journey_conditions,
        l.string_bytes,
        l.segments,
        l.journeys,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_with_its_answers() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (path, method) in [
            ("/v1/batch", "post"),
            ("/v1/track", "post"),
            ("/v1/segments", "post"),
            ("/v1/segments", "get"),
            ("/v1/segments/{id}", "put"),
            ("/v1/segments/{id}", "delete"),
            ("/v1/segments/{id}/members", "get"),
            ("/v1/users/{user_id}/segments", "get"),
        ] {
            assert!(paths[path][method].is_object(), "{method} {path} missing");
        }
        assert!(paths["/v1/segments"]["post"]["responses"]["422"].is_object());
        assert!(doc["components"]["schemas"]["Members"].is_object());
        let described = describe(&HttpConfig::default());
        assert!(described.contains("| condition nesting | 32 levels (422) |"), "{described}");
    }
}
