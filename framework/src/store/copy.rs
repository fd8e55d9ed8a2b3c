//! Keeping a copy: applying a feed chunk so that re-applying it (or an older one) is harmless,
//! with the cursor stored in the same transaction.

use sqlx::AnyConnection;

use super::lease::{Fence, check_and_renew};
use super::{Backend, Error, Store, unix_now};
use crate::aspect::UniqueKey;
use crate::origin::Origin;
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

/// How a chunk is applied: following the source, or as part of a re-read from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// The cursor moves up to the chunk's version, never down: re-applying or applying an
    /// older chunk never moves a copy's feed horizon back for its own readers.
    Follow,
    /// A chunk of the re-read of this generation: the re-read's position moves, the cursor
    /// stays, and every aspect delivered is marked as seen by it.
    Resync { generation: i64 },
    /// A chunk of a peer's copy, refilling a rolled-back owner: no cursor is involved.
    Refill,
}

/// Where a copy stands in its source's feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPosition {
    /// Everything up to here is applied; the copy's own feed serves up to here.
    pub cursor: Version,
    /// A re-read from 0 under way: `(generation, how far it has come)`.
    pub resync: Option<(i64, Version)>,
    /// The aspects the copy is filled with (`None` before its first poll).
    pub aspects: Option<String>,
}

/// Rows per multi-row statement: well below SQLite's and PostgreSQL's parameter limits.
const ROWS_PER_STATEMENT: usize = 400;

impl Store {
    /// Where this store's copy of `collection` stands in its source's feed (of a collection
    /// owned in one datacenter).
    pub async fn cursor(&self, collection: &str) -> Result<Version, Error> {
        self.cursor_of(collection, &Origin::single()).await
    }

    /// Where this store's copy of `origin`'s changes of `collection` stands.
    pub async fn cursor_of(&self, collection: &str, origin: &Origin) -> Result<Version, Error> {
        Ok(self.copy_position(collection, origin).await?.cursor)
    }

    /// The cursor of `origin`'s changes, and the re-read from 0 under way, if any.
    pub async fn copy_position(
        &self,
        collection: &str,
        origin: &Origin,
    ) -> Result<CopyPosition, Error> {
        let row: Option<(i64, Option<i64>, i64, Option<String>)> = sqlx::query_as(
            "SELECT version, resync_position, resync_generation, aspects FROM hs_cursor \
             WHERE collection = $1 AND origin = $2",
        )
        .bind(collection)
        .bind(&origin.name)
        .fetch_optional(&self.pool)
        .await?;
        let Some((cursor, position, generation, aspects)) = row else {
            return Ok(CopyPosition {
                cursor: Version::ZERO,
                resync: None,
                aspects: None,
            });
        };
        Ok(CopyPosition {
            aspects,
            cursor: Version::new(cursor).unwrap_or(Version::ZERO),
            resync: position
                .map(|position| (generation, Version::new(position).unwrap_or(Version::ZERO))),
        })
    }

