//! Runs each unit of the demo as its own `hiscale serve` process and keeps it running: a unit
//! that dies is restarted, so a demo user can kill one and watch its peer take over and the
//! killed one come back.
//!
//! The supervisor writes each unit's planned configuration (its address was chosen up front,
//! so a restarted unit comes back where the gateway and its backup expect it), waits for
//! `/health` to say `PASS`, keeps `units.json` current and stops every unit with SIGTERM
//! (SIGKILL after a grace period) when the demo ends.
//!
//! An operator can also stop a whole service area and keep it stopped ([`Holds`], reached
//! through the gateway's `/admin/held/{sa}`), to see what the landscape and the GUI do while
//! an SA is gone; releasing it starts its units again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use hiscale::config::UnitKind;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::files;
use super::plan::UnitPlan;
use super::units_file::{UnitEntry, UnitsFile};

/// What the supervisor runs and where it keeps its files.
#[derive(Debug)]
pub struct Options {
    /// The `hiscale` binary; units run as `hiscale serve --config FILE`.
    pub executable: PathBuf,
    /// Absolute data directory: `units/*.toml` and `units.json` go there.
    pub data_dir: PathBuf,
    pub units: Vec<UnitPlan>,
}

/// The running units; dropping it kills them (`kill_on_drop`), [`Supervisor::shutdown`] stops
/// them gracefully.
pub struct Supervisor {
    executable: Arc<Path>,
    units: Vec<Arc<UnitProcess>>,
    units_file: Arc<Mutex<UnitsFile>>,
    stopping: watch::Sender<bool>,
    watchers: JoinSet<()>,
    health_client: reqwest::Client,
    holds: Holds,
}

/// Which service areas an operator has stopped and holds stopped; cheap to clone, shared with
/// the gateway's operator endpoint and every unit's watcher.
#[derive(Clone)]
pub struct Holds {
    by_sa: Arc<BTreeMap<String, watch::Sender<bool>>>,
}

/// `hold` or `release` named a service area the demo does not run.
#[derive(Debug, thiserror::Error)]
#[error("the demo runs no service area named {0:?}")]
pub struct UnknownServiceArea(String);

impl Holds {
    fn new<'a>(service_areas: impl IntoIterator<Item = &'a str>) -> Self {
        let by_sa = service_areas
            .into_iter()
            .map(|sa| (sa.to_owned(), watch::Sender::new(false)))
            .collect();
        Self {
            by_sa: Arc::new(by_sa),
        }
    }

    /// Stops every unit of `sa` (SIGTERM, as at the demo's end) and keeps them stopped.
    pub fn hold(&self, sa: &str) -> Result<(), UnknownServiceArea> {
        self.set(sa, true)
    }

    /// Lets the units of `sa` start again.
    pub fn release(&self, sa: &str) -> Result<(), UnknownServiceArea> {
        self.set(sa, false)
    }

    /// Every service area and whether it is held.
    pub fn states(&self) -> Vec<(String, bool)> {
        self.by_sa
            .iter()
            .map(|(sa, held)| (sa.clone(), *held.borrow()))
            .collect()
    }

    fn set(&self, sa: &str, held: bool) -> Result<(), UnknownServiceArea> {
        let sender = self
            .by_sa
            .get(sa)
            .ok_or_else(|| UnknownServiceArea(sa.to_owned()))?;
        if sender.send_replace(held) != held {
            tracing::info!(sa, held, "an operator changed the hold of the service area");
        }
        Ok(())
    }

    fn watch(&self, sa: &str) -> watch::Receiver<bool> {
        self.by_sa
            .get(sa)
            .map(watch::Sender::subscribe)
            .unwrap_or_else(|| watch::Sender::new(false).subscribe())
    }
}

