//! Real unit processes of the `hiscale` binary, as production runs them.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::unit_config;

/// A running `hiscale serve` process; killed when dropped.
#[derive(Debug)]
pub struct UnitProcess {
    child: Child,
    pub url: String,
    _config: Option<tempfile::NamedTempFile>,
}

impl UnitProcess {
    /// Starts a registration unit on `database` and waits until `/health` says PASS.
    pub async fn start(unit: &str, database: &str) -> Self {
        let port = free_port();
        Self::start_config(unit_config(unit, database, ([127, 0, 0, 1], port).into())).await
    }

    /// Starts a unit of any SA from a full configuration (its `listen` port must be free).
    pub async fn start_config(config: hiscale::UnitConfig) -> Self {
        let mut file = tempfile::NamedTempFile::new().expect("config file");
        std::io::Write::write_all(
            &mut file,
            toml::to_string(&config).expect("toml").as_bytes(),
        )
        .expect("write config");
        let path = file.path().to_owned();
        let args = [OsStr::new("--config"), path.as_os_str()];
        Self::spawn(&args, config.listen, Some(file)).await
    }

    /// Starts unit `unit` of a topology file, as deployments do
    /// (`hiscale serve --topology … --secrets … --unit …`); `listen` is its address there.
    pub async fn start_topology(
        topology: &Path,
        secrets: &Path,
        unit: &str,
        listen: SocketAddr,
    ) -> Self {
        let args = [
            OsStr::new("--topology"),
            topology.as_os_str(),
            OsStr::new("--secrets"),
            secrets.as_os_str(),
            OsStr::new("--unit"),
            OsStr::new(unit),
        ];
        Self::spawn(&args, listen, None).await
    }

    async fn spawn(
        args: &[&OsStr],
        listen: SocketAddr,
        config: Option<tempfile::NamedTempFile>,
    ) -> Self {
        let child = Command::new(hiscale_binary())
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn hiscale serve");
        let mut process = Self {
            child,
            url: format!("http://{listen}"),
            _config: config,
        };
        process.wait_healthy().await;
        process
    }

    /// The unit's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the unit answers `/health`; fails when the process has ended (it could not
    /// listen, say), rather than take another process's answer at its address for its own.
    async fn wait_healthy(&mut self) {
        let client = hiscale::tls::client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let healthy = client
                .get(format!("{}/health", self.url))
                .send()
                .await
                .is_ok_and(|reply| reply.status().is_success());
            let exited = self.child.try_wait().ok().flatten();
            assert!(
                exited.is_none(),
                "the unit at {} ended ({exited:?}) before it answered",
                self.url
            );
            if healthy {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "unit at {} did not become healthy in 30 s",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for UnitProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `hiscale ARGS…` to its end (a command such as `check`, not a unit).
pub fn run_hiscale<S: AsRef<OsStr>>(args: &[S]) -> std::process::Output {
    Command::new(hiscale_binary())
        .args(args)
        .output()
        .expect("run hiscale")
}

/// Runs `hiscale bench` with `args` (the shared test server's URL removed, so the bench starts
/// what it needs itself), fails unless it ends well within `within`; answers what it printed.
pub async fn hiscale_bench(args: &[&str], within: std::time::Duration) -> String {
    let mut command = tokio::process::Command::new(hiscale_binary());
    command
        .arg("bench")
        .args(args)
        .env_remove("HISCALE_TEST_POSTGRES")
        .kill_on_drop(true);
    let output = tokio::time::timeout(within, command.output())
        .await
        .unwrap_or_else(|_| panic!("hiscale bench {args:?} did not finish within {within:?}"))
        .expect("hiscale bench runs");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bench failed: {}\n{printed}",
        String::from_utf8_lossy(&output.stderr)
    );
    printed
}

/// The `hiscale` binary next to this test executable (`target/<profile>/hiscale`).
pub fn hiscale_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let binary = profile_dir.join("hiscale");
    assert!(
        binary.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins` (scripts/test does)",
        binary.display()
    );
    binary
}

/// A free loopback port for a demo's gateway, whose units the demo puts at fixed offsets above
/// it (up to 930): one of ten blocks of 1,000 ports from 10,000, none handed to another demo of
/// this test process, and below both Linux's ephemeral range (32,768 and up) and the OpenAPI
/// suite's demo (21,000 to 29,930). In the ephemeral range, as [`free_port`] gives, any
/// outgoing connection could take a unit's port between the demo's check and the unit's bind:
/// the unit then exits on `EADDRINUSE`, and again at each restart while that connection lives
/// (the demo test's "billing-batch-1 exited 2 times" flake).
pub fn free_demo_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let start = std::process::id() as usize
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos() as usize);
    for attempt in 0..100 {
        let block = (start + attempt) % 10;
        let port = 10_000 + 1_000 * block as u16 + (attempt / 10) as u16;
        let mut given = GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if given.contains(&(block as u16)) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(block as u16);
            return port;
        }
    }
    panic!("no free block of ports below 20,000 for a demo");
}

/// A loopback port nobody listens on right now.
///
/// Never the same port twice in one test process: two tests asking at once could otherwise
/// both be told a port that is free, and the unit that binds it second would fail to start
/// while the first one's answers there (a unit of another test answering as this one).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..1000 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free loopback port");
        let mut given = GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if given.insert(port) {
            return port;
        }
    }
    panic!("no loopback port that was not handed out already");
}
