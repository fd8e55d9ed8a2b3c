//! The `hiscale` command: one binary for running a unit, the demo landscape and benchmarks.
//!
//! `main` only parses the command line, sets up logging and hands over; everything that
//! matters lives in the framework and the service crates. The demo and the benchmark are the
//! features `demo` and `bench` (on by default): a production build leaves them out.

#[cfg(feature = "bench")]
mod bench;
mod check_invoices;
#[cfg(feature = "demo")]
mod dc_demo;
#[cfg(feature = "demo")]
mod demo;
#[cfg(feature = "demo")]
mod entry;
mod registry;
mod restore;
mod serve;
mod shell;
mod topology;

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
    /// Run one service unit: the unit NAME of a topology (with its secrets), or a unit
    /// configuration file.
    Serve(serve::ServeOptions),
    /// Check a topology against the service areas this binary runs; starts nothing. Prints
    /// every problem with its line and exits non-zero when there is one.
    Check {
        /// The deployment, e.g. deploy/topology.toml.
        #[arg(long, value_name = "FILE")]
        topology: PathBuf,
    },
    /// Print HAProxy's configuration for a topology (deploy/haproxy/haproxy.cfg is this
    /// command's output for deploy/topology.toml).
    HaproxyConfig {
        #[arg(long, value_name = "FILE")]
        topology: PathBuf,
        /// The datacenter whose gateway this configures (needed when the topology has several).
        #[arg(long, value_name = "NAME")]
        datacenter: Option<String>,
    },
    #[cfg(feature = "demo")]
    /// Run a small gateway for one datacenter of a topology instead of HAProxy: `/{sa}/…` to
    /// that SA's units there, and `GET /dc/health`.
    Gateway {
        #[arg(long, value_name = "FILE")]
        topology: PathBuf,
        /// The datacenter (needed when the topology has several).
        #[arg(long, value_name = "NAME")]
        datacenter: Option<String>,
    },
    /// Print the landscape's Kubernetes manifests for a topology: a Deployment per unit, a
    /// headless Service per SA, HAProxy as the gateway, the topology in a ConfigMap
    /// (deploy/kubernetes/hiscale.yaml is this command's output for deploy/topology.toml).
    /// A topology of several datacenters gets one set per datacenter, for its own cluster.
    Kubernetes {
        #[arg(long, value_name = "FILE")]
        topology: PathBuf,
        /// The datacenter (needed when the topology has several).
        #[arg(long, value_name = "NAME")]
        datacenter: Option<String>,
    },
    /// Serve the GUI shell on the topology's `[gateway] shell` address (HAProxy routes `/`
    /// and `/shell/…` there); the plugins come from the service areas' own units.
    Shell {
        #[arg(long, value_name = "FILE")]
        topology: PathBuf,
    },
    #[cfg(feature = "demo")]
    /// Run the minimal distribution on this machine: every SA with two units, each its own
    /// process, behind a small gateway (the default when no command is given).
    Demo(demo::DemoOptions),
    #[cfg(feature = "demo")]
    /// Run three emulated datacenters on this machine (as root: network namespaces, links
    /// with added latency): registration in dc1, login's copy in each, dc3's relayed by dc2.
    DcDemo(dc_demo::DcDemoOptions),
    #[cfg(feature = "bench")]
    /// Measure single-resource reads and writes per second on SQLite and PostgreSQL, side by
    /// side, and print a table of medians and ratios.
    Bench(bench::BenchOptions),
    /// Refill an SA's restored database from the copies its peers keep (all peers, or one
    /// with --from), with its units stopped or running; prints progress and a report of what
    /// may be lost, and exits non-zero when a peer could not be read.
    Restore(restore::RestoreOptions),
    /// Name every open invoice whose total is not its order's total now (orders changed after
    /// they were invoiced); exits non-zero when there is one.
    CheckInvoices(check_invoices::CheckInvoicesOptions),
}

fn main() -> std::process::ExitCode {
    with_fixed_mmap_threshold();
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
            Some(Command::Serve(options)) => serve::run(&options).await,
            Some(Command::Check { topology }) => topology::check(&topology),
            Some(Command::HaproxyConfig {
                topology,
                datacenter,
            }) => topology::haproxy_config(&topology, datacenter.as_deref()),
            #[cfg(feature = "demo")]
            Some(Command::Gateway {
                topology,
                datacenter,
            }) => entry::serve(&topology, datacenter.as_deref()).await,
            Some(Command::Kubernetes {
                topology,
                datacenter,
            }) => topology::kubernetes(&topology, datacenter.as_deref()),
            Some(Command::Shell { topology }) => shell::serve(&topology).await,
            #[cfg(feature = "demo")]
            Some(Command::Demo(options)) => demo::run(options).await,
            #[cfg(feature = "demo")]
            Some(Command::DcDemo(options)) => dc_demo::run(options).await,
            #[cfg(feature = "bench")]
            Some(Command::Bench(options)) => bench::run(options).await,
            Some(Command::Restore(options)) => restore::run(&options).await,
            Some(Command::CheckInvoices(options)) => check_invoices::run(&options).await,
            #[cfg(feature = "demo")]
            None => demo::run(demo::DemoOptions::default()).await,
            #[cfg(not(feature = "demo"))]
            None => Err(anyhow::anyhow!(
                "no command given, and this build has no demo (it was built without the `demo` \
                 feature): see hiscale --help"
            )),
        }
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            let message = causes(&error);
            tracing::error!("{message}");
            eprintln!("hiscale: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: most of our error types already write their
/// source into their own message (`store: database error: …`), so anyhow's `{:#}` would repeat
/// each cause as many times as it is wrapped.
fn causes(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    message
}

/// glibc's malloc raises its mmap threshold after the first large block is freed; from then on
/// every Argon2 hash's 19 MiB block comes from a heap that keeps it. Measured on a login unit:
/// 48 wrong passwords took it from 28 to 848 MiB, never given back. With the threshold fixed,
/// large blocks stay mapped and go back at free: peak 109 MiB (four hashes at once), then 31 MiB.
/// The setting is read when the process starts, and this crate forbids `unsafe` (no
/// `mallopt`), so the binary executes itself once more with it set (same process id).
fn with_fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        const VARIABLE: &str = "MALLOC_MMAP_THRESHOLD_";
        if std::env::var_os(VARIABLE).is_some() {
            return;
        }
        let Ok(executable) = std::env::current_exe() else {
            return;
        };
        let error = std::process::Command::new(executable)
            .args(std::env::args_os().skip(1))
            .env(VARIABLE, "131072")
            .exec();
        eprintln!("hiscale: cannot execute again with {VARIABLE} set ({error}); going on without");
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

#[cfg(test)]
mod tests {
    use super::causes;

    #[test]
    fn each_cause_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("store: {0}")]
        struct Wrapping(#[source] std::io::Error);
        let root = std::io::Error::other("disk full");
        let error = anyhow::Error::new(Wrapping(root)).context("starting unit shop-1");
        assert_eq!(causes(&error), "starting unit shop-1: store: disk full");
        let plain = anyhow::anyhow!("no such unit").context("serve");
        assert_eq!(causes(&plain), "serve: no such unit");
    }
}
