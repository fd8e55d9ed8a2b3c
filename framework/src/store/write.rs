//! Writing: every resource change takes the next version of its collection, in one
//! transaction with the data it stamps.

use sqlx::{Any, AnyConnection, Transaction};

use super::horizon::allocate;
use super::read::{StoredAspect, StoredResource};
use super::{Backend, Error, OwnOrigin, Store, unix_now};
use crate::aspect::UniqueKey;
use crate::version::{ResourceId, TagCondition, Version};

/// Which resource a change is about.
#[derive(Debug, Clone)]
pub enum Target {
    /// A new resource; the owner assigns its id.
    Create,
    /// Edit aspects of an existing resource.
    Update(ResourceId),
    /// Delete the whole resource (it stays as a tombstone).
    Delete(ResourceId),
}

/// One aspect to store (`body`) or delete (`None`), with the unique values it claims.
#[derive(Debug, Clone)]
pub struct AspectEdit {
    pub aspect: String,
    /// The aspect document as a JSON object, or `None` to delete the aspect.
    pub body: Option<String>,
    pub unique_keys: Vec<UniqueKey>,
}

/// A change of one resource; it takes exactly one new version.
#[derive(Debug, Clone)]
pub struct Change {
    pub target: Target,
    /// `If-Match`: the change applies only when the resource's version matches.
    pub precondition: Option<TagCondition>,
    pub edits: Vec<AspectEdit>,
}

/// The id and version each change of a write got, in the order the changes were given, and
/// what each wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub changes: Vec<(ResourceId, Version)>,
    /// Per change, the aspects it wrote (documents, or tombstones for deletions) at its
    /// version: the answer to a write is built from these, never from a re-read after the
    /// commit, which could show another writer's later change or fail after the commit.
    pub written: Vec<StoredResource>,
}

/// A write whose statements all ran but which is not committed yet. Dropping it rolls back.
#[derive(Debug)]
pub struct PendingWrite {
    transaction: Transaction<'static, Any>,
    collection: String,
    committed: Committed,
    _turn: WriteTurn,
    store: Store,
}

/// This process's turn to write to SQLite (nothing on PostgreSQL); held until the commit.
pub(super) type WriteTurn = Option<tokio::sync::OwnedMutexGuard<()>>;

impl PendingWrite {
    /// What the write will have done once committed.
    pub fn outcome(&self) -> &Committed {
        &self.committed
    }

    pub async fn commit(self) -> Result<Committed, Error> {
        self.transaction.commit().await?;
        self.store.announce_commit();
        if let Some(newest) = self
            .committed
            .changes
            .iter()
            .map(|(_, version)| *version)
            .max()
        {
            self.store.note_exposed(&self.collection, newest);
        }
        Ok(self.committed)
    }
}

impl Store {
    /// Waits for this process's turn to write (SQLite only); keep it until the commit.
    pub(super) async fn write_turn(&self) -> WriteTurn {
        match self.backend {
            Backend::Sqlite => Some(self.sqlite_writers.clone().lock_owned().await),
            Backend::Postgres => None,
        }
    }

