//! Backing up and restoring a PostgreSQL database the operator's way, with the client tools of
//! the version `scripts/test` installed: what the restore, rollback and soak tests share.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A PostgreSQL client tool of the version `scripts/test` installed (`HISCALE_PG_BIN`).
pub fn pg_tool(name: &str) -> PathBuf {
    let bin = std::env::var("HISCALE_PG_BIN").expect("HISCALE_PG_BIN: scripts/test sets it");
    Path::new(&bin).join(name)
}

/// `pg_dump --format=custom` of the database at `url` into `into` (consistent while it runs).
pub fn pg_dump(url: &str, into: &Path) {
    let status = Command::new(pg_tool("pg_dump"))
        .args(["--format=custom", "--file"])
        .arg(into)
        .arg(url)
        .status()
        .expect("pg_dump runs");
    assert!(status.success(), "pg_dump failed");
}

/// `pg_restore` of the dump `from` into the (empty) database at `url`.
pub fn pg_restore(url: &str, from: &Path) {
    let status = Command::new(pg_tool("pg_restore"))
        .arg("--dbname")
        .arg(url)
        .arg(from)
        .status()
        .expect("pg_restore runs");
    assert!(status.success(), "pg_restore failed");
}

/// Drops the database at `url` (ending its sessions) and creates it empty again, through the
/// server's `postgres` database at `server_url`; then restores the dump `from` into it.
pub async fn recreate_and_restore(server_url: &str, url: &str, from: &Path) {
    let name = url
        .rsplit_once('/')
        .expect("a database URL")
        .1
        .split('?')
        .next()
        .unwrap_or_default();
    sqlx::any::install_default_drivers();
    let server = sqlx::AnyPool::connect(&format!("{}/postgres", server_url.trim_end_matches('/')))
        .await
        .expect("the server's postgres database");
    for statement in [
        format!("DROP DATABASE {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&server)
            .await
            .expect("drop and create the database");
    }
    server.close().await;
    pg_restore(url, from);
}
