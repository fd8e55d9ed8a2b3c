//! The poller: keeps a copy by following the source's delta feed, chunk by chunk, with the
//! cursor stored in the same transaction as the data. A backup unit watches the primary's
//! heartbeat and polls only while the primary is gone or stalled; whoever polls holds the
//! reader lease (`store::lease`), and a chunk is applied only while its epoch holds it, so a
//! backup that merely lost sight of a live primary never writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::{ReaderConfig, ReaderRole, SourceConfig};
use crate::http::AppState;
use crate::model::Collection;
use crate::replication::{ReaderState, SourceState, SourceStatus};
use crate::repr;
use crate::store::{self, ApplyMode, ChunkAspect, ChunkItem, Fence};
use crate::version::Version;

/// How often a long poll looks whether its unit should stand by.
const ACTIVE_CHECK: Duration = Duration::from_millis(100);

/// How often a unit that wants the reader lease asks for it again.
const LEASE_RETRY: Duration = Duration::from_millis(500);

/// The longest pause between polls of a source that was rolled back.
const ROLLED_BACK_RECHECK: Duration = Duration::from_secs(3);

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
    if reader.role == ReaderRole::Backup && !sources.is_empty() {
        tasks.push(tokio::spawn(watch_primary(
            state.clone(),
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
        let role = reader.role;
        let poller = Poller {
            state: state.clone(),
            aspects: canonical_aspects(&collection, &source),
            collection,
            source,
            role,
            active: active.clone(),
            lease: Duration::from_millis(reader.lease_ms.clamp(MIN_LEASE_MS, MAX_LEASE_MS)),
            prefetched: std::sync::Mutex::new(None),
            last_answer: std::sync::Mutex::new(Instant::now()),
        };
        tasks.push(tokio::spawn(poller.run(shutdown.clone())));
    }
    tasks
}

struct Poller {
    state: AppState,
    collection: Collection,
    source: SourceConfig,
    role: ReaderRole,
    active: Arc<AtomicBool>,
    lease: Duration,
    /// The source's aspects in canonical form, as the copy records what it holds.
    aspects: String,
    /// The next chunk, asked for while the current one is applied.
    prefetched: std::sync::Mutex<Option<Prefetch>>,
    /// When the source last answered a poll of this unit (any answer the feed gives, `409`
    /// and `410` included; a refused connection or a `5xx` is no answer). Readers fail over on
    /// progress, not only on liveness: a primary whose source has been silent for a whole
    /// lease gives the lease up (see `SourceState::SteppedDown`).
    last_answer: std::sync::Mutex<Instant>,
}

/// A chunk asked for before the one before it was applied: while a copy applies a chunk, the
/// source already renders the next and this unit parses it, instead of each side waiting for
/// the other. The next poll takes it only when it asks from exactly the position it was asked
/// from (a chunk that failed to apply, or a lost lease, leaves the cursor behind, and the
/// prefetched chunk is dropped unused), so the copy still applies chunks one by one, in order,
/// each in its own fenced transaction.
struct Prefetch {
    from: Version,
    /// `None` once handed over; a prefetch dropped unused stops its request.
    fetched: Option<tokio::task::JoinHandle<Result<Fetched, String>>>,
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        if let Some(fetched) = &self.fetched {
            fetched.abort();
        }
    }
}

/// A source's answer, read in full; a chunk already parsed into what the store applies.
enum Fetched {
    Chunk {
        items: Vec<ChunkItem>,
        version: Version,
        more: bool,
    },
    /// Anything but `200`: the status and (the start of) the body, for the caller to judge.
    Refused {
        status: reqwest::StatusCode,
        body: bytes::Bytes,
    },
}

/// Asks `url` for one chunk and parses it (run as a task of its own, so the next chunk can be
/// on its way while the current one is applied).
async fn fetch(
    client: reqwest::Client,
    url: String,
    token: String,
    accept: String,
    collection: Collection,
) -> Result<Fetched, String> {
    let response = client
        .get(&url)
        .bearer_auth(&token)
        .header("accept", accept)
        .send()
        .await
        // With its causes: a TLS failure says why only there (e.g. an unknown issuer).
        .map_err(|error| format!("request failed: {}", crate::tls::error_chain(&error)))?;
    let status = response.status();
    let body = read_bounded(response, MAX_CHUNK_BODY_BYTES).await?;
    if !status.is_success() {
        return Ok(Fetched::Refused { status, body });
    }
    let chunk = repr::parse_feed(&body, &collection).map_err(|error| error.to_string())?;
    Ok(Fetched::Chunk {
        items: chunk_items(&collection, &chunk),
        version: chunk.version,
        more: chunk.more,
    })
}

/// The most a chunk's body may hold once decompressed: a source cuts chunks at its
/// `max_chunk_bytes` (at most 64 MiB) plus one change's documents. Bounded, so a broken source
/// (or a small gzip body that inflates without end) cannot exhaust this unit's memory.
const MAX_CHUNK_BODY_BYTES: usize = 128 * 1024 * 1024;

/// Reads `response`'s body (decompressed), refusing it past `max` bytes.
async fn read_bounded(mut response: reqwest::Response, max: usize) -> Result<bytes::Bytes, String> {
    let mut body = bytes::BytesMut::new();
    while let Some(piece) = response
        .chunk()
        .await
        .map_err(|error| format!("reading the chunk failed: {error}"))?
    {
        if body.len().saturating_add(piece.len()) > max {
            return Err(format!("the source sent a chunk larger than {max} bytes"));
        }
        body.extend_from_slice(&piece);
    }
    Ok(body.freeze())
}

/// Shorter leases would expire between two renewals of a busy loop.
const MIN_LEASE_MS: u64 = 500;
/// Longer ones would only delay a takeover (and overflow clocks at absurd values).
const MAX_LEASE_MS: u64 = 10 * 60 * 1000;

/// What one poll led to.
enum Outcome {
    /// Applied a chunk; `more` says whether to ask again at once, `resyncing` whether a
    /// re-read from 0 is still under way.
    Applied { more: bool, resyncing: bool },
    /// The source no longer has tombstones we need: a re-read from 0 has begun (durably).
    ResyncStarted,
    /// Another unit holds the reader lease now: nothing was applied.
    Deposed,
    /// The source answered `409 version-ahead`: it was rolled back and lost versions this
    /// copy holds. Nothing is applied and the cursor stays; the copy asks again with backoff
    /// and goes on once the source has restored (its counter past the copy's cursor).
    SourceRolledBack(String),
    /// The source answered `410 interface-retired`: the interface version this copy polls
    /// was switched off. Nothing is applied and no re-read starts (it would only meet the same
    /// answer); the copy keeps what it holds, reports it, and looks again rarely, so it goes on
    /// by itself if the version is put back.
    InterfaceRetired(String),
}

impl Poller {
    async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let name = self.collection.name().to_owned();
        self.state
            .replication()
            .update(&self.status_key(), |status| {
                status.collection = name.clone();
                status.origin = self.source.origin.name.clone();
                status.url = self.source.url.clone();
                status.aspects = self.source.aspects.clone();
                status.role = Some(self.role);
            });
        // Trusts the CAs the unit was configured with (checked at start), for an https source.
        let client = match self
            .state
            .trust()
            .client_builder()
            .timeout(Duration::from_secs(self.source.wait_secs + 30))
            .gzip(self.source.compress)
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
            .cursor_of(&name, &self.source.origin)
            .await
            .map_or(0, Version::get);
        self.status(|status| status.cursor = stored_cursor);
        let mut backoff = Duration::from_millis(500);
        let mut caught_up_at = Instant::now();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let pause = if self.state_is(SourceState::SteppedDown) {
                self.probe_while_stepped_down(&client, &mut backoff).await
            } else if !self.active.load(Ordering::Relaxed) {
                if self.state_is(SourceState::StandingBy) {
                    // Standing by already: the lease, if this unit held it, was given up.
                } else {
                    // Give the lease up at once, in case this loop took it again after the
                    // watcher released it.
                    self.give_lease_up(SourceState::StandingBy).await;
                }
                Duration::from_millis(500)
            } else {
                // Active from now on, even while the first long poll is still out.
                self.status(|status| {
                    if status.state != SourceState::Failing
                        && status.state != SourceState::Resyncing
                    {
                        status.state = SourceState::Polling;
                    }
                });
                let fence = match self.acquire().await {
                    Ok(Some(fence)) => Some(fence),
                    Ok(None) => None,
                    Err(error) => {
                        self.status(|status| {
                            status.state = SourceState::Failing;
                            status.last_error = Some(error.to_string());
                        });
                        None
                    }
                };
                let Some(fence) = fence else {
                    self.status(|status| {
                        if status.state != SourceState::Failing {
                            status.state = SourceState::Waiting;
                        }
                    });
                    self.pause_for(LEASE_RETRY, &mut shutdown).await;
                    continue;
                };
                match self.poll_once(&client, &fence).await {
                    Ok(Outcome::Applied { more, resyncing }) => {
                        self.heard_from_source();
                        backoff = Duration::from_millis(500);
                        metrics::gauge!("hiscale_replication_source_interface_retired", "collection" => name.clone()).set(0.0);
                        metrics::gauge!("hiscale_replication_source_rolled_back", "collection" => name.clone()).set(0.0);
                        if !more {
                            caught_up_at = Instant::now();
                        }
                        let lag = caught_up_at.elapsed().as_secs_f64();
                        metrics::gauge!("hiscale_replication_lag_seconds", "collection" => name.clone()).set(lag);
                        self.status(|status| {
                            status.state = if resyncing {
                                SourceState::Resyncing
                            } else {
                                SourceState::Polling
                            };
                            status.lag_seconds = lag;
                            status.last_error = None;
                        });
                        if more || self.source.wait_secs > 0 {
                            Duration::ZERO
                        } else {
                            with_jitter(Duration::from_secs(self.source.interval_secs))
                        }
                    }
                    Ok(Outcome::Deposed) => {
                        tracing::warn!(collection = %name, epoch = fence.epoch, "another unit holds the reader lease now; this one stops applying");
                        self.status(|status| status.state = SourceState::Waiting);
                        // A backup told to stand by does so at the next turn, at once.
                        if self.active.load(Ordering::Relaxed) {
                            LEASE_RETRY
                        } else {
                            Duration::ZERO
                        }
                    }
                    Ok(Outcome::SourceRolledBack(message)) => {
                        self.heard_from_source();
                        metrics::gauge!("hiscale_replication_source_rolled_back", "collection" => name.clone()).set(1.0);
                        if !self.state_is(SourceState::OwnerRolledBack) {
                            tracing::error!(collection = %name, %message, "the source was rolled back: keeping the copy as it is and not advancing until it has restored");
                        }
                        self.status(|status| {
                            status.state = SourceState::OwnerRolledBack;
                            status.last_error = Some(message.clone());
                        });
                        // Asked again at least every few seconds: the copy goes on soon after
                        // the source has restored.
                        let pause = backoff.min(ROLLED_BACK_RECHECK);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        pause
                    }
                    Ok(Outcome::InterfaceRetired(message)) => {
                        self.heard_from_source();
                        if !self.state_is(SourceState::InterfaceRetired) {
                            tracing::error!(collection = %name, version = self.source.interface_version, %message,
                                "the source retired the interface version this copy polls: stopped; configure a newer interface_version");
                        }
                        metrics::gauge!("hiscale_replication_source_interface_retired", "collection" => name.clone()).set(1.0);
                        self.status(|status| {
                            status.state = SourceState::InterfaceRetired;
                            status.last_error = Some(message.clone());
                        });
                        backoff = MAX_BACKOFF;
                        MAX_BACKOFF
                    }
                    Ok(Outcome::ResyncStarted) => {
                        self.heard_from_source();
                        tracing::warn!(collection = %name, "source requires a resync: re-reading from version 0");
                        self.status(|status| status.state = SourceState::Resyncing);
                        Duration::ZERO
                    }
                    Err(error) => {
                        metrics::counter!("hiscale_replication_errors_total", "collection" => name.clone()).increment(1);
                        tracing::warn!(collection = %name, %error, "poll failed; backing off {:?}", backoff);
                        let silent = self.silent_for();
                        self.status(|status| {
                            status.state = SourceState::Failing;
                            status.last_error = Some(error.clone());
                            status.silent_seconds = silent.as_secs_f64();
                        });
                        metrics::gauge!("hiscale_replication_silent_seconds", "collection" => name.clone())
                            .set(silent.as_secs_f64());
                        if self.role == ReaderRole::Primary && silent >= self.lease {
                            self.step_down(&error).await;
                        }
                        let pause = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        pause
                    }
                }
            };
            self.pause_for(pause, &mut shutdown).await;
        }
    }

    /// Sleeps `pause` (unless shut down), renewing the lease meanwhile if this unit holds
    /// it: a long interval or error backoff must not let a healthy primary's lease lapse.
    async fn pause_for(&self, pause: Duration, shutdown: &mut tokio::sync::watch::Receiver<bool>) {
        let slice = self.lease / 3;
        let mut remaining = pause;
        while !remaining.is_zero() {
            let step = remaining.min(slice);
            tokio::select! {
                () = tokio::time::sleep(step) => {}
                _ = shutdown.changed() => return,
            }
            remaining = remaining.saturating_sub(step);
            if !remaining.is_zero() && self.holds_lease() {
                // An error here shows in the next turn of the loop, which acquires again.
                let _ = self.acquire().await;
            }
        }
    }

    /// The source answered: progress (or a clear answer why there is none).
    fn heard_from_source(&self) {
        *self
            .last_answer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        self.status(|status| status.silent_seconds = 0.0);
        metrics::gauge!("hiscale_replication_silent_seconds", "collection" => self.collection.name().to_owned())
            .set(0.0);
    }

    /// How long the source has not answered this unit's polls.
    fn silent_for(&self) -> Duration {
        self.last_answer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }

    /// A primary whose source was silent for a whole lease gives the lease up, so that its
    /// backup (which may well reach the source) takes over: heartbeats alone would keep a
    /// primary that is alive but cut off from its source reading nothing for good.
    async fn step_down(&self, error: &str) {
        tracing::error!(collection = %self.collection.name(), silent_secs = self.silent_for().as_secs(), %error,
            "no answer from the source for a whole lease: giving the reader lease up to the backup; probing the source meanwhile");
        self.give_lease_up(SourceState::SteppedDown).await;
    }

    /// Enters `state` and releases the reader lease this process may hold.
    async fn give_lease_up(&self, state: SourceState) {
        self.status(|status| {
            status.state = state;
            status.due_by = None;
        });
        if let Err(error) = self
            .state
            .store()
            .release_lease(self.state.lease_holder())
            .await
        {
            tracing::warn!(%error, "could not release the reader lease; it expires by itself");
        }
    }

    /// While stepped down: asks the source for one chunk (applying nothing, holding no lease).
    /// Once it answers, this unit wants the lease again: its heartbeat says `waiting`, the
    /// backup steps back and releases it. When the source is down for both units, the primary
    /// stays stepped down and the backup keeps the lease: no ping-pong.
    async fn probe_while_stepped_down(
        &self,
        client: &reqwest::Client,
        backoff: &mut Duration,
    ) -> Duration {
        let cursor = self
            .state
            .store()
            .cursor_of(self.collection.name(), &self.source.origin)
            .await
            .unwrap_or(Version::ZERO);
        let probe = self.fetch_url(cursor, 1, 0);
        let answered = tokio::time::timeout(
            self.lease,
            fetch(
                client.clone(),
                probe,
                self.source.token.clone(),
                self.accept(),
                self.collection.clone(),
            ),
        )
        .await;
        match answered {
            Ok(Ok(Fetched::Chunk { .. })) => {
                tracing::info!(collection = %self.collection.name(),
                    "the source answers again: taking the reader lease back once the backup steps back");
                self.heard_from_source();
                self.status(|status| {
                    status.state = SourceState::Waiting;
                    status.last_error = None;
                });
                *backoff = Duration::from_millis(500);
                Duration::ZERO
            }
            outcome => {
                let error = match outcome {
                    Ok(Ok(Fetched::Refused { status, .. })) => {
                        format!("the source answered {status}")
                    }
                    Ok(Err(error)) => error,
                    Err(_) => "the source did not answer within a lease".to_owned(),
                    Ok(Ok(Fetched::Chunk { .. })) => String::new(),
                };
                let silent = self.silent_for();
                self.status(|status| {
                    status.last_error = Some(error);
                    status.silent_seconds = silent.as_secs_f64();
                });
                metrics::gauge!("hiscale_replication_silent_seconds", "collection" => self.collection.name().to_owned())
                    .set(silent.as_secs_f64());
                let pause = (*backoff).min(self.lease);
                *backoff = (*backoff * 2).min(MAX_BACKOFF);
                pause
            }
        }
    }

    fn holds_lease(&self) -> bool {
        self.own_status(|status| status.due_by.is_some())
    }

    fn state_is(&self, state: SourceState) -> bool {
        self.own_status(|status| status.state == state)
    }

    fn own_status(&self, look: impl FnOnce(&SourceStatus) -> bool) -> bool {
        self.state
            .replication()
            .read(&self.status_key(), look)
            .unwrap_or(false)
    }

    /// Takes or renews the reader lease (any expired lease may be taken: a backup is active
    /// only while its primary is gone or stalled). A successful renewal promises the next one
    /// within a lease; a unit with a stuck polling loop (another source's) renews nothing, so
    /// its lease lapses and the backup can take over.
    async fn acquire(&self) -> Result<Option<Fence>, store::Error> {
        if self.state.replication().reader_state() == ReaderState::Stalled {
            self.status(|status| status.due_by = None);
            return Ok(None);
        }
        let fence = self
            .state
            .store()
            .acquire_lease(self.state.lease_holder(), lease_millis(self.lease), true)
            .await?;
        let due = fence.as_ref().map(|_| Instant::now() + self.lease);
        self.status(|status| status.due_by = due);
        Ok(fence)
    }

    async fn poll_once(&self, client: &reqwest::Client, fence: &Fence) -> Result<Outcome, String> {
        let store = self.state.store();
        let position = store
            .copy_position(self.collection.name(), &self.source.origin)
            .await
            .map_err(|e| e.to_string())?;
        // Other aspects than the copy holds: re-read from 0, filling what was added and
        // dropping what was removed (the first poll only records them).
        match position.aspects.as_deref() {
            Some(held) if held == self.aspects => {}
            Some(held) => {
                tracing::warn!(collection = %self.collection.name(), held, wanted = %self.aspects, "the copy's aspects changed: re-reading from version 0");
                return self.begin_resync(fence).await;
            }
            None => match store
                .record_copy_aspects(
                    self.collection.name(),
                    &self.source.origin,
                    &self.aspects,
                    fence,
                )
                .await
            {
                Ok(()) => {}
                Err(store::Error::Fenced { .. }) => return Ok(Outcome::Deposed),
                Err(error) => return Err(format!("recording the copy's aspects failed: {error}")),
            },
        }
        let (cursor, mode) = match position.resync {
            Some((generation, at)) => (at, ApplyMode::Resync { generation }),
            None => (position.cursor, ApplyMode::Follow),
        };
        let request = match self.take_prefetched(cursor) {
            Some(prefetched) => {
                metrics::counter!("hiscale_replication_prefetched_chunks_total", "collection" => self.collection.name().to_owned())
                    .increment(1);
                self.status(|status| status.chunks_prefetched += 1);
                prefetched
            }
            None => self.start_fetch(client, cursor),
        };
        let Some(joined) = self.renewing_while(fence, request).await? else {
            return Ok(Outcome::Deposed);
        };
        let fetched = joined.map_err(|error| format!("the chunk's request failed: {error}"))??;
        let (items, version, more) = match fetched {
            Fetched::Chunk {
                items,
                version,
                more,
            } => (items, version, more),
            Fetched::Refused { status, body } => return self.refused(fence, status, &body).await,
        };
        // The next chunk is on its way while this one is applied. Not during a re-read: the
        // source lets a re-reading consumer pass its purged tombstones only onward from where
        // it last asked, and a prefetched ask moves that mark past the chunk a unit dying now
        // never applied; the unit taking over would resume behind it, get `410` and start the
        // whole re-read again.
        if more && self.source.pipeline && matches!(mode, ApplyMode::Follow) {
            let next = self.start_fetch(client, version);
            *self.prefetch_slot() = Some(Prefetch {
                from: version,
                fetched: Some(next),
            });
        }
        match store
            .apply_fenced_chunk(
                self.collection.name(),
                &self.source.origin,
                &items,
                version,
                fence,
                mode,
            )
            .await
        {
            Ok(()) => {}
            Err(store::Error::Fenced { .. }) => return Ok(Outcome::Deposed),
            Err(error) => return Err(format!("applying the chunk failed: {error}")),
        }
        let mut resyncing = matches!(mode, ApplyMode::Resync { .. });
        if let ApplyMode::Resync { generation } = mode
            && !more
        {
            match store
                .finish_resync(
                    self.collection.name(),
                    &self.source.origin,
                    fence,
                    generation,
                    version,
                )
                .await
            {
                Ok(dropped) => {
                    resyncing = false;
                    tracing::info!(collection = %self.collection.name(), dropped, "resync finished");
                }
                Err(store::Error::Fenced { .. }) => return Ok(Outcome::Deposed),
                Err(error) => return Err(format!("finishing the resync failed: {error}")),
            }
        }
        self.state.notify_change();
        metrics::histogram!("hiscale_replication_chunk_items", "collection" => self.collection.name().to_owned())
            .record(items.len() as f64);
        let applied_cursor = if resyncing {
            position.cursor.get()
        } else {
            version.get().max(position.cursor.get())
        };
        self.status(|status| {
            status.cursor = applied_cursor;
            status.chunks_applied += 1;
            status.items_applied += items.len() as u64;
        });
        Ok(Outcome::Applied { more, resyncing })
    }

    /// Asks the source for the chunk after `from`, as a task of its own.
    fn start_fetch(
        &self,
        client: &reqwest::Client,
        from: Version,
    ) -> tokio::task::JoinHandle<Result<Fetched, String>> {
        tokio::spawn(fetch(
            client.clone(),
            self.fetch_url(from, self.source.limit, self.source.wait_secs),
            self.source.token.clone(),
            self.accept(),
            self.collection.clone(),
        ))
    }

    /// The feed request for the chunk after `from`.
    fn fetch_url(&self, from: Version, limit: u32, wait_secs: u64) -> String {
        let mut url = format!(
            "{}/{}?version={}&aspects={}&limit={}&wait={}",
            self.source.url.trim_end_matches('/'),
            self.collection.name(),
            from,
            self.source.aspects,
            limit,
            wait_secs
        );
        if !self.source.origin.is_single() {
            // Datacenter names are checked words of the topology.
            url.push_str(&format!("&origin={}", self.source.origin.name));
        }
        url
    }

    /// The media type the copy polls in.
    fn accept(&self) -> String {
        format!(
            "application/vnd.{}.v{}+json",
            self.collection.owner(),
            self.source.interface_version
        )
    }

    /// The prefetched chunk when it was asked for from `from`; any other is dropped.
    fn take_prefetched(
        &self,
        from: Version,
    ) -> Option<tokio::task::JoinHandle<Result<Fetched, String>>> {
        let mut prefetch = self.prefetch_slot().take()?;
        if prefetch.from != from {
            return None;
        }
        prefetch.fetched.take()
    }

    fn prefetch_slot(&self) -> std::sync::MutexGuard<'_, Option<Prefetch>> {
        self.prefetched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What an answer other than `200` means: the feed's two `410`s told apart by their code,
    /// a rolled-back source, or an error.
    async fn refused(
        &self,
        fence: &Fence,
        status: reqwest::StatusCode,
        body: &[u8],
    ) -> Result<Outcome, String> {
        if status.as_u16() == 410 {
            return match error_code(body).as_deref() {
                Some(crate::codes::INTERFACE_RETIRED) => Ok(Outcome::InterfaceRetired(
                    String::from_utf8_lossy(body).chars().take(300).collect(),
                )),
                _ => self.begin_resync(fence).await,
            };
        }
        let text = String::from_utf8_lossy(body);
        if status.as_u16() == 409 && text.contains("version-ahead") {
            return Ok(Outcome::SourceRolledBack(text.chars().take(300).collect()));
        }
        Err(format!(
            "{status}: {}",
            text.chars().take(300).collect::<String>()
        ))
    }

    /// Waits for `request` while renewing the lease about three times per lease, so a long
    /// poll keeps it; `None` when the lease went to another unit meanwhile.
    async fn renewing_while<T>(
        &self,
        fence: &Fence,
        request: impl std::future::Future<Output = T>,
    ) -> Result<Option<T>, String> {
        tokio::pin!(request);
        let every = self.lease / 3;
        let mut renewed_at = Instant::now();
        loop {
            tokio::select! {
                outcome = &mut request => return Ok(Some(outcome)),
                // Looks often whether the watcher told this backup to stand by (so it does
                // within a heartbeat interval or so), renews only every third of a lease.
                () = tokio::time::sleep(every.min(ACTIVE_CHECK)) => {
                    if !self.active.load(Ordering::Relaxed) {
                        return Ok(None);
                    }
                    // A request that hangs (packets dropped, not refused) is no progress either.
                    let silent_limit = self.lease
                        + Duration::from_secs(self.source.wait_secs)
                        + Duration::from_secs(5);
                    if self.silent_for() > silent_limit {
                        return Err(format!(
                            "the source has not answered for {} s",
                            self.silent_for().as_secs()
                        ));
                    }
                    if renewed_at.elapsed() < every {
                        continue;
                    }
                    renewed_at = Instant::now();
                    match self.acquire().await {
                        // The same epoch: still ours. Another: it lapsed and was taken again,
                        // so what this poll brings belongs to an older epoch.
                        Ok(Some(renewed)) if renewed.epoch == fence.epoch => {}
                        Ok(_) => return Ok(None),
                        Err(error) => return Err(format!("renewing the reader lease failed: {error}")),
                    }
                }
            }
        }
    }

    /// Starts a durable re-read from 0 of this source's aspects.
    async fn begin_resync(&self, fence: &Fence) -> Result<Outcome, String> {
        match self
            .state
            .store()
            .start_resync(
                self.collection.name(),
                &self.source.origin,
                fence,
                &self.aspects,
            )
            .await
        {
            Ok(_) => Ok(Outcome::ResyncStarted),
            Err(store::Error::Fenced { .. }) => Ok(Outcome::Deposed),
            Err(error) => Err(format!("starting a resync failed: {error}")),
        }
    }

    fn status(&self, change: impl FnOnce(&mut SourceStatus)) {
        self.state.replication().update(&self.status_key(), change);
    }

    /// Where this source's status is kept: by collection, and origin when there are several.
    fn status_key(&self) -> String {
        if self.source.origin.is_single() {
            self.collection.name().to_owned()
        } else {
            format!("{}@{}", self.collection.name(), self.source.origin.name)
        }
    }
}

