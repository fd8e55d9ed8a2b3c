//! The delta feed: `GET /{collection}?version&aspects&limit&wait`, served by owners and by
//! copies alike, plus the owner's view of its consumers and the tombstone purge.

use std::time::{Duration, Instant};

use axum::Extension;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::extract::{UrlVersion, query_params};
use super::positions::Position;
use super::resource::{answer, bad_path, negotiate, param, selection};
use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::codes;
use crate::interface::Negotiated;
use crate::model::{Collection, Role};
use crate::origin::Origin;
use crate::repr::{self, ResourceView};
use crate::store::ChangeBatch;
use crate::version::Version;

/// Resources per chunk when the client names no `limit`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = crate::config::FEED_MAX_LIMIT as usize;
const MAX_WAIT_SECS: u64 = crate::config::FEED_MAX_WAIT_SECS;
/// How often a waiting long poll looks for writes of other units in the database, unless
/// their commit notices arrive (`store/notices.rs`).
const DATABASE_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// The same while notices arrive: only a safety net for a notice lost on its way.
const HEARD_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How long a feed request waits for writers in flight to commit before answering, and how
/// often it looks.
const SETTLE_TIME: Duration = Duration::from_millis(500);
const SETTLE_STEP: Duration = Duration::from_millis(10);

/// `GET /{collection}?version=…&aspects=…&limit=…&wait=…`
pub(super) async fn feed(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    url_version: Option<Extension<UrlVersion>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let collection = state.collection(&path.map_err(bad_path)?.0)?;
    if super::lookup::applies(collection, &caller, query.as_deref()) {
        return super::lookup::list(
            &state,
            collection,
            &caller,
            &headers,
            &url_version,
            query.as_deref(),
        )
        .await;
    }
    if !caller.is_service() {
        return Err(ApiError::forbidden(
            codes::FEED_NOT_GRANTED,
            "a user session cannot read a feed",
        ));
    }
    let negotiated = negotiate(&state, collection, &headers, &url_version)?;
    let params = query_params(
        query.as_deref(),
        &["version", "aspects", "limit", "wait", "origin"],
    )?;
    let origin = state.feed_origin(collection, param(&params, "origin"))?;
    let after = match param(&params, "version") {
        None => Version::ZERO,
        Some(text) => Version::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                codes::BAD_VERSION,
                format!(
                    "version must be a whole number from 0 to {}",
                    Version::MAX_NAMED
                ),
            )
        })?,
    };
    let limit = bounded(
        param(&params, "limit"),
        DEFAULT_LIMIT,
        1,
        MAX_LIMIT,
        codes::BAD_LIMIT,
        "limit",
    )?;
    let wait = bounded(
        param(&params, "wait"),
        0,
        0,
        MAX_WAIT_SECS as usize,
        codes::BAD_WAIT,
        "wait",
    )?;
    let selection = selection(&state, collection, &caller, param(&params, "aspects"))?;
    let aspects: Vec<String> = selection.names().iter().map(ToString::to_string).collect();

    let current = current_unless_ahead(
        &state,
        collection,
        &origin,
        &caller,
        after,
        negotiated.version,
    )
    .await?;
    let purged = state
        .store()
        .purged_through_of(collection.name(), &origin)
        .await?;
    let behind_purge = after > Version::ZERO && after < purged;
    // An operator is no recorded consumer: paging from 0 it gets the current state the way a
    // re-reading consumer does (purged tombstones passed), not a `410` on its second page
    // that sends it back to 0 for good (issue 25).
    let resyncing = behind_purge
        && (caller.is_operator()
            || state
                .store()
                .consumer_resyncing(collection.name(), &origin, &caller.name, after)
                .await?);
    if behind_purge && !resyncing {
        return Err(resync_required(purged));
    }
    // A re-read from 0 stays marked until it has passed the purged tombstones. An operator's
    // hand-typed `?version=0` is no consumer: recorded, it would pin every tombstone for
    // `tombstone_max_age_secs` and be listed among the copies.
    if !caller.is_operator() {
        remember_consumer(
            &state,
            collection,
            &origin,
            &caller,
            after,
            after == Version::ZERO || resyncing,
            negotiated.version,
        )
        .await;
    }

    // The purge horizon is part of the key: a chunk cached before tombstones were purged
    // could bring back, to a consumer re-reading from 0, resources deleted since.
    let cache_key = format!(
        "{}|{}|{after}|{selection}|{limit}|{:?}|{}|{purged}",
        collection.name(),
        origin.name,
        negotiated.format,
        negotiated.version
    );
    if let Some(chunk) = state.inner.chunks.get(&cache_key).await {
        metrics::counter!("hiscale_feed_cache_total", "result" => "hit").increment(1);
        return Ok(answer(
            &state,
            collection,
            negotiated,
            StatusCode::OK,
            chunk,
        ));
    }
    metrics::counter!("hiscale_feed_cache_total", "result" => "miss").increment(1);

    let deadline = Instant::now() + Duration::from_secs(wait as u64);
    let settle_deadline = Instant::now() + SETTLE_TIME;
    let mut own_writes = state.inner.changes.subscribe();
    // Where the newest version is also the horizon (a copy's cursor, SQLite's counter), the
    // first look reuses `current` instead of asking the database again.
    let mut known_horizon = (matches!(collection.role(), Role::Copy { .. })
        || state.store().horizon_is_newest_version())
    .then_some(current);
    let batch = loop {
        let horizon = match known_horizon.take() {
            Some(horizon) => horizon,
            None => visible_version(&state, collection, &origin).await?,
        };
        if horizon < after {
            // The store went back while this request waited (a restore, a failover to a
            // lagging standby): answering `after` again at the deadline would tell the
            // consumer nothing is wrong.
            current_unless_ahead(
                &state,
                collection,
                &origin,
                &caller,
                after,
                negotiated.version,
            )
            .await?;
        }
        // Writers still committing versions below what was handed out: give them a moment, so
        // a chunk shows what was committed when it was asked for (a long transaction only
        // delays the feed, it never makes it skip). A long poll that already has something
        // newer to show answers at once instead: its consumer asks again right away, so the
        // wait would only delay what is visible already (up to 0.5 s behind a long writer).
        let settles = wait == 0 || horizon <= after;
        if settles && horizon < current && Instant::now() < settle_deadline {
            tokio::select! {
                _ = own_writes.changed() => {}
                () = tokio::time::sleep(SETTLE_STEP) => {}
            }
            continue;
        }
        let (batch, _) = state
            .store()
            .read_changes_counted(
                collection.name(),
                &origin,
                after,
                horizon,
                &aspects,
                limit,
                state.inner.feed.max_chunk_bytes,
            )
            .await?;
        // Hold the request only while nothing at all is newer than `after`.
        if horizon > after || Instant::now() >= deadline {
            break batch;
        }
        let interval = check_interval(&state, collection, &origin, horizon).await?;
        tokio::select! {
            _ = own_writes.changed() => {}
            () = tokio::time::sleep(interval) => {}
        }
    };
    // A purge, or a copy's re-read dropping what its source deleted, may have moved the purge
    // horizon past `after` while this request waited: the chunk would carry the consumer past
    // deletions it never saw. The check comes after the read, and a copy moves its cursor and
    // its purge horizon in one transaction, so a chunk reaching beyond is always caught.
    if !resyncing && after > Version::ZERO {
        let purged_now = state
            .store()
            .purged_through_of(collection.name(), &origin)
            .await?;
        if after < purged_now {
            return Err(resync_required(purged_now));
        }
    }
    metrics::histogram!("hiscale_feed_chunk_items", "collection" => collection.name().to_owned())
        .record(batch.items.len() as f64);
    let body = bytes::Bytes::from(render(&batch, collection, negotiated));
    if batch.more {
        state.inner.chunks.insert(cache_key, body.clone()).await;
    }
    Ok(answer(&state, collection, negotiated, StatusCode::OK, body))
}

