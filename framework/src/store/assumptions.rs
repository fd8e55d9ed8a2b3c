//! What the gap-free feed assumes of PostgreSQL, checked against the server it runs on.
//!
//! The feed horizon (`horizon.rs`) reads `pg_locks` and the version sequences. It is only
//! right when the unit talks to the primary (a standby's `pg_locks` shows none of the
//! primary's writers), when a sequence hands out its numbers one at a time (`CACHE 1`: with a
//! larger cache each connection owns a block, and versions commit far out of order), and it
//! only moves while no transaction anywhere in the cluster holds a transaction id for long (a
//! forgotten `BEGIN`, an idle-in-transaction session or a prepared transaction stalls the
//! feed of every SA on the server, without an error). Durability settings decide whether a
//! crash can roll the store back (the copies then detect it, and the owner refills itself).
//! None of this can be enforced from a unit; it is reported, so that an operator sees it.

use std::time::Duration;

use super::{Backend, Error, Store};

/// A session holding a transaction id: pid, database, user, application, state, seconds.
type SessionRow = (
    i32,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

/// At most this many sessions are named for one kind of finding.
const MAX_NAMED: i64 = 5;

/// One assumption that does not hold, in words for an operator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Stable kind: `standby`, `sequence-cache`, `not-durable`, `held-back`.
    pub kind: &'static str,
    /// What was found and what it does to the feed.
    pub message: String,
    /// For `held-back`: how long the oldest such transaction has run, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<i64>,
}

impl Store {
    /// Checks the PostgreSQL assumptions of the feed (nothing on SQLite): primary not standby,
    /// version sequences with `CACHE 1`, durability settings, and transactions holding an id
    /// for longer than `held_back_after` (they hold back every feed on the server).
    pub(crate) async fn check_assumptions(
        &self,
        held_back_after: Duration,
    ) -> Result<Vec<Finding>, Error> {
        if self.backend != Backend::Postgres {
            return Ok(Vec::new());
        }
        let mut findings = Vec::new();
        let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&self.pool)
            .await?;
        if standby {
            findings.push(Finding {
                kind: "standby",
                message: "connected to a standby (in recovery): the feed horizon sees none of the \
                          primary's writers and writes fail; point the unit at the primary"
                    .to_owned(),
                seconds: None,
            });
        }
        let cached: Vec<(String, i64)> = sqlx::query_as(
            "SELECT c.relname::text, s.seqcache FROM pg_sequence s \
             JOIN pg_class c ON c.oid = s.seqrelid \
             WHERE c.relname LIKE 'hs\\_version\\_%' AND s.seqcache > 1 ORDER BY c.relname",
        )
        .fetch_all(&self.pool)
        .await?;
        for (sequence, cache) in cached {
            findings.push(Finding {
                kind: "sequence-cache",
                message: format!(
                    "sequence {sequence} has CACHE {cache}: versions are handed out in blocks per \
                     connection and commit out of order; ALTER SEQUENCE {sequence} CACHE 1"
                ),
                seconds: None,
            });
        }
        let settings: Vec<(String, String)> = sqlx::query_as(
            "SELECT name::text, setting::text FROM pg_settings \
             WHERE name IN ('fsync', 'full_page_writes', 'synchronous_commit') ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let lax: Vec<String> = settings
            .iter()
            .filter(|(_, setting)| setting == "off")
            .map(|(name, _)| format!("{name} = off"))
            .collect();
        if !lax.is_empty() {
            findings.push(Finding {
                kind: "not-durable",
                message: format!(
                    "{}: a crash can lose committed changes; the copies then report the \
                     rollback and the owner refills itself from them",
                    lax.join(", ")
                ),
                seconds: None,
            });
        }
        findings.extend(self.held_back(held_back_after).await?);
        Ok(findings)
    }

    /// Sessions of this database, and prepared transactions of any, holding a transaction id
    /// for longer than `after` (the horizon waits for exactly these, `horizon.rs`).
    async fn held_back(&self, after: Duration) -> Result<Vec<Finding>, Error> {
        let after = i64::try_from(after.as_secs()).unwrap_or(i64::MAX);
        let sessions: Vec<SessionRow> = sqlx::query_as(
            "SELECT pid, datname::text, usename::text, application_name, state, \
                        CAST(EXTRACT(EPOCH FROM now() - xact_start) AS BIGINT) \
                 FROM pg_stat_activity \
                 WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() \
                   AND datname = current_database() \
                   AND xact_start < now() - make_interval(secs => $1) \
                 ORDER BY xact_start LIMIT $2",
        )
        .bind(after as f64)
        .bind(MAX_NAMED)
        .fetch_all(&self.pool)
        .await?;
        let prepared: Vec<(String, Option<String>, i64)> = sqlx::query_as(
            "SELECT gid, database::text, CAST(EXTRACT(EPOCH FROM now() - prepared) AS BIGINT) \
             FROM pg_prepared_xacts WHERE prepared < now() - make_interval(secs => $1) \
             ORDER BY prepared LIMIT $2",
        )
        .bind(after as f64)
        .bind(MAX_NAMED)
        .fetch_all(&self.pool)
        .await?;
        let unknown = |value: &Option<String>| value.clone().unwrap_or_else(|| "?".to_owned());
        let mut findings: Vec<Finding> = sessions
            .iter()
            .map(
                |(pid, database, user, application, state, seconds)| Finding {
                    kind: "held-back",
                    message: format!(
                        "the feed is held back by session pid {pid} (database {}, user {}, \
                     application '{}', {}) in a transaction for {seconds} s: every feed of this \
                     database waits for it to end (pg_terminate_backend({pid}) ends it)",
                        unknown(database),
                        unknown(user),
                        unknown(application),
                        unknown(state),
                    ),
                    seconds: Some(*seconds),
                },
            )
            .collect();
        findings.extend(prepared.iter().map(|(gid, database, seconds)| Finding {
            kind: "held-back",
            message: format!(
                "the feed is held back by prepared transaction '{gid}' (database {}) for \
                 {seconds} s: every feed on this server waits for it (COMMIT PREPARED or \
                 ROLLBACK PREPARED '{gid}')",
                unknown(database)
            ),
            seconds: Some(*seconds),
        }));
        Ok(findings)
    }
}
