//! `journeyflow-bench`: the end-to-end benchmark over the standard workload of
//! `shared/BENCHMARK.md`. Each measurement runs in a child process of this binary; the parent
//! generates the data, checks every load's members against the independent reference
//! evaluator and its sizes against the from-scratch recomputation (a mismatch fails the run),
//! and writes `result.json`, `summary.md` and the
//! plots. See `benches/README.md`.

use anyhow::Context;
use cap::Cap;
use clap::Parser;
use journeyflow_benches::cases::{self, Case, Freshness, Loaded, Member, Recomputed, Shape, LATENESS};
use journeyflow_benches::report::{
    Config, FunnelRow, InstallRow, LatencyRow, MemoryRow, RecomputeRow, Report, ThroughputRow,
};
use journeyflow_benches::workload::{self, Definitions, Size};
use journeyflow_benches::{driver, machine, plots};
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[global_allocator]
static ALLOC: Cap<mimalloc::MiMalloc> = Cap::new(mimalloc::MiMalloc, usize::MAX);

fn heap() -> u64 {
    ALLOC.allocated() as u64
}

/// The journeyflow benchmark: throughput, freshness, install time and memory over the
/// standard workload, beside a from-scratch recomputation.
#[derive(Debug, Parser)]
#[command(name = "journeyflow-bench", version)]
struct Cli {
    /// A reduced run (100k events) for smoke checks, in under two minutes.
    #[arg(long)]
    quick: bool,
    /// Where `result.json`, `summary.md` and the plots go.
    #[arg(long, default_value = "target/bench-result")]
    out: PathBuf,
    /// Where generated event files are kept between runs.
    #[arg(long, default_value = "target/bench-data")]
    data: PathBuf,
    /// Shapes to measure, as `PROCESSESxWORKERS` (processes talk over loopback TCP).
    #[arg(long, value_delimiter = ',', default_value = "1x1,1x2,2x1")]
    shapes: Vec<Shape>,
    /// Data sets as `EVENTS:USERS` [default: 1000000:100000,10000000:1000000; with --quick
    /// 100000:10000]; freshness is measured on the first.
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    sizes: Vec<Size>,
    /// Seconds of paced events per offered load, at most [default: 15; with --quick 3].
    #[arg(long)]
    paced_seconds: Option<f64>,
    /// Runs one measurement and prints its result (used by the benchmark itself).
    #[arg(long, hide = true)]
    case: Option<String>,
    /// Runs the soak instead: the workload streamed through `journeyflow run` for three
    /// retentions of event time, sampling its memory and data directory (`soak.*` in --out).
    #[arg(long)]
    soak: bool,
    /// Soak: events streamed.
    #[arg(long, default_value_t = 600_000)]
    soak_events: u64,
    /// Soak: distinct users.
    #[arg(long, default_value_t = 60_000)]
    soak_users: u64,
    /// Soak: the event retention, days (the standard definitions need 30 or more).
    #[arg(long, default_value_t = 30)]
    soak_retention_days: u64,
    /// Soak: wall-clock seconds the stream lasts.
    #[arg(long, default_value_t = 360.0)]
    soak_seconds: f64,
    /// Soak: keep the events, the server's data directory and replay's outputs here (a
    /// temporary directory, removed afterwards, by default).
    #[arg(long)]
    soak_scratch: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(spec) = &cli.case {
        let case: Case = serde_json::from_str(spec).context("reading the case")?;
        println!("{}", cases::run(&case, heap)?);
        return Ok(());
    }
    if cli.soak {
        return soak(&cli);
    }
    let report = bench(&cli)?;
    std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;
    std::fs::write(cli.out.join("result.json"), serde_json::to_string_pretty(&report)?)?;
    let summary = report.summary();
    std::fs::write(cli.out.join("summary.md"), &summary)?;
    plots::latency(&report, &cli.out.join("latency.svg"))?;
    plots::throughput(&report, &cli.out.join("throughput.svg"))?;
    println!("{summary}");
    eprintln!("wrote {}/{{result.json,summary.md,latency.svg,throughput.svg}}", cli.out.display());
    Ok(())
}

