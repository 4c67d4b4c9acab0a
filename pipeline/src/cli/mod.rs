//! The `journeyflow` command line: one module per subcommand, each with its clap
//! arguments and an `execute` function the binary (and the tests) call.

pub mod delete_user;
pub mod generate;
pub mod import_cdnow;
pub mod replay;
pub mod run;

use clap::{Parser, Subcommand};

/// journeyflow: a real-time customer-journey engine on differential dataflow.
#[derive(Debug, Parser)]
#[command(name = "journeyflow", version, about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay an event file through the segment dataflow and write changes, members and dead letters.
    Replay(Box<replay::ReplayArgs>),
    /// Run the live pipeline: HTTP and Kafka ingest, the control API, workers, sinks.
    Run(Box<run::RunArgs>),
    /// Generate a synthetic Segment-spec event file (the standard benchmark workload).
    Generate(generate::GenerateArgs),
    /// Convert the CDNOW purchase history into Segment-spec events.
    ImportCdnow(import_cdnow::ImportCdnowArgs),
    /// Remove users from event, output and archive files (a running service: `DELETE /v1/users/{id}`).
    DeleteUser(delete_user::DeleteUserArgs),
}

/// An allowed lateness: a duration, or `unbounded` (`None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lateness(pub Option<u64>);

/// Parses a duration flag (`30d`) or `unbounded`.
pub fn parse_lateness(text: &str) -> Result<Lateness, String> {
    if text == "unbounded" {
        return Ok(Lateness(None));
    }
    journeyflow_types::Duration::parse(text).map(|d| Lateness(Some(d.0)))
}

/// Parses a duration flag.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    journeyflow_types::Duration::parse(text).map(|d| d.0)
}

/// Parses an instant flag: RFC 3339 or epoch milliseconds.
pub fn parse_time(text: &str) -> Result<u64, String> {
    journeyflow_types::time::parse_instant_str(text)
}

/// The records of a small NDJSON file given on the command line (at most `max_bytes`), blank
/// lines skipped; a line that is not a `T` is an error naming its place and what was
/// `expected`.
pub fn read_ndjson<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    max_bytes: u64,
    expected: &str,
) -> anyhow::Result<Vec<T>> {
    use anyhow::Context;
    let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    anyhow::ensure!(size <= max_bytes, "{}: {size} bytes, more than {max_bytes}", path.display());
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| anyhow::anyhow!("{}:{}: expected {expected}: {e}", path.display(), i + 1))
        })
        .collect()
}