    /// Records the aspects a copy is filled with, the first time it polls; like every write a
    /// reader does, only while `fence` holds the reader lease.
    pub(crate) async fn record_copy_aspects(
        &self,
        collection: &str,
        origin: &Origin,
        aspects: &str,
        fence: &Fence,
    ) -> Result<(), Error> {
        let _turn = self.write_turn().await;
        let mut transaction = self.begin_write().await?;
        check_and_renew(&mut transaction, self.backend, fence).await?;
        sqlx::query(
            "INSERT INTO hs_cursor (collection, origin, version, updated_at, aspects) \
             VALUES ($1, $4, 0, $2, $3) \
             ON CONFLICT (collection, origin) DO UPDATE SET aspects = excluded.aspects",
        )
        .bind(collection)
        .bind(unix_now())
        .bind(aspects)
        .bind(&origin.name)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Starts a re-read from version 0 of `aspects` (after `410`, or because the copy's
    /// aspects changed), durably: a restart or the other reader resumes it. Returns its
    /// generation.
    pub async fn start_resync(
        &self,
        collection: &str,
        origin: &Origin,
        fence: &Fence,
        aspects: &str,
    ) -> Result<i64, Error> {
        let _turn = self.write_turn().await;
        let mut transaction = self.begin_write().await?;
        check_and_renew(&mut transaction, self.backend, fence).await?;
        sqlx::query(
            "INSERT INTO hs_cursor (collection, origin, version, updated_at) VALUES ($1, $3, 0, $2) \
             ON CONFLICT (collection, origin) DO NOTHING",
        )
        .bind(collection)
        .bind(unix_now())
        .bind(&origin.name)
        .execute(&mut *transaction)
        .await?;
        let generation: i64 = sqlx::query_scalar(
            "UPDATE hs_cursor SET resync_position = 0, resync_generation = resync_generation + 1, \
             aspects = $2 WHERE collection = $1 AND origin = $3 RETURNING resync_generation",
        )
        .bind(collection)
        .bind(aspects)
        .bind(&origin.name)
        .fetch_one(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(generation)
    }

    /// Ends the re-read of `generation` at `end` (its last chunk's version), in one
    /// transaction: drops the live aspects it did not deliver (the source deleted them and
    /// purged the tombstones) and resources left with nothing, moves the cursor to `end`, and,
    /// when something was dropped, sets the copy's own purge horizon to `end`, so its readers
    /// re-read too (`410`) and drop the same. Returns how many aspects were dropped.
    ///
    /// Only `origin`'s resources are judged: the other origins' come through their own feeds
    /// (every version of a resource comes from its home's counter).
    pub async fn finish_resync(
        &self,
        collection: &str,
        origin: &Origin,
        fence: &Fence,
        generation: i64,
        end: Version,
    ) -> Result<u64, Error> {
        let _turn = self.write_turn().await;
        let mut transaction = self.begin_write().await?;
        check_and_renew(&mut transaction, self.backend, fence).await?;
        let current: Option<i64> = sqlx::query_scalar(
            "SELECT resync_generation FROM hs_cursor \
             WHERE collection = $1 AND origin = $2 AND resync_position IS NOT NULL",
        )
        .bind(collection)
        .bind(&origin.name)
        .fetch_optional(&mut *transaction)
        .await?;
        if current != Some(generation) {
            return Err(Error::Fenced { epoch: fence.epoch });
        }
        let of_origin = |column: &str| {
            origin
                .sql_condition(column)
                .map_or_else(String::new, |condition| format!(" AND {condition}"))
        };
        let statement = format!(
            "DELETE FROM hs_unique WHERE collection = $1 AND EXISTS (SELECT 1 FROM hs_aspect a \
             WHERE a.collection = hs_unique.collection AND a.resource_id = hs_unique.resource_id \
               AND a.aspect = hs_unique.aspect AND a.deleted = 0 AND a.resync_mark < $2{})",
            of_origin("a.version")
        );
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(collection)
            .bind(generation)
            .execute(&mut *transaction)
            .await?;
        let statement = format!(
            "DELETE FROM hs_aspect WHERE collection = $1 AND deleted = 0 AND resync_mark < $2{}",
            of_origin("version")
        );
        let dropped = sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(collection)
            .bind(generation)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        sqlx::query(
            "DELETE FROM hs_resource WHERE collection = $1 AND NOT EXISTS (SELECT 1 FROM hs_aspect a \
             WHERE a.collection = hs_resource.collection AND a.resource_id = hs_resource.resource_id)",
        )
        .bind(collection)
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "UPDATE hs_cursor SET resync_position = NULL, updated_at = $2, \
             version = CASE WHEN version < $3 THEN $3 ELSE version END \
             WHERE collection = $1 AND origin = $4",
        )
        .bind(collection)
        .bind(unix_now())
        .bind(end.get())
        .bind(&origin.name)
        .execute(&mut *transaction)
        .await?;
        if dropped > 0 {
            sqlx::query(
                "INSERT INTO hs_purge (collection, origin, version) VALUES ($1, $3, $2) \
                 ON CONFLICT (collection, origin) DO UPDATE SET version = excluded.version \
                 WHERE hs_purge.version < excluded.version",
            )
            .bind(collection)
            .bind(end.get())
            .bind(&origin.name)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        self.announce_commit();
        Ok(dropped)
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
        self.apply(
            collection,
            &Origin::single(),
            items,
            cursor,
            None,
            ApplyMode::Follow,
        )
        .await
    }

    /// Refills a rolled-back owner with a chunk of a peer's copy: per aspect the higher version
    /// wins, tombstones included, unique values (logins) move with their documents.
    pub(crate) async fn refill_chunk(
        &self,
        collection: &str,
        items: &[ChunkItem],
    ) -> Result<(), Error> {
        self.apply(
            collection,
            &Origin::single(),
            items,
            Version::ZERO,
            None,
            ApplyMode::Refill,
        )
        .await
    }

    /// Like [`Store::apply_chunk`], but only while `fence` still holds the reader lease
    /// (checked and renewed in the same transaction; [`Error::Fenced`] otherwise, and nothing
    /// is applied), and as part of a re-read when `mode` says so.
    pub async fn apply_fenced_chunk(
        &self,
        collection: &str,
        origin: &Origin,
        items: &[ChunkItem],
        cursor: Version,
        fence: &Fence,
        mode: ApplyMode,
    ) -> Result<(), Error> {
        self.apply(collection, origin, items, cursor, Some(fence), mode)
            .await
    }

    async fn apply(
        &self,
        collection: &str,
        origin: &Origin,
        items: &[ChunkItem],
        cursor: Version,
        fence: Option<&Fence>,
        mode: ApplyMode,
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
        if self.backend == Backend::Postgres {
            upsert_aspects_as_set(&mut transaction, collection, &plain).await?;
        } else {
            for batch in plain.chunks(ROWS_PER_STATEMENT) {
                upsert_aspects(&mut transaction, self.backend, collection, batch).await?;
            }
        }
        for item in deleted {
            delete_resource_copy(&mut transaction, collection, item).await?;
        }
        match mode {
            ApplyMode::Refill => {}
            ApplyMode::Follow => {
                sqlx::query(
                    "INSERT INTO hs_cursor (collection, origin, version, updated_at) VALUES ($1, $4, $2, $3) \
                     ON CONFLICT (collection, origin) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at \
                     WHERE hs_cursor.version < excluded.version",
                )
                .bind(collection)
                .bind(cursor.get())
                .bind(unix_now())
                .bind(&origin.name)
                .execute(&mut *transaction)
                .await?;
            }
            ApplyMode::Resync { generation } => {
                let moved = sqlx::query(
                    "UPDATE hs_cursor SET resync_position = $1, updated_at = $2 \
                     WHERE collection = $3 AND origin = $5 AND resync_generation = $4 \
                     AND resync_position IS NOT NULL",
                )
                .bind(cursor.get())
                .bind(unix_now())
                .bind(collection)
                .bind(generation)
                .bind(&origin.name)
                .execute(&mut *transaction)
                .await?;
                if moved.rows_affected() == 0 {
                    // Another reader started a newer re-read or finished this one.
                    return Err(Error::Fenced {
                        epoch: fence.map_or(0, |fence| fence.epoch),
                    });
                }
                mark_delivered(
                    &mut transaction,
                    self.backend,
                    collection,
                    items,
                    generation,
                )
                .await?;
            }
        }
        transaction.commit().await?;
        self.announce_commit();
        Ok(())
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

/// Marks every live aspect `items` delivered as seen by the re-read of `generation`.
async fn mark_delivered(
    connection: &mut AnyConnection,
    backend: Backend,
    collection: &str,
    items: &[ChunkItem],
    generation: i64,
) -> Result<(), Error> {
    let mut by_aspect: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for item in items.iter().filter(|item| !item.deleted) {
        for aspect in item.aspects.iter().filter(|aspect| aspect.body.is_some()) {
            by_aspect
                .entry(aspect.name.as_str())
                .or_default()
                .push(item.id.as_str());
        }
    }
    for (aspect, ids) in by_aspect {
        for batch in ids.chunks(ROWS_PER_STATEMENT) {
            let list = match backend {
                Backend::Sqlite => vec!["?"; batch.len()].join(", "),
                Backend::Postgres => (0..batch.len())
                    .map(|index| format!("${}", index + 4))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            let statement = match backend {
                Backend::Sqlite => format!(
                    "UPDATE hs_aspect SET resync_mark = ? WHERE collection = ? AND aspect = ? \
                     AND resource_id IN ({list})"
                ),
                Backend::Postgres => format!(
                    "UPDATE hs_aspect SET resync_mark = $1 WHERE collection = $2 AND aspect = $3 \
                     AND resource_id IN ({list})"
                ),
            };
            let mut query = sqlx::query(sqlx::AssertSqlSafe(statement))
                .bind(generation)
                .bind(collection)
                .bind(aspect);
            for id in batch {
                query = query.bind(*id);
            }
            query.execute(&mut *connection).await?;
        }
    }
    Ok(())
}

async fn upsert_resources(
    connection: &mut AnyConnection,
    backend: Backend,
    collection: &str,
    items: &[&ChunkItem],
) -> Result<(), Error> {
    if backend == Backend::Postgres {
        return upsert_resources_as_set(connection, collection, items).await;
    }
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

/// PostgreSQL: the chunk's resources in one statement, as one JSON parameter unpacked by
/// `json_to_recordset` (sqlx's `Any` driver binds no arrays, so no `UNNEST`). A multi-row
/// `VALUES` list is planned anew for every row count and costs the server about as much to
/// parse as to apply; one parameter of any length is one plan.
async fn upsert_resources_as_set(
    connection: &mut AnyConnection,
    collection: &str,
    items: &[&ChunkItem],
) -> Result<(), Error> {
    if items.is_empty() {
        return Ok(());
    }
    let rows: Vec<ResourceRow<'_>> = items
        .iter()
        .map(|item| ResourceRow {
            id: item.id.as_str(),
            version: item.version.get(),
        })
        .collect();
    sqlx::query(
        "INSERT INTO hs_resource (collection, resource_id, version) \
         SELECT $1, r.id, r.version FROM json_to_recordset($2::json) AS r(id text, version bigint) \
         ON CONFLICT (collection, resource_id) DO UPDATE SET version = excluded.version \
         WHERE hs_resource.version < excluded.version AND hs_resource.deleted = 0",
    )
    .bind(collection)
    .bind(rows_json(&rows)?)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// PostgreSQL: the chunk's plain documents in one statement (see `upsert_resources_as_set`).
async fn upsert_aspects_as_set(
    connection: &mut AnyConnection,
    collection: &str,
    plain: &[(&ResourceId, &ChunkAspect)],
) -> Result<(), Error> {
    if plain.is_empty() {
        return Ok(());
    }
    let rows: Vec<AspectRow<'_>> = plain
        .iter()
        .map(|(id, aspect)| AspectRow {
            id: id.as_str(),
            aspect: aspect.name.as_str(),
            version: aspect.version.get(),
            body: aspect.body.as_deref(),
        })
        .collect();
    sqlx::query(
        "INSERT INTO hs_aspect (collection, resource_id, aspect, version, body) \
         SELECT $1, r.id, r.aspect, r.version, r.body \
         FROM json_to_recordset($2::json) AS r(id text, aspect text, version bigint, body text) \
         ON CONFLICT (collection, resource_id, aspect) DO UPDATE \
         SET version = excluded.version, body = excluded.body, deleted = 0, deleted_at = NULL \
         WHERE hs_aspect.version < excluded.version",
    )
    .bind(collection)
    .bind(rows_json(&rows)?)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// One resource row of a set-wise upsert.
#[derive(serde::Serialize)]
struct ResourceRow<'a> {
    id: &'a str,
    version: i64,
}

/// One aspect row of a set-wise upsert; the document travels as a JSON string, so its text is
/// stored exactly as received.
#[derive(serde::Serialize)]
struct AspectRow<'a> {
    id: &'a str,
    aspect: &'a str,
    version: i64,
    body: Option<&'a str>,
}

fn rows_json<T: serde::Serialize>(rows: &[T]) -> Result<String, Error> {
    serde_json::to_string(rows)
        .map_err(|error| Error::Corrupt(format!("encoding a chunk for the store: {error}")))
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
