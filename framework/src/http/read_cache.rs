//! The owner's (and a copy's) cache of its own renders: `GET /{collection}/{id}` answers,
//! rendered once per state of the resource and representation.
//!
//! A hit still costs one small query, [`Store::read_stamp`](crate::store::Store::read_stamp):
//! each aspect's name and version without the documents. An entry is stored under the stamp
//! of exactly the state it was rendered from, so a lookup finds it only while the database
//! still holds that state — through any unit sharing the database, never a read older than
//! a write whose answer a client already has. What the hit saves is the documents, the
//! facades' conversions and the rendering. Sessions go around it: whether one reaches a
//! resource depends on the documents.

use bytes::Bytes;

use crate::interface::Negotiated;
use crate::store::ReadStamp;
use crate::version::{ResourceId, Version};

/// One rendered read: the body and the version its `ETag` shows.
#[derive(Debug, Clone)]
pub(super) struct Rendered {
    pub(super) version: Version,
    pub(super) body: Bytes,
}

/// Rendered reads by collection, id, stamp, selection and representation; bounded in bytes
/// (0 bytes: nothing is kept and nothing looked up).
#[derive(Debug, Clone)]
pub(super) struct ReadCache {
    entries: Option<moka::future::Cache<String, Rendered>>,
}

/// An entry unused this long goes, so rarely read resources do not hold memory.
const IDLE: std::time::Duration = std::time::Duration::from_secs(300);

impl ReadCache {
    pub(super) fn new(bytes: u64) -> Self {
        let entries = (bytes > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(bytes)
                .weigher(|key: &String, rendered: &Rendered| {
                    u32::try_from(key.len() + rendered.body.len()).unwrap_or(u32::MAX)
                })
                .time_to_idle(IDLE)
                .build()
        });
        Self { entries }
    }

    pub(super) fn enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// The key of one representation of one state of a resource.
    pub(super) fn key(
        collection: &str,
        id: &ResourceId,
        stamp: &ReadStamp,
        selection: &impl std::fmt::Display,
        negotiated: Negotiated,
    ) -> String {
        format!(
            "{collection}|{}|{}|{selection}|{:?}|{}",
            id.as_str(),
            stamp.as_str(),
            negotiated.format,
            negotiated.version
        )
    }

    pub(super) async fn get(&self, key: &str) -> Option<Rendered> {
        let found = self.entries.as_ref()?.get(key).await;
        let result = if found.is_some() { "hit" } else { "miss" };
        metrics::counter!("hiscale_read_cache_total", "result" => result).increment(1);
        found
    }

    /// Forgets every render: after a rollback, a state a render was made from may come back
    /// with other contents under the same versions.
    pub(super) fn clear(&self) {
        if let Some(entries) = &self.entries {
            entries.invalidate_all();
        }
    }

    pub(super) async fn insert(&self, key: String, rendered: Rendered) {
        if let Some(entries) = &self.entries {
            entries.insert(key, rendered).await;
        }
    }
}
