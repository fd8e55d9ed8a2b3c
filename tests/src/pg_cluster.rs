//! A PostgreSQL cluster one test owns: started, crashed, stopped and started again at will,
//! unlike the shared throwaway cluster of `scripts/test` (which is not durable and which every
//! test uses at once).
//!
//! The cluster is durable (PostgreSQL's defaults: `fsync`, `synchronous_commit` and
//! `full_page_writes` on), listens on 127.0.0.1 on a free port, trusts every local connection
//! and keeps its socket, data and log in a fresh directory `/tmp/hiscale-pg.XXXXXX`, removed
//! when the cluster is dropped (a panicking test included). The directory holds an `owner` file
//! as `scripts/lib/pg-cluster.sh` writes it, so a cluster left behind by a killed test process
//! is stopped and removed by the next `scripts/test`.
//!
//! PostgreSQL refuses to run as root: as root, the server commands run as the `postgres` user
//! (`runuser -u postgres --`). Binaries come from `HISCALE_PG_BIN` when set, else from the
//! newest `/usr/lib/postgresql/*/bin`. Every method blocks (it runs `pg_ctl`, `psql`, …) and
//! every wait is bounded; from async code, call the slow ones inside
//! `tokio::task::block_in_place`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a start (initdb, recovery after a crash) or a stop may take.
const SERVER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one `psql` statement may take.
const PSQL_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of the server log shown when something fails.
const LOG_TAIL_LINES: usize = 40;

/// A running (or crashed, or stopped) PostgreSQL cluster; stopped and deleted when dropped.
#[derive(Debug)]
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    running: bool,
}

