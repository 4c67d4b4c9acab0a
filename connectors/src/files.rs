//! Files that survive a crash: a new file's directory entry is synced with the directory, and
//! a small state file is replaced atomically (temporary file, sync, rename, directory sync),
//! so a reader finds the old version or the new one, never a mix or nothing.

use std::io::Write;
use std::path::Path;

/// Syncs `dir`, making the names of files created or renamed in it durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Syncs the directory holding `path`.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// Replaces `path` with `bytes` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_open(path, bytes)?;
    sync_parent(path)
}

/// Replaces `path` with `bytes` atomically (the new file is synced, its directory is not) and
/// returns the new file, open to write at its end: a handle that can never point to a file
/// that lost the name.
pub fn write_atomic_open(path: &Path, bytes: &[u8]) -> std::io::Result<std::fs::File> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(file)
    })();
    if written.is_err() {
        // Nothing half-written is left behind (a full disk frees the space at once).
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Whether an I/O error means the disk (or a quota) is full.
pub fn is_full(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_whole_and_no_temporary_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
