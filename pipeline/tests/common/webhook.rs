//! A webhook endpoint for tests: records every delivery `(channel, idempotency key, body)`;
//! refuses (503) every attempt while closed, and once open the first attempt of each key, so
//! that each action is retried once.

use serde_json::Value as J;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Deliveries seen, in order.
pub type Seen = Arc<Mutex<Vec<(String, String, J)>>>;

/// Starts the endpoint (`POST /hook/{channel}`): its base URL, what it saw, and its gate
/// (open at first).
pub fn receiver() -> (String, Seen, Arc<AtomicBool>) {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode as Code};
    type Shared = (Seen, Arc<AtomicBool>);
    async fn hook(
        State((seen, open)): State<Shared>,
        Path(channel): Path<String>,
        headers: HeaderMap,
        body: String,
    ) -> Code {
        let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let mut seen = seen.lock().unwrap();
        let first = !seen.iter().any(|(_, k, _)| *k == key);
        seen.push((channel, key, serde_json::from_str(&body).unwrap_or(J::Null)));
        match first || !open.load(Ordering::Relaxed) {
            true => Code::SERVICE_UNAVAILABLE,
            false => Code::OK,
        }
    }
    let (seen, open): Shared = (Seen::default(), Arc::new(AtomicBool::new(true)));
    let (tx, rx) = std::sync::mpsc::channel();
    let state = (seen.clone(), open.clone());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap())).unwrap();
            let app = axum::Router::new().route("/hook/{channel}", axum::routing::post(hook)).with_state(state);
            axum::serve(listener, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), seen, open)
}