fn resync_required(purged: Version) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        codes::RESYNC_REQUIRED,
        format!(
            "tombstones up to version {purged} are gone; re-read from version 0 and drop what is not seen"
        ),
    )
}

/// `GET /admin/consumers`: each consumer's last position and how far behind it is.
pub(super) async fn consumers(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    super::ops::require_operator(&caller)?;
    state.flush_consumer_positions().await?;
    let now = crate::store::unix_now();
    let mut collections = Vec::new();
    for collection in state.service_area().owned() {
        let current = state.store().current_version(collection.name()).await?;
        let consumers: Vec<_> = state
            .store()
            .consumers(collection.name())
            .await?
            .into_iter()
            .map(|consumer| {
                json!({
                    "consumer": consumer.name,
                    "version": consumer.version.get(),
                    "lag_versions": current.get().saturating_sub(consumer.version.get()),
                    "seconds_since_poll": now.saturating_sub(consumer.polled_at),
                })
            })
            .collect();
        collections.push(json!({
            "collection": collection.name(),
            "version": current.get(),
            "consumers": consumers,
        }));
    }
    Ok(Json(json!({ "collections": collections })))
}

/// `POST /admin/purge`: purges tombstones now (a unit also does it on its own, periodically).
pub(super) async fn purge(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    super::ops::require_operator(&caller)?;
    state.flush_consumer_positions().await?;
    let mut reports = Vec::new();
    for collection in state.service_area().owned() {
        let report = state.purge_tombstones(collection).await?;
        reports.push(json!({ "collection": collection.name(), "report": report }));
    }
    Ok(Json(json!({ "purged": reports })))
}

