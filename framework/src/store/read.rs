//! Reading: one resource, and "every change after version v" in version order for the feed.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Error, Store};
use crate::origin::Origin;
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

/// The state of one resource as [`Store::read_stamp`] identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadStamp {
    /// The whole resource is deleted.
    pub deleted: bool,
    /// Resource version and purged version, then `|name@version` per aspect by name.
    text: String,
}

impl ReadStamp {
    /// The stamp of a resource as [`Store::read`] returned it.
    pub fn of(resource: &StoredResource) -> Self {
        let mut stamp = Self {
            deleted: resource.deleted,
            text: format!("{}/{}", resource.version, resource.purged_version),
        };
        let mut aspects: Vec<&StoredAspect> = resource.aspects.iter().collect();
        aspects.sort_by(|left, right| left.name.cmp(&right.name));
        for aspect in aspects {
            stamp.push(&aspect.name, aspect.version);
        }
        stamp
    }

    fn push(&mut self, name: &str, version: Version) {
        use std::fmt::Write as _;
        let _infallible = write!(self.text, "|{name}@{version}");
    }

    /// The stamp as text, for a cache key.
    pub fn as_str(&self) -> &str {
        &self.text
    }
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
            // Of a collection owned in several datacenters, a resource homed elsewhere is
            // not missing: it is there.
            super::write::refuse_away_from_home(&self.own_origin(), collection, id)?;
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

    /// What identifies the state of one resource without its documents: its row, and each
    /// aspect's name and version (tombstones included); `None` when it never existed.
    ///
    /// A document never changes without its version changing, versions are never reused, and
    /// every way an aspect goes (purge, a copy dropping what its source deleted) removes its
    /// pair, so two reads with equal stamps show the same resource: a cache of what was
    /// rendered from [`Store::read`] can be keyed by [`ReadStamp::of`] and looked up by this.
    pub async fn read_stamp(
        &self,
        collection: &str,
        id: &ResourceId,
    ) -> Result<Option<ReadStamp>, Error> {
        let rows = sqlx::query(
            "SELECT r.version, r.deleted, r.purged_version, a.aspect, a.version \
             FROM hs_resource r LEFT JOIN hs_aspect a \
               ON a.collection = r.collection AND a.resource_id = r.resource_id \
             WHERE r.collection = $1 AND r.resource_id = $2",
        )
        .bind(collection)
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            super::write::refuse_away_from_home(&self.own_origin(), collection, id)?;
            return Ok(None);
        };
        let mut stamp = ReadStamp {
            deleted: first.try_get::<i64, _>(1)? != 0,
            text: format!("{}/{}", version_at(first, 0)?, version_at(first, 2)?),
        };
        let mut aspects = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(name) = row.try_get::<Option<String>, _>(3)? {
                aspects.push((name, version_at(row, 4)?));
            }
        }
        // Sorted here, not by SQL: PostgreSQL's collation may order names differently.
        aspects.sort();
        for (name, version) in &aspects {
            stamp.push(name, *version);
        }
        Ok(Some(stamp))
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
    ///
    /// The rows are streamed and reading stops at the cut, so one request holds about
    /// `max_bytes` of documents plus one version's rows, however large `max_resources` times
    /// the aspects is (`limit = 1000` of five 64 KiB aspects once loaded ≈ 320 MiB before
    /// cutting).
    pub async fn read_changes_capped(
        &self,
        collection: &str,
        after: Version,
        until: Version,
        aspects: &[String],
        max_resources: usize,
        max_bytes: usize,
    ) -> Result<ChangeBatch, Error> {
        Ok(self
            .read_changes_counted(
                collection,
                &Origin::single(),
                after,
                until,
                aspects,
                max_resources,
                max_bytes,
            )
            .await?
            .0)
    }

    /// [`Store::read_changes_capped`] of `origin`'s changes only, and how many rows it took
    /// from the database.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn read_changes_counted(
        &self,
        collection: &str,
        origin: &Origin,
        after: Version,
        until: Version,
        aspects: &[String],
        max_resources: usize,
        max_bytes: usize,
    ) -> Result<(ChangeBatch, usize), Error> {
        if aspects.is_empty() || max_resources == 0 || until <= after {
            let batch = ChangeBatch {
                items: Vec::new(),
                version: until.max(after),
                more: false,
            };
            return Ok((batch, 0));
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
        let of_origin = origin
            .sql_condition("a.version")
            .map_or_else(String::new, |condition| format!(" AND {condition}"));
        let statement = format!(
            "SELECT a.resource_id, a.aspect, a.version, a.deleted, a.body, r.deleted \
             FROM hs_aspect a JOIN hs_resource r \
               ON r.collection = a.collection AND r.resource_id = a.resource_id \
             WHERE a.collection = $1 AND a.version > $2 AND a.version <= $3 \
               AND a.aspect IN ({placeholders}){of_origin} \
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
        // One statement (one snapshot), read row by row: SQLite's worker steps the statement
        // only as far as its bounded channel is taken, PostgreSQL's rows wait in the socket.
        let mut rows = query.fetch(&self.pool);
        let mut chunk = ChunkBuilder::new(after, max_resources, max_bytes);
        let mut read = 0usize;
        while let Some(row) = rows.try_next().await? {
            read += 1;
            if !chunk.push(FeedRow::of(&row)?)? {
                break;
            }
        }
        drop(rows);
        Ok((chunk.finish(until), read))
    }
}

/// One row of the feed's query.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FeedRow {
    pub(super) resource_id: String,
    pub(super) aspect: String,
    pub(super) version: Version,
    pub(super) deleted: bool,
    pub(super) body: Option<String>,
    pub(super) resource_deleted: bool,
}

