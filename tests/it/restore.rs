//! An owner rolled back to an old backup: the first poll of a copy that holds newer versions
//! puts the owner into `restoring` (writes refused, reads served), the copy keeps what it has
//! and does not advance, both say so in `/health`; once an operator continues, the owner hands
//! out only versions (and ids) beyond everything the copy holds, and the copy follows again.
//! On SQLite (the backup is `VACUUM INTO`, the restore a file copy while the owner is down)
//! and PostgreSQL (`pg_dump` while it runs, `pg_restore` into a recreated database).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tests::process::{UnitProcess, free_port};
use tests::replication::{cursor, poller_state, post_customer, wait_for, wait_until_copied};
use tests::{
    ADMIN, BILLING, Backend, JSON, both_backends, customer_json, fresh_database, postgres_server,
    reader_config, unit_config,
};

async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let reply = client
        .get(url)
        .bearer_auth(ADMIN)
        .header("accept", JSON)
        .send()
        .await
        .unwrap();
    (reply.status().as_u16(), reply.text().await.unwrap())
}

/// A consistent copy of a live database: SQLite's `VACUUM INTO`, or `pg_dump`.
async fn backup(backend: Backend, url: &str, into: &Path) {
    match backend {
        Backend::Sqlite => {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(url).await.unwrap();
            let statement = format!("VACUUM INTO '{}'", into.display());
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let status = Command::new(pg_tool("pg_dump"))
                .args(["--format=custom", "--file"])
                .arg(into)
                .arg(url)
                .status()
                .unwrap();
            assert!(status.success(), "pg_dump failed");
        }
    }
}

/// Puts the backup in place of the database (its units are down).
async fn restore(backend: Backend, url: &str, from: &Path) {
    match backend {
        Backend::Sqlite => {
            let path = url.strip_prefix("sqlite://").unwrap();
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
            std::fs::copy(from, path).unwrap();
        }
        Backend::Postgres => {
            let name = url.rsplit_once('/').unwrap().1;
            let name = name.split('?').next().unwrap();
            sqlx::any::install_default_drivers();
            let server_url = format!("{}/postgres", postgres_server().trim_end_matches('/'));
            let server = sqlx::AnyPool::connect(&server_url).await.unwrap();
            for statement in [
                format!("DROP DATABASE {name} WITH (FORCE)"),
                format!("CREATE DATABASE {name}"),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(statement))
                    .execute(&server)
                    .await
                    .unwrap();
            }
            server.close().await;
            let status = Command::new(pg_tool("pg_restore"))
                .arg("--dbname")
                .arg(url)
                .arg(from)
                .status()
                .unwrap();
            assert!(status.success(), "pg_restore failed");
        }
    }
}

/// A PostgreSQL client tool of the version `scripts/test` installed.
fn pg_tool(name: &str) -> PathBuf {
    let bin = std::env::var("HISCALE_PG_BIN").expect("HISCALE_PG_BIN: scripts/test sets it");
    Path::new(&bin).join(name)
}

both_backends!(
    a_rolled_back_owner_refuses_writes_and_its_copy_holds_until_it_continues,
    |backend: Backend| async move { rolled_back(backend, Continue::WithoutRefill).await }
);

both_backends!(
    a_rolled_back_owner_is_refilled_from_its_peers_copy,
    |backend: Backend| async move { rolled_back(backend, Continue::Refill).await }
);

/// How the operator ends `restoring`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continue {
    /// `DELETE /admin/restore`: the counter moves past the copies, nothing comes back.
    WithoutRefill,
    /// `POST /admin/restore`: the owner reads billing's copy back, then goes on.
    Refill,
}