/// A chunk in the negotiated version: each item through that version's facades (the cache
/// key names the version, so versions never share a cached chunk).
fn render(batch: &ChangeBatch, collection: &Collection, negotiated: Negotiated) -> Vec<u8> {
    let items = crate::facade::present_changes(collection, negotiated.version, &batch.items);
    let views: Vec<ResourceView<'_>> = items.iter().map(ResourceView::changed).collect();
    repr::render_feed(
        negotiated.format,
        collection,
        batch.version,
        batch.more,
        &views,
    )
}

/// The newest version this store handed out (owner) or received (copy), unless the caller
/// holds `after` beyond it: then `409 version-ahead`, after noticing the rollback.
async fn current_unless_ahead(
    state: &AppState,
    collection: &Collection,
    origin: &Origin,
    caller: &Caller,
    after: Version,
    interface: crate::interface::InterfaceVersion,
) -> Result<Version, ApiError> {
    let current = latest_version(state, collection, origin).await?;
    if after <= current {
        return Ok(current);
    }
    notice_rollback(
        state,
        collection,
        origin,
        caller,
        (after, current),
        interface,
    )
    .await?;
    Err(ApiError::new(
        StatusCode::CONFLICT,
        codes::VERSION_AHEAD,
        format!(
            "version {after} is ahead of this store's {current}: it lost changes and must be refilled first"
        ),
    ))
}

