//! A line of three emulated datacenters (`hiscale::emulation`): each its own network namespace
//! with its own gateway (`hiscale gateway`) and units (`hiscale serve --topology`), every way
//! into a datacenter from another passing a link proxy with added latency that the test can
//! cut. Everything derives from one topology file, as a deployment does.
//!
//! The line is [`LineTopology`]'s, the one `hiscale dc-demo` runs: dc1 holds the owner
//! (registration) and a copy (login), dc2's login copies dc1's owner, dc3's login relays dc2's
//! copy. With several owners, registration owns the customers in dc1 and dc2 alike.
//!
//! Dropping the [`Line`] kills every process and removes the namespaces, however the test ends.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hiscale::emulation::{LineTopology, LineUnit, LinkProxy, Network};

use crate::ADMIN;

/// The port every datacenter's gateway listens on, at the datacenter's own address.
const GATEWAY_PORT: u16 = 8080;
/// The port of the link proxy into a datacenter, at the root namespace's side of its link.
const ENTRY_PORT: u16 = 9000;
/// The first unit's port, at its datacenter's address; the others count up.
const FIRST_UNIT_PORT: u16 = 8100;
/// How long a process may take to answer after it starts (2 noisy cores, a dozen processes).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The running line; see the module's documentation.
pub struct Line {
    /// Units and gateways by name; killed first when dropped.
    processes: Mutex<BTreeMap<String, Child>>,
    /// The link proxy into each datacenter (index = datacenter).
    pub entries: Vec<LinkProxy>,
    pub units: Vec<LineUnit>,
    /// The namespaces; removed after the processes are gone.
    network: Network,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Line").field("units", &self.units).finish()
    }
}

impl Line {
    /// Creates the namespaces and link proxies (`latency` one way, in each direction, on
    /// every link), writes the topology and secrets, starts every gateway and unit and waits
    /// until each answers.
    pub async fn start(latency: Duration) -> Self {
        Self::start_with_owners(latency, 1).await
    }