impl FeedRow {
    fn of(row: &AnyRow) -> Result<Self, Error> {
        Ok(Self {
            resource_id: row.try_get(0)?,
            aspect: row.try_get(1)?,
            version: version_at(row, 2)?,
            deleted: row.try_get::<i64, _>(3)? != 0,
            body: row.try_get(4)?,
            resource_deleted: row.try_get::<i64, _>(5)? != 0,
        })
    }
}

/// Groups the feed's rows (in version order) into one chunk's resources and says where the
/// chunk ends: once it holds `max_resources` resources, or once its documents add up to
/// `max_bytes`, always between two versions (the rows of one version are one change of one
/// resource and never split). It keeps nothing of a row it refuses, so a reader that stops
/// at the first refusal holds the chunk plus that one row.
#[derive(Debug)]
pub(super) struct ChunkBuilder {
    items: Vec<ChangedResource>,
    index_of: HashMap<String, usize>,
    last_included: Version,
    more: bool,
    bytes: usize,
    max_resources: usize,
    max_bytes: usize,
}

impl ChunkBuilder {
    pub(super) fn new(after: Version, max_resources: usize, max_bytes: usize) -> Self {
        Self {
            items: Vec::new(),
            index_of: HashMap::new(),
            last_included: after,
            more: false,
            bytes: 0,
            max_resources,
            max_bytes,
        }
    }

    /// Takes the next row; `false` when the chunk is full: that row and every later one
    /// belong to the next chunk, so stop reading.
    pub(super) fn push(&mut self, row: FeedRow) -> Result<bool, Error> {
        if self.more {
            return Ok(false);
        }
        // Rows of one version belong to one change: never cut between them.
        if row.version != self.last_included
            && !self.items.is_empty()
            && self.bytes >= self.max_bytes
        {
            self.more = true;
            return Ok(false);
        }
        let position = match self.index_of.get(&row.resource_id) {
            Some(position) => *position,
            None if self.items.len() == self.max_resources => {
                self.more = true;
                return Ok(false);
            }
            None => {
                let resource_id = ResourceId::parse(&row.resource_id)
                    .ok_or_else(|| Error::Corrupt(format!("resource id {:?}", row.resource_id)))?;
                self.items.push(ChangedResource {
                    id: resource_id,
                    version: row.version,
                    deleted: row.resource_deleted,
                    aspects: Vec::new(),
                });
                self.index_of.insert(row.resource_id, self.items.len() - 1);
                self.items.len() - 1
            }
        };
        self.bytes += row.body.as_ref().map_or(0, String::len) + ROW_OVERHEAD_BYTES;
        let item = &mut self.items[position];
        item.version = item.version.max(row.version);
        item.aspects.push(StoredAspect {
            name: row.aspect,
            version: row.version,
            deleted: row.deleted,
            body: row.body,
        });
        self.last_included = row.version;
        Ok(true)
    }

    /// The chunk: up to the last version taken when it is full, else up to `until`.
    pub(super) fn finish(mut self, until: Version) -> ChangeBatch {
        self.items.sort_by_key(|item| item.version);
        ChangeBatch {
            version: if self.more { self.last_included } else { until },
            more: self.more,
            items: self.items,
        }
    }
}

/// What a row adds to a rendered chunk beyond its document (element names, version, id).
const ROW_OVERHEAD_BYTES: usize = 96;

