//! Fuzzing what clients send: random and mutated JSON (deep nesting, huge numbers, odd
//! unicode, wrong types, garbage bytes) through the event decoder, both definition languages
//! and the migration rules in process (nothing may panic), and through every route of the
//! OpenAPI document against `journeyflow run` over a real socket: no answer may be a server
//! error other than the documented 503, 507 (and 429), and `/healthz` must answer after each
//! case. Bounded: a few thousand cases in process, 1,500 requests over HTTP.

mod common;

use common::server::Server;
use journeyflow_types::{decode_line, parse_journeys, parse_segments, validate_journey, validate_migration, Limits};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Value as J};
use std::collections::BTreeSet;

/// Field names the decoder and the validators look for, so random objects hit real paths.
const KEYS: [&str; 40] = [
    "type",
    "event",
    "userId",
    "anonymousId",
    "messageId",
    "timestamp",
    "sentAt",
    "properties",
    "traits",
    "name",
    "writeKey",
    "batch",
    "id",
    "condition",
    "all",
    "any",
    "not",
    "in_segment",
    "trait",
    "performed",
    "aggregate",
    "sequence",
    "steps",
    "within",
    "at_least",
    "at_most",
    "op",
    "value",
    "where",
    "property",
    "fn",
    "min_age",
    "then_not",
    "entry",
    "start",
    "nodes",
    "exit_when",
    "goal",
    "migrate",
    "node_map",
];

fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\PC{0,12}",
        2 => prop::sample::select(KEYS.to_vec()).prop_map(String::from),
        1 => Just("\u{0}\u{1}\u{7f}".to_string()),
        1 => Just("😀🏳️‍🌈\u{202e}gnp.exe\u{feff}".to_string()),
        1 => Just("x".repeat(70_000)),
        1 => Just("1970-01-01T00:00:00Z".to_string()),
        1 => Just("99999999999999999999d".to_string()),
        1 => Just("2999-12-31T23:59:59.999+14:00".to_string()),
        1 => Just("-1".to_string()),
    ]
}

fn leaf() -> impl Strategy<Value = J> {
    prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(J::Number)),
        odd_string().prop_map(J::String),
    ]
}

fn value() -> impl Strategy<Value = J> {
    leaf().prop_recursive(6, 48, 6, |inner| {
        let key = prop_oneof![3 => prop::sample::select(KEYS.to_vec()).prop_map(String::from), 1 => odd_string()];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(J::Array),
            prop::collection::btree_map(key, inner, 0..6).prop_map(|m| J::Object(m.into_iter().collect())),
        ]
    })
}

/// Deep nesting: `not`s, `all`s or bare arrays, from shallow to past serde's 128 levels.
fn deep() -> impl Strategy<Value = J> {
    (1usize..200, 0..3u8).prop_map(|(depth, kind)| {
        let mut v = json!({"performed": {"event": "X"}});
        for _ in 0..depth {
            v = match kind {
                0 => json!({ "not": v }),
                1 => json!({ "all": [v] }),
                _ => json!([v]),
            };
        }
        v
    })
}

/// Every path into a JSON value (object keys and array indices), without recursion.
fn paths(v: &J) -> Vec<Vec<J>> {
    let mut out = vec![Vec::new()];
    let mut stack = vec![(v, Vec::new())];
    while let Some((v, path)) = stack.pop() {
        let children: Vec<(J, &J)> = match v {
            J::Object(o) => o.iter().map(|(k, c)| (J::String(k.clone()), c)).collect(),
            J::Array(a) => a.iter().enumerate().map(|(i, c)| (json!(i), c)).collect(),
            _ => Vec::new(),
        };
        for (step, child) in children {
            let mut p = path.clone();
            p.push(step);
            out.push(p.clone());
            stack.push((child, p));
        }
    }
    out
}

fn at<'a>(v: &'a mut J, path: &[J]) -> Option<&'a mut J> {
    let mut v = v;
    for step in path {
        v = match step {
            J::String(k) => v.get_mut(k.as_str())?,
            J::Number(i) => v.get_mut(i.as_u64()? as usize)?,
            _ => return None,
        };
    }
    Some(v)
}

/// A seed with one mutation: a subtree replaced (by a random or deep value), a key removed,
/// or a subtree wrapped in an array.
fn mutated(seeds: Vec<J>) -> impl Strategy<Value = J> {
    (prop::sample::select(seeds), any::<prop::sample::Index>(), 0..4u8, value(), deep()).prop_map(
        |(mut seed, index, how, random, deep)| {
            let all = paths(&seed);
            let path = all[index.index(all.len())].clone();
            if let Some(target) = at(&mut seed, &path) {
                match how {
                    0 => *target = random,
                    1 => *target = deep,
                    2 => *target = json!([target.take()]),
                    _ => {
                        if let (Some(J::String(key)), Some(parent)) = (path.last(), {
                            let parent_path = &path[..path.len().saturating_sub(1)];
                            at(&mut seed, parent_path)
                        }) {
                            if let Some(o) = parent.as_object_mut() {
                                o.remove(key);
                            }
                        }
                    }
                }
            }
            seed
        },
    )
}

/// Bodies as clients might send them: mutated seeds, random JSON, raw text with numbers JSON
/// cannot hold, garbage bytes.
fn body(seeds: Vec<J>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        5 => mutated(seeds.clone()).prop_map(|v| v.to_string().into_bytes()),
        2 => value().prop_map(|v| v.to_string().into_bytes()),
        1 => deep().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::sample::select(seeds).prop_map(|v| v.to_string().replacen("1", "1e400", 1).into_bytes()),
        1 => Just(b"{\"event\": 123456789012345678901234567890, \"userId\": -0.0e-999}".to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
        1 => Just(Vec::new()),
    ]
}