impl Supervisor {
    /// Writes every unit's configuration to `units/{unit}.toml` (mode 0600: it holds the
    /// tokens and, for login, the signing key); starts nothing yet.
    pub fn new(options: Options) -> anyhow::Result<Self> {
        let config_dir = options.data_dir.join("units");
        std::fs::create_dir_all(&config_dir)
            .with_context(|| format!("cannot create {}", config_dir.display()))?;
        let mut units = Vec::with_capacity(options.units.len());
        let mut entries = Vec::with_capacity(options.units.len());
        for UnitPlan { role, config } in options.units {
            let config_path = config_dir.join(format!("{}.toml", config.unit));
            let text = toml::to_string(&config).with_context(|| {
                format!("cannot serialize the configuration of {}", config.unit)
            })?;
            files::write_atomically(&config_path, text.as_bytes(), files::PRIVATE)?;
            entries.push(UnitEntry {
                sa: config.sa.clone(),
                unit: config.unit.clone(),
                pid: 0,
                url: format!("http://{}", config.listen),
                role,
                kind: config.kind,
            });
            units.push(Arc::new(UnitProcess {
                kind: config.kind,
                sa: config.sa,
                name: config.unit,
                address: config.listen,
                config_path,
                database: config.database,
                exits: AtomicU32::new(0),
            }));
        }
        let health_client = hiscale::tls::client_builder()
            .no_proxy()
            .timeout(HEALTH_REQUEST_TIMEOUT)
            .build()
            .context("cannot build the HTTP client for health checks")?;
        let holds = Holds::new(units.iter().map(|unit: &Arc<UnitProcess>| unit.sa.as_str()));
        Ok(Self {
            holds,
            executable: Arc::from(options.executable),
            units,
            units_file: Arc::new(Mutex::new(UnitsFile::new(&options.data_dir, entries))),
            stopping: watch::Sender::new(false),
            watchers: JoinSet::new(),
            health_client,
        })
    }

    /// Starts every unit and waits until each one's `/health` says `PASS`.
    ///
    /// The first unit of each service area starts alone, so that it alone prepares (migrates)
    /// the database the others then share; the rest follow once it is healthy.
    pub async fn start(&mut self, health_timeout: Duration) -> anyhow::Result<()> {
        let (first, rest): (Vec<_>, Vec<_>) =
            self.units
                .iter()
                .cloned()
                .enumerate()
                .partition(|(index, unit)| {
                    self.units[..*index]
                        .iter()
                        .all(|earlier| earlier.sa != unit.sa)
                });
        for stage in [first, rest] {
            let stage: Vec<_> = stage.into_iter().map(|(_, unit)| unit).collect();
            for unit in &stage {
                self.launch(unit)?;
            }
            self.wait_healthy(&stage, health_timeout).await?;
        }
        Ok(())
    }

    /// The operator's holds on whole service areas, for the gateway's `/admin/held/{sa}`.
    pub fn holds(&self) -> Holds {
        self.holds.clone()
    }

    /// The loopback addresses of a service area's units, for the gateway.
    pub fn addresses_of(&self, sa: &str) -> Vec<SocketAddr> {
        self.units
            .iter()
            .filter(|unit| unit.sa == sa && unit.kind == UnitKind::Service)
            .map(|unit| unit.address)
            .collect()
    }

    /// The database URL a service area's units share.
    pub fn database_of(&self, sa: &str) -> Option<String> {
        self.units
            .iter()
            .find(|unit| unit.sa == sa)
            .map(|unit| unit.database.clone())
    }

    /// Every unit as `units.json` lists it, with its current process id.
    pub fn units(&self) -> Vec<UnitEntry> {
        lock(&self.units_file).entries()
    }

    /// Sends SIGTERM to every unit, SIGKILL to those still running after a grace period, waits
    /// for all of them and removes `units.json`.
    pub async fn shutdown(mut self) {
        self.stopping.send_replace(true);
        while let Some(outcome) = self.watchers.join_next().await {
            if let Err(error) = outcome {
                tracing::error!("a unit watcher failed: {error}");
            }
        }
        if let Err(error) = lock(&self.units_file).remove() {
            tracing::warn!("{error:#}");
        }
    }

    /// Spawns `unit`'s process and a task that restarts it until the demo stops.
    fn launch(&mut self, unit: &Arc<UnitProcess>) -> anyhow::Result<()> {
        let child = spawn(&self.executable, unit)?;
        record_pid(&self.units_file, unit, &child)?;
        tracing::info!(unit = %unit.name, pid = child.id(), "started unit on {}", unit.address);
        self.watchers.spawn(supervise(
            child,
            Arc::clone(unit),
            Arc::clone(&self.executable),
            Arc::clone(&self.units_file),
            Signals {
                stopping: self.stopping.subscribe(),
                held: self.holds.watch(&unit.sa),
            },
        ));
        Ok(())
    }

    /// Polls every unit's `/health` until each has said `PASS`; fails naming the first unit
    /// that has not by the deadline.
    async fn wait_healthy(
        &self,
        units: &[Arc<UnitProcess>],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut checks = JoinSet::new();
        for unit in units {
            checks.spawn(wait_until_healthy(
                self.health_client.clone(),
                Arc::clone(unit),
                deadline,
            ));
        }
        while let Some(outcome) = checks.join_next().await {
            outcome.context("a health check task failed")??;
        }
        Ok(())
    }
}

