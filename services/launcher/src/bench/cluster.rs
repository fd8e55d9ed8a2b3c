//! Durable throwaway PostgreSQL clusters the benchmark starts itself: the logical replication
//! reference needs two (publisher with `wal_level = logical`, subscriber), and HiScale's
//! PostgreSQL → PostgreSQL sync runs across the same two, so both sides of the comparison
//! commit with the same settings.
//!
//! Each cluster keeps PostgreSQL's durable defaults (`fsync`, `synchronous_commit`,
//! `full_page_writes` on), listens on a free loopback port and lives in a fresh
//! `/tmp/hiscale-pg.XXXXXX` with an `owner` file as `scripts/lib/pg-cluster.sh` writes it (its
//! reaper leaves the directory alone while this process lives). As root the server commands
//! run as `postgres` (`runuser`), which PostgreSQL requires. Stopped and removed on drop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// How long `initdb`, `pg_ctl start` and `pg_ctl stop` may take.
const SERVER_TIMEOUT_SECS: u64 = 60;

/// A running durable cluster; stopped and deleted when dropped.
#[derive(Debug)]
pub(super) struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    /// The server binaries: `HISCALE_PG_BIN` (read by `main` into the options), else the
    /// newest `/usr/lib/postgresql/*/bin` with an `initdb`; `None` when there are none.
    pub(super) fn find_bin(configured: Option<&Path>) -> Option<PathBuf> {
        if let Some(dir) = configured {
            return dir.join("initdb").exists().then(|| dir.to_owned());
        }
        let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let major: u64 = entry
                    .file_name()
                    .to_str()?
                    .split('.')
                    .next()?
                    .parse()
                    .ok()?;
                let bin = entry.path().join("bin");
                bin.join("initdb").exists().then_some((major, bin))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, bin)| bin)
    }

    /// Creates and starts a durable cluster with extra `postgresql.conf` lines; blocking.
    pub(super) fn start(bin: &Path, name: &str, settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("hiscale-pg.")
            .tempdir_in("/tmp")
            .context("creating a cluster directory under /tmp")?;
        write_owner_file(dir.path())?;
        if as_postgres {
            expect_success(
                Command::new("chown").arg("postgres:").arg(dir.path()),
                "chown the cluster directory to postgres",
            )?;
        }
        let mut cluster = Self {
            dir,
            bin: bin.to_owned(),
            port: 0,
            as_postgres,
        };
        let data = cluster.dir.path().join("data");
        expect_success(
            cluster
                .server_command("initdb")
                .arg("-D")
                .arg(&data)
                .args(["--auth=trust", "-U", "postgres", "-E", "UTF8"])
                .args(["--no-locale", "--no-sync"]),
            "initdb",
        )?;
        let mut block = format!(
            "\n# written by hiscale bench ({name})\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             max_connections = 100\n\
             fsync = on\n\
             synchronous_commit = on\n\
             full_page_writes = on\n",
            cluster.dir.path().display()
        );
        for (setting, value) in settings {
            block.push_str(&format!("{setting} = {value}\n"));
        }
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|listener| listener.local_addr())
            .context("finding a free loopback port")?
            .port();
        block.push_str(&format!("port = {port}\n"));
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut conf| conf.write_all(block.as_bytes()))
            .context("writing postgresql.conf")?;
        cluster.port = port;
        let log = cluster.dir.path().join("postgres.log");
        let started = expect_success(
            cluster
                .server_command("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", &SERVER_TIMEOUT_SECS.to_string(), "start"]),
            "pg_ctl start",
        );
        if let Err(error) = started {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(20).collect();
            cluster.halt();
            bail!(
                "{error:#}\n--- postgres.log (last lines, newest first) ---\n{}",
                tail.join("\n")
            );
        }
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:PORT` (no trailing slash, no database).
    pub(super) fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    pub(super) fn port(&self) -> u16 {
        self.port
    }

    fn server_command(&self, program: &str) -> Command {
        let binary = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(binary);
            command
        } else {
            Command::new(binary)
        };
        command
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::null());
        command
    }

    fn halt(&self) {
        let data = self.dir.path().join("data");
        for mode in ["fast", "immediate"] {
            let stopped = self
                .server_command("pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-m", mode, "-w", "-t", "20", "stop"])
                .output();
            if stopped.is_ok_and(|output| output.status.success()) {
                return;
            }
        }
        eprintln!(
            "bench: could not stop the cluster in {}",
            self.dir.path().display()
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.halt();
        // The TempDir removes the directory after this.
    }
}

/// Runs `command`, failing with its output unless it succeeds (bounded by `pg_ctl -t` and
/// initdb's own speed; nothing here waits on the network).
fn expect_success(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// `PID START_TIME` of this process, as `scripts/lib/pg-cluster.sh` writes it.
fn write_owner_file(dir: &Path) -> anyhow::Result<()> {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces); the start time is field 22.
    let start = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .unwrap_or("0");
    std::fs::write(
        dir.join("owner"),
        format!("{} {start}\n", std::process::id()),
    )
    .context("writing the cluster's owner file")
}

/// Waits for a blocking cluster operation on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("a cluster task panicked")?
}

/// Whether this process runs as root (effective uid 0, from `/proc/self/status`).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|uid| uid == "0")
        })
        .unwrap_or(false)
}
