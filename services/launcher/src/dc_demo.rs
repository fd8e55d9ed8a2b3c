//! `hiscale dc-demo` (as root): three emulated datacenters on this machine, each a network
//! namespace with its own gateway and units, joined by link proxies that add latency:
//!
//! ```text
//!  dc1: registration (owner), login (copy)   <- link <- dc2
//!  dc2: login (copy of dc1's registration)   <- link <- dc3
//!  dc3: login (copy of dc2's login: a relay)
//! ```
//!
//! Each datacenter's entry is also reachable on a loopback port. SQLite files and a generated
//! topology and secrets live in the data directory; every process and namespace goes on
//! Ctrl-C (and, should the demo itself die, the next start removes the leftovers).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hiscale::emulation::{LineTopology, LineUnit, LinkProxy, Network};

/// What `hiscale dc-demo` accepts.
#[derive(Debug, Clone, Args)]
pub struct DcDemoOptions {
    /// dc1's entry on 127.0.0.1:PORT, dc2's on PORT+1, dc3's on PORT+2.
    #[arg(long, default_value_t = 8180)]
    pub port: u16,
    /// Added by each link between datacenters, in each direction.
    #[arg(long, value_name = "MS", default_value_t = 20)]
    pub latency_ms: u64,
    /// Where the topology, secrets, databases and logs live (emptied at start).
    #[arg(long, value_name = "DIR", default_value = "./data-dc")]
    pub data_dir: PathBuf,
    /// How many datacenters, from dc1, own registration's customers: 2 makes dc1 and dc2
    /// active/active owners (each writes its own customers; every login copies both).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub owners: u8,
}

/// The port of every datacenter's gateway, at the datacenter's own address.
const GATEWAY_PORT: u16 = 8080;
/// The port of the link proxy into a datacenter, on the root namespace's side of its link.
const ENTRY_PORT: u16 = 9000;
/// The first unit's port, at its datacenter's address; the others count up.
const FIRST_UNIT_PORT: u16 = 8101;
/// How long each unit may take to answer after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a process may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the three datacenters until Ctrl-C or SIGTERM, then removes everything.
pub async fn run(options: DcDemoOptions) -> anyhow::Result<()> {
    let stop = crate::demo::stop_requested()?;
    let network = Network::create(3)
        .context("cannot create the emulated datacenters (run as root, with `ip` installed)")?;
    let latency = Duration::from_millis(options.latency_ms);
    let mut links = Vec::new();
    let mut loopback = Vec::new();
    for (index, site) in network.sites().iter().enumerate() {
        let gateway = SocketAddr::from((site.address, GATEWAY_PORT));
        let entry = SocketAddr::from((site.root_address, ENTRY_PORT));
        links.push(LinkProxy::start(entry, gateway, latency).await?);
        let port = options.port.saturating_add(u16::try_from(index)?);
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loopback.push(
            LinkProxy::start(local, gateway, Duration::ZERO)
                .await
                .with_context(|| format!("cannot listen on {local} (try --port)"))?,
        );
    }
    let dir = prepare(&options.data_dir)?;
    let addresses: Vec<Ipv4Addr> = network.sites().iter().map(|site| site.address).collect();
    let urls: Vec<String> = links.iter().map(LinkProxy::url).collect();
    let admin = random_hex()?;
    let owners = usize::from(options.owners);
    let (topology, units) = topology(&addresses, &urls, &dir, owners);
    std::fs::write(dir.join("topology.toml"), topology)?;
    let callers = line(&addresses, &urls, &dir, owners).callers();
    std::fs::write(dir.join("secrets.toml"), secrets(&admin, &callers)?)?;
    let mut processes = Processes(Vec::new());
    for (index, name) in ["dc1", "dc2", "dc3"].iter().enumerate() {
        let args = [
            "gateway",
            "--topology",
            "topology.toml",
            "--datacenter",
            name,
        ];
        processes.spawn(&network, index, &dir, &format!("gateway-{name}"), &args)?;
    }
    tokio::pin!(stop);
    let started = tokio::select! {
        started = start_units(&network, &dir, &units, &mut processes) => started,
        () = &mut stop => Ok(()),
    };
    if started.is_ok() {
        print_summary(&network, &loopback, &dir, &admin, latency);
        stop.await;
    }
    tracing::info!("stopping the datacenters");
    processes.stop().await;
    drop(network);
    started
}

/// The running processes; killed when dropped (after a failure), stopped by [`Self::stop`].
struct Processes(Vec<Child>);

impl Processes {
    fn spawn(
        &mut self,
        network: &Network,
        index: usize,
        dir: &Path,
        name: &str,
        args: &[&str],
    ) -> anyhow::Result<()> {
        let log = std::fs::File::create(dir.join("logs").join(format!("{name}.log")))?;
        let executable = std::env::current_exe().context("cannot find the hiscale executable")?;
        let child = network
            .command(index, &executable)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        self.0.push(child);
        Ok(())
    }

