//! A unit's tombstone purge of one owned collection: the store removes tombstones batch by
//! batch (`store/purge.rs`); here each batch also drops the feed chunks cached under the purge
//! horizon it moved past, and the purge's cost goes to the metrics.
//!
//! The chunk cache keys every chunk by the purge horizon it was read under (`feed.rs`), so a
//! chunk cached before a purge is never served after it; without this, those chunks stayed in
//! memory, unreachable, until they expired, one generation per batch.

use std::time::Instant;

use super::AppState;
use crate::model::Collection;
use crate::store::{self, PurgeReport};

impl AppState {
    /// Purges `collection`'s tombstones every known consumer has passed (or older than the
    /// maximum age) now; the unit does it every `purge_interval_secs`, the operator through
    /// `POST /admin/purge`. Write the consumers' positions first.
    pub(crate) async fn purge_tombstones(
        &self,
        collection: &Collection,
    ) -> Result<PurgeReport, store::Error> {
        let name = collection.name();
        let origin = self.store().own_origin().own.name;
        let started = Instant::now();
        let mut stale = Vec::new();
        let outcome = self
            .store()
            .purge_tombstones(name, self.inner.feed.tombstone_max_age_secs, |batch| {
                metrics::histogram!("hiscale_purge_batch_seconds", "collection" => name.to_owned())
                    .record(batch.held.as_secs_f64());
                if batch.horizon_after != batch.horizon_before {
                    stale.push(batch.horizon_before);
                }
            })
            .await;
        // Dropped after the batches, not between them: the batches hold the write turn, the
        // cache does not need it, and a chunk keyed by an old horizon is never served anyway.
        if !stale.is_empty() {
            self.drop_chunks_keyed_by(name, &origin, &stale).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        metrics::histogram!("hiscale_purge_seconds", "collection" => name.to_owned())
            .record(seconds);
        let report = outcome?;
        metrics::counter!("hiscale_purged_tombstones_total", "collection" => name.to_owned())
            .increment(report.aspect_tombstones);
        if report.aspect_tombstones > 0 {
            tracing::info!(collection = %name, ?report, seconds, "purged tombstones");
        }
        Ok(report)
    }

    /// Forgets the chunks of `collection` and `origin` cached under one of the purge
    /// horizons `stale`.
    async fn drop_chunks_keyed_by(&self, collection: &str, origin: &str, stale: &[i64]) {
        let chunks = &self.inner.chunks;
        let keys: Vec<_> = chunks
            .iter()
            .map(|(key, _)| key)
            .filter(|key| {
                stale
                    .iter()
                    .any(|horizon| keyed_by(key, collection, origin, *horizon))
            })
            .collect();
        for key in keys {
            chunks.invalidate(key.as_str()).await;
        }
    }
}

/// Whether a chunk cache key (`collection|origin|…|purge horizon`, `feed.rs`) is of
/// `collection` and `origin` and names `horizon` as its purge horizon.
fn keyed_by(key: &str, collection: &str, origin: &str, horizon: i64) -> bool {
    let Some(rest) = key
        .strip_prefix(collection)
        .and_then(|rest| rest.strip_prefix('|'))
        .and_then(|rest| rest.strip_prefix(origin))
        .and_then(|rest| rest.strip_prefix('|'))
    else {
        return false;
    };
    rest.rsplit_once('|')
        .is_some_and(|(_, last)| last == horizon.to_string())
}

/// How many chunks are cached (tests: dropping them after a purge).
#[cfg(any(test, feature = "testing"))]
impl AppState {
    pub async fn cached_chunks(&self) -> u64 {
        self.inner.chunks.run_pending_tasks().await;
        self.inner.chunks.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::keyed_by;

    #[test]
    fn a_key_names_its_collection_origin_and_purge_horizon() {
        let key = "orders|dc1|40|~order|100|Json|1|37";
        assert!(keyed_by(key, "orders", "dc1", 37));
        assert!(!keyed_by(key, "orders", "dc1", 7));
        assert!(!keyed_by(key, "orders", "", 37));
        assert!(!keyed_by(key, "order", "dc1", 37));
        assert!(keyed_by("orders||0|~order|100|Xml|2|0", "orders", "", 0));
        assert!(!keyed_by("orders||0|~order|100|Xml|2|10", "orders", "", 0));
    }
}
