//! The demo as a newcomer runs it: a real `hiscale demo` process with its gateway and its eight
//! unit processes, and the files it writes for scripts (`tokens.json`, `units.json`).
//!
//! [`Demo`] is also the clean-up guard: dropping it stops the demo (SIGTERM, then SIGKILL) and
//! kills every unit process it was ever seen running, so a failed test leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::process::hiscale_binary;

/// What the demo prints once everything is up, the sample is loaded and the copies caught up.
pub const RUNNING_LINE: &str = "HiScale REST demo is running.";
/// Units in the demo landscape: four service areas with two units each.
pub const UNITS: usize = 10;

/// One element of `units.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct UnitEntry {
    pub sa: String,
    pub unit: String,
    pub pid: u32,
    pub url: String,
    pub role: String,
}

/// `tokens.json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    pub admin: String,
    pub login: String,
    pub shop: String,
    pub billing: String,
    /// The owner's token at its peers (it reads their copies back after a rollback).
    pub registration: String,
}

/// A running `hiscale demo`; stopped, with all its units, when dropped.
#[derive(Debug)]
pub struct Demo {
    child: Child,
    data_dir: PathBuf,
    port: u16,
    logs: tempfile::TempDir,
    /// Every unit pid seen in `units.json`, for the clean-up in [`Drop`].
    seen_pids: Mutex<Vec<u32>>,
}

impl Demo {
    /// Runs `hiscale demo --port PORT --data-dir DATA_DIR ARGS…` and waits (at most `within`)
    /// until it prints that it is running, `units.json` lists all eight units and the gateway
    /// answers.
    pub async fn start(data_dir: &Path, port: u16, args: &[&str], within: Duration) -> Self {
        let logs = tempfile::tempdir().expect("a directory for the demo's output");
        let stdout = std::fs::File::create(logs.path().join("stdout")).expect("stdout file");
        let stderr = std::fs::File::create(logs.path().join("stderr")).expect("stderr file");
        let child = Command::new(hiscale_binary())
            .arg("demo")
            .arg("--port")
            .arg(port.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn hiscale demo");
        let demo = Self {
            child,
            data_dir: data_dir.to_owned(),
            port,
            logs,
            seen_pids: Mutex::new(Vec::new()),
        };
        demo.wait_running(within).await;
        demo
    }

    async fn wait_running(&self, within: Duration) {
        let client = client();
        let deadline = Instant::now() + within;
        loop {
            let printed = self.stdout().contains(RUNNING_LINE);
            let units = self.try_units().map_or(0, |units| units.len());
            let gateway = match client
                .get(format!("{}/registration/health", self.url()))
                .send()
                .await
            {
                Ok(reply) => reply.status().to_string(),
                Err(error) => error.to_string(),
            };
            if printed && units == UNITS && gateway.starts_with("200") {
                return;
            }
            self.assert_alive();
            assert!(
                Instant::now() < deadline,
                "the demo was not running after {within:?} (summary printed: {printed}, units \
                 in units.json: {units}, gateway's /registration/health: {gateway})\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The gateway's base URL, e.g. `http://127.0.0.1:8080`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The demo process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `units.json` as it is now; fails when it is missing or unreadable.
    pub fn units(&self) -> Vec<UnitEntry> {
        self.try_units().unwrap_or_else(|| {
            panic!(
                "{} is missing or not a list of units\n{}",
                self.units_path().display(),
                self.output()
            )
        })
    }

    /// `units.json` as it is now, or `None` when it does not exist (yet, or any more).
    pub fn try_units(&self) -> Option<Vec<UnitEntry>> {
        let text = std::fs::read(self.units_path()).ok()?;
        let units: Vec<UnitEntry> = serde_json::from_slice(&text).ok()?;
        lock(&self.seen_pids).extend(units.iter().map(|unit| unit.pid));
        Some(units)
    }

    /// The current entry of one unit in `units.json`.
    pub fn unit(&self, name: &str) -> UnitEntry {
        self.units()
            .into_iter()
            .find(|unit| unit.unit == name)
            .unwrap_or_else(|| panic!("units.json lists no {name}"))
    }

    pub fn units_path(&self) -> PathBuf {
        self.data_dir.join("units.json")
    }

    /// `tokens.json`.
    pub fn tokens(&self) -> Tokens {
        let path = self.data_dir.join("tokens.json");
        let text = std::fs::read(&path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        serde_json::from_slice(&text)
            .unwrap_or_else(|error| panic!("{} is not the tokens: {error}", path.display()))
    }

    /// Sends SIGTERM and waits (at most `within`) for the demo to exit.
    pub async fn stop(&mut self, within: Duration) -> ExitStatus {
        signal(self.pid(), "TERM");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the demo") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the demo still ran {within:?} after SIGTERM\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails, with the demo's output, when the demo process has exited.
    pub fn assert_alive(&self) {
        // `try_wait` needs `&mut`; the process table answers the same question.
        assert!(is_running(self.pid()), "the demo exited\n{}", self.output());
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stdout")).unwrap_or_default()
    }

    /// The end of what the demo and its units printed, for failure messages.
    pub fn output(&self) -> String {
        let stderr = std::fs::read_to_string(self.logs.path().join("stderr")).unwrap_or_default();
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        // Why a unit stopped is said long before the tail: every line that says it, first.
        let causes: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|line| {
                (line.contains("ERROR") && !line.contains("hiscale::poller"))
                    || line.contains("exited")
                    || line.contains("panicked")
            })
            .take(60)
            .collect();
        format!(
            "--- demo stdout ---\n{}\n--- demo stderr: errors and exits ---\n{}\n\
             --- demo stderr (last 40 lines) ---\n{tail}",
            self.stdout(),
            causes.join("\n")
        )
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // Whatever units.json says now joins the pids seen before.
        let _ = self.try_units();
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.pid(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for pid in lock(&self.seen_pids).iter().copied() {
            // Only a `hiscale serve` still running under that pid: never someone who got the
            // number after the unit was gone.
            if is_running(pid) && is_unit_process(pid) {
                signal(pid, "KILL");
            }
        }
    }
}

/// An HTTP client that never goes through a proxy and never waits long.
pub fn client() -> reqwest::Client {
    hiscale::tls::client_builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// Whether `pid` is a live process (a zombie, dead but not yet reaped, does not count).
pub fn is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) state …`, where comm may hold anything, even parentheses.
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

/// Whether `pid` runs `hiscale serve`.
fn is_unit_process(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
    args.first()
        .is_some_and(|program| program.ends_with(b"hiscale"))
        && args.get(1).is_some_and(|command| *command == b"serve")
}

/// Sends `SIGNAL` (`TERM`, `KILL`, …) to `pid` with kill(1); a process already gone is fine.
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg("-s")
        .arg(name)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The pid list is only ever extended, so a panic elsewhere cannot have left it half changed.
fn lock(pids: &Mutex<Vec<u32>>) -> std::sync::MutexGuard<'_, Vec<u32>> {
    pids.lock().unwrap_or_else(PoisonError::into_inner)
}