    /// Starts a transaction that will write; take [`Store::write_turn`] first.
    pub(super) async fn begin_write(&self) -> Result<Transaction<'static, Any>, Error> {
        Ok(match self.backend {
            // Take SQLite's write lock at once: a deferred transaction that first reads and
            // then writes can fail with SQLITE_BUSY instead of waiting its turn.
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Applies the changes in one transaction and commits it.
    pub async fn commit(&self, collection: &str, changes: Vec<Change>) -> Result<Committed, Error> {
        self.prepare(collection, changes).await?.commit().await
    }

    /// Runs every statement of a write but leaves the commit to the caller, for writes that
    /// must line up with something else (and for tests that hold a transaction open).
    pub async fn prepare(
        &self,
        collection: &str,
        changes: Vec<Change>,
    ) -> Result<PendingWrite, Error> {
        if self.writes_held(collection) {
            return Err(Error::Held {
                collection: collection.to_owned(),
            });
        }
        let turn = self.write_turn().await;
        let mut transaction = self.begin_write().await?;
        super::restoring::refuse_while_restoring(&mut transaction, collection).await?;
        let mut committed = Committed {
            changes: Vec::with_capacity(changes.len()),
            written: Vec::with_capacity(changes.len()),
        };
        let origin = self.own_origin();
        for change in changes {
            // Read before the version is drawn: see `Store::drew_rolled_back_version`.
            let exposed_before = self.exposed_mark(collection);
            let (id, version) =
                apply(&mut transaction, self.backend, collection, &change, &origin).await?;
            if version.get() <= exposed_before {
                // The counter went back under this unit: drawing a version it exposed already
                // means the database lost committed state. Nothing of this write commits.
                drop(transaction);
                drop(turn);
                return Err(self.drew_rolled_back_version(collection, version).await);
            }
            committed
                .written
                .push(written_by(&change, id.clone(), version));
            committed.changes.push((id, version));
        }
        Ok(PendingWrite {
            transaction,
            collection: collection.to_owned(),
            committed,
            _turn: turn,
            store: self.clone(),
        })
    }
}

/// A resource is written only at its home, the owner datacenter whose counter issued its id:
/// so every version of it comes from one counter, and two datacenters never write it at once.
pub(super) fn refuse_away_from_home(
    origin: &OwnOrigin,
    collection: &str,
    id: &ResourceId,
) -> Result<(), Error> {
    if origin.own.is_single() || !origin.collections.iter().any(|owned| owned == collection) {
        return Ok(());
    }
    match crate::origin::Origin::home_of(&origin.names, id.as_str()) {
        Some(home) if home != origin.own.name => Err(Error::WrongHome {
            id: id.as_str().to_owned(),
            home: home.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// What `change` leaves behind at `version`, as a reader of its aspects would see them.
fn written_by(change: &Change, id: ResourceId, version: Version) -> StoredResource {
    let deleted = matches!(change.target, Target::Delete(_));
    StoredResource {
        id,
        version,
        deleted,
        aspects: change
            .edits
            .iter()
            .filter(|_| !deleted)
            .map(|edit| StoredAspect {
                name: edit.aspect.clone(),
                version,
                deleted: edit.body.is_none(),
                body: edit.body.clone(),
            })
            .collect(),
        purged_version: Version::ZERO,
    }
}

async fn apply(
    connection: &mut AnyConnection,
    backend: Backend,
    collection: &str,
    change: &Change,
    origin: &OwnOrigin,
) -> Result<(ResourceId, Version), Error> {
    let id = match &change.target {
        Target::Create => None,
        Target::Update(id) | Target::Delete(id) => {
            refuse_away_from_home(origin, collection, id)?;
            // Lock the resource before drawing its version, so versions of one resource grow
            // in the order its changes commit.
            let current = lock_resource(connection, backend, collection, id).await?;
            if let Some(condition) = &change.precondition
                && !condition.matches(current)
            {
                return Err(Error::PreconditionFailed { current });
            }
            Some(id.clone())
        }
    };
    let version = allocate(connection, backend, collection, &origin.own).await?;
    let id = match id {
        Some(id) => id,
        None => {
            let id = ResourceId::from_version(version);
            sqlx::query(
                "INSERT INTO hs_resource (collection, resource_id, version, deleted) \
                 VALUES ($1, $2, $3, 0)",
            )
            .bind(collection)
            .bind(id.as_str())
            .bind(version.get())
            .execute(&mut *connection)
            .await?;
            id
        }
    };
    if matches!(change.target, Target::Delete(_)) {
        delete_resource(connection, collection, &id, version).await?;
        return Ok((id, version));
    }
    for edit in &change.edits {
        let aspect = AspectWrite {
            id: &id,
            version,
            new_resource: matches!(change.target, Target::Create),
        };
        write_aspect(connection, collection, &aspect, edit).await?;
    }
    // A new resource's row already carries this version.
    if !matches!(change.target, Target::Create) {
        sqlx::query(
            "UPDATE hs_resource SET version = $1 WHERE collection = $2 AND resource_id = $3",
        )
        .bind(version.get())
        .bind(collection)
        .bind(id.as_str())
        .execute(&mut *connection)
        .await?;
    }
    Ok((id, version))
}

/// Locks a live resource for the rest of the transaction and returns its version.
async fn lock_resource(
    connection: &mut AnyConnection,
    backend: Backend,
    collection: &str,
    id: &ResourceId,
) -> Result<Version, Error> {
    let statement = match backend {
        // SQLite's write transaction already excludes every other writer.
        Backend::Sqlite => {
            "SELECT version, deleted FROM hs_resource WHERE collection = $1 AND resource_id = $2"
        }
        Backend::Postgres => {
            "SELECT version, deleted FROM hs_resource WHERE collection = $1 AND resource_id = $2 \
             FOR UPDATE"
        }
    };
    let row: Option<(i64, i64)> = sqlx::query_as(statement)
        .bind(collection)
        .bind(id.as_str())
        .fetch_optional(&mut *connection)
        .await?;
    match row {
        Some((version, 0)) => Version::new(version)
            .ok_or_else(|| Error::Corrupt(format!("negative version {version}"))),
        _ => Err(Error::NotFound),
    }
}

/// Where an aspect edit goes.
struct AspectWrite<'a> {
    id: &'a ResourceId,
    version: Version,
    /// The resource is being created: it holds nothing yet that would need releasing.
    new_resource: bool,
}

async fn write_aspect(
    connection: &mut AnyConnection,
    collection: &str,
    target: &AspectWrite<'_>,
    edit: &AspectEdit,
) -> Result<(), Error> {
    let AspectWrite { id, version, .. } = *target;
    if edit.body.is_none() {
        let live: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM hs_aspect \
             WHERE collection = $1 AND resource_id = $2 AND aspect = $3 AND deleted = 0",
        )
        .bind(collection)
        .bind(id.as_str())
        .bind(edit.aspect.as_str())
        .fetch_optional(&mut *connection)
        .await?;
        if live.is_none() {
            return Err(Error::AspectNotFound);
        }
    }
    sqlx::query(
        "INSERT INTO hs_aspect (collection, resource_id, aspect, version, deleted, body, deleted_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (collection, resource_id, aspect) DO UPDATE \
         SET version = excluded.version, deleted = excluded.deleted, body = excluded.body, \
             deleted_at = excluded.deleted_at",
    )
    .bind(collection)
    .bind(id.as_str())
    .bind(edit.aspect.as_str())
    .bind(version.get())
    .bind(i64::from(edit.body.is_none()))
    .bind(edit.body.as_deref())
    .bind(edit.body.is_none().then(unix_now))
    .execute(&mut *connection)
    .await?;
    if target.new_resource && edit.unique_keys.is_empty() {
        // Nothing held before, nothing claimed now: spare the round trips.
        return Ok(());
    }
    claim_unique_keys(connection, collection, id, edit).await
}

/// Releases what the aspect held before and claims what it holds now.
async fn claim_unique_keys(
    connection: &mut AnyConnection,
    collection: &str,
    id: &ResourceId,
    edit: &AspectEdit,
) -> Result<(), Error> {
    sqlx::query("DELETE FROM hs_unique WHERE collection = $1 AND resource_id = $2 AND aspect = $3")
        .bind(collection)
        .bind(id.as_str())
        .bind(edit.aspect.as_str())
        .execute(&mut *connection)
        .await?;
    for key in &edit.unique_keys {
        let inserted = sqlx::query(
            "INSERT INTO hs_unique (collection, name, value, resource_id, aspect) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (collection, name, value) DO NOTHING",
        )
        .bind(collection)
        .bind(key.name)
        .bind(key.value.as_str())
        .bind(id.as_str())
        .bind(edit.aspect.as_str())
        .execute(&mut *connection)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(Error::UniqueTaken {
                name: key.name.to_owned(),
            });
        }
    }
    Ok(())
}

/// Turns every aspect into a tombstone at `version` and frees the resource's unique values.
async fn delete_resource(
    connection: &mut AnyConnection,
    collection: &str,
    id: &ResourceId,
    version: Version,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE hs_aspect SET version = $1, deleted = 1, body = NULL, deleted_at = $2 \
         WHERE collection = $3 AND resource_id = $4",
    )
    .bind(version.get())
    .bind(unix_now())
    .bind(collection)
    .bind(id.as_str())
    .execute(&mut *connection)
    .await?;
    sqlx::query(
        "UPDATE hs_resource SET version = $1, deleted = 1, deleted_at = $2 \
         WHERE collection = $3 AND resource_id = $4",
    )
    .bind(version.get())
    .bind(unix_now())
    .bind(collection)
    .bind(id.as_str())
    .execute(&mut *connection)
    .await?;
    sqlx::query("DELETE FROM hs_unique WHERE collection = $1 AND resource_id = $2")
        .bind(collection)
        .bind(id.as_str())
        .execute(&mut *connection)
        .await?;
    Ok(())
}
