//! The durable store of definitions: `definitions.json` in the data directory, rewritten
//! atomically (temporary file, sync, rename) after every change, and read at start so a
//! restarted `journeyflow run` reinstalls everything it had. With Kafka, every change is
//! also written to a compacted topic (`segment/<id>`, `journey/<id>` keys, tombstones for
//! removals), from which a process without a store of its own starts.

use crate::handle::JourneyEntry;
use journeyflow_types::{validate_segments, SegmentDefinition};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The store's file, and its topic.
pub struct Store {
    path: PathBuf,
    mirror: Option<Mirror>,
}

/// The latest value of each key of the definitions topic.
pub type Held = BTreeMap<String, Vec<u8>>;

/// The compacted topic the store is written to.
pub struct Mirror {
    /// The producer.
    pub sink: std::sync::Arc<journeyflow_connectors::kafka::Sink>,
    /// The topic.
    pub topic: String,
    /// What the topic holds.
    pub held: std::sync::Mutex<Held>,
}

impl Mirror {
    /// Reads the topic to its end: the store document it holds (`None` when it holds no
    /// definition) and the latest value of each key.
    pub fn read(
        settings: &journeyflow_connectors::kafka::Settings,
        topic: &str,
    ) -> anyhow::Result<(Option<Value>, Held)> {
        let records = journeyflow_connectors::kafka::read_topic(settings, topic, std::time::Duration::from_secs(30))?;
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
        for (key, bytes) in &latest {
            let value: Value =
                serde_json::from_slice(bytes).map_err(|e| anyhow::anyhow!("{topic}: record {key}: {e}"))?;
            match key.split_once('/') {
                Some(("segment", _)) => segments.push(value),
                Some(("journey", id)) => {
                    journeys.insert(id.to_string(), value);
                }
                _ => anyhow::bail!("{topic}: unexpected key {key:?}"),
            }
        }
        Ok((Some(json!({ "segments": segments, "journeys": journeys })), latest))
    }
}

impl Store {
    /// The store in `dir`.
    pub fn new(dir: &Path) -> Store {
        Store { path: dir.join("definitions.json"), mirror: None }
    }

    /// The store in `dir`, written to a compacted topic too. When the directory holds no store
    /// yet, it starts from what the topic holds.
    pub fn mirrored(dir: &Path, mirror: Mirror, held: Option<Value>) -> anyhow::Result<Store> {
        let store = Store { path: dir.join("definitions.json"), mirror: Some(mirror) };
        if let (Some(doc), false) = (held, store.path.exists()) {
            store.write(&doc)?;
        }
        Ok(store)
    }

    /// The stored document, or `None` when there is none yet.
    fn document(&self) -> anyhow::Result<Option<Value>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", self.path.display())),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))
    }

    /// The stored segments in dependency order (none when the file does not exist yet).
    pub fn load(&self) -> anyhow::Result<Vec<SegmentDefinition>> {
        let segments = self.document()?.and_then(|d| d.get("segments").cloned()).unwrap_or(Value::Array(Vec::new()));
        validate_segments(&segments, &BTreeSet::new()).map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))
    }

    /// The stored journeys (none when the file does not exist yet).
    pub fn load_journeys(&self) -> anyhow::Result<BTreeMap<String, JourneyEntry>> {
        let journeys =
            self.document()?.and_then(|d| d.get("journeys").cloned()).unwrap_or(Value::Object(Default::default()));
        serde_json::from_value(journeys).map_err(|e| anyhow::anyhow!("{}: journeys: {e}", self.path.display()))
    }

    /// Replaces the stored segments, keeping the stored journeys.
    pub fn save(&self, segments: &BTreeMap<String, SegmentDefinition>) -> std::io::Result<()> {
        let journeys = self.load_journeys().map_err(std::io::Error::other)?;
        self.save_all(segments, &journeys)
    }

    /// Replaces everything stored.
    pub fn save_all(
        &self,
        segments: &BTreeMap<String, SegmentDefinition>,
        journeys: &BTreeMap<String, JourneyEntry>,
    ) -> std::io::Result<()> {
        let doc = json!({
            "segments": segments.values().map(SegmentDefinition::to_json).collect::<Vec<_>>(),
            "journeys": journeys,
        });
        self.write(&doc)?;
        if let Some(mirror) = &self.mirror {
            let mut now: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            for def in segments.values() {
                now.insert(format!("segment/{}", def.id), serde_json::to_vec(&def.to_json())?);
            }
            for (id, entry) in journeys {
                now.insert(format!("journey/{id}"), serde_json::to_vec(entry)?);
            }
            // Only what changed: new and changed values, tombstones for what is gone.
            let mut held = mirror.held.lock().map_err(|_| std::io::Error::other("a writer panicked"))?;
            for gone in held.keys().filter(|k| !now.contains_key(*k)) {
                mirror.sink.put(&mirror.topic, gone.as_bytes(), None).map_err(std::io::Error::other)?;
            }
            for (key, value) in now.iter().filter(|(k, v)| held.get(*k) != Some(*v)) {
                mirror.sink.put(&mirror.topic, key.as_bytes(), Some(value)).map_err(std::io::Error::other)?;
            }
            *held = now;
        }
        Ok(())
    }

    fn write(&self, doc: &Value) -> std::io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(serde_json::to_string_pretty(doc)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_in_dependency_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert!(store.load().unwrap().is_empty());
        let text = r#"[{"id": "b", "condition": {"in_segment": "a"}}, {"id": "a", "condition": {"performed": {"event": "X"}}}]"#;
        let defs = journeyflow_types::parse_segments(text).unwrap();
        let map: BTreeMap<String, SegmentDefinition> = defs.iter().map(|d| (d.id.clone(), d.clone())).collect();
        store.save(&map).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(loaded, defs);
    }
}
