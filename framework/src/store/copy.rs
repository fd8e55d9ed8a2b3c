//! Keeping a copy: applying a feed chunk so that re-applying it (or an older one) is harmless,
//! with the cursor stored in the same transaction.

use std::collections::HashSet;

use sqlx::AnyConnection;

use super::lease::{Fence, check_and_renew};
use super::{Backend, Error, Store, unix_now};
use crate::aspect::UniqueKey;
use crate::version::{ResourceId, Version};

/// One resource of a received chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkItem {
    pub id: ResourceId,
    pub version: Version,
    /// A resource tombstone.
    pub deleted: bool,
    pub aspects: Vec<ChunkAspect>,
}

/// One aspect of a received chunk: a document, or a tombstone (`body` is `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkAspect {
    pub name: String,
    pub version: Version,
    pub body: Option<String>,
    /// Values of unique fields the document holds (the copy keeps them findable).
    pub unique_keys: Vec<UniqueKey>,
}

/// Whether applying a chunk may move the cursor back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorMove {
    /// Only ever up: re-applying or applying an older chunk never moves the cursor back, so a
    /// copy's feed horizon never goes back for its own readers.
    Forward,
    /// The first chunk of a re-read from version 0 after `410`: the cursor starts again.
    Restart,
}

/// Rows per multi-row statement: well below SQLite's and PostgreSQL's parameter limits.
const ROWS_PER_STATEMENT: usize = 400;