/// The source's aspects in the copy's declared order (`~person~address.home`), whatever
/// order or abbreviation the configuration wrote them in.
fn canonical_aspects(collection: &Collection, source: &SourceConfig) -> String {
    crate::aspect::AspectSelector::parse(&source.aspects, usize::MAX)
        .and_then(|selector| selector.resolve(collection.aspect_names()))
        .map(|selection| {
            selection
                .names()
                .iter()
                .map(|name| format!("~{name}"))
                .collect::<String>()
        })
        // Checked at start (unit::check_sources); the text itself is the fallback.
        .map(|aspects| versioned_aspects(aspects, source.interface_version))
        .unwrap_or_else(|_| source.aspects.clone())
}

/// What the copy records it holds: the aspects, and the interface version when not v1 (copies
/// recorded before versions existed hold v1). Polling another version than the copy holds
/// re-reads from 0, like a change of aspects: the copy's documents are in the version polled.
fn versioned_aspects(aspects: String, version: u32) -> String {
    if version == 1 {
        aspects
    } else {
        format!("{aspects}@v{version}")
    }
}

/// The stable code of an error body (JSON, as the poller asks for).
fn error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("error")?.get("code")?.as_str().map(str::to_owned)
}

/// Turns a received chunk into what the store applies, with the unique values each document
/// holds (so login can find an account by its login name). A NUL in a document (an owner
/// stored it before the input rule refused it, see `crate::types::is_xml_char`) is applied as
/// U+FFFD: PostgreSQL's `jsonb` and `text` cannot hold it, and a chunk the copy cannot store
/// would stall it for good. Every backend does the same, so copies stay alike.
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
                .map(|aspect| {
                    let body = aspect.body.as_ref().map(without_nul);
                    ChunkAspect {
                        name: aspect.name.to_string(),
                        version: aspect.version,
                        unique_keys: body
                            .as_deref()
                            .map(|body| collection.unique_keys(&aspect.name, body))
                            .unwrap_or_default(),
                        body: body.map(|body| body.to_string()),
                    }
                })
                .collect(),
        })
        .collect()
}

