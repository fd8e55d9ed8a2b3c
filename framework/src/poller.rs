//! The poller: keeps a copy by following the source's delta feed, chunk by chunk, with the
//! cursor stored in the same transaction as the data. A backup unit watches the primary's
//! heartbeat and polls only while the primary is gone.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{ReaderConfig, ReaderRole, SourceConfig};
use crate::http::AppState;
use crate::model::Collection;
use crate::repr;
use crate::store::{ChunkAspect, ChunkItem};
use crate::version::{ResourceId, Version};

/// What `/admin/replication` shows, shared between the pollers and the HTTP edge.
#[derive(Debug, Clone, Default)]
pub struct Replication {
    sources: Arc<Mutex<BTreeMap<String, SourceStatus>>>,
}

/// One source as its poller last saw it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStatus {
    pub collection: String,
    pub url: String,
    pub aspects: String,
    pub role: String,
    /// `polling`, `standing-by`, `resyncing` or `failing`.
    pub state: String,
    pub cursor: i64,
    pub chunks_applied: u64,
    pub items_applied: u64,
    /// Seconds since the copy was last caught up with its source.
    pub lag_seconds: f64,
    pub last_error: Option<String>,
}

impl Replication {
    pub fn snapshot(&self) -> Vec<SourceStatus> {
        self.lock().values().cloned().collect()
    }

    fn update(&self, collection: &str, change: impl FnOnce(&mut SourceStatus)) {
        let mut sources = self.lock();
        change(sources.entry(collection.to_owned()).or_default());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SourceStatus>> {
        match self.sources.lock() {
            Ok(sources) => sources,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Errors from the first request on: doubled per failure up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Starts one poller per configured source and, on a backup, the heartbeat watcher.
pub fn spawn(
    state: AppState,
    sources: Vec<SourceConfig>,
    reader: ReaderConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let active = Arc::new(AtomicBool::new(reader.role == ReaderRole::Primary));
    let mut tasks = Vec::new();
    if reader.role == ReaderRole::Backup {
        tasks.push(tokio::spawn(watch_primary(
            reader.clone(),
            active.clone(),
            shutdown.clone(),
        )));
    }
    for source in sources {
        let Some(collection) = state
            .service_area()
            .copied()
            .iter()
            .find(|collection| collection.name() == source.collection)
            .cloned()
        else {
            tracing::error!(collection = %source.collection, "a source names a collection this SA does not copy");
            continue;
        };
        let role = match reader.role {
            ReaderRole::Primary => "primary",
            ReaderRole::Backup => "backup",
        };
        let poller = Poller {
            state: state.clone(),
            collection,
            source,
            role,
            active: active.clone(),
        };
        tasks.push(tokio::spawn(poller.run(shutdown.clone())));
    }
    tasks
}

struct Poller {
    state: AppState,
    collection: Collection,
    source: SourceConfig,
    role: &'static str,
    active: Arc<AtomicBool>,
}

/// What one poll led to.
enum Outcome {
    /// Applied a chunk; `more` says whether to ask again at once.
    Applied { more: bool },
    /// The source no longer has tombstones we need: re-read from 0.
    ResyncRequired,
}

impl Poller {
    async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let name = self.collection.name().to_owned();
        self.state.replication().update(&name, |status| {
            status.collection = name.clone();
            status.url = self.source.url.clone();
            status.aspects = self.source.aspects.clone();
            status.role = self.role.to_owned();
        });
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(self.source.wait_secs + 30))
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "cannot build the HTTP client of a poller");
                return;
            }
        };
        let stored_cursor = self
            .state
            .store()
            .cursor(&name)
            .await
            .map_or(0, Version::get);
        self.status(|status| status.cursor = stored_cursor);
        let mut backoff = Duration::from_millis(500);
        let mut resync: Option<Resync> = None;
        let mut caught_up_at = Instant::now();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let pause = if !self.active.load(Ordering::Relaxed) {
                self.status(|status| status.state = "standing-by".into());
                Duration::from_millis(500)
            } else {
                // Active from now on, even while the first long poll is still out.
                self.status(|status| {
                    if status.state != "failing" && status.state != "resyncing" {
                        status.state = "polling".into();
                    }
                });
                match self.poll_once(&client, resync.as_mut()).await {
                    Ok(Outcome::Applied { more }) => {
                        backoff = Duration::from_millis(500);
                        if !more {
                            caught_up_at = Instant::now();
                            if let Some(finished) = resync.take() {
                                self.finish_resync(&finished).await;
                            }
                        }
                        let lag = caught_up_at.elapsed().as_secs_f64();
                        metrics::gauge!("hiscale_replication_lag_seconds", "collection" => name.clone()).set(lag);
                        self.status(|status| {
                            status.state = if resync.is_some() {
                                "resyncing"
                            } else {
                                "polling"
                            }
                            .into();
                            status.lag_seconds = lag;
                            status.last_error = None;
                        });
                        if more || self.source.wait_secs > 0 {
                            Duration::ZERO
                        } else {
                            with_jitter(Duration::from_secs(self.source.interval_secs))
                        }
                    }
                    Ok(Outcome::ResyncRequired) => {
                        tracing::warn!(collection = %name, "source requires a resync: re-reading from version 0");
                        resync = Some(Resync::default());
                        self.status(|status| status.state = "resyncing".into());
                        Duration::ZERO
                    }
                    Err(error) => {
                        metrics::counter!("hiscale_replication_errors_total", "collection" => name.clone()).increment(1);
                        tracing::warn!(collection = %name, %error, "poll failed; backing off {:?}", backoff);
                        self.status(|status| {
                            status.state = "failing".into();
                            status.last_error = Some(error.clone());
                        });
                        let pause = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        pause
                    }
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    async fn poll_once(
        &self,
        client: &reqwest::Client,
        resync: Option<&mut Resync>,
    ) -> Result<Outcome, String> {
        let store = self.state.store();
        let cursor = match resync {
            Some(ref resync) if !resync.started => Version::ZERO,
            _ => store
                .cursor(self.collection.name())
                .await
                .map_err(|e| e.to_string())?,
        };
        let url = format!(
            "{}/{}?version={}&aspects={}&limit={}&wait={}",
            self.source.url.trim_end_matches('/'),
            self.collection.name(),
            cursor,
            self.source.aspects,
            self.source.limit,
            self.source.wait_secs
        );
        let response = client
            .get(&url)
            .bearer_auth(&self.source.token)
            .header(
                "accept",
                format!("application/vnd.{}.v1+json", self.collection.owner()),
            )
            .send()
            .await
            .map_err(|error| format!("request failed: {error}"))?;
        let status = response.status();
        if status.as_u16() == 410 {
            return Ok(Outcome::ResyncRequired);
        }
        let body = response
            .bytes()
            .await
            .map_err(|error| format!("reading the chunk failed: {error}"))?;
        if !status.is_success() {
            return Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ));
        }
        let chunk = repr::parse_feed(&body, &self.collection).map_err(|error| error.to_string())?;
        let items = chunk_items(&self.collection, &chunk);
        if let Some(resync) = resync {
            resync.started = true;
            for item in items.iter().filter(|item| !item.deleted) {
                for aspect in item.aspects.iter().filter(|aspect| aspect.body.is_some()) {
                    resync.seen.insert((item.id.clone(), aspect.name.clone()));
                }
            }
        }
        store
            .apply_chunk(self.collection.name(), &items, chunk.version)
            .await
            .map_err(|error| format!("applying the chunk failed: {error}"))?;
        self.state.notify_change();
        metrics::histogram!("hiscale_replication_chunk_items", "collection" => self.collection.name().to_owned())
            .record(items.len() as f64);
        self.status(|status| {
            status.cursor = chunk.version.get();
            status.chunks_applied += 1;
            status.items_applied += items.len() as u64;
        });
        Ok(Outcome::Applied { more: chunk.more })
    }

