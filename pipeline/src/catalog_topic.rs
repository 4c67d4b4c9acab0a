//! The catalog in a compacted Kafka topic (`segment/<id>`, `journey/<id>`, `funnel/<id>`, `cohort/<id>`, `paths/<id>` keys,
//! tombstones for removals): process 0 writes what changed after each change, from a thread of its own (the
//! producer waits for the broker); a process that starts with an empty control log starts
//! from what the topic holds.

use journeyflow_connectors::kafka::{read_topic, Settings, Sink};
use journeyflow_control_api::catalog::{Catalog, CatalogView};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The latest value of each key of the topic.
pub type Held = BTreeMap<String, Vec<u8>>;

/// Reads the topic to its end: the catalog document it holds (`None` when it holds no
/// definition: `{"segments": [...], "journeys": {id: entry}, "funnels": [...], "cohorts": [...],
/// "paths": [...]}`) and the latest
/// value of each key. A key of a kind this version does not know (written by a newer one) is
/// left out, with a warning.
pub fn read(settings: &Settings, topic: &str) -> anyhow::Result<(Option<Value>, Held)> {
    let records = read_topic(settings, topic, Duration::from_secs(30))?;
    let mut latest = Held::new();
    for (key, value) in records {
        let key = String::from_utf8_lossy(&key).into_owned();
        match value {
            Some(v) => latest.insert(key, v),
            None => latest.remove(&key),
        };
    }
    if latest.is_empty() {
        return Ok((None, latest));
    }
    let mut segments = Vec::new();
    let mut journeys = serde_json::Map::new();
    let (mut funnels, mut cohorts, mut paths) = (Vec::new(), Vec::new(), Vec::new());
    for (key, bytes) in &latest {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| anyhow::anyhow!("{topic}: record {key}: {e}"))?;
        match key.split_once('/') {
            Some(("segment", _)) => segments.push(value),
            Some(("journey", id)) => {
                journeys.insert(id.to_string(), value);
            }
            Some(("funnel", _)) => funnels.push(value),
            Some(("cohort", _)) => cohorts.push(value),
            Some(("paths", _)) => paths.push(value),
            _ => tracing::warn!("{topic}: a key of an unknown kind, {key:?}, is left out"),
        }
    }
    Ok((
        Some(
            json!({ "segments": segments, "journeys": journeys, "funnels": funnels, "cohorts": cohorts, "paths": paths }),
        ),
        latest,
    ))
}

/// Every key the catalog puts in the topic, with its value.
fn records(catalog: &Catalog) -> anyhow::Result<Held> {
    let mut now = Held::new();
    for def in catalog.segments.values() {
        now.insert(format!("segment/{}", def.id), serde_json::to_vec(&def.to_json())?);
    }
    for (id, entry) in &catalog.journeys {
        now.insert(format!("journey/{id}"), serde_json::to_vec(entry)?);
    }
    for def in catalog.funnels.values() {
        now.insert(format!("funnel/{}", def.id), serde_json::to_vec(&def.source)?);
    }
    for def in catalog.cohorts.values() {
        now.insert(format!("cohort/{}", def.id), serde_json::to_vec(&def.source)?);
    }
    for def in catalog.paths.values() {
        now.insert(format!("paths/{}", def.id), serde_json::to_vec(&def.source)?);
    }
    Ok(now)
}

/// Writes to the topic what changed in the catalog since `held`: new and changed values,
/// tombstones for what is gone. What failed to go is tried again next time.
fn write(sink: &Sink, topic: &str, catalog: &Catalog, held: &mut Held) -> anyhow::Result<()> {
    let now = records(catalog)?;
    let gone: Vec<String> = held.keys().filter(|k| !now.contains_key(*k)).cloned().collect();
    for key in gone {
        sink.put(topic, key.as_bytes(), None)?;
        held.remove(&key);
    }
    for (key, value) in now {
        if held.get(&key) != Some(&value) {
            sink.put(topic, key.as_bytes(), Some(&value))?;
            held.insert(key, value);
        }
    }
    Ok(())
}

/// Keeps the topic equal to the catalog until `stop` is set (and once more then).
pub fn mirror(sink: Arc<Sink>, topic: String, mut held: Held, view: Arc<CatalogView>, stop: Arc<AtomicBool>) {
    let mut written = None;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let (version, catalog) = view.versioned();
        if written != Some(version) {
            match write(&sink, &topic, &catalog, &mut held) {
                Ok(()) => written = Some(version),
                Err(e) => tracing::warn!("the definitions topic {topic} is behind the catalog: {e:#}"),
            }
        }
        if stopping {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
