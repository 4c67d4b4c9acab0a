//! `journeyflow delete-user`: removes users from files a replay reads and writes (event files,
//! output and dead-letter files, Parquet archives), for the file workflow. A running service
//! deletes through `DELETE /v1/users/{id}` instead, which also cancels the user's journeys,
//! announces the deletion and keeps the user out across restarts; the command refuses a
//! service's data directory.

use crate::scrub::{scrub_file, walk, Removed};
use anyhow::Context;
use journeyflow_operators::Time;
use journeyflow_types::{Key, KeyMap};
use std::path::PathBuf;

/// Arguments of `journeyflow delete-user`.
#[derive(Debug, clap::Args)]
pub struct DeleteUserArgs {
    /// A user id (`userId` or `anonymousId`) to delete; repeatable.
    #[arg(long = "user-id")]
    pub user_ids: Vec<String>,
    /// An NDJSON file of users to delete, one `{"user_id": ...}` per line.
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// Only records timed at or before this instant (RFC 3339 or epoch ms) go; without it,
    /// every record of the users.
    #[arg(long, value_parser = super::parse_time)]
    pub through: Option<Time>,
    /// Write NDJSON files again without the users' lines (and without blank lines) instead of
    /// overwriting those lines with spaces in place. Only for files nothing follows by byte
    /// offset.
    #[arg(long)]
    pub compact: bool,
    /// Files (`.ndjson`, `.parquet`) and directories (searched recursively) to remove the
    /// users from.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// The most users one run deletes (each is looked up for every record).
const MAX_USERS: usize = 1_000_000;

/// The largest `--users` file read.
const MAX_USERS_BYTES: u64 = 64 << 20;

/// Runs the command; returns what it removed.
pub fn execute(args: &DeleteUserArgs) -> anyhow::Result<Removed> {
    let mut ids = args.user_ids.clone();
    if let Some(path) = &args.users {
        ids.extend(read_users(path)?);
    }
    anyhow::ensure!(!ids.is_empty(), "no user to delete: give --user-id or --users");
    anyhow::ensure!(ids.len() <= MAX_USERS, "{} users: at most {MAX_USERS} at once", ids.len());
    let through = args.through.unwrap_or(Time::MAX);
    let users: KeyMap<Time> = ids.iter().map(|id| (Key::of(id), through)).collect();
    let mut files = Vec::new();
    for path in &args.paths {
        let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        if meta.is_dir() {
            anyhow::ensure!(
                !path.join("control.ndjson").exists(),
                "{} is a journeyflow run data directory: delete through DELETE /v1/users/{{id}} on the \
                 running service (which also cancels journeys and keeps the user out at restart)",
                path.display()
            );
            walk(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    let mut total = Removed::default();
    for file in files {
        // Hidden files are temporary ones of a writer.
        if file.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
            continue;
        }
        let removed = scrub_file(&file, &users, args.compact).with_context(|| format!("{}", file.display()))?;
        if removed != Removed::default() {
            eprintln!("{}: {} lines, {} rows", file.display(), removed.lines, removed.rows);
        }
        total.lines += removed.lines;
        total.rows += removed.rows;
    }
    eprintln!("deleted {} users: {} lines, {} rows", users.len(), total.lines, total.rows);
    Ok(total)
}

/// The ids of a `--users` file.
fn read_users(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Line {
        user_id: String,
    }
    let lines: Vec<Line> = super::read_ndjson(path, MAX_USERS_BYTES, "{\"user_id\": ...}")?;
    Ok(lines.into_iter().map(|l| l.user_id).collect())
}