/// `value` with every NUL in its strings and member names as U+FFFD (borrowed when it holds
/// none, as every document written since the input rule).
fn without_nul(value: &serde_json::Value) -> std::borrow::Cow<'_, serde_json::Value> {
    use serde_json::Value;
    fn holds_nul(value: &Value) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => items.iter().any(holds_nul),
            Value::Object(members) => members
                .iter()
                .any(|(name, member)| name.contains('\0') || holds_nul(member)),
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }
    fn replaced(value: &Value) -> Value {
        let text = |text: &str| text.replace('\0', "\u{FFFD}");
        match value {
            Value::String(string) => Value::String(text(string)),
            Value::Array(items) => Value::Array(items.iter().map(replaced).collect()),
            Value::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(name, member)| (text(name), replaced(member)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    if holds_nul(value) {
        std::borrow::Cow::Owned(replaced(value))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// A backup polls only while the primary misses its heartbeats or says it is stalled; it
/// verifies once more before taking over, and steps back (releasing the lease) as soon as the
/// primary answers that it reads or wants to. Polling here still needs the lease, which the
/// backup gets only once the primary's has expired.
async fn watch_primary(
    state: AppState,
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
    let client = crate::tls::client();
    let heartbeat = format!("{}/heartbeat", primary.trim_end_matches('/'));
    let mut misses = 0u32;
    let mut zone_checked = false;
    loop {
        let answer = heartbeat_of(&client, &heartbeat, interval).await;
        if let Some(body) = &answer
            && !zone_checked
        {
            zone_checked = true;
            let zone = state.zone();
            if zone.is_some() && body["zone"].as_str() == zone {
                tracing::warn!(%primary, zone = zone.unwrap_or_default(), "primary and backup reader share a zone: one zone's outage takes both");
            }
        }
        if reads(answer.as_ref()) {
            misses = 0;
            if active.swap(false, Ordering::Relaxed) {
                tracing::info!(%primary, "the primary reads again; standing by");
                if let Err(error) = state.store().release_lease(state.lease_holder()).await {
                    tracing::warn!(%error, "could not release the reader lease; it expires by itself");
                }
            }
        } else {
            misses += 1;
            if misses >= reader.misses && !active.load(Ordering::Relaxed) {
                // A last, more patient check before acting on a suspected failure.
                let patient = heartbeat_of(&client, &heartbeat, Duration::from_secs(2)).await;
                if !reads(patient.as_ref()) {
                    tracing::warn!(%primary, misses, "the primary is gone or stalled; this backup polls once its lease expires");
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

/// The primary's heartbeat body, when it answers within `timeout`.
async fn heartbeat_of(
    client: &reqwest::Client,
    heartbeat: &str,
    timeout: Duration,
) -> Option<serde_json::Value> {
    let response = client.get(heartbeat).timeout(timeout).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json::<serde_json::Value>().await.ok()
}

/// Whether a heartbeat says its unit reads (or wants to).
fn reads(heartbeat: Option<&serde_json::Value>) -> bool {
    heartbeat.is_some_and(|body| matches!(body["reader"].as_str(), Some("reading" | "waiting")))
}

/// Milliseconds of a lease, as the store counts them.
fn lease_millis(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

/// ±10 % so that many readers do not poll in lockstep.
fn with_jitter(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let factor = 0.9 + 0.2 * (f64::from(nanos % 1000) / 1000.0);
    interval.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A server that answers every connection with `body` (1 MiB), then closes it.
    async fn serving(body: Vec<u8>) -> (String, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            }
        });
        (url, server)
    }

    #[tokio::test]
    async fn a_chunk_body_is_read_up_to_its_bound() {
        // reqwest inflates a gzip body as it is read, so the bound counts inflated bytes; the
        // feed's own compression is tested end to end (`feed::a_chunk_comes_gzip_…`).
        let (url, server) = serving(vec![b'0'; 1024 * 1024]).await;
        let client = crate::tls::client_builder().build().unwrap();
        let response = client.get(&url).send().await.unwrap();
        let refused = read_bounded(response, 512 * 1024).await.unwrap_err();
        assert!(refused.contains("larger than 524288 bytes"), "{refused}");
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(
            read_bounded(response, 1024 * 1024).await.unwrap().len(),
            1024 * 1024
        );
        server.abort();
    }
}
