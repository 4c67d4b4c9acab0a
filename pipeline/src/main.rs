//! The `journeyflow` binary.

use clap::Parser;
use journeyflow::cli::{self, Cli, Command};

/// The dataflow allocates and frees many small records; mimalloc does that much faster than
/// the system allocator (about a third of replay time went to glibc malloc and free).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Cli::parse();
    let result = match &args.command {
        Command::Replay(a) => cli::replay::execute(a).map(|_| ()),
        Command::Run(a) => cli::run::execute(a),
        Command::Generate(a) => cli::generate::execute(a),
        Command::ImportCdnow(a) => cli::import_cdnow::execute(a),
        Command::DeleteUser(a) => cli::delete_user::execute(a).map(|_| ()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