/// How long a unit has to stop after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The pause before a unit that died is started again. Long enough for a reading unit's
/// backup to notice its primary is gone (three missed heartbeats a second apart) and be seen
/// polling in its place; short enough to watch the killed unit come back and the backup step
/// back. An owner's peer simply serves alone meanwhile (the gateway skips the dead unit).
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
/// The longest pause between restarts of a unit that keeps dying.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A unit that ran at least this long before dying counts as healthy again: its next restart
/// waits only [`FIRST_BACKOFF`].
const STABLE_RUN: Duration = Duration::from_secs(10);
/// How long a unit's exit goes unreported: Ctrl-C in a terminal reaches the units too, and by
/// then the demo has noticed that it is stopping, so a normal stop is not reported as a crash.
const STOP_NOTICE: Duration = Duration::from_millis(500);
/// One health request; a unit that needs longer is not ready.
const HEALTH_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const HEALTH_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// What the supervisor knows about one unit, shared with the task that watches it.
struct UnitProcess {
    kind: UnitKind,
    sa: String,
    name: String,
    address: SocketAddr,
    config_path: PathBuf,
    database: String,
    /// How often the unit died while the demo ran, for a clearer startup error.
    exits: AtomicU32,
}

fn spawn(executable: &Path, unit: &UnitProcess) -> anyhow::Result<Child> {
    Command::new(executable)
        .arg("serve")
        .arg("--config")
        .arg(&unit.config_path)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start unit {} ({})", unit.name, executable.display()))
}

fn record_pid(
    units_file: &Mutex<UnitsFile>,
    unit: &UnitProcess,
    child: &Child,
) -> anyhow::Result<()> {
    let Some(pid) = child.id() else {
        bail!("unit {} exited before its pid could be read", unit.name);
    };
    lock(units_file).set_pid(&unit.name, pid)
}

/// What a unit's watcher listens to besides its process: the demo stopping, and the
/// operator's hold on the unit's service area.
struct Signals {
    stopping: watch::Receiver<bool>,
    held: watch::Receiver<bool>,
}

/// Keeps one unit running until the demo stops, then stops it.
///
/// A unit that exits while the demo runs is reported and restarted after a backoff that
/// doubles while it keeps dying quickly. While its service area is held, the unit is stopped
/// and not restarted; when released, it starts at once.
async fn supervise(
    mut child: Child,
    unit: Arc<UnitProcess>,
    executable: Arc<Path>,
    units_file: Arc<Mutex<UnitsFile>>,
    signals: Signals,
) {
    let Signals {
        mut stopping,
        mut held,
    } = signals;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started_at = Instant::now();
        let status = tokio::select! {
            status = child.wait() => status,
            () = stop_requested(&mut stopping) => {
                stop(&mut child, &unit.name).await;
                return;
            }
            () = hold_requested(&mut held) => {
                stop(&mut child, &unit.name).await;
                tracing::info!(unit = %unit.name, "unit stopped and held by an operator");
                if wait_released(&mut held, &mut stopping).await.is_break() {
                    return;
                }
                match spawn(&executable, &unit) {
                    Ok(restarted) => child = restarted,
                    Err(error) => {
                        // The crash path below retries with backoff; a child that already
                        // exited makes it go there at once.
                        tracing::error!(unit = %unit.name, "{error:#}");
                        continue;
                    }
                }
                match record_pid(&units_file, &unit, &child) {
                    Ok(()) => tracing::info!(unit = %unit.name, pid = child.id(), "released unit started"),
                    Err(error) => tracing::warn!(unit = %unit.name, "{error:#}"),
                }
                continue;
            }
        };
        unit.exits.fetch_add(1, Ordering::Relaxed);
        if started_at.elapsed() >= STABLE_RUN {
            backoff = FIRST_BACKOFF;
        }
        if pause_unless_stopping(STOP_NOTICE, &mut stopping)
            .await
            .is_break()
        {
            return;
        }
        let what = match status {
            Ok(status) => format!("unit {}", describe(status)),
            Err(error) => format!("lost track of the unit ({error})"),
        };
        tracing::warn!(unit = %unit.name, "{what}; restarting it in {backoff:?}");
        let mut pause = backoff.saturating_sub(STOP_NOTICE);
        loop {
            if pause_unless_stopping(pause, &mut stopping).await.is_break()
                || wait_released(&mut held, &mut stopping).await.is_break()
            {
                return;
            }
            backoff = next_backoff(backoff);
            match spawn(&executable, &unit) {
                Ok(restarted) => {
                    child = restarted;
                    break;
                }
                Err(error) => {
                    tracing::error!(unit = %unit.name, "{error:#}; trying again in {backoff:?}");
                    pause = backoff;
                }
            }
        }
        match record_pid(&units_file, &unit, &child) {
            Ok(()) => tracing::info!(unit = %unit.name, pid = child.id(), "restarted unit"),
            Err(error) => tracing::warn!(unit = %unit.name, "{error:#}"),
        }
    }
}