/// The soak: runs it, writes `soak.json`, `soak.csv`, `soak.md` and `soak.svg` into --out.
fn soak(cli: &Cli) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let binary = exe.with_file_name("journeyflow");
    anyhow::ensure!(binary.exists(), "{} is not built (cargo build --release -p journeyflow)", binary.display());
    let temporary = tempfile::tempdir_in(&cli.data).or_else(|_| tempfile::tempdir())?;
    let scratch = cli.soak_scratch.clone().unwrap_or_else(|| temporary.path().to_path_buf());
    let config = journeyflow_benches::soak::SoakConfig {
        events: cli.soak_events,
        users: cli.soak_users,
        retention: cli.soak_retention_days * 86_400_000,
        seconds: cli.soak_seconds,
        // Two minutes of wall time stand for a retention (30 days): a checkpoint every 2 s is
        // half a day of event time, a sliver of the retention as a minute is over months.
        checkpoint_interval: std::time::Duration::from_secs(2),
        idle: std::time::Duration::from_secs(30),
        sample_every: std::time::Duration::from_secs(1),
        // The last fifth: 24 samples.
        window: 0.2,
        binary,
        scratch,
    };
    let report = journeyflow_benches::soak::run(&config)?;
    std::fs::create_dir_all(&cli.out)?;
    std::fs::write(cli.out.join("soak.json"), serde_json::to_string_pretty(&report)?)?;
    let mut csv = String::from("wall_s,events,retentions,rss_bytes,data_bytes,checkpoint_bytes,arranged_records\n");
    for s in &report.samples {
        let (events, rss, data, checkpoints) = (s.events, s.rss_bytes, s.data_bytes, s.checkpoint_bytes);
        let arranged = s.arranged_records;
        csv.push_str(&format!("{:.1},{events},{:.4},{rss},{data},{checkpoints},{arranged}\n", s.wall_s, s.retentions));
    }
    std::fs::write(cli.out.join("soak.csv"), csv)?;
    let summary = report.summary();
    std::fs::write(cli.out.join("soak.md"), &summary)?;
    plots::soak(&report, &cli.out.join("soak.svg"))?;
    println!("{summary}");
    Ok(())
}

fn parse_size(text: &str) -> Result<Size, String> {
    let (events, users) = text.split_once(':').ok_or("expected EVENTS:USERS")?;
    let number = |s: &str| s.replace('_', "").parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
    let size = Size { events: number(events)?, users: number(users)? };
    if size.events == 0 || size.users == 0 {
        return Err("events and users must be at least 1".into());
    }
    Ok(size)
}