impl PgCluster {
    /// Creates and starts a durable cluster with PostgreSQL's defaults.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// The throwaway cluster of a test process that runs without `scripts/test` (plain
    /// `cargo test`): durability off and 300 connections, as `scripts/test`'s; started once and
    /// left running for the process's other tests, then stopped and removed by a watchdog
    /// that outlives the process (in a session of its own, so an interrupt of `cargo test`
    /// does not take it along). Answers the server URL, as `HISCALE_TEST_POSTGRES` gives it.
    pub fn for_this_process() -> String {
        let cluster = Self::start_with(&[
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("max_connections", "300"),
        ]);
        let url = cluster.server_url();
        let stop = cluster.server_command("pg_ctl");
        let stop = format!(
            "{} -D '{}' -m immediate -w -t 20 stop",
            std::iter::once(stop.get_program())
                .chain(stop.get_args())
                .map(|part| format!("'{}'", part.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(" "),
            cluster.data_dir().display()
        );
        let script = format!(
            "while kill -0 \"$0\" 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; \
             rm -rf '{}'",
            cluster.dir.path().display()
        );
        // `--fork`: setsid's own process ends at once, the watchdog goes on in its session.
        let started = Command::new("setsid")
            .args(["--fork", "sh", "-c", &script])
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("start the watchdog that stops the test process's PostgreSQL");
        assert!(started.success(), "setsid --fork ended {started}");
        eprintln!(
            "tests: HISCALE_TEST_POSTGRES is not set: started a throwaway PostgreSQL at {url} \
             for this test process (stopped when it ends)"
        );
        // The watchdog stops it and removes its directory.
        std::mem::forget(cluster);
        url
    }

    /// Like [`PgCluster::start`], with extra `postgresql.conf` settings (`("name", "value")`,
    /// the value written as given, e.g. `("wal_writer_delay", "'10s'")`).
    pub fn start_with(settings: &[(&str, &str)]) -> Self {
        Self::start_in(settings, &[])
    }

    /// A cluster that offers TLS (`ssl = on`) with `certificate` and its `key` (PEM files,
    /// copied into the cluster's directory, the key readable by the server's user only, as
    /// PostgreSQL demands). Connections without TLS are still accepted: the client's `sslmode`
    /// decides.
    pub fn start_with_ssl(certificate: &Path, key: &Path) -> Self {
        Self::start_in(
            &[
                ("ssl", "on"),
                ("ssl_cert_file", "'{dir}/server.crt'"),
                ("ssl_key_file", "'{dir}/server.key'"),
            ],
            &[("server.crt", certificate), ("server.key", key)],
        )
    }

    /// Starts a cluster with `settings` (`{dir}` in a value stands for the cluster's
    /// directory) and `files` copied into that directory first (`(name, source)`).
    fn start_in(settings: &[(&str, &str)], files: &[(&str, &Path)]) -> Self {
        let bin = bin_dir();
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("hiscale-pg.")
            .tempdir_in("/tmp")
            .expect("a cluster directory under /tmp");
        write_owner_file(dir.path());
        if as_postgres {
            run(
                Command::new("chown").arg("postgres:").arg(dir.path()),
                Duration::from_secs(10),
            )
            .expect_success("chown the cluster directory to postgres");
        }
        for (name, source) in files {
            let target = dir.path().join(name);
            std::fs::copy(source, &target).unwrap_or_else(|error| {
                panic!("copy {} into the cluster: {error}", source.display())
            });
            std::fs::set_permissions(
                &target,
                <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
            )
            .expect("make a cluster file private");
            if as_postgres {
                run(
                    Command::new("chown").arg("postgres:").arg(&target),
                    Duration::from_secs(10),
                )
                .expect_success("chown a cluster file to postgres");
            }
        }
        let mut cluster = Self {
            dir,
            bin,
            port: 0,
            as_postgres,
            running: false,
        };
        let data = cluster.data_dir();
        let initdb = run(
            cluster
                .server_command("initdb")
                .arg("-D")
                .arg(&data)
                .args(["--auth=trust", "-U", "postgres", "-E", "UTF8"])
                .args(["--no-locale", "--no-sync"]),
            SERVER_TIMEOUT,
        );
        initdb.expect_success("initdb");

        let mut conf = OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        let mut block = format!(
            "\n# written by tests/src/pg_cluster.rs\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             max_connections = 200\n\
             fsync = on\n\
             synchronous_commit = on\n\
             full_page_writes = on\n",
            cluster.dir.path().display()
        );
        for (name, value) in settings {
            let value = value.replace("{dir}", &cluster.dir.path().display().to_string());
            block.push_str(&format!("{name} = {value}\n"));
        }
        conf.write_all(block.as_bytes())
            .expect("write postgresql.conf");

        // The port is free when chosen but may be taken before the server binds it: retry.
        for attempt in 1..=5 {
            cluster.port = crate::process::free_port();
            writeln!(conf, "port = {}", cluster.port).expect("write the port");
            let _ = std::fs::remove_file(cluster.log_path());
            match cluster.try_start() {
                Ok(()) => return cluster,
                Err(report) => {
                    let taken = cluster.log_tail(LOG_TAIL_LINES).contains("could not bind");
                    if !(taken && attempt < 5) {
                        panic!("PostgreSQL did not start: {report}");
                    }
                    cluster.halt();
                }
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// The loopback port the cluster listens on (the same after every restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/`, for `hiscale::store::ensure_postgres_database`.
    pub fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/", self.port)
    }

    /// Creates database `name` (plain lower-case name) when missing; returns its URL.
    pub async fn database(&self, name: &str) -> String {
        hiscale::store::ensure_postgres_database(&self.server_url(), name)
            .await
            .unwrap_or_else(|error| panic!("create database {name}: {error}"))
    }

    /// The cluster's directory (data in `data/`, log in `postgres.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the server was started and not crashed or stopped since.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Crashes the server: `pg_ctl stop -m immediate` ends every process at once, without a
    /// shutdown checkpoint; the next start runs crash recovery from the WAL.
    pub fn crash(&mut self) {
        self.pg_ctl_stop("immediate");
    }

    /// Stops the server cleanly (`-m fast`: sessions are ended, then a shutdown checkpoint).
    pub fn stop(&mut self) {
        self.pg_ctl_stop("fast");
    }

    /// Starts a crashed or stopped server again, on the same port and data directory, and
    /// waits until it accepts connections.
    pub fn start_again(&mut self) {
        assert!(
            !self.running,
            "the cluster on port {} is running",
            self.port
        );
        if let Err(report) = self.try_start() {
            panic!("PostgreSQL did not start again: {report}");
        }
    }

    /// Stops the server cleanly and starts it again.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Runs `sql` in `database` with `psql` (stops at the first error) and returns what it
    /// printed (unaligned, tuples only), e.g. `cluster.psql("CHECKPOINT", "postgres")`.
    pub fn psql(&self, sql: &str, database: &str) -> String {
        let output = run(
            Command::new(self.bin.join("psql"))
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
                .args(["-h", "127.0.0.1", "-U", "postgres"])
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-d")
                .arg(database)
                .arg("-c")
                .arg(sql)
                .env("PGCONNECT_TIMEOUT", "10"),
            PSQL_TIMEOUT,
        );
        if !output.success {
            panic!(
                "psql {sql:?} on {database} (port {}) failed: {}\n--- postgres.log ---\n{}",
                self.port,
                output.describe(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        output.stdout
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// `pg_ctl start`, then `pg_isready` until it answers.
    fn try_start(&mut self) -> Result<(), String> {
        let started = run(
            self.server_command("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t"])
                .arg(SERVER_TIMEOUT.as_secs().to_string())
                .arg("start"),
            SERVER_TIMEOUT + Duration::from_secs(5),
        );
        // Whatever pg_ctl says, a postmaster may be running now: Drop must stop it.
        self.running = true;
        if !started.success {
            return Err(format!(
                "pg_ctl start on port {}: {}\n--- postgres.log ---\n{}",
                self.port,
                started.describe(),
                self.log_tail(LOG_TAIL_LINES)
            ));
        }
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            let ready = run(
                Command::new(self.bin.join("pg_isready"))
                    .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
                    .args(["-t", "5", "-p"])
                    .arg(self.port.to_string()),
                Duration::from_secs(10),
            );
            if ready.success {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "PostgreSQL on port {} is not ready after {SERVER_TIMEOUT:?}\n--- postgres.log ---\n{}",
                    self.port,
                    self.log_tail(LOG_TAIL_LINES)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pg_ctl_stop(&mut self, mode: &str) {
        assert!(
            self.running,
            "the cluster on port {} is not running",
            self.port
        );
        let stopped = run(
            self.server_command("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", mode, "-w", "-t"])
                .arg(SERVER_TIMEOUT.as_secs().to_string())
                .arg("stop"),
            SERVER_TIMEOUT + Duration::from_secs(5),
        );
        if !stopped.success {
            panic!(
                "pg_ctl stop -m {mode} on port {}: {}\n--- postgres.log ---\n{}",
                self.port,
                stopped.describe(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        self.running = false;
    }

    /// Stops the server however it can, never panicking (for Drop and start retries).
    fn halt(&mut self) {
        let data = self.data_dir();
        let stopped = run(
            self.server_command("pg_ctl").arg("-D").arg(&data).args([
                "-m",
                "immediate",
                "-w",
                "-t",
                "20",
                "stop",
            ]),
            Duration::from_secs(25),
        );
        if !stopped.success {
            // Last resort: the postmaster's PID is the first line of postmaster.pid.
            let pid = std::fs::read_to_string(data.join("postmaster.pid"))
                .ok()
                .and_then(|text| text.lines().next().map(str::to_owned))
                .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()) && !pid.is_empty());
            if let Some(pid) = pid {
                let _ = run(
                    Command::new("kill").args(["-KILL", &pid]),
                    Duration::from_secs(5),
                );
            }
        }
        self.running = false;
    }

    /// A server binary, run as `postgres` when we are root, in the cluster's directory.
    fn server_command(&self, program: &str) -> Command {
        let binary = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(binary);
            command
        } else {
            Command::new(binary)
        };
        command.current_dir(self.dir.path()).env("LC_ALL", "C");
        command
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            self.halt();
        }
        // The TempDir removes the directory after this.
    }
}

/// `HISCALE_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin` that has `initdb`.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("HISCALE_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").exists(),
            "HISCALE_PG_BIN={} has no initdb",
            dir.display()
        );
        return dir;
    }
    let mut found: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: Option<Vec<u64>> = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect();
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version?, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): install them with \
             `bash -c 'source scripts/lib/ensure-packages.sh; ensure_postgres_binaries'` or set \
             HISCALE_PG_BIN"
        )
    })
}

