//! The OpenAPI document at `/v1/openapi.json`, generated (utoipa) from the handlers'
//! annotations and the same types they answer with.

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
        crate::journeys::create,
        crate::journeys::list,
        crate::journeys::get,
        crate::journeys::replace,
        crate::journeys::delete,
        crate::journeys::lifecycle,
        crate::journeys::stats,
        crate::journeys::user,
        crate::changes::outcome,
    ),
    tags((name = "ingest"), (name = "segments"), (name = "users"), (name = "journeys"), (name = "requests"))
)]
pub struct ApiDoc;

/// `GET /v1/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
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
    }
}