impl Store {
    /// Where this store's copy of `collection` stands in its source's feed.
    pub async fn cursor(&self, collection: &str) -> Result<Version, Error> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM hs_cursor WHERE collection = $1")
                .bind(collection)
                .fetch_optional(&self.pool)
                .await?;
        Ok(version.and_then(Version::new).unwrap_or(Version::ZERO))
    }

    /// Applies a chunk in one transaction: per aspect the higher version wins, tombstones
    /// included, and the cursor moves up to `cursor` with it (never down: a chunk applied late
    /// changes nothing). For tools and tests; a unit's poller uses [`Store::apply_fenced_chunk`].
    pub async fn apply_chunk(
        &self,
        collection: &str,
        items: &[ChunkItem],
        cursor: Version,
    ) -> Result<(), Error> {
        self.apply(collection, items, cursor, None, CursorMove::Forward)
            .await
    }

    /// Like [`Store::apply_chunk`], but only while `fence` still holds the reader lease
    /// (checked and renewed in the same transaction; [`Error::Fenced`] otherwise, and nothing
    /// is applied). `cursor_move` says whether the cursor may go back: only a re-read from 0
    /// after `410` moves it back, with its first chunk.
    pub async fn apply_fenced_chunk(
        &self,
        collection: &str,
        items: &[ChunkItem],
        cursor: Version,
        fence: &Fence,
        cursor_move: CursorMove,
    ) -> Result<(), Error> {
        self.apply(collection, items, cursor, Some(fence), cursor_move)
            .await
    }

    async fn apply(
        &self,
        collection: &str,
        items: &[ChunkItem],
        cursor: Version,
        fence: Option<&Fence>,
        cursor_move: CursorMove,
    ) -> Result<(), Error> {
        let _turn = self.write_turn().await;
        let mut transaction = self.begin_write().await?;
        if let Some(fence) = fence {
            check_and_renew(&mut transaction, self.backend, fence).await?;
        }
        let (deleted, live): (Vec<&ChunkItem>, Vec<&ChunkItem>) =
            items.iter().partition(|item| item.deleted);
        upsert_resources(&mut transaction, self.backend, collection, &live).await?;
        let mut plain = Vec::new();
        for item in &live {
            for aspect in &item.aspects {
                if aspect.unique_keys.is_empty() && aspect.body.is_some() {
                    plain.push((&item.id, aspect));
                } else {
                    upsert_aspect_with_keys(&mut transaction, collection, &item.id, aspect).await?;
                }
            }
        }
        for batch in plain.chunks(ROWS_PER_STATEMENT) {
            upsert_aspects(&mut transaction, self.backend, collection, batch).await?;
        }
        for item in deleted {
            delete_resource_copy(&mut transaction, collection, item).await?;
        }
        sqlx::query(
            "INSERT INTO hs_cursor (collection, version, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (collection) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at \
             WHERE hs_cursor.version < excluded.version OR $4 = 1",
        )
        .bind(collection)
        .bind(cursor.get())
        .bind(unix_now())
        .bind(i64::from(cursor_move == CursorMove::Restart))
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// After a full re-read: removes every aspect (and resource) of the copy that the source
    /// no longer has. `seen` holds every live `(resource, aspect)` the re-read delivered.
    pub async fn drop_unseen(
        &self,
        collection: &str,
        seen: &HashSet<(ResourceId, String)>,
    ) -> Result<u64, Error> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT resource_id, aspect FROM hs_aspect WHERE collection = $1")
                .bind(collection)
                .fetch_all(&self.pool)
                .await?;
        let live: HashSet<&ResourceId> = seen.iter().map(|(id, _)| id).collect();
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT resource_id FROM hs_resource WHERE collection = $1")
                .bind(collection)
                .fetch_all(&self.pool)
                .await?;
        let _turn = self.write_turn().await;
        let mut transaction = self.begin_write().await?;
        for (id, aspect) in rows {
            let known = ResourceId::parse(&id)
                .is_some_and(|parsed| seen.contains(&(parsed, aspect.clone())));
            if known {
                continue;
            }
            for table in ["hs_aspect", "hs_unique"] {
                let statement = format!(
                    "DELETE FROM {table} WHERE collection = $1 AND resource_id = $2 AND aspect = $3"
                );
                sqlx::query(sqlx::AssertSqlSafe(statement))
                    .bind(collection)
                    .bind(id.as_str())
                    .bind(aspect.as_str())
                    .execute(&mut *transaction)
                    .await?;
            }
        }
        let mut dropped = 0;
        for id in ids {
            if ResourceId::parse(&id).is_some_and(|id| live.contains(&id)) {
                continue;
            }
            for table in ["hs_aspect", "hs_unique", "hs_resource"] {
                let statement =
                    format!("DELETE FROM {table} WHERE collection = $1 AND resource_id = $2");
                sqlx::query(sqlx::AssertSqlSafe(statement))
                    .bind(collection)
                    .bind(id.as_str())
                    .execute(&mut *transaction)
                    .await?;
            }
            dropped += 1;
        }
        transaction.commit().await?;
        Ok(dropped)
    }

    /// The resource holding a unique value (e.g. a login), compared case-insensitively.
    pub async fn find_unique(
        &self,
        collection: &str,
        name: &str,
        value: &str,
    ) -> Result<Option<ResourceId>, Error> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT resource_id FROM hs_unique WHERE collection = $1 AND name = $2 AND value = $3",
        )
        .bind(collection)
        .bind(name)
        .bind(value.to_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        Ok(id.as_deref().and_then(ResourceId::parse))
    }
}