    /// SIGTERM to each, then waits (bounded) and kills what is left.
    async fn stop(&mut self) {
        for child in &self.0 {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline
            && self
                .0
                .iter_mut()
                .any(|child| matches!(child.try_wait(), Ok(None)))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Empties (or creates) the data directory; its absolute path.
fn prepare(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir.canonicalize()?)
}

/// Starts the units, the first of each SA before the second (two units creating one new
/// SQLite file at once would collide), each wave until healthy.
async fn start_units(
    network: &Network,
    dir: &Path,
    units: &[LineUnit],
    processes: &mut Processes,
) -> anyhow::Result<()> {
    let client = hiscale::tls::client_builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    for first in [true, false] {
        let wave: Vec<_> = units
            .iter()
            .filter(|unit| unit.name.ends_with("-1") == first)
            .collect();
        for unit in &wave {
            let args = [
                "serve",
                "--topology",
                "topology.toml",
                "--secrets",
                "secrets.toml",
                "--unit",
                &unit.name,
            ];
            processes.spawn(network, unit.datacenter, dir, &unit.name, &args)?;
        }
        let deadline = Instant::now() + START_TIMEOUT;
        for LineUnit { name, listen, .. } in wave {
            let url = format!("http://{listen}/health");
            while !client
                .get(&url)
                .send()
                .await
                .is_ok_and(|reply| reply.status().is_success())
            {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "{name} did not turn healthy within {START_TIMEOUT:?} (see {})",
                    dir.join("logs").join(format!("{name}.log")).display()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    Ok(())
}

fn print_summary(
    network: &Network,
    loopback: &[LinkProxy],
    dir: &Path,
    admin: &str,
    latency: Duration,
) {
    println!();
    println!("Three emulated datacenters are running ({latency:?} one way per link):");
    for (index, (site, local)) in network.sites().iter().zip(loopback).enumerate() {
        println!(
            "  dc{}  {}  (inside: http://{}:{GATEWAY_PORT}, namespace {})",
            index + 1,
            local.url(),
            site.address,
            site.namespace
        );
    }
    let (dc1, dc3) = (loopback[0].url(), loopback[2].url());
    println!(
        "  topology, secrets, databases and logs in {}",
        dir.display()
    );
    println!();
    println!("Create a customer in dc1, then read it from dc3's login (relayed by dc2):");
    println!(
        "  curl -H 'Authorization: Bearer {admin}' -H 'Content-Type: application/json' \\\n       \
         -d '{{\"account\":{{\"login\":\"erika\",\"password\":\"secret-password\"}}}}' \
         {dc1}/registration/customers"
    );
    println!("  curl -H 'Authorization: Bearer {admin}' {dc3}/login/customers/1");
    println!("Each datacenter's health for a global load balancer: curl {dc1}/dc/health");
    println!();
    println!("Press Ctrl-C to stop and remove the datacenters.");
}

/// The line's topology on `addresses` (one per datacenter), with `urls` as the other
/// datacenters' way into each, the databases in `dir`; and every unit.
fn topology(
    addresses: &[Ipv4Addr],
    urls: &[String],
    dir: &Path,
    owners: usize,
) -> (String, Vec<LineUnit>) {
    let (text, units) = line(addresses, urls, dir, owners).write();
    (
        format!("# Generated by `hiscale dc-demo`.\n\n{text}"),
        units,
    )
}

fn line<'a>(
    addresses: &'a [Ipv4Addr],
    urls: &'a [String],
    dir: &'a Path,
    owners: usize,
) -> LineTopology<'a> {
    LineTopology {
        addresses,
        urls,
        gateway_port: GATEWAY_PORT,
        first_unit_port: FIRST_UNIT_PORT,
        databases: dir,
        quick_failover: false,
        owners,
    }
}

/// Random tokens for every caller, and a session key pair for login.
fn secrets(admin: &str, callers: &[String]) -> anyhow::Result<String> {
    let mut text = format!("[tokens]\nadmin = \"{admin}\"\n");
    for caller in callers {
        text.push_str(&format!("\"{caller}\" = \"{}\"\n", random_hex()?));
    }
    let (signing, public) = hiscale::session::generate_key_pair()
        .map_err(|error| anyhow::anyhow!("cannot make session keys: {error}"))?;
    text.push_str(&format!(
        "[sessions]\nsigning_key_id = \"k1\"\nsigning_key = \"{signing}\"\n\
         public_keys = [{{ id = \"k1\", key = \"{public}\" }}]\n"
    ));
    Ok(text)
}

/// 32 random bytes as 64 hex digits.
fn random_hex() -> anyhow::Result<String> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("no random bytes: {error}"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use hiscale::topology::Topology;

    use super::*;

    /// The demo's line with `owners` owner datacenters, checked against the services this
    /// binary runs: it must hold without warnings. The parsed topology, its units, and the
    /// addresses and URLs it was written for.
    fn checked(owners: usize) -> anyhow::Result<(Topology, usize, [Ipv4Addr; 3], [String; 3])> {
        let addresses = [1, 2, 3].map(|s| Ipv4Addr::new(10, 231, s, 2));
        let urls = [1, 2, 3].map(|s| format!("http://10.231.{s}.1:{ENTRY_PORT}"));
        let (text, units) = topology(&addresses, &urls, Path::new("/data"), owners);
        let topology = Topology::parse(&text, "dc-demo")?;
        let warnings = topology.check(&crate::registry::service_areas())?;
        assert!(warnings.is_empty(), "{warnings:?}");
        Ok((topology, units.len(), addresses, urls))
    }

    #[test]
    fn the_generated_line_holds_without_warnings() -> anyhow::Result<()> {
        let (topology, units, addresses, urls) = checked(1)?;
        assert_eq!(units, 8);
        let callers = line(&addresses, &urls, Path::new("/data"), 1).callers();
        let secrets: hiscale::topology::Secrets = toml::from_str(&secrets("a", &callers)?)?;
        let config =
            topology.unit_config("login-dc3-1", &secrets, &crate::registry::service_areas())?;
        assert_eq!(config.sources[0].url, "http://10.231.2.1:9000/login");
        Ok(())
    }

    /// `--owners 2`: the line with active/active owners in dc1 and dc2 holds as well.
    #[test]
    fn two_owner_datacenters_hold_without_warnings() -> anyhow::Result<()> {
        let (_, units, _, _) = checked(2)?;
        assert_eq!(units, 10);
        Ok(())
    }
}
