//! `journeyflow import-cdnow`: the CDNOW purchase history as Segment-spec NDJSON.

use anyhow::Context;
use journeyflow_datasets::cdnow;
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `journeyflow import-cdnow`.
#[derive(Debug, clap::Args)]
pub struct ImportCdnowArgs {
    /// `CDNOW_master.txt`.
    #[arg(long)]
    pub input: PathBuf,
    /// Output NDJSON file.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs the command.
pub fn execute(args: &ImportCdnowArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let purchases = cdnow::parse(&text)?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?,
    );
    for p in &purchases {
        writeln!(out, "{}", cdnow::event_line(p))?;
    }
    out.flush()?;
    eprintln!("wrote {} purchases to {}", purchases.len(), args.out.display());
    Ok(())
}
