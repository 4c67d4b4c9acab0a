//! The local durable store of definitions: `definitions.json` in the data directory, rewritten
//! atomically (temporary file, sync, rename) after every change, and read at start so a
//! restarted `journeyflow run` reinstalls everything it had.

use crate::handle::JourneyEntry;
use journeyflow_types::{validate_segments, SegmentDefinition};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The store's file.
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// The store in `dir`.
    pub fn new(dir: &Path) -> Store {
        Store { path: dir.join("definitions.json") }
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
        let tmp = self.path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(serde_json::to_string_pretty(&doc)?.as_bytes())?;
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
