//! The web console's files, embedded in the binary: `/` is the page, `/console/...` its
//! modules, style and vendored libraries (each with its license). They hold no data and need
//! no token: the page asks for the API token once, keeps it for the browser session, and reads
//! everything through the documented API. Each answer has an ETag (a 304 when it matches);
//! the vendored libraries, whose paths carry their versions, may be cached for good.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// `(path under console/, bytes)`.
macro_rules! files {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!("../console/", $path)) as &[u8])),*]
    };
}

const FILES: &[(&str, &[u8])] = files![
    "index.html",
    "app.js",
    "api.js",
    "ui.js",
    "overview.js",
    "segments.js",
    "segment.js",
    "users.js",
    "journeys.js",
    "journey.js",
    "graph.js",
    "editor.js",
    "funnels.js",
    "funnel.js",
    "cohorts.js",
    "cohort.js",
    "paths.js",
    "pathreport.js",
    "sankey.js",
    "style.css",
    "vendor/dagre-3.1.3/dagre.esm.js",
    "vendor/dagre-3.1.3/dagre.esm.js.LEGAL.txt",
    "vendor/dagre-3.1.3/LICENSE",
    "vendor/uplot-1.6.32/uPlot.esm.js",
    "vendor/uplot-1.6.32/uPlot.min.css",
    "vendor/uplot-1.6.32/LICENSE",
    "vendor/eventsource-parser-4.1.3/index.js",
    "vendor/eventsource-parser-4.1.3/parse.js",
    "vendor/eventsource-parser-4.1.3/errors.js",
    "vendor/eventsource-parser-4.1.3/LICENSE",
];

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    }
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some((_, bytes)) = FILES.iter().find(|(p, _)| *p == path) else {
        return crate::problem::Problem::not_found(format!("no console file {path:?}")).into_response();
    };
    let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(bytes));
    let cache = match path.starts_with("vendor/") {
        true => "public, max-age=31536000, immutable",
        false => "no-cache",
    };
    let mut answer = match headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes()) {
        true => StatusCode::NOT_MODIFIED.into_response(),
        false => ([(header::CONTENT_TYPE, content_type(path))], *bytes).into_response(),
    };
    let h = answer.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, value);
    }
    answer
}

/// `GET /`: the console's page.
pub async fn page(headers: HeaderMap) -> Response {
    let mut answer = serve("index.html", &headers);
    // Everything the page loads comes from this server; nothing may frame it.
    answer.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    );
    answer
}

/// `GET /console/{*path}`: one of the console's files (the page itself only at `/`, with its
/// content security policy).
pub async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    if path == "index.html" {
        return crate::problem::Problem::not_found("the console's page is at /").into_response();
    }
    serve(&path, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_a_type_and_an_etag_that_matches_gets_304() {
        for (path, bytes) in FILES {
            assert!(!bytes.is_empty(), "{path}");
            let first = serve(path, &HeaderMap::new());
            assert_eq!(first.status(), StatusCode::OK, "{path}");
            assert!(!first.headers()[header::CONTENT_TYPE].is_empty());
            let mut again = HeaderMap::new();
            again.insert(header::IF_NONE_MATCH, first.headers()[header::ETAG].clone());
            assert_eq!(serve(path, &again).status(), StatusCode::NOT_MODIFIED, "{path}");
        }
        assert_eq!(serve("../Cargo.toml", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
    }

    /// Every vendored file is listed (so embedded), with its package's license beside it.
    #[test]
    fn every_vendored_file_is_embedded_with_its_license() {
        let sums = include_str!("../console/vendor/SHA256SUMS");
        for line in sums.lines() {
            let path = line.split_whitespace().nth(1).unwrap().trim_start_matches("./");
            let path = format!("vendor/{path}");
            assert!(FILES.iter().any(|(p, _)| *p == path), "{path} is not embedded");
            let dir = path.rsplit_once('/').unwrap().0;
            assert!(FILES.iter().any(|(p, _)| *p == format!("{dir}/LICENSE")), "{dir} has no LICENSE");
        }
    }
}