async fn upsert_resources(
    connection: &mut AnyConnection,
    backend: Backend,
    collection: &str,
    items: &[&ChunkItem],
) -> Result<(), Error> {
    for batch in items.chunks(ROWS_PER_STATEMENT) {
        let values = placeholders(backend, batch.len(), 3);
        let statement = format!(
            "INSERT INTO hs_resource (collection, resource_id, version) VALUES {values} \
             ON CONFLICT (collection, resource_id) DO UPDATE SET version = excluded.version \
             WHERE hs_resource.version < excluded.version AND hs_resource.deleted = 0"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
        for item in batch {
            query = query
                .bind(collection)
                .bind(item.id.as_str())
                .bind(item.version.get());
        }
        query.execute(&mut *connection).await?;
    }
    Ok(())
}

async fn upsert_aspects(
    connection: &mut AnyConnection,
    backend: Backend,
    collection: &str,
    batch: &[(&ResourceId, &ChunkAspect)],
) -> Result<(), Error> {
    let values = placeholders(backend, batch.len(), 5);
    let statement = format!(
        "INSERT INTO hs_aspect (collection, resource_id, aspect, version, body) VALUES {values} \
         ON CONFLICT (collection, resource_id, aspect) DO UPDATE \
         SET version = excluded.version, body = excluded.body, deleted = 0, deleted_at = NULL \
         WHERE hs_aspect.version < excluded.version"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
    for (id, aspect) in batch {
        query = query
            .bind(collection)
            .bind(id.as_str())
            .bind(aspect.name.as_str())
            .bind(aspect.version.get())
            .bind(aspect.body.as_deref());
    }
    query.execute(&mut *connection).await?;
    Ok(())
}

/// Aspects with unique values or tombstones go one by one: their side effects depend on
/// whether the row really changed.
async fn upsert_aspect_with_keys(
    connection: &mut AnyConnection,
    collection: &str,
    id: &ResourceId,
    aspect: &ChunkAspect,
) -> Result<(), Error> {
    let changed = sqlx::query(
        "INSERT INTO hs_aspect (collection, resource_id, aspect, version, body, deleted, deleted_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (collection, resource_id, aspect) DO UPDATE \
         SET version = excluded.version, body = excluded.body, deleted = excluded.deleted, \
             deleted_at = excluded.deleted_at \
         WHERE hs_aspect.version < excluded.version",
    )
    .bind(collection)
    .bind(id.as_str())
    .bind(aspect.name.as_str())
    .bind(aspect.version.get())
    .bind(aspect.body.as_deref())
    .bind(i64::from(aspect.body.is_none()))
    .bind(aspect.body.is_none().then(unix_now))
    .execute(&mut *connection)
    .await?
    .rows_affected();
    if changed == 0 {
        return Ok(());
    }
    sqlx::query("DELETE FROM hs_unique WHERE collection = $1 AND resource_id = $2 AND aspect = $3")
        .bind(collection)
        .bind(id.as_str())
        .bind(aspect.name.as_str())
        .execute(&mut *connection)
        .await?;
    for key in &aspect.unique_keys {
        // The owner guarantees uniqueness; a stale holder here is one whose change to another
        // value has not arrived yet, so the newer claim wins.
        sqlx::query("DELETE FROM hs_unique WHERE collection = $1 AND name = $2 AND value = $3")
            .bind(collection)
            .bind(key.name)
            .bind(key.value.as_str())
            .execute(&mut *connection)
            .await?;
        sqlx::query("INSERT INTO hs_unique (collection, name, value, resource_id, aspect) VALUES ($1, $2, $3, $4, $5)")
            .bind(collection)
            .bind(key.name)
            .bind(key.value.as_str())
            .bind(id.as_str())
            .bind(aspect.name.as_str())
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

async fn delete_resource_copy(
    connection: &mut AnyConnection,
    collection: &str,
    item: &ChunkItem,
) -> Result<(), Error> {
    let now = unix_now();
    sqlx::query(
        "INSERT INTO hs_resource (collection, resource_id, version, deleted, deleted_at) VALUES ($1, $2, $3, 1, $4) \
         ON CONFLICT (collection, resource_id) DO UPDATE \
         SET version = excluded.version, deleted = 1, deleted_at = excluded.deleted_at \
         WHERE hs_resource.version < excluded.version",
    )
    .bind(collection)
    .bind(item.id.as_str())
    .bind(item.version.get())
    .bind(now)
    .execute(&mut *connection)
    .await?;
    sqlx::query(
        "UPDATE hs_aspect SET version = $1, deleted = 1, body = NULL, deleted_at = $2 \
         WHERE collection = $3 AND resource_id = $4 AND version < $1",
    )
    .bind(item.version.get())
    .bind(now)
    .bind(collection)
    .bind(item.id.as_str())
    .execute(&mut *connection)
    .await?;
    sqlx::query("DELETE FROM hs_unique WHERE collection = $1 AND resource_id = $2")
        .bind(collection)
        .bind(item.id.as_str())
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// `($1, $2, $3), ($4, $5, $6), …` for `rows` rows of `columns` values; on SQLite plain `?`,
/// because SQLite looks every numbered parameter up by name when binding, which makes a
/// statement with thousands of them quadratic (it dominated applying a chunk).
fn placeholders(backend: Backend, rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let values: Vec<String> = (1..=columns)
                .map(|column| match backend {
                    Backend::Sqlite => "?".to_owned(),
                    Backend::Postgres => format!("${}", row * columns + column),
                })
                .collect();
            format!("({})", values.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
