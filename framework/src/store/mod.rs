//! The versioned store: resources split into aspects, each stamped with a version from one
//! counter per collection, on SQLite (embedded default) or PostgreSQL.
//!
//! Only this module names sqlx types. Aspect bodies are JSON documents here; the typed view
//! belongs to the services and the wire formats to `repr`.

mod assumptions;
mod copy;
mod feed;
mod horizon;
mod interfaces;
mod jobs;
mod lease;
mod lookup;
mod notices;
mod purge;
mod read;
mod restoring;
mod rollback;
mod units;
mod write;

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use tokio::sync::Mutex;

pub use assumptions::Finding;
pub use copy::{ApplyMode, ChunkAspect, ChunkItem, CopyPosition};
pub use feed::Consumer;
pub use interfaces::{InterfaceConsumer, InterfaceRow};
pub use lease::{Fence, LeaseState};
pub use purge::{PURGE_BATCH, PurgeBounds, PurgeReport, PurgedBatch};
pub use read::{ChangeBatch, ChangedResource, ReadStamp, StoredAspect, StoredResource};
pub use restoring::{Leave, Restoring};
pub use units::UnitRecord;
pub use write::{AspectEdit, Change, Committed, PendingWrite, Target};

use crate::version::Version;
use horizon::Horizons;

/// Which database engine a store runs on; a few statements differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool plus what the store must remember between calls (the feed horizon).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    horizons: Arc<Mutex<Horizons>>,
    /// SQLite has one writer at a time. Writers of this process queue here, in order, instead
    /// of polling SQLite's lock with the busy handler's growing sleeps (other processes sharing
    /// the file still meet the busy handler).
    sqlite_writers: Arc<Mutex<()>>,
    /// Owned collections whose writes this unit holds at start until their consumers have
    /// reported (the start gate, `crate::gate`): refused like `restoring`, but kept in memory,
    /// because each unit holds from its own start.
    held: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// The counter this store draws versions from (see [`crate::origin`]); the single origin
    /// until [`Store::use_origin`] says otherwise.
    write_origin: Arc<std::sync::OnceLock<OwnOrigin>>,
    /// Commit notices to and from the SA's other units (PostgreSQL only, `notices.rs`).
    notices: Option<Arc<notices::CommitNotices>>,
    /// The greatest version each owned collection is known to have exposed, and the signal
    /// that the counter was found below it (`rollback.rs`).
    rollback: Arc<rollback::RollbackWatch>,
}

/// What can go wrong in the store; the HTTP edge maps each to a status and stable code.
/// This store's own counter among the owner datacenters, and all of them by name.
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnOrigin {
    pub(crate) own: crate::origin::Origin,
    pub(crate) names: Vec<String>,
    /// The collections drawn from it: the ones the SA owns.
    pub(crate) collections: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database URL must start with sqlite: or postgres:")]
    UnsupportedUrl,
    #[error("no such resource")]
    NotFound,
    #[error("no such aspect")]
    AspectNotFound,
    #[error("the resource is at version {current}, not the one the request expected")]
    PreconditionFailed { current: Version },
    #[error("another resource already holds this {name}")]
    UniqueTaken { name: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("{0:?} is not a plain database name (lower-case letters, digits, _)")]
    BadDatabaseName(String),
    #[error("stored data is not what this version of the code expects: {0}")]
    Corrupt(String),
    #[error(
        "this database is used by the {owner} service area's units: each SA needs a database of its own"
    )]
    ForeignStore { owner: String },
    #[error("the reader lease of epoch {epoch} is no longer held: another unit reads now")]
    Fenced { epoch: i64 },
    #[error(
        "{collection} is restoring: this store was rolled back, and writes wait until an operator has restored it"
    )]
    Restoring { collection: String },
    #[error("resource {id} is written in datacenter {home}, its home, not here: writes go there")]
    WrongHome { id: String, home: String },
    #[error(
        "{collection}'s versions are drawn for {was}, not {now}: the owner datacenters are fixed \
         once a collection holds data (making an SA active/active that already owns data, or \
         changing its list, is not built)"
    )]
    OriginsFixed {
        collection: String,
        was: String,
        now: String,
    },
    #[error(
        "{collection} takes no writes yet: after a start, this unit waits until every consumer \
         the topology names has told it which version it holds (a rolled-back store must not \
         hand out versions twice)"
    )]
    Held { collection: String },
}

impl Error {
    /// Whether the database could not be reached or refused work for now (a stopped or
    /// restarting server, a broken connection, an exhausted pool, SQLite's lock held too
    /// long). Such a request changed nothing it reported, and asking again later may succeed,
    /// so the edge answers `503` rather than `500`.
    pub fn is_unavailable(&self) -> bool {
        let Error::Database(error) = self else {
            return false;
        };
        match error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(database) => {
                database.code().is_some_and(|code| unavailable_code(&code))
            }
            _ => false,
        }
    }
}

