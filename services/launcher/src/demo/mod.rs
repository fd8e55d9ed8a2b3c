//! The embedded demo: every service area's units as separate processes behind a small gateway,
//! so the whole landscape runs on one machine with `hiscale demo` (or plain `hiscale`).
//!
//! The landscape is registration, the owner of the customers, and login, shop and billing,
//! which each keep a copy of the aspects they are granted by polling registration through the
//! gateway: two units per service area, a reading service area's second unit backing up its
//! first.
//!
//! This module only orchestrates: it prepares the data directory, the tokens, the session keys
//! and each service area's database, [`plan`]s every unit's configuration, lets the
//! [`supervisor`] run the units, puts the [`gateway`] in front of them, loads the [`sample`]
//! data, waits for the copies to [`catch_up`] and then for Ctrl-C or SIGTERM. Each step lives
//! in its own submodule.

mod catalogue;
mod catch_up;
mod dc_health;
mod files;
mod gates;
pub mod gateway;
mod plan;
mod sample;
mod session_keys;
mod supervisor;
mod tokens;
mod unit_health;
mod units_file;
mod write_health;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use self::gateway::Gateway;
use self::plan::{COPIED_COLLECTION, OWNER};
use self::session_keys::SessionKeys;
use self::supervisor::Supervisor;
use self::tokens::Tokens;

/// What `hiscale demo` accepts; `DemoOptions::default()` is what plain `hiscale` runs.
#[derive(Debug, Clone, Args)]
pub struct DemoOptions {
    /// Port of the gateway on 127.0.0.1 (routes `/{sa}/…` to that service area's units).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Where the databases, tokens.json, units.json and the unit configurations live.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// How many generated customers to load when the registration database is empty.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SAMPLE)]
    pub sample: usize,
    /// Keep each service area in its own database on this PostgreSQL server (created when
    /// missing) instead of SQLite files, e.g. `postgres://app@127.0.0.1:5432/`.
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            port: DEFAULT_PORT,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            sample: DEFAULT_SAMPLE,
            postgres: None,
        }
    }
}

/// Runs the demo until Ctrl-C or SIGTERM, then stops the gateway and every unit cleanly.
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    // Listen for the stop signals before anything starts, so that Ctrl-C during a slow start
    // (waiting for health, loading the sample) still shuts the units down in order.
    let stop = stop_requested()?;
    tokio::pin!(stop);

    let Prepared {
        gateway_listener,
        tokens,
        mut supervisor,
    } = tokio::select! {
        prepared = prepare(&options) => prepared?,
        () = &mut stop => return Ok(()),
    };
    let started = tokio::select! {
        started = start(&mut supervisor, gateway_listener, &options, &tokens) => Some(started),
        () = &mut stop => None,
    };
    match started {
        Some(Ok(gateway)) => {
            print_summary(&options, &supervisor, gateway.address());
            (&mut stop).await;
            tracing::info!("stopping the demo");
            // The units finish what they are serving when they get SIGTERM, so the gateway's
            // requests in flight can end while both stop together.
            tokio::join!(gateway.shutdown(), supervisor.shutdown());
            Ok(())
        }
        Some(Err(error)) => {
            supervisor.shutdown().await;
            Err(error)
        }
        None => {
            tracing::info!("stop requested while starting; stopping the demo");
            supervisor.shutdown().await;
            Ok(())
        }
    }
}

const DEFAULT_PORT: u16 = 8080;
const DEFAULT_DATA_DIR: &str = "./data";
const DEFAULT_SAMPLE: usize = 200;
const TOKENS_FILE: &str = "tokens.json";
/// How long a unit may take from spawn to its first `PASS`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the owners' start gates (their readers' first polls) before the sample.
const GATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for the copies to catch up after the sample before going on regardless.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// What exists before the first unit starts.
struct Prepared {
    gateway_listener: TcpListener,
    tokens: Tokens,
    supervisor: Supervisor,
}