async fn rolled_back(backend: Backend, how: Continue) {
    let client = reqwest::Client::new();
    let owner_db = fresh_database(backend).await;
    let owner_config = unit_config(
        "registration-1",
        &owner_db.url,
        ([127, 0, 0, 1], free_port()).into(),
    );
    let first_life = UnitProcess::start_config(owner_config.clone()).await;
    let owner_url = first_life.url.clone();
    let copy_db = fresh_database(Backend::Sqlite).await;
    let copy_config = reader_config(
        "billing",
        &copy_db.url,
        &owner_url,
        BILLING,
        billing::COPIED_ASPECTS,
    );
    let copy = UnitProcess::start_config(copy_config).await;

    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(post_customer(&client, &owner_url, customer_json(n), JSON).await);
    }
    let backup_dir = tempfile::tempdir().unwrap();
    let backup_file = backup_dir.path().join("backup");
    backup(backend, &owner_db.url, &backup_file).await;
    let restored_to: i64 = ids.last().unwrap().parse().unwrap();
    // After the backup: a changed bill address, a deleted customer, four new ones.
    let changed = client
        .put(format!("{owner_url}/customers/{}/address.bill", ids[1]))
        .bearer_auth(ADMIN)
        .header("content-type", JSON)
        .body(r#"{"street":"Neue Strasse 1","zip":"10115","city":"Berlin"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        changed.status().as_u16(),
        200,
        "{}",
        changed.text().await.unwrap()
    );
    let deleted = client
        .delete(format!("{owner_url}/customers/{}", ids[2]))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    for n in 3..7 {
        ids.push(post_customer(&client, &owner_url, customer_json(n), JSON).await);
    }
    let held: i64 = ids.last().unwrap().parse().unwrap();
    wait_until_copied(&copy.url, held, Duration::from_secs(30)).await;
    // An operator's hand-typed version ahead is answered 409 but stops no write.
    let (status, _) = get(&client, &format!("{owner_url}/customers?version=999999")).await;
    assert_eq!(status, 409);
    let (_, restoring) = get(&client, &format!("{owner_url}/admin/restore")).await;
    assert!(restoring.contains("\"restoring\":[]"), "{restoring}");

    // The owner dies and comes back from the backup: it has handed out versions up to
    // `restored_to` only, while the copy holds up to `held`.
    drop(first_life);
    restore(backend, &owner_db.url, &backup_file).await;
    // Restarted from the backup, knowing the peer whose copy can refill it.
    let mut restored_config = owner_config.clone();
    restored_config.restore_from = vec![hiscale::config::PeerConfig {
        sa: "billing".into(),
        collection: "customers".into(),
        url: copy.url.clone(),
        token: ADMIN.into(),
        aspects: billing::COPIED_ASPECTS.into(),
    }];
    let _restored = UnitProcess::start_config(restored_config).await;

    wait_for(
        "the copy to notice the rollback",
        Duration::from_secs(30),
        async || poller_state(&copy.url).await == "owner-rolled-back",
    )
    .await;
    let (status, restoring) = get(&client, &format!("{owner_url}/admin/restore")).await;
    assert_eq!(status, 200, "{restoring}");
    let restoring: serde_json::Value = serde_json::from_str(&restoring).unwrap();
    assert_eq!(restoring["restoring"][0]["ahead"], held, "{restoring}");
    assert_eq!(
        restoring["restoring"][0]["restored_to"], restored_to,
        "{restoring}"
    );
    assert_eq!(
        restoring["restoring"][0]["reported_by"], "billing",
        "{restoring}"
    );

    // Writes are refused (no version handed out twice), reads served, both units say why.
    let refused = client
        .post(format!("{owner_url}/customers"))
        .bearer_auth(ADMIN)
        .header("content-type", JSON)
        .header("accept", JSON)
        .body(customer_json(100))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(refused.text().await.unwrap().contains("\"restoring\""));
    let (status, _) = get(&client, &format!("{owner_url}/customers/{}", ids[0])).await;
    assert_eq!(status, 200);
    let (status, health) = get(&client, &format!("{owner_url}/health")).await;
    assert_eq!(status, 200, "{health}");
    assert!(
        health.starts_with("PASS\n") && health.contains("customers is restoring"),
        "{health}"
    );
    let (status, health) = get(&client, &format!("{}/health", copy.url)).await;
    assert_eq!(status, 200, "{health}");
    assert!(health.contains("was rolled back"), "{health}");
    // The copy keeps everything and its cursor, including what the owner lost.
    assert_eq!(cursor(&copy.url).await, held);
    let (status, _) = get(&client, &format!("{}/customers/{}", copy.url, ids[6])).await;
    assert_eq!(status, 200);

    match how {
        Continue::WithoutRefill => {
            // The counter moves past what the copy holds; what only the copy has stays there.
            let left = client
                .delete(format!("{owner_url}/admin/restore"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            assert_eq!(left.status().as_u16(), 200);
            let left: serde_json::Value = left.json().await.unwrap();
            assert_eq!(left["left"][0]["continues_after"], held, "{left}");
            let (status, _) = get(&client, &format!("{owner_url}/customers/{}", ids[6])).await;
            assert_eq!(status, 404, "not refilled, so not there");
        }
        Continue::Refill => {
            let refilled = client
                .post(format!("{owner_url}/admin/restore"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            assert_eq!(refilled.status().as_u16(), 200);
            let report: serde_json::Value = refilled.json().await.unwrap();
            let customers = &report["refilled"][0];
            assert_eq!(customers["continues_after"], held, "{report}");
            assert_eq!(customers["restored_to"], restored_to, "{report}");
            assert_eq!(customers["peers"][0]["sa"], "billing", "{report}");
            assert_eq!(customers["peers"][0]["resources"], 6, "{report}");
            assert_eq!(
                customers["not_held"],
                serde_json::json!(["account", "address.home"])
            );
            assert_eq!(report["restoring"], serde_json::json!([]), "{report}");
            // What billing held is back at the owner: the new customers (billing's aspects of
            // them), the changed address, the deletion.
            let (status, body) = get(&client, &format!("{owner_url}/customers/{}", ids[6])).await;
            assert_eq!(status, 200, "{body}");
            let value: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(value["version"].as_i64(), Some(held), "{value}");
            assert!(value["bankaccount"]["iban"].is_string(), "{value}");
            let (_, body) = get(&client, &format!("{owner_url}/customers/{}", ids[1])).await;
            assert!(body.contains("Neue Strasse 1"), "{body}");
            let (status, _) = get(&client, &format!("{owner_url}/customers/{}", ids[2])).await;
            assert_eq!(status, 404, "the deletion came back too");
        }
    }
    let new_id: i64 = post_customer(&client, &owner_url, customer_json(200), JSON)
        .await
        .parse()
        .unwrap();
    assert!(
        new_id > held,
        "id {new_id} was handed out before (the copy holds up to {held})"
    );
    wait_until_copied(&copy.url, new_id, Duration::from_secs(30)).await;
    assert_eq!(poller_state(&copy.url).await, "polling");
    let (status, _) = get(&client, &format!("{}/customers/{new_id}", copy.url)).await;
    assert_eq!(status, 200);
}
