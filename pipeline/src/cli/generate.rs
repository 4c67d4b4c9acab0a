//! `journeyflow generate`: writes the synthetic workload as NDJSON, as Parquet, or into a
//! Kafka topic at a target rate; events are made in parallel slices and written in order.

use anyhow::Context;
use journeyflow_connectors::event_parquet::EventWriter;
use journeyflow_connectors::kafka::{ensure_topics, Settings, Sink, TopicSpec};
use journeyflow_datasets::generator::{generate_parallel, GeneratorConfig};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `journeyflow generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Number of distinct users.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Number of events.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Seed; the same seed gives the same events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Days of event time covered.
    #[arg(long, default_value_t = 60)]
    pub days: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Ndjson)]
    pub format: Format,
    /// Output file (NDJSON and Parquet).
    #[arg(long, required_unless_present = "topic")]
    pub out: Option<PathBuf>,
    /// Kafka brokers, `host:port,...` (format `kafka`).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Kafka topic to produce to (format `kafka`); created with `--partitions` if missing.
    #[arg(long)]
    pub topic: Option<String>,
    /// Partitions of a topic created here.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Events per second to produce at (format `kafka`); 0: as fast as the broker takes them.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Newline-delimited JSON, one Segment event per line.
    Ndjson,
    /// Parquet: messageId, type, userId, anonymousId, timestamp (ms, UTC), event, and
    /// properties / traits as JSON text; row groups of 131,072 events.
    Parquet,
    /// Records of a Kafka topic, keyed by user id, the JSON event as value.
    Kafka,
}

/// Where generated lines go.
enum Output {
    Ndjson(std::io::BufWriter<std::fs::File>),
    Parquet(Box<EventWriter>),
    Kafka { sink: Sink, topic: String, rate: u64, started: Instant, sent: u64 },
}

impl Output {
    fn open(args: &GenerateArgs) -> anyhow::Result<Output> {
        let file = || args.out.clone().context("--out is required for this format");
        Ok(match args.format {
            Format::Ndjson => {
                let path = file()?;
                let f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                Output::Ndjson(std::io::BufWriter::with_capacity(1 << 22, f))
            }
            Format::Parquet => Output::Parquet(Box::new(EventWriter::create(&file()?)?)),
            Format::Kafka => {
                let topic = args.topic.clone().context("--topic is required for --format kafka")?;
                let settings = Settings { brokers: args.brokers.clone(), ..Settings::default() };
                let spec = TopicSpec { name: topic.clone(), partitions: args.partitions, compacted: false };
                ensure_topics(&settings, &[spec])?;
                Output::Kafka { sink: Sink::new(&settings)?, topic, rate: args.rate, started: Instant::now(), sent: 0 }
            }
        })
    }

    /// Writes NDJSON text (whole lines).
    fn write(&mut self, text: &[u8]) -> anyhow::Result<()> {
        match self {
            Output::Ndjson(out) => out.write_all(text)?,
            Output::Parquet(w) => {
                for line in std::str::from_utf8(text)?.lines() {
                    w.push_line(line)?;
                }
            }
            Output::Kafka { sink, topic, rate, started, sent } => {
                for line in std::str::from_utf8(text)?.lines() {
                    let key = line.split("\"userId\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("");
                    sink.send(topic, key.as_bytes(), line.as_bytes(), &[])?;
                    *sent += 1;
                    // Paced by schedule, not by gaps: a slow moment is made up for after.
                    if *rate > 0 && sent.is_multiple_of(100) {
                        let due = *started + Duration::from_secs_f64(*sent as f64 / *rate as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Output::Ndjson(mut out) => out.flush()?,
            Output::Parquet(w) => {
                w.finish()?;
            }
            Output::Kafka { sink, .. } => sink.flush(Duration::from_secs(120))?,
        }
        Ok(())
    }
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
    let mut output = Output::open(args)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    // Small slices when paced, so that the first events go out at once.
    let chunk = if args.rate > 0 { args.rate.clamp(1_000, 100_000) } else { 1_000_000 };
    let started = Instant::now();
    generate_parallel(&config, threads, chunk, |part| output.write(part))?;
    output.finish()?;
    let to = match (&args.out, &args.topic) {
        (_, Some(topic)) if args.format == Format::Kafka => format!("topic {topic}"),
        (Some(out), _) => out.display().to_string(),
        _ => String::new(),
    };
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "wrote {} events for {} users to {to} in {secs:.1} s ({:.0} events/s)",
        config.events,
        config.users,
        config.events as f64 / secs.max(1e-9)
    );
    Ok(())
}
