//! Refilling a rolled-back owner from the copies its peers keep: for each peer, its copy's feed
//! from the restored version on, over the aspects it holds, applied so that the higher version
//! of each aspect wins (tombstones included, logins with their accounts); then the counter
//! moves past everything seen, and the owner takes writes again.
//!
//! A peer that cannot be read keeps the owner in `restoring` (named in the report): refilling
//! again later is harmless, because applying a chunk twice changes nothing. The report says
//! what may be lost, never dropping it silently: per aspect, the versions no reachable peer
//! accounted for, and the versions after the backup that no peer showed at all (the ids of
//! resources created after the backup that no peer held are among them).
//!
//! Used by `POST /admin/restore`, by an owner that notices a consumer ahead of it (when it has
//! peers to refill from), and by `hiscale restore` (the store alone, units stopped or running).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::aspect::{AspectSelector, Selection};
use crate::config::PeerConfig;
use crate::model::{Collection, ServiceArea};
use crate::store::{Restoring, Store};
use crate::version::Version;
use crate::{poller, repr, store};

/// Resources per chunk asked of a peer (the feed's largest).
const CHUNK_LIMIT: u32 = 1000;
/// How long one chunk may take to arrive.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(60);
/// Chunks read from one peer at most, so a peer that never says `more: false` cannot keep the
/// owner busy forever (10 million resources at the largest chunk size).
const MAX_CHUNKS: usize = 10_000;
/// Versions remembered as seen, to name those no peer showed; beyond, that list is cut short
/// (and says so) rather than holding unbounded memory.
const MAX_SEEN_VERSIONS: usize = 4_000_000;
/// Distinct kept fields named in one peer's report at most (an SA's aspects have a few each).
const MAX_KEPT_FIELDS: usize = 256;
/// Ranges of unseen versions reported at most.
const MAX_UNSEEN_RANGES: usize = 1000;

/// What one peer gave back for one collection.
#[derive(Debug, Clone, Serialize)]
pub struct PeerReport {
    pub sa: String,
    pub aspects: String,
    /// Resources and aspects (documents and tombstones) applied from its copy.
    pub resources: u64,
    pub aspects_applied: u64,
    /// The newest version it held (its copy's cursor, once read to the end).
    pub newest: i64,
    /// How long reading and applying its copy took, and aspects applied per second.
    pub seconds: f64,
    pub records_per_sec: f64,
    /// Why it could not be read (the owner then stays in `restoring`).
    pub error: Option<String>,
    /// The interface version its copy holds.
    pub interface_version: u32,
    /// Fields (`aspect.field`) its version does not carry, kept from what the owner held
    /// (the backup, or a peer read before) where a document of that older version was merged:
    /// changes to them after the backup are not restored.
    pub kept_from_backup: Vec<String>,
}

/// Versions of one aspect that no reachable peer accounted for: changes in `from..=to` may
/// be lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostRange {
    pub aspect: String,
    pub from: i64,
    pub to: i64,
}

/// The outcome of refilling one collection.
#[derive(Debug, Clone, Serialize)]
pub struct RefillReport {
    pub collection: String,
    pub restored_to: i64,
    /// The greatest version a consumer reported or a peer held: nothing up to it is handed
    /// out again.
    pub greatest_reported: i64,
    /// Why the collection was not refilled (declared so, or no peer copies it); `None` when
    /// it was.
    pub not_refillable: Option<String>,
    pub peers: Vec<PeerReport>,
    /// Peers that could not be read.
    pub unreachable: Vec<String>,
    /// Aspects no configured peer copies: their changes after `restored_to` are lost.
    pub not_held: Vec<String>,
    /// Per aspect, versions after `restored_to` that no reachable peer accounted for.
    pub unaccounted: Vec<LostRange>,
    /// Versions after `restored_to` (up to `continues_after`, or `greatest_reported` while
    /// restoring) that no peer showed, as inclusive ranges: each is a change no peer held, one
    /// a later change overwrote, or (beyond `greatest_reported`) a version of the margin that
    /// a write acknowledged after everything any peer or unit saw may have taken. A resource
    /// created after the backup that no peer held has its id among them.
    pub unseen_versions: Vec<[i64; 2]>,
    /// Whether `unseen_versions` was cut short (too many to remember or to list).
    pub unseen_truncated: bool,
    /// The version the next write follows, once every peer was read; `None` while the
    /// collection stays in `restoring`.
    pub continues_after: Option<i64>,
}