/// Sleeps for `pause`; breaks early when the demo starts stopping.
async fn pause_unless_stopping(
    pause: Duration,
    stopping: &mut watch::Receiver<bool>,
) -> std::ops::ControlFlow<()> {
    tokio::select! {
        () = tokio::time::sleep(pause) => std::ops::ControlFlow::Continue(()),
        () = stop_requested(stopping) => std::ops::ControlFlow::Break(()),
    }
}

/// Completes once the demo is stopping (or the supervisor is gone, which means the same).
async fn stop_requested(stopping: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped at once: holding it across an await would make
    // the watcher task not `Send`.
    let _ = stopping.wait_for(|stopping| *stopping).await;
}

/// Completes once an operator holds the unit's service area.
async fn hold_requested(held: &mut watch::Receiver<bool>) {
    if held.wait_for(|held| *held).await.is_err() {
        // The holds are gone only with the supervisor; then nobody will hold again.
        std::future::pending::<()>().await;
    }
}

/// Returns at once unless the service area is held; else waits for its release. Breaks when
/// the demo starts stopping meanwhile.
async fn wait_released(
    held: &mut watch::Receiver<bool>,
    stopping: &mut watch::Receiver<bool>,
) -> std::ops::ControlFlow<()> {
    tokio::select! {
        released = held.wait_for(|held| !*held) => {
            if released.is_err() {
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        }
        () = stop_requested(stopping) => std::ops::ControlFlow::Break(()),
    }
}

/// SIGTERM, then SIGKILL if the unit is still running after [`STOP_GRACE`].
async fn stop(child: &mut Child, name: &str) {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        // The unit may have exited on its own a moment ago (Ctrl-C reaches it too); then there
        // is nobody to signal and waiting below collects its status.
        if let Err(error) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
            tracing::debug!(unit = %name, "cannot send SIGTERM: {error}");
        }
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(Ok(status)) => tracing::info!(unit = %name, "unit stopped ({status})"),
        Ok(Err(error)) => tracing::warn!(unit = %name, "cannot wait for the unit: {error}"),
        Err(_) => {
            tracing::warn!(unit = %name, "unit still running {STOP_GRACE:?} after SIGTERM; killing it");
            if let Err(error) = child.kill().await {
                tracing::warn!(unit = %name, "cannot kill the unit: {error}");
            }
        }
    }
}

/// Polls one unit's `/health` until it answers `200 PASS` or the deadline passes.
async fn wait_until_healthy(
    client: reqwest::Client,
    unit: Arc<UnitProcess>,
    deadline: Instant,
) -> anyhow::Result<()> {
    let url = format!("http://{}/health", unit.address);
    loop {
        let last_answer = match client.get(&url).send().await {
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                if status == reqwest::StatusCode::OK && body.starts_with("PASS") {
                    tracing::info!(unit = %unit.name, "unit is healthy");
                    return Ok(());
                }
                format!("{status}: {}", body.trim())
            }
            Err(error) => error.to_string(),
        };
        if Instant::now() >= deadline {
            let exits = unit.exits.load(Ordering::Relaxed);
            let exits = match exits {
                0 => String::new(),
                1 => "; it exited once, see its log above".to_owned(),
                n => format!("; it exited {n} times, see its log above"),
            };
            bail!(
                "unit {} did not report PASS on {url} in time (last answer: {last_answer}){exits}",
                unit.name
            );
        }
        tokio::time::sleep(HEALTH_POLL_INTERVAL).await;
    }
}

fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(MAX_BACKOFF)
}

fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => format!("ended ({status})"),
    }
}

/// The units file is only ever replaced whole, so a panic elsewhere cannot have left it half
/// changed: a poisoned lock is still safe to use.
fn lock(units_file: &Mutex<UnitsFile>) -> std::sync::MutexGuard<'_, UnitsFile> {
    units_file.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let mut backoff = FIRST_BACKOFF;
        let mut seen = vec![backoff];
        for _ in 0..5 {
            backoff = next_backoff(backoff);
            seen.push(backoff);
        }
        let expected = [10, 20, 40, 60, 60, 60].map(Duration::from_secs);
        assert_eq!(seen, expected);
    }
}
