//! The `hiscale` command: one binary for running a unit, the demo landscape and benchmarks.
//!
//! `main` only parses the command line, sets up logging and hands over; everything that
//! matters lives in the framework and the service crates.

mod bench;
mod demo;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hiscale",
    version,
    about = "HiScale REST service units, demo and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one service unit from its configuration file.
    Serve {
        /// The unit's TOML configuration (examples in deploy/units/).
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the minimal distribution on this machine: every SA with two units, each its own
    /// process, behind a small gateway (the default when no command is given).
    Demo(demo::DemoOptions),
    /// Measure single-resource reads and writes per second on SQLite and PostgreSQL, side by
    /// side, and print a table of medians and ratios.
    Bench(bench::BenchOptions),
}

fn main() -> std::process::ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hiscale: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Some(Command::Serve { config }) => serve::run(&config).await,
            Some(Command::Demo(options)) => demo::run(options).await,
            Some(Command::Bench(options)) => bench::run(options).await,
            None => demo::run(demo::DemoOptions::default()).await,
        }
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("hiscale: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr through `tracing`; `RUST_LOG` refines the default `info`.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