/// Where a running refill stands, shared with `GET /admin/restore` and the CLI's progress.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<Mutex<ProgressState>>);

/// A snapshot of [`Progress`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProgressState {
    pub running: bool,
    /// Unix seconds the refill began.
    pub started_at: i64,
    pub peers: Vec<PeerProgress>,
    /// The reports of the last refill, once it has ended.
    pub reports: Vec<RefillReport>,
}

/// One peer's part of a refill.
#[derive(Debug, Clone, Serialize)]
pub struct PeerProgress {
    pub collection: String,
    pub sa: String,
    pub resources: u64,
    pub aspects_applied: u64,
    pub records_per_sec: f64,
    pub done: bool,
    pub error: Option<String>,
}

impl Progress {
    fn lock(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        match self.0.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// What the refill has done so far.
    pub fn snapshot(&self) -> ProgressState {
        self.lock().clone()
    }

    /// Claims the progress for a new refill; `false` when one is running already.
    fn begin(&self) -> bool {
        let mut state = self.lock();
        if state.running {
            return false;
        }
        *state = ProgressState {
            running: true,
            started_at: store::unix_now(),
            peers: Vec::new(),
            reports: Vec::new(),
        };
        true
    }

    fn end(&self, reports: &[RefillReport]) {
        let mut state = self.lock();
        state.running = false;
        state.reports = reports.to_vec();
    }

    fn update(&self, collection: &str, report: &PeerReport, done: bool) {
        let mut state = self.lock();
        let entry = PeerProgress {
            collection: collection.to_owned(),
            sa: report.sa.clone(),
            resources: report.resources,
            aspects_applied: report.aspects_applied,
            records_per_sec: report.records_per_sec,
            done,
            error: report.error.clone(),
        };
        match state
            .peers
            .iter_mut()
            .find(|peer| peer.collection == collection && peer.sa == report.sa)
        {
            Some(peer) => *peer = entry,
            None => state.peers.push(entry),
        }
    }
}

/// Why a refill did not run.
#[derive(Debug, thiserror::Error)]
pub enum RefillError {
    #[error("a refill is running already")]
    Running,
    #[error("{0}")]
    Store(#[from] store::Error),
}

/// Whom to refill from.
#[derive(Debug, Clone, Copy)]
pub struct Peers<'a> {
    /// Every peer that keeps a copy of what the SA owns.
    pub all: &'a [PeerConfig],
    /// Only this SA's copies (`hiscale restore --from`): a peer that was down the first time.
    pub only: Option<&'a str>,
    /// The CAs trusted when a peer is reached over HTTPS.
    pub trust: &'a crate::tls::Trust,
    /// Versions skipped after the refill beyond what peers served (see
    /// [`crate::config::FeedConfig::rollback_margin`]).
    pub margin: i64,
}

/// Refills every owned collection of `sa` in `restoring` from `peers`, and leaves `restoring`
/// for each one whose peers could all be read. Collections the SA declares not refilled, or
/// that no peer copies, are reported as not refillable and continue past everything reported.
pub async fn refill(
    store: &Store,
    sa: &ServiceArea,
    peers: Peers<'_>,
    progress: &Progress,
) -> Result<Vec<RefillReport>, RefillError> {
    if !progress.begin() {
        return Err(RefillError::Running);
    }
    let outcome = refill_all(store, sa, peers, progress).await;
    progress.end(outcome.as_deref().unwrap_or_default());
    Ok(outcome?)
}

async fn refill_all(
    store: &Store,
    sa: &ServiceArea,
    peers: Peers<'_>,
    progress: &Progress,
) -> Result<Vec<RefillReport>, store::Error> {
    let client = peers
        .trust
        .client_builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(CHUNK_TIMEOUT)
        .build()
        .unwrap_or_default();
    let mut reports = Vec::new();
    for restoring in store.restoring().await? {
        let Some(collection) = sa
            .owned()
            .iter()
            .find(|owned| owned.name() == restoring.collection)
        else {
            continue;
        };
        reports.push(
            refill_collection(store, &client, collection, &restoring, peers, progress).await?,
        );
    }
    Ok(reports)
}

async fn refill_collection(
    store: &Store,
    client: &reqwest::Client,
    collection: &Collection,
    restoring: &Restoring,
    peers: Peers<'_>,
    progress: &Progress,
) -> Result<RefillReport, store::Error> {
    let from = Version::new(restoring.restored_to).unwrap_or(Version::ZERO);
    let mut of_collection: Vec<&PeerConfig> = peers
        .all
        .iter()
        .filter(|peer| peer.collection == collection.name())
        .collect();
    // Copies of the newest interface version first: they hold every field. An older
    // version's document of the same aspect version is then skipped rather than merged.
    of_collection.sort_by_key(|peer| std::cmp::Reverse(peer.interface_version));
    let not_refillable = if !collection.refilled_by_restore() {
        Some(format!(
            "{} declares it is not refilled by a restore",
            collection.owner()
        ))
    } else if of_collection.is_empty() {
        Some("no peer keeps a copy of it".to_owned())
    } else {
        None
    };
    let mut reports = Vec::new();
    // What the configured peers hold, whether read this time or not (`--from` reads one).
    let mut held = Selection::default();
    for peer in &of_collection {
        held = held.union(&peer_selection(collection, peer));
    }
    // Per aspect, the highest version up to which a reachable peer showed everything.
    let mut accounted: Vec<(String, i64)> = Vec::new();
    let mut seen = Seen::default();
    if not_refillable.is_none() {
        for peer in of_collection
            .iter()
            .filter(|peer| peers.only.is_none_or(|only| only == peer.sa))
        {
            let selection = peer_selection(collection, peer);
            let merge = Merge {
                version: peer.interface_version,
                restored_to: from,
                after_other_peers: !reports.is_empty(),
            };
            let report =
                read_peer(store, client, collection, peer, merge, &mut seen, progress).await?;
            tracing::info!(collection = collection.name(), peer = %peer.sa, resources = report.resources,
                aspects = report.aspects_applied, records_per_sec = report.records_per_sec as u64,
                error = ?report.error, "refilled from a peer");
            if report.error.is_none() {
                for name in selection.names() {
                    let name = name.to_string();
                    match accounted.iter_mut().find(|(aspect, _)| *aspect == name) {
                        Some((_, upto)) => *upto = (*upto).max(report.newest),
                        None => accounted.push((name, report.newest)),
                    }
                }
            }
            reports.push(report);
        }
    }
    let newest = reports
        .iter()
        .map(|report| report.newest)
        .max()
        .unwrap_or(0);
    // A consumer's claim and the units' own mark bound what may be lost; the counter moves
    // only past what peers served and the units exposed (plus the margin), never past a claim.
    let greatest = newest
        .max(restoring.ahead)
        .max(restoring.exposed)
        .max(restoring.restored_to);
    let complete = reports.iter().all(|report| report.error.is_none());
    let continues_after = if complete {
        store
            .leave_restoring(
                collection.name(),
                store::Leave {
                    at_least: Version::new(newest).unwrap_or(Version::ZERO),
                    past_claims: false,
                    margin: peers.margin,
                },
            )
            .await?
            .map(Version::get)
    } else {
        None
    };
    let unaccounted = collection
        .aspect_names()
        .iter()
        .filter_map(|name| {
            let name = name.to_string();
            let upto = accounted
                .iter()
                .find(|(aspect, _)| *aspect == name)
                .map_or(restoring.restored_to, |(_, upto)| *upto)
                .max(restoring.restored_to);
            (upto < greatest).then(|| LostRange {
                aspect: name,
                from: upto + 1,
                to: greatest,
            })
        })
        .collect::<Vec<_>>();
    // Up to where writes continue: the margin's versions may hold writes acknowledged after
    // anything a peer or a unit saw; they are named too, never handed out again.
    let (unseen_versions, unseen_truncated) = seen.unseen(
        restoring.restored_to,
        continues_after.unwrap_or(greatest).max(greatest),
    );
    let report = RefillReport {
        collection: collection.name().to_owned(),
        restored_to: restoring.restored_to,
        greatest_reported: greatest,
        unreachable: reports
            .iter()
            .filter(|report| report.error.is_some())
            .map(|report| report.sa.clone())
            .collect(),
        not_held: collection
            .aspect_names()
            .iter()
            .filter(|name| !held.contains(name))
            .map(ToString::to_string)
            .collect(),
        not_refillable,
        unaccounted,
        unseen_versions,
        unseen_truncated,
        peers: reports,
        continues_after,
    };
    if !report.unaccounted.is_empty() || !report.unreachable.is_empty() {
        tracing::warn!(collection = collection.name(), unaccounted = ?report.unaccounted,
            unreachable = ?report.unreachable, unseen_ranges = report.unseen_versions.len(),
            "refill: changes after the backup that no reachable peer holds may be lost");
    }
    Ok(report)
}

/// The aspects of `collection` a peer's copy holds.
fn peer_selection(collection: &Collection, peer: &PeerConfig) -> Selection {
    AspectSelector::parse(&peer.aspects, 1024)
        .map(|selector| selector.select_known(collection.aspect_names()))
        .unwrap_or_default()
}

/// The versions a refill saw (resource ids and aspect versions), bounded.
#[derive(Debug, Default)]
struct Seen {
    versions: BTreeSet<i64>,
    overflowed: bool,
}

impl Seen {
    fn add(&mut self, version: i64) {
        if self.versions.len() < MAX_SEEN_VERSIONS {
            self.versions.insert(version);
        } else if !self.versions.contains(&version) {
            self.overflowed = true;
        }
    }