/// Takes the gateway's port, then prepares the data directory, the tokens, the session keys,
/// the databases and the unit configurations; starts nothing.
async fn prepare(options: &DemoOptions) -> anyhow::Result<Prepared> {
    let gateway_address = SocketAddr::from((Ipv4Addr::LOCALHOST, options.port));
    let gateway_listener = Gateway::listen(gateway_address).await?;
    // With `--port 0` the system picked the port; the reading units need the real one.
    let gateway_address = gateway_listener
        .local_addr()
        .context("cannot read the gateway's address")?;
    let data_dir = prepare_data_dir(&options.data_dir)?;
    let tokens = Tokens::load_or_create(&data_dir.join(TOKENS_FILE))?;
    let keys = SessionKeys::load_or_create(&data_dir.join(session_keys::FILE_NAME))?;
    let shared = plan::Shared {
        tokens: &tokens,
        keys: &keys,
        gateway: gateway_address,
    };
    let plans = plan::plan_units(&data_dir, options.postgres.as_deref(), &shared).await?;
    let executable = std::env::current_exe().context("cannot find the hiscale executable")?;
    let supervisor = Supervisor::new(supervisor::Options {
        executable,
        data_dir,
        units: plans,
    })?;
    Ok(Prepared {
        gateway_listener,
        tokens,
        supervisor,
    })
}

/// Brings the landscape up: units healthy, gateway listening, sample data loaded, copies
/// caught up (or reported as slow).
///
/// The reading units start polling the owner through the gateway before it serves: their first
/// requests wait in the gateway's listen queue (or fail and are retried with backoff), and
/// `/health` never depends on replication, so the units turn healthy regardless.
async fn start(
    supervisor: &mut Supervisor,
    gateway_listener: TcpListener,
    options: &DemoOptions,
    tokens: &Tokens,
) -> anyhow::Result<Gateway> {
    supervisor.start(HEALTH_TIMEOUT).await?;
    let topology = plan::topology()?;
    let areas = topology
        .service_areas
        .iter()
        .map(|sa| {
            let name = sa.get_ref().name.get_ref();
            gateway::RoutedArea {
                name: name.clone(),
                units: supervisor.addresses_of(name),
                limits: sa.get_ref().limits.clone(),
            }
        })
        .collect();
    let plugins = crate::shell::PluginList::of(
        topology
            .service_areas
            .iter()
            .map(|sa| sa.get_ref().name.get_ref().clone()),
    );
    let gateway = Gateway::start(
        gateway_listener,
        areas,
        Some(gateway::Front {
            plugins,
            admin_token: tokens.admin.clone(),
            holds: supervisor.holds(),
        }),
    )?;
    let gateway_url = format!("http://{}", gateway.address());
    let owner_database = supervisor
        .database_of(OWNER)
        .with_context(|| format!("the demo has no {OWNER} service area"))?;
    let database_label = match options.postgres {
        Some(_) => format!("the PostgreSQL database hiscale_{OWNER}"),
        None => options.data_dir.display().to_string(),
    };
    let owners: Vec<SocketAddr> = topology
        .service_areas
        .iter()
        .flat_map(|sa| supervisor.addresses_of(sa.get_ref().name.get_ref()))
        .collect();
    gates::wait_open(&owners, &tokens.admin, GATE_TIMEOUT).await;
    sample::ensure(sample::Options {
        gateway: gateway_url.clone(),
        database: owner_database,
        database_label,
        admin_token: tokens.admin.clone(),
        count: options.sample,
    })
    .await?;
    catalogue::ensure(&gateway_url, &tokens.admin).await?;
    catch_up::wait(catch_up::Options {
        gateway: gateway_url,
        admin_token: tokens.admin.clone(),
        owner: OWNER,
        collection: COPIED_COLLECTION,
        consumers: topology
            .service_areas
            .iter()
            .map(|sa| sa.get_ref())
            .filter(|sa| !sa.copies.is_empty())
            .map(|sa| sa.name.get_ref().clone())
            .collect(),
        timeout: CATCH_UP_TIMEOUT,
    })
    .await;
    Ok(gateway)
}

