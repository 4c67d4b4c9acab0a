//! Where a partition's bytes live: in segment files under `part-<p>/`, each named by the
//! log offset of its first byte (20 digits, so names sort as offsets). Offsets are the
//! partition's, across segments: a checkpoint's position stays valid however the bytes before
//! it are split, and the segments wholly before it can be deleted once it is complete.

use crate::files::sync_dir;
use std::io;
use std::path::{Path, PathBuf};

/// The directory of partition `part` in the log directory `dir`.
pub fn part_dir(dir: &Path, part: usize) -> PathBuf {
    dir.join(format!("part-{part}"))
}

/// The segment of a partition directory that starts at offset `base`.
pub fn segment_path(part_dir: &Path, base: u64) -> PathBuf {
    part_dir.join(format!("{base:020}.ndjson"))
}

/// Whether partition `part` exists in `dir` (as a directory, or as one file of an older layout).
pub fn exists(dir: &Path, part: usize) -> bool {
    part_dir(dir, part).is_dir() || legacy_path(dir, part).is_file()
}

/// The single file a partition was before it had segments.
fn legacy_path(dir: &Path, part: usize) -> PathBuf {
    dir.join(format!("part-{part}.ndjson"))
}

/// Makes partition `part`'s directory, moving a file of the older layout (one file per
/// partition) in as its first segment, so a log written before keeps its offsets.
pub fn prepare(dir: &Path, part: usize) -> io::Result<PathBuf> {
    let at = part_dir(dir, part);
    adopt(&at, &legacy_path(dir, part))?;
    Ok(at)
}

/// Makes the segment directory `at`, moving the single file `legacy` (if it exists) in as its
/// first segment, so that the offsets into it stay valid.
pub fn adopt(at: &Path, legacy: &Path) -> io::Result<()> {
    std::fs::create_dir_all(at)?;
    if legacy.is_file() {
        std::fs::rename(legacy, segment_path(at, 0))?;
        sync_dir(at)?;
        if let Some(parent) = at.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// The offsets the segments of a partition directory start at, in order.
pub fn bases(part_dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases: Vec<u64> = std::fs::read_dir(part_dir)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".ndjson")?.parse().ok())
        .collect();
    bases.sort_unstable();
    Ok(bases)
}

/// The segment holding `offset`: the one starting at or before it last.
pub fn locate(part_dir: &Path, offset: u64) -> io::Result<u64> {
    let bases = bases(part_dir)?;
    bases.iter().rev().find(|b| **b <= offset).copied().ok_or_else(|| {
        let first = bases.first().map_or("no segment".to_string(), |b| format!("its first segment starts at {b}"));
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{}: offset {offset} is no longer in the log ({first})", part_dir.display()),
        )
    })
}

/// Deletes the segments that end at or before `offset` (never the last one, which is being
/// written); returns how many went.
pub fn discard_before(part_dir: &Path, offset: u64) -> io::Result<usize> {
    let bases = bases(part_dir)?;
    let mut gone = 0;
    for pair in bases.windows(2) {
        if pair[1] > offset {
            break;
        }
        std::fs::remove_file(segment_path(part_dir, pair[0]))?;
        gone += 1;
    }
    if gone > 0 {
        sync_dir(part_dir)?;
    }
    Ok(gone)
}