fn version_at(row: &AnyRow, index: usize) -> Result<Version, Error> {
    let value: i64 = row.try_get(index)?;
    Version::new(value).ok_or_else(|| Error::Corrupt(format!("negative version {value}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::{AspectEdit, Change, Target};

    fn version(value: i64) -> Version {
        Version::new(value).unwrap()
    }

    fn row(id: &str, aspect: &str, at: i64, bytes: usize) -> FeedRow {
        FeedRow {
            resource_id: id.to_owned(),
            aspect: aspect.to_owned(),
            version: version(at),
            deleted: false,
            body: Some("x".repeat(bytes)),
            resource_deleted: false,
        }
    }

    #[test]
    fn the_chunk_ends_at_the_first_version_past_the_byte_budget() {
        let mut chunk = ChunkBuilder::new(version(0), 1000, 1000);
        // Version 1: two aspects of 600 bytes, past the budget after the first; still whole.
        assert!(chunk.push(row("1", "a", 1, 600)).unwrap());
        assert!(chunk.push(row("1", "b", 1, 600)).unwrap());
        // The next version is refused, and so is anything after.
        assert!(!chunk.push(row("2", "a", 2, 10)).unwrap());
        assert!(!chunk.push(row("3", "a", 3, 10)).unwrap());
        let batch = chunk.finish(version(50));
        assert!(batch.more);
        assert_eq!(batch.version, version(1));
        assert_eq!(batch.items.len(), 1);
        assert_eq!(batch.items[0].aspects.len(), 2);
    }

    #[test]
    fn the_chunk_ends_at_the_resource_limit_and_else_reaches_the_horizon() {
        let mut chunk = ChunkBuilder::new(version(0), 2, usize::MAX);
        assert!(chunk.push(row("1", "a", 1, 10)).unwrap());
        assert!(chunk.push(row("2", "a", 2, 10)).unwrap());
        // A later change of a resource already in the chunk joins it.
        assert!(chunk.push(row("1", "b", 3, 10)).unwrap());
        assert!(!chunk.push(row("4", "a", 4, 10)).unwrap());
        let batch = chunk.finish(version(9));
        assert!(batch.more);
        assert_eq!(batch.version, version(3));
        let order: Vec<(&str, Version)> = batch
            .items
            .iter()
            .map(|item| (item.id.as_str(), item.version))
            .collect();
        assert_eq!(order, vec![("2", version(2)), ("1", version(3))]);

        let mut chunk = ChunkBuilder::new(version(0), 2, usize::MAX);
        assert!(chunk.push(row("1", "a", 1, 10)).unwrap());
        let batch = chunk.finish(version(9));
        assert!(!batch.more);
        assert_eq!(batch.version, version(9));
    }

    #[test]
    fn a_corrupt_resource_id_is_an_error_not_a_panic() {
        let mut chunk = ChunkBuilder::new(version(0), 10, 10);
        assert!(chunk.push(row("not an id", "a", 1, 1)).is_err());
    }

    /// `limit = 1000` over 64 KiB aspects: the store stops reading at the byte budget instead
    /// of loading `limit × aspects + 1` rows first.
    #[tokio::test]
    async fn a_feed_read_stops_taking_rows_at_the_byte_budget() {
        const ASPECT_BYTES: usize = 64 * 1024;
        const RESOURCES: usize = 40;
        const BUDGET: usize = 1024 * 1024;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("feed.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.register_collection("customers").await.unwrap();
        let body = format!("{{\"text\":\"{}\"}}", "y".repeat(ASPECT_BYTES));
        let aspects = ["a", "b", "c"];
        let changes = (0..RESOURCES)
            .map(|_| Change {
                target: Target::Create,
                precondition: None,
                edits: aspects
                    .iter()
                    .map(|aspect| AspectEdit {
                        aspect: (*aspect).to_owned(),
                        body: Some(body.clone()),
                        unique_keys: Vec::new(),
                    })
                    .collect(),
            })
            .collect();
        let committed = store.commit("customers", changes).await.unwrap();
        let until = committed.changes.iter().map(|(_, v)| *v).max().unwrap();
        let names: Vec<String> = aspects.iter().map(|name| (*name).to_owned()).collect();

        let (batch, read) = store
            .read_changes_counted(
                "customers",
                &Origin::single(),
                Version::ZERO,
                until,
                &names,
                1000,
                BUDGET,
            )
            .await
            .unwrap();
        assert!(batch.more);
        let per_resource = aspects.len() * (body.len() + ROW_OVERHEAD_BYTES);
        let resources = BUDGET.div_ceil(per_resource);
        assert_eq!(batch.items.len(), resources);
        // The chunk's rows and the one that showed it was full, nothing beyond.
        assert_eq!(read, resources * aspects.len() + 1);
        assert!(read < RESOURCES * aspects.len());

        // The rest comes in later chunks, gap-free.
        let mut after = batch.version;
        let mut seen = batch.items.len();
        loop {
            let (batch, _) = store
                .read_changes_counted(
                    "customers",
                    &Origin::single(),
                    after,
                    until,
                    &names,
                    1000,
                    BUDGET,
                )
                .await
                .unwrap();
            seen += batch.items.len();
            after = batch.version;
            if !batch.more {
                break;
            }
        }
        assert_eq!(seen, RESOURCES);
        assert_eq!(after, until);
        store.close().await;
    }
}