    /// Inclusive ranges within `after + 1 ..= upto` that were not seen.
    fn unseen(&self, after: i64, upto: i64) -> (Vec<[i64; 2]>, bool) {
        let mut ranges = Vec::new();
        let mut next = after.saturating_add(1);
        for &version in self.versions.range(next..=upto) {
            if version > next {
                ranges.push([next, version - 1]);
            }
            next = version + 1;
            if ranges.len() >= MAX_UNSEEN_RANGES {
                return (ranges, true);
            }
        }
        if next <= upto {
            ranges.push([next, upto]);
        }
        (ranges, self.overflowed)
    }
}

/// Reads one peer's copy from `from` on and applies it; a failure ends up in the report.
async fn read_peer(
    store: &Store,
    client: &reqwest::Client,
    collection: &Collection,
    peer: &PeerConfig,
    merge: Merge,
    seen: &mut Seen,
    progress: &Progress,
) -> Result<PeerReport, store::Error> {
    let from = merge.restored_to;
    let started = Instant::now();
    let mut report = PeerReport {
        sa: peer.sa.clone(),
        aspects: peer.aspects.clone(),
        resources: 0,
        aspects_applied: 0,
        newest: 0,
        seconds: 0.0,
        records_per_sec: 0.0,
        error: None,
        interface_version: peer.interface_version,
        kept_from_backup: Vec::new(),
    };
    let mut kept = BTreeSet::new();
    progress.update(collection.name(), &report, false);
    let mut position = from;
    let ask = |position: Version| {
        tokio::spawn(fetch(
            client.clone(),
            collection.name().to_owned(),
            collection.owner().to_owned(),
            peer.clone(),
            position,
        ))
    };
    // The next chunk is fetched while the current one is applied.
    let mut next = Some(ask(position));
    let mut reread_from_zero = false;
    for _ in 0..MAX_CHUNKS {
        let Some(pending) = next.take() else { break };
        let fetched = match pending.await {
            Ok(fetched) => fetched,
            Err(error) => Err(format!("reading {}: {error}", peer.sa)),
        };
        let chunk = match fetched.and_then(|body| {
            repr::parse_feed(&body, collection).map_err(|error| format!("{}: {error}", peer.url))
        }) {
            Ok(chunk) => chunk,
            // The peer's copy purged tombstones past the restored version (a re-read of its
            // own moved its purge horizon): read it whole, once. Applying what the owner
            // holds already changes nothing (the higher version wins); before, the owner
            // stayed restoring until an operator stepped in.
            Err(error)
                if error.contains(crate::codes::RESYNC_REQUIRED)
                    && position > Version::ZERO
                    && !reread_from_zero =>
            {
                tracing::warn!(peer = %peer.sa, %position, "the peer's copy purged tombstones past the restored version: reading it from 0");
                reread_from_zero = true;
                position = Version::ZERO;
                next = Some(ask(position));
                continue;
            }
            Err(error) => {
                report.error = Some(error);
                break;
            }
        };
        if chunk.more {
            if chunk.version <= position {
                report.error = Some(format!("the feed did not advance past version {position}"));
                break;
            }
            position = chunk.version;
            next = Some(ask(position));
        }
        let mut items = poller::chunk_items(collection, &chunk);
        canonical_bodies(store, collection, merge, &mut items, &mut kept).await?;
        store.refill_chunk(collection.name(), &items).await?;
        for item in &items {
            seen.add(item.version.get());
            if let Ok(id) = item.id.as_str().parse::<i64>() {
                seen.add(id);
            }
            for aspect in &item.aspects {
                seen.add(aspect.version.get());
            }
        }
        report.resources += items.len() as u64;
        report.aspects_applied += items
            .iter()
            .map(|item| item.aspects.len() as u64)
            .sum::<u64>();
        report.newest = report.newest.max(chunk.version.get());
        report.seconds = started.elapsed().as_secs_f64();
        report.records_per_sec = report.aspects_applied as f64 / report.seconds.max(1e-6);
        progress.update(collection.name(), &report, false);
        if !chunk.more {
            break;
        }
    }
    if let Some(pending) = next {
        pending.abort();
        if report.error.is_none() {
            report.error = Some(format!("more than {MAX_CHUNKS} chunks"));
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.records_per_sec = report.aspects_applied as f64 / report.seconds.max(1e-6);
    report.kept_from_backup = kept.into_iter().collect();
    progress.update(collection.name(), &report, true);
    Ok(report)
}

/// One chunk of the peer's copy after `position`, as it came.
async fn fetch(
    client: reqwest::Client,
    collection: String,
    owner: String,
    peer: PeerConfig,
    position: Version,
) -> Result<bytes::Bytes, String> {
    let mut url = format!(
        "{}/{collection}?version={}&limit={CHUNK_LIMIT}&aspects={}",
        peer.url.trim_end_matches('/'),
        position.get(),
        peer.aspects
    );
    if !peer.origin.is_empty() {
        url.push_str(&format!("&origin={}", peer.origin));
    }
    let response = client
        .get(&url)
        .bearer_auth(&peer.token)
        .header(
            "accept",
            format!("application/vnd.{owner}.v{}+json", peer.interface_version),
        )
        .send()
        .await
        .map_err(|error| format!("{url}: {error}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|error| format!("{url}: {error}"))?;
    if !status.is_success() {
        let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        return Err(format!("{url}: {status}: {text}"));
    }
    Ok(body)
}

/// Enters `restoring` for every owned collection not in it yet (what `POST /admin/restore`
/// and `hiscale restore` do before a refill): the restored version is what the store has
/// handed out now, unless `since` names the backup's version.
pub async fn enter_all(
    store: &Store,
    sa: &ServiceArea,
    by: &str,
    since: Option<Version>,
) -> Result<(), store::Error> {
    let already: Vec<String> = store
        .restoring()
        .await?
        .into_iter()
        .map(|restoring| restoring.collection)
        .collect();
    for collection in sa.owned() {
        if already.iter().any(|name| name == collection.name()) {
            continue;
        }
        let current = store.current_version(collection.name()).await?;
        let restored_to = since.map_or(current, |since| since.min(current));
        store
            .enter_restoring(collection.name(), by, current, restored_to)
            .await?;
    }
    Ok(())
}

/// How a peer's documents become the owner's: the interface version they are in, and which
/// resources the owner may already hold (and so need reading to merge into).
#[derive(Debug, Clone, Copy)]
struct Merge {
    version: u32,
    restored_to: Version,
    /// Peers read before this one may have refilled resources created after the backup.
    after_other_peers: bool,
}

/// A peer's copy holds documents in the interface version it polls: the owner stores its
/// canonical form. A document of the newest version is canonical (upgraded, like a read, when
/// stored in an older form). One of an older version whose aspect has a facade there is merged
/// field by field, as a write through that version would be (`from_old` with the owner's
/// current document): what only newer versions know is kept from what the owner holds — the
/// backup — and named in `kept` as `aspect.field`, instead of being erased.
///
/// The owner's documents are read only for resources it may hold: created up to the backup's
/// version, or refilled by an earlier peer.
async fn canonical_bodies(
    store: &Store,
    collection: &crate::model::Collection,
    merge: Merge,
    items: &mut [crate::store::ChunkItem],
    kept: &mut BTreeSet<String>,
) -> Result<(), store::Error> {
    for item in items {
        let held_before = merge.after_other_peers
            || item
                .id
                .as_str()
                .parse::<i64>()
                .is_ok_and(|id| id <= merge.restored_to.get());
        let mut current: Option<Option<crate::store::StoredResource>> = None;
        for aspect in &mut item.aspects {
            let Some(body) = &aspect.body else { continue };
            let Ok(serde_json::Value::Object(document)) = serde_json::from_str(body) else {
                continue;
            };
            let name = crate::aspect::AspectName::parse(&aspect.name).ok();
            let facade = name
                .as_ref()
                .and_then(|name| crate::facade::facade_for(collection, name, merge.version));
            let canonical = match facade {
                None => crate::facade::canonical(collection, &aspect.name, document),
                Some(facade) => {
                    if current.is_none() {
                        current = Some(if held_before {
                            store.read(collection.name(), &item.id).await?
                        } else {
                            None
                        });
                    }
                    let stored = current
                        .as_ref()
                        .and_then(Option::as_ref)
                        .and_then(|resource| {
                            resource
                                .aspects
                                .iter()
                                .find(|stored| stored.name == aspect.name)
                        });
                    if stored.is_some_and(|stored| stored.version >= aspect.version) {
                        // Not newer than what the owner holds: the refill leaves it.
                        continue;
                    }
                    let held = stored
                        .filter(|stored| !stored.deleted)
                        .and_then(|stored| stored.body.as_deref())
                        .and_then(|body| match serde_json::from_str(body) {
                            Ok(serde_json::Value::Object(document)) => {
                                Some(crate::facade::canonical(collection, &aspect.name, document))
                            }
                            _ => None,
                        });
                    match held {
                        // Nothing held to keep: the old document alone is the new one.
                        None => (facade.from_old)(document, None),
                        Some(held) => {
                            let alone = (facade.from_old)(document.clone(), None);
                            let merged = (facade.from_old)(document, Some(&held));
                            for field in merged.keys().filter(|field| !alone.contains_key(*field)) {
                                if kept.len() < MAX_KEPT_FIELDS {
                                    kept.insert(format!("{}.{field}", aspect.name));
                                }
                            }
                            merged
                        }
                    }
                }
            };
            aspect.body = Some(serde_json::Value::Object(canonical).to_string());
        }
    }
    Ok(())
}
