//! Real unit processes of the `hiscale` binary, as production runs them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::unit_config;

/// A running `hiscale serve` process; killed when dropped.
#[derive(Debug)]
pub struct UnitProcess {
    child: Child,
    pub url: String,
    _config: tempfile::NamedTempFile,
}

impl UnitProcess {
    /// Starts a registration unit on `database` and waits until `/health` says PASS.
    pub async fn start(unit: &str, database: &str) -> Self {
        let port = free_port();
        Self::start_config(unit_config(unit, database, ([127, 0, 0, 1], port).into())).await
    }

    /// Starts a unit of any SA from a full configuration (its `listen` port must be free).
    pub async fn start_config(config: hiscale::UnitConfig) -> Self {
        let port = config.listen.port();
        let mut file = tempfile::NamedTempFile::new().expect("config file");
        std::io::Write::write_all(
            &mut file,
            toml::to_string(&config).expect("toml").as_bytes(),
        )
        .expect("write config");
        let child = Command::new(hiscale_binary())
            .arg("serve")
            .arg("--config")
            .arg(file.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn hiscale serve");
        let process = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _config: file,
        };
        process.wait_healthy().await;
        process
    }

    async fn wait_healthy(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(reply) = client.get(format!("{}/health", self.url)).send().await
                && reply.status().is_success()
            {
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

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}