fn sample_events() -> Vec<J> {
    let text = std::fs::read_to_string(common::repo("datasets/sample/events.ndjson")).unwrap();
    text.lines().take(60).filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn sample(name: &str) -> Vec<J> {
    let text = std::fs::read_to_string(common::repo(&format!("datasets/sample/{name}"))).unwrap();
    serde_json::from_str::<Vec<J>>(&text).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    /// The decoder answers every line with an event or a reason, and never panics.
    #[test]
    fn the_decoder_never_panics(line in body(sample_events())) {
        let _ = decode_line(&line);
    }

    /// Segment and journey validation answer every document with definitions or errors at
    /// paths, within the limits, and never panic.
    #[test]
    fn validation_never_panics(
        segment in mutated(sample("segments.json")),
        journey in mutated(sample("journeys.json")),
        migrate in value(),
    ) {
        let segments = BTreeSet::from(["s3_lapsed_buyer".to_string()]);
        let _ = parse_segments(&J::Array(vec![segment]).to_string());
        let _ = parse_journeys(&J::Array(vec![journey.clone()]).to_string(), &segments);
        if let Ok(old) = validate_journey(&sample("journeys.json")[0], &segments) {
            if let Ok(new) = validate_journey(&journey, &segments) {
                let _ = validate_migration(Some(&migrate), &old, &new);
            }
        }
        // A definition that validates stays within the limits: it can travel to the workers.
        if let Ok(defs) = parse_segments(&J::Array(vec![sample("segments.json")[0].clone()]).to_string()) {
            prop_assert!(journeyflow_types::limits::json_depth(&defs[0].to_json()) < 2 * Limits::default().condition_depth + 8);
        }
    }
}

/// What a route's path parameters are filled with: a known id, odd text, a traversal.
fn param() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("s1_pro_north_america".to_string()),
        2 => Just("j1_abandoned_cart".to_string()),
        2 => prop::sample::select(vec!["publish", "pause", "resume", "end"]).prop_map(String::from),
        2 => "\\PC{1,20}",
        1 => Just("..%2F..%2Fetc%2Fpasswd".to_string()),
        1 => Just("%00%FF%C0%AF".to_string()),
        1 => Just("x".repeat(5000)),
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        (any::<i64>(), "\\PC{0,12}")
            .prop_map(|(limit, cursor)| format!("?limit={limit}&cursor={}", url_escape(&cursor))),
        Just("?limit=0".to_string()),
        Just("?limit=99999999999999999999999".to_string()),
        Just("?cursor=1.&cursor=2".to_string()),
    ]
}

fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Every route of the OpenAPI document with random path parameters, query strings and bodies:
/// no server error but the documented ones, and the server answers `/healthz` after each case.
#[test]
fn no_request_breaks_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let segments = common::repo("datasets/sample/segments.json");
    let server = Server::start_with(1, dir.path(), &["--segments", segments.to_str().unwrap()]);
    // A fresh connection per request: an answer sent before a body was read closes the
    // connection, and a pooled one would make the next request fail on the client's side.
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let journey = &sample("journeys.json")[0];
    assert!(client.post(server.url("/v1/journeys")).json(journey).send().unwrap().status().is_success());
    let doc: J = client.get(server.url("/v1/openapi.json")).send().unwrap().json().unwrap();
    let mut routes: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.push((method.clone(), path.clone()));
        }
    }
    assert!(routes.len() >= 20, "{routes:?}");
    let seeds: Vec<J> = sample_events()
        .into_iter()
        .chain(sample("segments.json"))
        .chain(sample("journeys.json"))
        .chain([json!({"batch": sample_events()}), json!({"migrate": {"node_map": {}, "default": "exit"}})])
        .collect();
    let case = (prop::sample::select(routes), param(), param(), query(), body(seeds));
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    for n in 0..1500 {
        let ((method, path), a, b, query, body) = case.new_tree(&mut runner).unwrap().current();
        let mut params = [a, b].into_iter();
        let filled: String = path
            .split('/')
            .map(|part| match part.starts_with('{') {
                true => url_escape(&params.next().unwrap_or_default()),
                false => part.to_string(),
            })
            .collect::<Vec<_>>()
            .join("/");
        let url = server.url(&format!("{filled}{query}"));
        if std::env::var_os("FUZZ_TRACE").is_some() {
            eprintln!("case {n}: {method} {url} {}", String::from_utf8_lossy(&body[..body.len().min(200)]));
        }
        let request = match method.as_str() {
            "get" => client.get(&url),
            "post" => client.post(&url),
            "put" => client.put(&url),
            "delete" => client.delete(&url),
            other => panic!("method {other}"),
        };
        let status = request.header("content-type", "application/json").body(body.clone()).send().map(|r| r.status());
        let status = status.unwrap_or_else(|e| panic!("case {n}: {method} {url}: no answer: {e}"));
        let documented = [503, 507].contains(&status.as_u16());
        assert!(
            !status.is_server_error() || documented,
            "case {n}: {method} {url} with {:?}: {status}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        let health = client.get(server.url("/healthz")).send().map(|r| r.status().as_u16());
        assert_eq!(health.ok(), Some(200), "case {n}: {method} {url}: /healthz does not answer");
    }
    assert_eq!(server.stop().code(), Some(0));
}