/// A consumer holds `after`, beyond the `current` this store handed out: the store was rolled
/// back. An owner enters `restoring` (writes refused until an operator restores it), so it
/// never hands out those versions, or ids, a second time. A copy cannot restore anything; it
/// says so in its log.
async fn notice_rollback(
    state: &AppState,
    collection: &Collection,
    origin: &Origin,
    caller: &Caller,
    (after, current): (Version, Version),
    interface: crate::interface::InterfaceVersion,
) -> Result<(), ApiError> {
    if caller.is_operator() {
        // An operator's hand-typed `?version=` is no consumer's position: it must not stop
        // the owner's writes.
        return Ok(());
    }
    if *collection.role() != Role::Owner {
        tracing::warn!(collection = collection.name(), consumer = %caller.name, %after, %current,
            "a reader of this copy is ahead of it: the copy's database was rolled back");
        return Ok(());
    }
    let already = state
        .store()
        .restoring()
        .await?
        .iter()
        .any(|restoring| restoring.collection == collection.name());
    let restoring = state
        .store()
        .report_ahead(collection.name(), &caller.name, after, current)
        .await?;
    // The consumer has told this store the version it holds: that counts for the start gate.
    if let Err(error) = state
        .store()
        .record_consumer(
            collection.name(),
            origin,
            &caller.name,
            after,
            false,
            interface,
        )
        .await
    {
        tracing::warn!(%error, consumer = %caller.name, "could not record the consumer's position");
    }
    if restoring && !already {
        state.drop_caches();
        tracing::error!(collection = collection.name(), consumer = %caller.name, %after, %current,
            peers = state.restore_from().len(),
            "rolled back: a consumer holds versions this store never handed out; writes are \
             refused until the refill from the peers' copies (or an operator) ends restoring \
             (DELETE /admin/restore continues past them)");
        super::restore::refill_on_its_own(state);
    }
    Ok(())
}

/// The newest version handed out (owner) or received (copy): a caller beyond it is ahead.
pub(super) async fn latest_version(
    state: &AppState,
    collection: &Collection,
    origin: &Origin,
) -> Result<Version, ApiError> {
    Ok(match collection.role() {
        // A counter below what this unit exposed is evidence of a rollback by itself.
        Role::Owner => {
            state
                .store()
                .checked_current_version(collection.name())
                .await?
        }
        Role::Copy { .. } => state.store().cursor_of(collection.name(), origin).await?,
    })
}

/// How long a waiting long poll may go without looking into the database. Commit notices
/// wake it for every commit of another unit, but not for the end of a transaction that only
/// holds the horizon back (of another database of the cluster, say): while versions were
/// handed out beyond `horizon`, it keeps looking at the short interval.
async fn check_interval(
    state: &AppState,
    collection: &Collection,
    origin: &Origin,
    horizon: Version,
) -> Result<Duration, ApiError> {
    if !state.store().hears_commits() || latest_version(state, collection, origin).await? > horizon
    {
        return Ok(DATABASE_CHECK_INTERVAL);
    }
    Ok(HEARD_CHECK_INTERVAL)
}

/// Up to where the feed may read: the owner's visibility horizon, or a copy's cursor (a copy
/// applies whole chunks in one transaction, so everything up to its cursor is visible).
async fn visible_version(
    state: &AppState,
    collection: &Collection,
    origin: &Origin,
) -> Result<Version, ApiError> {
    Ok(match collection.role() {
        Role::Owner => state.store().horizon(collection.name()).await?,
        Role::Copy { .. } => state.store().cursor_of(collection.name(), origin).await?,
    })
}

/// Records the consumer's position (`positions.rs` decides whether it is written now).
async fn remember_consumer(
    state: &AppState,
    collection: &Collection,
    origin: &Origin,
    caller: &Caller,
    after: Version,
    resync: bool,
    interface: crate::interface::InterfaceVersion,
) {
    let position = Position {
        collection: collection.name().to_owned(),
        origin: origin.clone(),
        consumer: caller.name.clone(),
        version: after,
        resync,
        interface,
    };
    if let Err(error) = state
        .inner
        .positions
        .remember(
            state.store(),
            position,
            state.gate().is_open(),
            state.gate().latest_unit_start(),
        )
        .await
    {
        // Losing one position update only delays a purge; the feed answer matters more.
        tracing::warn!(%error, consumer = %caller.name, "could not record the consumer's position");
    }
}

pub(super) fn bounded(
    text: Option<&str>,
    default: usize,
    min: usize,
    max: usize,
    code: &'static str,
    name: &str,
) -> Result<usize, ApiError> {
    let Some(text) = text else {
        return Ok(default);
    };
    text.parse::<usize>()
        .ok()
        .filter(|value| (min..=max).contains(value) && text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            ApiError::bad_request(
                code,
                format!("{name} must be a whole number from {min} to {max}"),
            )
        })
}