fn running_as_root() -> bool {
    run(Command::new("id").arg("-u"), Duration::from_secs(10))
        .expect_success("id -u")
        .trim()
        == "0"
}

/// `PID START_TIME` of this process, as `scripts/lib/pg-cluster.sh` writes it: its reaper
/// leaves the directory alone while this process lives and cleans it up once it is gone.
fn write_owner_file(dir: &Path) {
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
    .expect("write the owner file");
}

/// What a command did.
struct Output {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl Output {
    fn describe(&self) -> String {
        format!(
            "{}; stdout: {}; stderr: {}",
            self.status,
            self.stdout.trim(),
            self.stderr.trim()
        )
    }

    fn expect_success(self, what: &str) -> String {
        assert!(self.success, "{what} failed: {}", self.describe());
        self.stdout
    }
}

/// Runs a command to its end, killing it after `timeout`. Its output goes to files, not pipes,
/// so a server it leaves running (pg_ctl start) cannot hold us up.
fn run(command: &mut Command, timeout: Duration) -> Output {
    let stdout = tempfile::tempfile().expect("a file for stdout");
    let stderr = tempfile::tempfile().expect("a file for stderr");
    let described = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().expect("clone the stdout file"))
        .stderr(stderr.try_clone().expect("clone the stderr file"))
        .spawn()
        .unwrap_or_else(|error| panic!("could not run {described}: {error}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("killed after {timeout:?}"));
            }
            Err(error) => break Err(format!("could not wait: {error}")),
        }
    };
    let read = |mut file: File| {
        use std::io::{Read, Seek};
        let mut text = String::new();
        let _ = file.seek(std::io::SeekFrom::Start(0));
        let _ = file.read_to_string(&mut text);
        text
    };
    Output {
        success: status.as_ref().is_ok_and(|status| status.success()),
        status: match status {
            Ok(status) => format!("{described}: {status}"),
            Err(problem) => format!("{described}: {problem}"),
        },
        stdout: read(stdout),
        stderr: read(stderr),
    }
}