/// SQLSTATE classes and codes that mean "not now" rather than "never": connection exceptions
/// (08…), the server shutting down, starting or timing out an idle session (57P01–57P03,
/// 57P05), too many connections (53300), a read-only server after a failover (25006),
/// serialization or deadlock failures (40001, 40P01), and the database missing, not taking
/// connections or without the framework's tables while an operator recreates and restores it
/// (3D000, 55000, 42P01: the tables exist from every unit's start on, so a missing one under a
/// running unit is a restore in progress) — plus SQLite's busy
/// and locked, whose extended codes (SQLITE_BUSY_TIMEOUT, …) keep the primary code in their
/// low byte.
fn unavailable_code(code: &str) -> bool {
    if let Ok(sqlite) = code.parse::<u32>() {
        return matches!(sqlite & 0xff, 5 | 6);
    }
    code.starts_with("08")
        || matches!(
            code,
            "57P01"
                | "57P02"
                | "57P03"
                | "57P05"
                | "53300"
                | "25006"
                | "40001"
                | "40P01"
                | "3D000"
                | "55000"
                | "42P01"
        )
}

/// How large the pool may grow; PostgreSQL connections are precious, SQLite ones are cheap.
const MAX_CONNECTIONS: u32 = 16;
/// How long a request waits for a connection before it answers `503 database-unavailable`:
/// long enough to ride out a busy moment, short enough that a client or HAProxy hears of an
/// outage well before its own timeouts.
const POOL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a SQLite writer waits for the single write lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How a store is opened; [`Store::connect`] uses the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// SQLite's `PRAGMA synchronous`; ignored on PostgreSQL.
    pub sqlite_synchronous: SqliteSync,
}

/// SQLite's `PRAGMA synchronous` in WAL mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SqliteSync {
    /// Syncs the WAL at every commit (one fsync per write transaction). What units use.
    #[default]
    Full,
    /// Syncs only at checkpoints. Exists only so the benchmark can show the price of
    /// durability: a power cut loses the last commits and the version counter with them, so
    /// versions and ids already exposed would be handed out again — it breaks "a version once
    /// exposed is never reused". Deliberately not offered in `UnitConfig`.
    Normal,
}

impl SqliteSync {
    fn pragma(self) -> &'static str {
        match self {
            Self::Full => "PRAGMA synchronous = FULL",
            Self::Normal => "PRAGMA synchronous = NORMAL",
        }
    }
}

