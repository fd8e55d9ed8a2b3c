//! Reading: one resource, and "every change after version v" in version order for the feed.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Error, Store};
use crate::version::{ResourceId, Version};

/// One aspect as stored: its latest version, and its document unless it was deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAspect {
    pub name: String,
    pub version: Version,
    pub deleted: bool,
    /// The aspect's fields as a JSON object; `None` for a tombstone.
    pub body: Option<String>,
}

/// One resource as stored, with every aspect it has (tombstones included).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    pub id: ResourceId,
    /// The version of its latest change, whichever aspects it touched.
    pub version: Version,
    pub deleted: bool,
    pub aspects: Vec<StoredAspect>,
    /// The greatest version among its aspect tombstones that were purged: a floor for the
    /// version a read shows, so that a purge never moves it back.
    pub purged_version: Version,
}

/// A resource in a feed chunk: only the selected aspects that changed in the chunk's range.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangedResource {
    pub id: ResourceId,
    /// The greatest version among the aspects carried.
    pub version: Version,
    /// The whole resource was deleted: a tombstone.
    pub deleted: bool,
    pub aspects: Vec<StoredAspect>,
}

/// One chunk of the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeBatch {
    pub items: Vec<ChangedResource>,
    /// The version to ask after next time: every change up to it is in this or earlier chunks.
    pub version: Version,
    /// Further changes below the horizon were already waiting.
    pub more: bool,
}

impl Store {
    /// Reads one resource with all its aspects; `None` when it never existed.
    pub async fn read(
        &self,
        collection: &str,
        id: &ResourceId,
    ) -> Result<Option<StoredResource>, Error> {
        // One statement, so the resource row and its aspects come from one snapshot.
        let rows = sqlx::query(
            "SELECT r.version, r.deleted, a.aspect, a.version, a.deleted, a.body, r.purged_version \
             FROM hs_resource r LEFT JOIN hs_aspect a \
               ON a.collection = r.collection AND a.resource_id = r.resource_id \
             WHERE r.collection = $1 AND r.resource_id = $2",
        )
        .bind(collection)
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let version = version_at(first, 0)?;
        let deleted = first.try_get::<i64, _>(1)? != 0;
        let purged_version = version_at(first, 6)?;
        let mut aspects = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(name) = row.try_get::<Option<String>, _>(2)? {
                aspects.push(StoredAspect {
                    name,
                    version: version_at(row, 3)?,
                    deleted: row.try_get::<i64, _>(4)? != 0,
                    body: row.try_get(5)?,
                });
            }
        }
        Ok(Some(StoredResource {
            id: id.clone(),
            version,
            deleted,
            aspects,
            purged_version,
        }))
    }

    /// The changes of the `aspects` named after version `after` and up to `until` (a horizon),
    /// grouped by resource, at most `max_resources` resources. Each version belongs to exactly
    /// one resource change, so a chunk always ends on a version boundary.
    pub async fn read_changes(
        &self,
        collection: &str,
        after: Version,
        until: Version,
        aspects: &[String],
        max_resources: usize,
    ) -> Result<ChangeBatch, Error> {
        self.read_changes_capped(collection, after, until, aspects, max_resources, usize::MAX)
            .await
    }

    /// Like [`Store::read_changes`], and stops at a version boundary once the documents add
    /// up to about `max_bytes`.
    pub async fn read_changes_capped(
        &self,
        collection: &str,
        after: Version,
        until: Version,
        aspects: &[String],
        max_resources: usize,
        max_bytes: usize,
    ) -> Result<ChangeBatch, Error> {
        if aspects.is_empty() || max_resources == 0 || until <= after {
            return Ok(ChangeBatch {
                items: Vec::new(),
                version: until.max(after),
                more: false,
            });
        }
        // A resource contributes at most one row per selected aspect, so this many rows hold
        // more than `max_resources` resources whenever more are waiting.
        let row_limit = max_resources
            .saturating_mul(aspects.len())
            .saturating_add(1);
        let placeholders = (0..aspects.len())
            .map(|index| format!("${}", index + 5))
            .collect::<Vec<_>>()
            .join(", ");
        let statement = format!(
            "SELECT a.resource_id, a.aspect, a.version, a.deleted, a.body, r.deleted \
             FROM hs_aspect a JOIN hs_resource r \
               ON r.collection = a.collection AND r.resource_id = a.resource_id \
             WHERE a.collection = $1 AND a.version > $2 AND a.version <= $3 \
               AND a.aspect IN ({placeholders}) \
             ORDER BY a.version LIMIT $4"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(collection)
            .bind(after.get())
            .bind(until.get())
            .bind(i64::try_from(row_limit).unwrap_or(i64::MAX));
        for aspect in aspects {
            query = query.bind(aspect.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;

        let mut items: Vec<ChangedResource> = Vec::new();
        let mut index_of: HashMap<String, usize> = HashMap::new();
        let mut last_included = after;
        let mut more = false;
        let mut bytes = 0usize;
        for row in &rows {
            let id: String = row.try_get(0)?;
            let version = version_at(row, 2)?;
            let body: Option<String> = row.try_get(4)?;
            // Rows of one version belong to one change: never cut between them.
            if version != last_included && !items.is_empty() && bytes >= max_bytes {
                more = true;
                break;
            }
            bytes += body.as_ref().map_or(0, String::len) + ROW_OVERHEAD_BYTES;
            let position = match index_of.get(&id) {
                Some(position) => *position,
                None if items.len() == max_resources => {
                    more = true;
                    break;
                }
                None => {
                    let resource_id = ResourceId::parse(&id)
                        .ok_or_else(|| Error::Corrupt(format!("resource id {id:?}")))?;
                    items.push(ChangedResource {
                        id: resource_id,
                        version,
                        deleted: row.try_get::<i64, _>(5)? != 0,
                        aspects: Vec::new(),
                    });
                    index_of.insert(id, items.len() - 1);
                    items.len() - 1
                }
            };
            let item = &mut items[position];
            item.version = item.version.max(version);
            item.aspects.push(StoredAspect {
                name: row.try_get(1)?,
                version,
                deleted: row.try_get::<i64, _>(3)? != 0,
                body,
            });
            last_included = version;
        }
        items.sort_by_key(|item| item.version);
        Ok(ChangeBatch {
            items,
            version: if more { last_included } else { until },
            more,
        })
    }
}

/// What a row adds to a rendered chunk beyond its document (element names, version, id).
const ROW_OVERHEAD_BYTES: usize = 96;

fn version_at(row: &AnyRow, index: usize) -> Result<Version, Error> {
    let value: i64 = row.try_get(index)?;
    Version::new(value).ok_or_else(|| Error::Corrupt(format!("negative version {value}")))
}