/// Creates the data directory when missing and returns its absolute form, which every unit
/// configuration and database URL uses so they do not depend on the units' working directory.
fn prepare_data_dir(data_dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    data_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve the data directory {}", data_dir.display()))
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM, whichever comes first.
pub fn stop_requested() -> anyhow::Result<impl Future<Output = ()>> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => {
                if let Err(error) = interrupted {
                    tracing::warn!("cannot listen for Ctrl-C, only SIGTERM stops the demo: {error}");
                    terminate.recv().await;
                }
            }
            _ = terminate.recv() => {}
        }
    })
}

/// Tells the person at the terminal where everything is and how to try it.
fn print_summary(options: &DemoOptions, supervisor: &Supervisor, gateway: SocketAddr) {
    let tokens_path = options.data_dir.join(TOKENS_FILE);
    let keys_path = options.data_dir.join(session_keys::FILE_NAME);
    let units = supervisor.units();
    let width = units
        .iter()
        .map(|unit| unit.unit.len())
        .chain(["session keys".len()])
        .max()
        .unwrap_or_default();
    let admin = format!(
        "\"Authorization: Bearer $(jq -r .admin {})\"",
        shell_word(&tokens_path.display().to_string())
    );
    println!();
    println!("HiScale REST demo is running. Open the GUI at http://{gateway}/");
    println!("  {:width$}  http://{gateway}/{{sa}}/…", "gateway");
    for unit in &units {
        println!(
            "  {:width$}  {}  {:7}  pid {}",
            unit.unit,
            unit.url,
            unit.role.name(),
            unit.pid
        );
    }
    println!("  {:width$}  {}", "tokens", tokens_path.display());
    println!("  {:width$}  {}", "session keys", keys_path.display());
    println!(
        "  {:width$}  {}",
        "units",
        options.data_dir.join(units_file::FILE_NAME).display()
    );
    println!();
    println!("Read customer 1 at its owner, {OWNER}, through the gateway:");
    println!(
        "  curl -H {admin} \\\n       -H 'Accept: {}' \\\n       http://{gateway}/{OWNER}/customers/1",
        sample::MEDIA_TYPE,
    );
    println!();
    println!(
        "Read shop's copy of it (only the aspects shop copies, {}):",
        shop::COPIED_ASPECTS
    );
    println!(
        "  curl -H {admin} \\\n       -H 'Accept: {}' \\\n       http://{gateway}/{}/customers/1",
        sample::MEDIA_TYPE,
        shop::NAME,
    );
    let (login, password) = sample::credentials(1);
    let credentials = serde_json::json!({"login": login, "password": password}).to_string();
    println!();
    println!(
        "Sign in at {} as sample customer {login} (answers a session token):",
        login::NAME
    );
    println!(
        "  curl -s -X POST http://{gateway}/{}/sessions -H 'Content-Type: application/json' \\\n       -d {}",
        login::NAME,
        shell_word(&credentials),
    );
    println!();
    println!("Press Ctrl-C to stop.");
}

/// Quotes a word for a POSIX shell only when it needs it, so the usual `data/tokens.json`
/// stays readable in the printed example.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        options: DemoOptions,
    }

    #[test]
    fn defaults_match_the_command_line_defaults() -> anyhow::Result<()> {
        let parsed = Cli::try_parse_from(["hiscale"])?.options;
        let default = DemoOptions::default();
        assert_eq!(parsed.port, default.port);
        assert_eq!(parsed.data_dir, default.data_dir);
        assert_eq!(parsed.sample, default.sample);
        assert_eq!(parsed.postgres, default.postgres);
        Ok(())
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        fn check(word: &str, expected: &str) {
            assert_eq!(shell_word(word), expected, "{word}");
        }
        check("./data/tokens.json", "./data/tokens.json");
        check("my data/tokens.json", "'my data/tokens.json'");
        check("it's/tokens.json", r"'it'\''s/tokens.json'");
    }
}