impl Store {
    /// Opens (creating when missing) the database at `url` and brings its schema up to date.
    /// `sqlite:///abs/path.db` or `postgres://user@host:port/db`.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, ConnectOptions::default()).await
    }

    /// [`Store::connect`] with chosen options.
    pub async fn connect_with(url: &str, options: ConnectOptions) -> Result<Self, Error> {
        sqlx::any::install_default_drivers();
        let synchronous = options.sqlite_synchronous.pragma();
        let (backend, url) = if url.starts_with("sqlite:") {
            (Backend::Sqlite, with_create_mode(url))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(Error::UnsupportedUrl);
        };
        let connect_options: AnyConnectOptions = url.parse()?;
        let notices =
            (backend == Backend::Postgres).then(|| notices::CommitNotices::new(url.clone()));
        let pool = AnyPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
            .after_connect(move |connection, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the one writer. FULL (the default)
                        // syncs the WAL at every commit: with NORMAL a power cut loses the last
                        // commits, and the counter with them, so versions copies already hold
                        // would be handed out again (ARCHITECTURE.md, "Durability").
                        let busy =
                            format!("PRAGMA busy_timeout = {}", SQLITE_BUSY_TIMEOUT.as_millis());
                        connection.execute(sqlx::AssertSqlSafe(busy)).await?;
                        connection.execute("PRAGMA journal_mode = WAL").await?;
                        connection.execute(synchronous).await?;
                    } else {
                        // "A version once exposed is never reused" needs commits that are
                        // durable before they are visible (ARCHITECTURE.md, "Durability"): a
                        // server configured with synchronous_commit = off is overridden for
                        // this session (stronger settings such as remote_apply are kept).
                        let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
                            .fetch_one(&mut *connection)
                            .await?;
                        if setting == "off" {
                            connection.execute("SET synchronous_commit = on").await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(connect_options)
            .await?;
        match backend {
            Backend::Sqlite => migrate_sqlite(&pool).await?,
            Backend::Postgres => {
                sqlx::migrate!("./migrations/postgres").run(&pool).await?;
                let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&pool).await?;
                if fsync != "on" {
                    tracing::warn!(
                        "PostgreSQL runs with fsync = {fsync}: a crash of its machine can lose \
                         versions copies already hold (fine for throwaway test clusters only)"
                    );
                }
            }
        }
        Ok(Self {
            pool,
            backend,
            horizons: Arc::default(),
            sqlite_writers: Arc::default(),
            held: Arc::default(),
            write_origin: Arc::default(),
            notices,
            rollback: Arc::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Makes sure a collection's version counter exists. Idempotent; called at start-up.
    pub async fn register_collection(&self, collection: &str) -> Result<(), Error> {
        match self.backend {
            Backend::Sqlite => {
                sqlx::query(
                    "INSERT INTO hs_counter (collection, version) VALUES ($1, 0) \
                     ON CONFLICT (collection) DO NOTHING",
                )
                .bind(collection)
                .execute(&self.pool)
                .await?;
            }
            Backend::Postgres => {
                // Collection names are lower-case words checked by `model`, so the sequence
                // name is a safe identifier.
                let statement = format!(
                    "CREATE SEQUENCE IF NOT EXISTS {}",
                    sequence_name(collection)
                );
                sqlx::query(sqlx::AssertSqlSafe(statement))
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Answers whether the database serves queries; used by `/health`.
    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// How many live (not deleted) resources a collection holds.
    pub async fn count_resources(&self, collection: &str) -> Result<u64, Error> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM hs_resource WHERE collection = $1 AND deleted = 0",
        )
        .bind(collection)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates `database` on the PostgreSQL server at `server_url` when it does not exist yet and
/// returns the URL of that database.
pub async fn ensure_postgres_database(server_url: &str, database: &str) -> Result<String, Error> {
    sqlx::any::install_default_drivers();
    if !database
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        || database.is_empty()
    {
        return Err(Error::BadDatabaseName(database.to_owned()));
    }
    let base = server_url.trim_end_matches('/');
    let admin_url = format!("{base}/postgres");
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(database)
        .fetch_optional(&pool)
        .await?;
    if exists.is_none() {
        let statement = format!("CREATE DATABASE {database}");
        if let Err(error) = sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&pool)
            .await
        {
            // Another process may have created it between our check and our statement.
            let raced: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(database)
                    .fetch_optional(&pool)
                    .await?;
            if raced.is_none() {
                return Err(error.into());
            }
        }
    }
    pool.close().await;
    Ok(format!("{base}/{database}"))
}

/// Seconds since the Unix epoch, for tombstone ages and consumer polls.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

fn sequence_name(collection: &str) -> String {
    format!("hs_version_{collection}")
}

/// SQLite opens read-write but does not create a missing file unless told to.
fn with_create_mode(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// How often a unit runs SQLite's migrations before it gives up, and how long it waits between.
const SQLITE_MIGRATION_TRIES: u32 = 50;
const SQLITE_MIGRATION_PAUSE: Duration = Duration::from_millis(100);

/// Runs the SQLite migrations, again if they fail. Two units starting at once on one new file
/// both find it unmigrated, and SQLite has no lock for sqlx's migrator to take: the second
/// one's `CREATE TABLE` fails once the first has committed it (`table … already exists`).
/// Each migration is one transaction, so running them again finds the first unit's applied and
/// goes on. A migration that truly fails fails every time, and the last error is returned.
async fn migrate_sqlite(pool: &sqlx::AnyPool) -> Result<(), Error> {
    let mut tries = 1;
    loop {
        match sqlx::migrate!("./migrations/sqlite").run(pool).await {
            Ok(()) => return Ok(()),
            Err(error) if tries < SQLITE_MIGRATION_TRIES => {
                tracing::info!(%error, "migrating the SQLite store failed; another unit may be migrating it, trying again");
                tries += 1;
                tokio::time::sleep(SQLITE_MIGRATION_PAUSE).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_synchronous_follows_the_options() -> Result<(), Error> {
        // PRAGMA synchronous reads 2 for FULL and 1 for NORMAL.
        for (sync, level) in [(SqliteSync::Full, 2), (SqliteSync::Normal, 1)] {
            let options = ConnectOptions {
                sqlite_synchronous: sync,
            };
            let store = Store::connect_with("sqlite::memory:", options).await?;
            let actual: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&store.pool)
                .await?;
            assert_eq!(actual, level, "{sync:?}");
            store.close().await;
        }
        assert_eq!(
            ConnectOptions::default().sqlite_synchronous,
            SqliteSync::Full
        );
        Ok(())
    }
}
