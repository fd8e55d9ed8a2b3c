//! [`Network`]: one Linux network namespace per emulated datacenter, each joined to the root
//! namespace by a veth pair (`10.231.s.1` on the root's side, `10.231.s.2` inside), its
//! loopback up and its default route through the root's side. The root namespace does not
//! forward between them (`ip_forward` is left as it is), so a unit reaches another
//! datacenter only through an address the root namespace itself serves: a link proxy.
//!
//! Names start with `hsdc-` (namespaces) and `hsdc` (veths) and carry the creating process's
//! id, so leftovers of a run that died are found and removed before anything is created,
//! while another live run's namespaces are left alone. Dropping the [`Network`] kills every
//! process inside its namespaces and removes the namespaces and veths, also when a test
//! panics.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The prefix of every namespace and veth this module makes.
const PREFIX: &str = "hsdc";
/// Subnets are `10.231.s.0/24`.
const SUBNET: [u8; 2] = [10, 231];

/// Serialises the choice of subnets within this process (another process sees the addresses
/// already taken).
static CHOOSING: Mutex<()> = Mutex::new(());
/// Numbers the namespaces of this process.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Why the emulated network could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EmulationError {
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("no free subnet 10.231.s.0/24 is left for an emulated datacenter")]
    NoSubnet,
}

/// One emulated datacenter's place in the network.
#[derive(Debug, Clone)]
pub struct Site {
    /// The network namespace, `hsdc-{pid}-{n}`.
    pub namespace: String,
    /// The veth end in the root namespace.
    pub veth: String,
    /// The root namespace's address on this site's link, where link proxies into this
    /// datacenter listen.
    pub root_address: Ipv4Addr,
    /// The datacenter's own address (its units and its gateway listen on it).
    pub address: Ipv4Addr,
}

/// The emulated datacenters' namespaces; removed, with every process in them, when dropped.
#[derive(Debug)]
pub struct Network {
    sites: Vec<Site>,
}

impl Network {
    /// Removes leftovers of dead runs, then creates `count` namespaces with their links.
    pub fn create(count: usize) -> Result<Self, EmulationError> {
        remove_leftovers();
        let _choosing = CHOOSING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut network = Self { sites: Vec::new() };
        let taken = ip(&["-o", "-4", "addr", "show"])?;
        let mut subnets = (1..=254_u8).filter(|s| {
            let root = Ipv4Addr::new(SUBNET[0], SUBNET[1], *s, 1);
            !taken.contains(&format!("inet {root}/"))
        });
        let pid = std::process::id();
        for _ in 0..count {
            let subnet = subnets.next().ok_or(EmulationError::NoSubnet)?;
            let number = NEXT.fetch_add(1, Ordering::Relaxed);
            let site = Site {
                namespace: format!("{PREFIX}-{pid:x}-{number}"),
                veth: format!("{PREFIX}{pid:x}x{number}"),
                root_address: Ipv4Addr::new(SUBNET[0], SUBNET[1], subnet, 1),
                address: Ipv4Addr::new(SUBNET[0], SUBNET[1], subnet, 2),
            };
            // Recorded before it exists, so a failure half-way is still cleaned up.
            network.sites.push(site.clone());
            build(&site, &format!("{PREFIX}{pid:x}y{number}"))?;
        }
        Ok(network)
    }

    /// The sites, in the order created.
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// A command that runs `program` inside site `index`'s namespace (`ip netns exec`).
    pub fn command(&self, index: usize, program: &std::path::Path) -> Command {
        let mut command = Command::new("ip");
        if let Some(site) = self.sites.get(index) {
            command.args(["netns", "exec", &site.namespace]);
        }
        command.arg(program);
        command
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for site in &self.sites {
            remove(&site.namespace, &site.veth);
        }
    }
}

/// Makes one site: namespace, veth pair, addresses, loopback, default route.
fn build(site: &Site, inner: &str) -> Result<(), EmulationError> {
    let namespace = site.namespace.as_str();
    let root = format!("{}/24", site.root_address);
    let own = format!("{}/24", site.address);
    let gateway = site.root_address.to_string();
    ip(&["netns", "add", namespace])?;
    ip(&[
        "link", "add", &site.veth, "type", "veth", "peer", "name", inner,
    ])?;
    ip(&["link", "set", inner, "netns", namespace])?;
    ip(&["addr", "add", &root, "dev", &site.veth])?;
    ip(&["link", "set", &site.veth, "up"])?;
    ip(&["-n", namespace, "addr", "add", &own, "dev", inner])?;
    ip(&["-n", namespace, "link", "set", inner, "up"])?;
    ip(&["-n", namespace, "link", "set", "lo", "up"])?;
    ip(&["-n", namespace, "route", "add", "default", "via", &gateway])?;
    Ok(())
}

/// Kills every process in `namespace`, deletes it and the root's veth end (best effort: this
/// runs from `Drop` and from the leftover sweep).
fn remove(namespace: &str, veth: &str) {
    if let Ok(pids) = ip(&["netns", "pids", namespace]) {
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).output();
        }
    }
    let _ = ip(&["netns", "del", namespace]);
    let _ = ip(&["link", "del", veth]);
}

/// Removes the namespaces and veths of processes that no longer run.
fn remove_leftovers() {
    let dead = |owner: &str| {
        u32::from_str_radix(owner, 16)
            .is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    if let Ok(namespaces) = ip(&["netns", "list"]) {
        for name in namespaces
            .lines()
            .filter_map(|line| line.split_whitespace().next())
        {
            let Some(rest) = name.strip_prefix(&format!("{PREFIX}-")) else {
                continue;
            };
            let (owner, number) = rest.split_once('-').unwrap_or((rest, ""));
            if dead(owner) {
                tracing::info!("removing the leftover namespace {name}");
                remove(name, &format!("{PREFIX}{owner}x{number}"));
            }
        }
    }
    if let Ok(links) = ip(&["-o", "link", "show"]) {
        for line in links.lines() {
            // "12: hsdc1a2bx0@if11: <…"
            let Some(name) = line.split_whitespace().nth(1) else {
                continue;
            };
            let name = name.trim_end_matches(':');
            let name = name.split('@').next().unwrap_or(name);
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let owner = rest.split(['x', 'y']).next().unwrap_or(rest);
            if dead(owner) {
                let _ = ip(&["link", "del", name]);
            }
        }
    }
}

/// Runs `ip ARGS…`; its standard output, or the failure with its standard error.
fn ip(args: &[&str]) -> Result<String, EmulationError> {
    let command = || format!("ip {}", args.join(" "));
    let output =
        Command::new("ip")
            .args(args)
            .output()
            .map_err(|error| EmulationError::Command {
                command: command(),
                detail: error.to_string(),
            })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(EmulationError::Command {
            command: command(),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}