/// Runs a case in a child process (one per process of its shape, on loopback ports) and
/// reads its result (process 0's).
fn child<T: serde::de::DeserializeOwned>(case: &Case) -> anyhow::Result<T> {
    let exe = std::env::current_exe()?;
    let processes = case.processes();
    let scratch = tempfile::tempdir()?;
    let hostfile = scratch.path().join("hosts");
    if processes > 1 {
        let listeners: Vec<std::net::TcpListener> =
            (0..processes).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
        let text: String =
            listeners.iter().map(|l| Ok(format!("{}\n", l.local_addr()?))).collect::<std::io::Result<_>>()?;
        std::fs::write(&hostfile, text)?;
    }
    let children = (0..processes)
        .map(|process| {
            let member = Member { process, hostfile: (processes > 1).then(|| hostfile.clone()) };
            Command::new(&exe)
                .arg("--case")
                .arg(serde_json::to_string(&case.for_member(member))?)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("running {case:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut results = Vec::new();
    for child in children {
        let output = child.wait_with_output()?;
        anyhow::ensure!(output.status.success(), "the measurement {case:?} failed: {}", output.status);
        results.push(String::from_utf8(output.stdout)?);
    }
    // Timely's cluster set-up may print to stdout first: the result is the last line.
    let last = results[0].lines().last().context("the measurement printed nothing")?;
    serde_json::from_str(last).with_context(|| format!("reading the result of {case:?}"))
}

fn bench(cli: &Cli) -> anyhow::Result<Report> {
    let sizes = match (&cli.sizes[..], cli.quick) {
        ([], true) => vec![Size { events: 100_000, users: 10_000 }],
        ([], false) => vec![Size { events: 1_000_000, users: 100_000 }, Size { events: 10_000_000, users: 1_000_000 }],
        (given, _) => given.to_vec(),
    };
    let loads = vec![0.1, 0.5, 0.9];
    let paced_seconds = cli.paced_seconds.unwrap_or(if cli.quick { 3.0 } else { 15.0 });
    let config = Config {
        quick: cli.quick,
        sizes: sizes.clone(),
        shapes: cli.shapes.clone(),
        loads: loads.clone(),
        paced_seconds,
        batch: driver::BATCH,
        lateness_ms: LATENESS,
    };
    let mut report = Report {
        machine: machine::Machine::describe(),
        config,
        throughput_events_per_s: Vec::new(),
        latency_ms: Vec::new(),
        install_ms: Vec::new(),
        funnel: Vec::new(),
        peak_rss_bytes: 0,
        memory: Vec::new(),
        recompute_s: Vec::new(),
    };
    for (n, size) in sizes.iter().enumerate() {
        eprintln!("data: {}", size.label());
        let file = workload::events_file(&cli.data, *size)?;
        let rec: Recomputed = child(&Case::Recompute { file: file.clone() })?;
        eprintln!(
            "  from scratch: S1-S6 in {:.2} s over {} users ({:.2} s to load)",
            rec.recompute_s, rec.users, rec.load_s
        );
        let mut max_rate = Vec::new();
        for &shape in &cli.shapes {
            let mut base_heap = 0;
            for definitions in [Definitions::None, Definitions::Segments, Definitions::Journeys] {
                let member = Member::default();
                let case = Case::Throughput { file: file.clone(), shape, member, definitions, as_of: rec.as_of };
                let loaded: Loaded = child(&case)?;
                eprintln!(
                    "  {}, {}: {:.0} events/s, peak RSS {:.0} MB",
                    shape.label(),
                    definitions.label(),
                    loaded.events_per_s,
                    loaded.peak_rss_bytes as f64 / 1e6
                );
                verify(&rec, &loaded, definitions, size, shape)?;
                anyhow::ensure!(loaded.late == 0, "{} events were refused as late", loaded.late);
                report.peak_rss_bytes = report.peak_rss_bytes.max(loaded.peak_rss_bytes);
                let per_user = loaded.heap_bytes as f64 / rec.users as f64;
                report.throughput_events_per_s.push(ThroughputRow {
                    size: *size,
                    shape,
                    definitions: definitions.label().into(),
                    events_per_s: loaded.events_per_s,
                    wall_s: loaded.wall_s,
                    peak_rss_bytes: loaded.peak_rss_bytes,
                    heap_bytes: loaded.heap_bytes,
                    heap_bytes_per_user: per_user,
                });
                match definitions {
                    Definitions::None => base_heap = loaded.heap_bytes,
                    Definitions::Segments => {
                        report.memory.push(MemoryRow {
                            size: *size,
                            shape,
                            bytes_per_user: per_user,
                            s1_s6_bytes_per_user: loaded.heap_bytes.saturating_sub(base_heap) as f64 / rec.users as f64,
                        });
                        if let (Some(ms), Some(members)) = (loaded.install_ms, loaded.installed_size) {
                            report.install_ms.push(InstallRow { size: *size, shape, install_ms: ms, members });
                        }
                        if let Some((install_ms, users)) = loaded.funnel.clone() {
                            let duck = duckdb_funnel(&file);
                            if let Some(d) = &duck {
                                anyhow::ensure!(
                                    d.users == users,
                                    "the funnel's users {users:?} are not DuckDB's {:?}",
                                    d.users
                                );
                            }
                            eprintln!(
                                "  {}, funnel: {install_ms:.0} ms to install and report {users:?}; DuckDB {}",
                                shape.label(),
                                duck.as_ref().map_or("not run".into(), |d| format!(
                                    "{:.2} s to load, {:.2} s to query",
                                    d.load_s, d.query_s
                                ))
                            );
                            report.funnel.push(FunnelRow {
                                size: *size,
                                shape,
                                install_ms,
                                users,
                                duckdb_load_s: duck.as_ref().map(|d| d.load_s),
                                duckdb_query_s: duck.as_ref().map(|d| d.query_s),
                            });
                        }
                    }
                    Definitions::Journeys => max_rate.push((shape, loaded.events_per_s)),
                }
            }
        }
        // Freshness on the first (smaller) data set: the paced runs take wall time.
        if n == 0 {
            for &(shape, max) in &max_rate {
                for &load in &loads {
                    // The second half of the data is paced (at most `paced_seconds` of it);
                    // events are spread evenly over event time, so its share of the events
                    // is its share of the span.
                    let target = max * load;
                    let span = rec.as_of - rec.first;
                    let from = rec.first + span / 2;
                    let seconds = paced_seconds.min(rec.events as f64 / 2.0 / target);
                    let to = from + (span as f64 * target * seconds / rec.events as f64) as u64;
                    let case =
                        Case::Latency { file: file.clone(), shape, member: Member::default(), from, to, seconds };
                    let f: Freshness = child(&case)?;
                    let rate = f.rate;
                    eprintln!(
                        "  {} at {:.0}% ({:.0} events/s): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
                        shape.label(),
                        load * 100.0,
                        rate,
                        f.p50,
                        f.p99,
                        f.p999,
                        f.max
                    );
                    anyhow::ensure!(f.late == 0, "{} paced events were refused as late", f.late);
                    report.latency_ms.push(LatencyRow {
                        size: *size,
                        shape,
                        load,
                        offered_events_per_s: rate,
                        events: f.events,
                        measured: f.measured,
                        p50: f.p50,
                        p99: f.p99,
                        p999: f.p999,
                        max: f.max,
                        pacer_lag_ms: f.pacer_lag_ms,
                    });
                }
            }
        }
        report.recompute_s.push(RecomputeRow {
            size: *size,
            users: rec.users,
            recompute_s: rec.recompute_s,
            load_s: rec.load_s,
            sizes: rec.sizes.clone(),
        });
    }
    Ok(report)
}

/// What DuckDB found and took for the funnel, from scratch.
#[derive(serde::Deserialize)]
struct DuckFunnel {
    load_s: f64,
    query_s: f64,
    users: Vec<u64>,
}

/// The funnel computed from scratch by DuckDB over `file` (`benches/funnel_duckdb.py`, with the
/// tests' reference SQL), with `JOURNEYFLOW_PYTHON` or the test script's venv, else `python3`;
/// `None` (said on stderr) when no Python there has duckdb.
fn duckdb_funnel(file: &std::path::Path) -> Option<DuckFunnel> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = root.join("target/pyenv/bin/python");
    let python = std::env::var_os("JOURNEYFLOW_PYTHON")
        .map(PathBuf::from)
        .or_else(|| venv.exists().then_some(venv))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let out = std::process::Command::new(&python)
        .arg(root.join("benches/funnel_duckdb.py"))
        .arg(file)
        .arg(workload::FUNNEL)
        .output();
    match out {
        Ok(out) if out.status.success() => serde_json::from_slice(&out.stdout).ok(),
        Ok(out) => {
            eprintln!("  DuckDB's funnel not run: {}", String::from_utf8_lossy(&out.stderr).trim());
            None
        }
        Err(e) => {
            eprintln!("  DuckDB's funnel not run: {}: {e}", python.display());
            None
        }
    }
}

/// Fails unless a load's members at the end (who, not only how many) equal the independent
/// reference's, its journeys' transitions and actions the journey interpreter's, and its
/// sizes the from-scratch recomputation's.
fn verify(
    rec: &Recomputed,
    loaded: &Loaded,
    definitions: Definitions,
    size: &Size,
    shape: Shape,
) -> anyhow::Result<()> {
    if definitions == Definitions::None {
        return Ok(());
    }
    let installed = workload::installed().id;
    let what = || format!("{}, {}, {}", size.label(), shape.label(), definitions.label());
    let expected: std::collections::BTreeMap<&String, &u64> =
        rec.sizes.iter().filter(|(id, _)| **id != installed).collect();
    let got: std::collections::BTreeMap<&String, &u64> = loaded.sizes.iter().collect();
    anyhow::ensure!(
        expected == got,
        "{}: segment sizes {got:?} differ from the from-scratch evaluation {expected:?}",
        what()
    );
    for (id, members) in &loaded.members {
        let want = rec.members.get(id).ok_or_else(|| anyhow::anyhow!("{id}: not in the reference"))?;
        anyhow::ensure!(members == want, "{}: {id} has members {members:?}, the reference {want:?}", what());
    }
    if let Some(journeys) = loaded.journeys {
        anyhow::ensure!(
            journeys == rec.journeys,
            "{}: J1-J2 produced {journeys:?}, the journey interpreter {:?}",
            what(),
            rec.journeys
        );
    }
    if let Some(members) = loaded.installed_members {
        let want = rec.members[&installed];
        anyhow::ensure!(
            members == want,
            "{}: {installed} after the install has {members:?}, the reference {want:?}",
            what()
        );
    }
    Ok(())
}
