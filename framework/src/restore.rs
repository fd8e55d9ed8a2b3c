//! Refilling a rolled-back owner from the copies its peers keep: for each peer, its copy's feed
//! from the restored version on, over the aspects it holds, applied so that the higher version
//! of each aspect wins (tombstones included, logins with their accounts); then the counter
//! moves past everything seen, and the owner takes writes again.
//!
//! A peer that cannot be read keeps the owner in `restoring` (named in the report): refilling
//! again later is harmless, because applying a chunk twice changes nothing.

use std::time::Duration;

use serde::Serialize;

use crate::aspect::{AspectSelector, Selection};
use crate::config::PeerConfig;
use crate::http::AppState;
use crate::model::Collection;
use crate::store::Restoring;
use crate::version::Version;
use crate::{poller, repr, store};

/// Resources per chunk asked of a peer (the feed's largest).
const CHUNK_LIMIT: u32 = 1000;
/// How long one chunk may take to arrive.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(60);
/// Chunks read from one peer at most, so a peer that never says `more: false` cannot keep the
/// owner busy forever (10 million resources at the largest chunk size).
const MAX_CHUNKS: usize = 10_000;

/// What one peer gave back for one collection.
#[derive(Debug, Clone, Serialize)]
pub struct PeerReport {
    pub sa: String,
    pub aspects: String,
    /// Resources and aspects (documents and tombstones) applied from its copy.
    pub resources: u64,
    pub aspects_applied: u64,
    /// The newest version it held.
    pub newest: i64,
    /// Why it could not be read (the owner then stays in `restoring`).
    pub error: Option<String>,
}

/// The outcome of refilling one collection.
#[derive(Debug, Clone, Serialize)]
pub struct RefillReport {
    pub collection: String,
    pub restored_to: i64,
    pub peers: Vec<PeerReport>,
    /// Aspects no configured peer copies: their changes after `restored_to` are lost.
    pub not_held: Vec<String>,
    /// The version the next write follows, once every peer was read; `None` while the
    /// collection stays in `restoring`.
    pub continues_after: Option<i64>,
}

/// Refills every owned collection in `restoring` from `peers`, and leaves `restoring` for each
/// one whose peers could all be read.
pub async fn refill(
    state: &AppState,
    peers: &[PeerConfig],
) -> Result<Vec<RefillReport>, store::Error> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(CHUNK_TIMEOUT)
        .build()
        .unwrap_or_default();
    let mut reports = Vec::new();
    for restoring in state.store().restoring().await? {
        let Some(collection) = state
            .service_area()
            .owned()
            .iter()
            .find(|owned| owned.name() == restoring.collection)
        else {
            continue;
        };
        reports.push(refill_collection(state, &client, collection, &restoring, peers).await?);
    }
    Ok(reports)
}

async fn refill_collection(
    state: &AppState,
    client: &reqwest::Client,
    collection: &Collection,
    restoring: &Restoring,
    peers: &[PeerConfig],
) -> Result<RefillReport, store::Error> {
    let from = Version::new(restoring.restored_to).unwrap_or(Version::ZERO);
    let mut reports = Vec::new();
    let mut held = Selection::default();
    for peer in peers
        .iter()
        .filter(|peer| peer.collection == collection.name())
    {
        let selection = AspectSelector::parse(&peer.aspects, 1024)
            .map(|selector| selector.select_known(collection.aspect_names()))
            .unwrap_or_default();
        held = held.union(&selection);
        let report = read_peer(state, client, collection, peer, from).await?;
        tracing::info!(collection = collection.name(), peer = %peer.sa, resources = report.resources,
            aspects = report.aspects_applied, error = ?report.error, "refilled from a peer");
        reports.push(report);
    }
    let newest = reports
        .iter()
        .map(|report| report.newest)
        .max()
        .unwrap_or(0);
    let complete = reports.iter().all(|report| report.error.is_none());
    let continues_after = if complete {
        state
            .store()
            .leave_restoring(
                collection.name(),
                Version::new(newest).unwrap_or(Version::ZERO),
            )
            .await?
            .map(Version::get)
    } else {
        None
    };
    Ok(RefillReport {
        collection: collection.name().to_owned(),
        restored_to: restoring.restored_to,
        not_held: collection
            .aspect_names()
            .iter()
            .filter(|name| !held.contains(name))
            .map(ToString::to_string)
            .collect(),
        peers: reports,
        continues_after,
    })
}

/// Reads one peer's copy from `from` on and applies it; a failure ends up in the report.
async fn read_peer(
    state: &AppState,
    client: &reqwest::Client,
    collection: &Collection,
    peer: &PeerConfig,
    from: Version,
) -> Result<PeerReport, store::Error> {
    let mut report = PeerReport {
        sa: peer.sa.clone(),
        aspects: peer.aspects.clone(),
        resources: 0,
        aspects_applied: 0,
        newest: 0,
        error: None,
    };
    let mut position = from;
    for _ in 0..MAX_CHUNKS {
        let chunk = match fetch(client, collection, peer, position).await {
            Ok(chunk) => chunk,
            Err(error) => {
                report.error = Some(error);
                return Ok(report);
            }
        };
        let items = poller::chunk_items(collection, &chunk);
        state
            .store()
            .refill_chunk(collection.name(), &items)
            .await?;
        report.resources += items.len() as u64;
        report.aspects_applied += items
            .iter()
            .map(|item| item.aspects.len() as u64)
            .sum::<u64>();
        report.newest = report.newest.max(chunk.version.get());
        if !chunk.more {
            return Ok(report);
        }
        if chunk.version <= position {
            report.error = Some(format!("the feed did not advance past version {position}"));
            return Ok(report);
        }
        position = chunk.version;
    }
    report.error = Some(format!("more than {MAX_CHUNKS} chunks"));
    Ok(report)
}

/// One chunk of the peer's copy after `position`.
async fn fetch(
    client: &reqwest::Client,
    collection: &Collection,
    peer: &PeerConfig,
    position: Version,
) -> Result<repr::FeedChunk, String> {
    let url = format!(
        "{}/{}?version={}&limit={CHUNK_LIMIT}&aspects={}",
        peer.url.trim_end_matches('/'),
        collection.name(),
        position.get(),
        peer.aspects
    );
    let response = client
        .get(&url)
        .bearer_auth(&peer.token)
        .header(
            "accept",
            format!("application/vnd.{}.v1+json", collection.owner()),
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
    repr::parse_feed(&body, collection).map_err(|error| format!("{url}: {error}"))
}