    /// [`Line::start`] with registration owning its customers in the first `owners`
    /// datacenters (active/active; see [`LineTopology::owners`]).
    pub async fn start_with_owners(latency: Duration, owners: usize) -> Self {
        let network = Network::create(3).expect("emulated datacenters (needs root and `ip`)");
        let mut entries = Vec::new();
        for site in network.sites() {
            let listen = SocketAddr::from((site.root_address, ENTRY_PORT));
            let target = SocketAddr::from((site.address, GATEWAY_PORT));
            entries.push(
                LinkProxy::start(listen, target, latency)
                    .await
                    .expect("a link proxy"),
            );
        }
        let dir = tempfile::tempdir().expect("a directory for the line");
        let addresses: Vec<Ipv4Addr> = network.sites().iter().map(|site| site.address).collect();
        let urls: Vec<String> = entries.iter().map(LinkProxy::url).collect();
        let line_topology = LineTopology {
            addresses: &addresses,
            urls: &urls,
            gateway_port: GATEWAY_PORT,
            first_unit_port: FIRST_UNIT_PORT,
            databases: dir.path(),
            quick_failover: true,
            owners,
        };
        let (topology, units) = line_topology.write();
        std::fs::write(dir.path().join("topology.toml"), topology).expect("topology file");
        let secrets = secrets(&line_topology.callers());
        std::fs::write(dir.path().join("secrets.toml"), secrets).expect("secrets file");
        let line = Self {
            processes: Mutex::new(BTreeMap::new()),
            entries,
            units,
            network,
            dir,
        };
        let checked = crate::process::run_hiscale(&[
            "check",
            "--topology",
            line.path("topology.toml").to_str().unwrap_or_default(),
        ]);
        assert!(
            checked.status.success(),
            "hiscale check refused the line: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
        for datacenter in 0..3 {
            line.spawn_gateway(datacenter);
        }
        // The first unit of each SA creates its store; the second starts on a store that is
        // there (two units migrating one new SQLite file at once would collide).
        for first in [true, false] {
            let wave: Vec<LineUnit> = line
                .units
                .iter()
                .filter(|unit| unit.name.ends_with("-1") == first)
                .cloned()
                .collect();
            for unit in &wave {
                line.spawn_unit(unit);
            }
            for unit in &wave {
                line.wait_answering(format!("http://{}/health", unit.listen), unit.name.clone())
                    .await;
            }
        }
        for datacenter in 0..3 {
            line.wait_answering(
                format!("{}/dc/health", line.gateway(datacenter)),
                format!("gateway-dc{}", datacenter + 1),
            )
            .await;
        }
        line
    }

    /// The URL of datacenter `index`'s gateway as the test (in the root namespace) reaches it
    /// directly, without a link proxy.
    pub fn gateway(&self, index: usize) -> String {
        format!(
            "http://{}:{GATEWAY_PORT}",
            self.network.sites()[index].address
        )
    }

    /// The URL of unit `name`.
    pub fn unit_url(&self, name: &str) -> String {
        let unit = self.unit(name);
        format!("http://{}", unit.listen)
    }

    fn unit(&self, name: &str) -> &LineUnit {
        self.units
            .iter()
            .find(|unit| unit.name == name)
            .unwrap_or_else(|| panic!("the line has no unit {name}"))
    }

    /// Kills unit `name` (SIGKILL, as a lost host).
    pub fn stop(&self, name: &str) {
        let child = self.processes.lock().unwrap().remove(name);
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts unit `name` again.
    pub fn restart(&self, name: &str) {
        let unit = self.unit(name).clone();
        self.spawn_unit(&unit);
    }

    /// The last lines a process logged (for failure messages).
    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn spawn_unit(&self, unit: &LineUnit) {
        // Relative to the line's directory, where every process runs.
        let args = [
            "serve",
            "--topology",
            "topology.toml",
            "--secrets",
            "secrets.toml",
            "--unit",
            &unit.name,
        ];
        self.spawn(&unit.name, unit.datacenter, &args);
    }

    fn spawn_gateway(&self, datacenter: usize) {
        let name = format!("dc{}", datacenter + 1);
        let args = [
            "gateway",
            "--topology",
            "topology.toml",
            "--datacenter",
            &name,
        ];
        self.spawn(&format!("gateway-{name}"), datacenter, &args);
    }

    fn spawn(&self, name: &str, datacenter: usize, args: &[&str]) {
        let log = std::fs::File::create(self.path(&format!("{name}.log"))).expect("a log file");
        let child = self
            .network
            .command(datacenter, &crate::process::hiscale_binary())
            .args(args)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hiscale in a namespace");
        self.processes
            .lock()
            .unwrap()
            .insert(name.to_owned(), child);
    }

    async fn wait_answering(&self, url: String, name: String) {
        let client = hiscale::tls::client_builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        while client.get(&url).send().await.is_err() {
            let exited = self
                .processes
                .lock()
                .unwrap()
                .get_mut(&name)
                .and_then(|child| child.try_wait().ok().flatten());
            assert!(
                exited.is_none(),
                "{name} ended ({exited:?}):\n{}",
                self.log_tail(&name)
            );
            assert!(
                Instant::now() < deadline,
                "{name} did not answer at {url} within {START_TIMEOUT:?}:\n{}",
                self.log_tail(&name)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let processes =
            std::mem::take(&mut *self.processes.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, mut child) in processes {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Then `network` drops: it kills anything left in the namespaces and removes them.
    }
}

/// The token of each caller of the line.
pub fn token(caller: &str) -> String {
    if caller == "admin" {
        return ADMIN.to_owned();
    }
    format!("line-token-of-{}", caller.replace('@', "-at-"))
}

fn secrets(callers: &[String]) -> String {
    let mut text = format!("[tokens]\n\"admin\" = \"{}\"\n", token("admin"));
    for caller in callers {
        text.push_str(&format!("\"{caller}\" = \"{}\"\n", token(caller)));
    }
    let (signing, public) = hiscale::session::generate_key_pair().expect("a session key pair");
    text.push_str(&format!(
        "[sessions]\nsigning_key_id = \"k1\"\nsigning_key = \"{signing}\"\n\
         public_keys = [{{ id = \"k1\", key = \"{public}\" }}]\n"
    ));
    text
}
