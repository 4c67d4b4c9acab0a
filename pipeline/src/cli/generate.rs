//! `journeyflow generate`: writes the synthetic workload as NDJSON, in parallel slices.

use anyhow::Context;
use journeyflow_datasets::generator::{write_ndjson, GeneratorConfig};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `journeyflow generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Number of distinct users.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Number of events.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Seed; the same seed gives the same file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Days of event time covered.
    #[arg(long, default_value_t = 60)]
    pub days: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Ndjson)]
    pub format: Format,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
}

/// Output formats.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// Newline-delimited JSON, one Segment event per line.
    Ndjson,
}

/// Runs the command.
pub fn execute(args: &GenerateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.users > 0, "--users must be at least 1");
    let config = GeneratorConfig {
        users: args.users,
        events: args.events,
        seed: args.seed,
        span_ms: args.days * 86_400_000,
        ..Default::default()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let chunk = 1_000_000u64;
    let file = std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 22, file);
    let mut start = 0;
    while start < config.events {
        // Generate up to `threads` chunks in parallel, then write them in order.
        let ends: Vec<(u64, u64)> = (0..threads)
            .map(|k| (start + k * chunk, (start + (k + 1) * chunk).min(config.events)))
            .filter(|(s, e)| s < e)
            .collect();
        let parts: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = ends
                .iter()
                .map(|&(s0, e0)| {
                    let config = &config;
                    s.spawn(move || {
                        let mut buf = Vec::with_capacity(((e0 - s0) * 200) as usize);
                        write_ndjson(config, s0..e0, &mut buf).map(|_| buf)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("generator thread panicked")).collect::<std::io::Result<_>>()
        })?;
        for part in parts {
            out.write_all(&part)?;
        }
        start = ends.last().map_or(config.events, |e| e.1);
    }
    out.flush()?;
    eprintln!("wrote {} events for {} users to {}", config.events, config.users, args.out.display());
    Ok(())
}