    async fn finish_resync(&self, resync: &Resync) {
        match self
            .state
            .store()
            .drop_unseen(self.collection.name(), &resync.seen)
            .await
        {
            Ok(dropped) => {
                tracing::info!(collection = %self.collection.name(), dropped, "resync finished")
            }
            Err(error) => tracing::error!(%error, "resync could not drop vanished resources"),
        }
    }

    fn status(&self, change: impl FnOnce(&mut SourceStatus)) {
        self.state
            .replication()
            .update(self.collection.name(), change);
    }
}

/// A full re-read after `410`: what it has delivered so far, to drop the rest at its end.
#[derive(Debug, Default)]
struct Resync {
    started: bool,
    seen: HashSet<(ResourceId, String)>,
}

/// Turns a received chunk into what the store applies, with the unique values each document
/// holds (so login can find an account by its login name).
pub fn chunk_items(collection: &Collection, chunk: &repr::FeedChunk) -> Vec<ChunkItem> {
    chunk
        .items
        .iter()
        .map(|item| ChunkItem {
            id: item.id.clone(),
            version: item.version,
            deleted: item.deleted,
            aspects: item
                .aspects
                .iter()
                .map(|aspect| ChunkAspect {
                    name: aspect.name.to_string(),
                    version: aspect.version,
                    unique_keys: aspect
                        .body
                        .as_ref()
                        .map(|body| collection.unique_keys(&aspect.name, body))
                        .unwrap_or_default(),
                    body: aspect.body.as_ref().map(ToString::to_string),
                })
                .collect(),
        })
        .collect()
}

/// A backup polls only while the primary misses its heartbeats; it verifies once more before
/// taking over, and steps back as soon as the primary answers again.
async fn watch_primary(
    reader: ReaderConfig,
    active: Arc<AtomicBool>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let Some(primary) = reader.primary_url.clone() else {
        tracing::error!(
            "a backup reader needs reader.primary_url; polling as if the primary were gone"
        );
        active.store(true, Ordering::Relaxed);
        return;
    };
    let interval = Duration::from_millis(reader.heartbeat_interval_ms.max(50));
    let client = reqwest::Client::new();
    let heartbeat = format!("{}/heartbeat", primary.trim_end_matches('/'));
    let mut misses = 0u32;
    loop {
        let alive = client
            .get(&heartbeat)
            .timeout(interval)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if alive {
            misses = 0;
            if active.swap(false, Ordering::Relaxed) {
                tracing::info!(%primary, "the primary is back; standing by");
            }
        } else {
            misses += 1;
            if misses >= reader.misses && !active.load(Ordering::Relaxed) {
                // A last, more patient check before acting on a suspected failure.
                let confirmed_dead = !client
                    .get(&heartbeat)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if confirmed_dead {
                    tracing::warn!(%primary, misses, "the primary is gone; this backup takes over polling");
                    active.store(true, Ordering::Relaxed);
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// ±10 % so that many readers do not poll in lockstep.
fn with_jitter(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let factor = 0.9 + 0.2 * (f64::from(nanos % 1000) / 1000.0);
    interval.mul_f64(factor)
}
