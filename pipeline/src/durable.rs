//! The output frontier made durable, `out/flushed.json`: every output record before its time
//! is in every sink (files synced, Kafka acknowledged). One thread moves it once all workers
//! synced their records below it; a restart reads it and does not write those records again.

use journeyflow_connectors::files::write_atomic;
use journeyflow_operators::Time;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Serialize, Deserialize)]
struct Flushed {
    time: Time,
}

const FILE: &str = "flushed.json";

/// The durable frontier stored in `dir` (0 when none is).
pub fn load(dir: &Path) -> anyhow::Result<Time> {
    let path = dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let f: Flushed = serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Ok(f.time)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

/// Stores `time` as the durable frontier in `dir`, atomically (temporary file, sync, rename).
pub fn store(dir: &Path, time: Time) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_atomic(&dir.join(FILE), &serde_json::to_vec(&Flushed { time })?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stored_frontier_is_read_back_and_none_is_zero() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(super::load(dir.path()).unwrap(), 0);
        super::store(dir.path(), 42).unwrap();
        super::store(dir.path(), 43).unwrap();
        assert_eq!(super::load(dir.path()).unwrap(), 43);
    }
}
