//! Primary and backup readers: the backup stands by while the primary answers its heartbeat,
//! takes over polling when the primary is gone, and steps back when it returns.

use std::time::{Duration, Instant};

use hiscale::Store;
use hiscale::config::ReaderRole;
use tests::process::UnitProcess;
use tests::replication::{cursor, poller_state, post_customer, replication, wait_for};
use tests::{Backend, JSON, SHOP, both_backends, customer_json, fresh_database, reader_config};

/// The reader lease in these tests: short, so that a takeover is quick.
const LEASE_MS: u64 = 2_000;
/// Timing assertions allow this much on top of what the design promises (shared machines).
const MARGIN: Duration = Duration::from_secs(8);

/// A primary and a backup shop reader sharing the database at `shop_db`, polling
/// `primary_source` and `backup_source`: the backup watches the primary's heartbeat every
/// 200 ms, and both hold the short test lease.
fn shop_readers(
    shop_db: &str,
    primary_source: &str,
    backup_source: &str,
) -> (hiscale::UnitConfig, hiscale::UnitConfig) {
    let mut primary = reader_config("shop", shop_db, primary_source, SHOP, shop::COPIED_ASPECTS);
    let mut backup = reader_config("shop", shop_db, backup_source, SHOP, shop::COPIED_ASPECTS);
    backup.unit = "shop-2".into();
    backup.reader.role = ReaderRole::Backup;
    backup.reader.primary_url = Some(format!("http://{}", primary.listen));
    backup.reader.heartbeat_interval_ms = 200;
    primary.reader.lease_ms = LEASE_MS;
    backup.reader.lease_ms = LEASE_MS;
    (primary, backup)
}

both_backends!(
    the_backup_takes_over_and_steps_back,
    |backend: Backend| async move {
        let owner_db = fresh_database(backend).await;
        let owner = UnitProcess::start("registration-1", &owner_db.url).await;
        let owner_store = Store::connect(&owner_db.url).await.unwrap();
        let client = hiscale::tls::client();
        let create = async |n: u64| {
            post_customer(&client, &owner.url, customer_json(n), JSON).await;
            owner_store
                .current_version("customers")
                .await
                .unwrap()
                .get()
        };
        create(1).await;

        // Two units of shop sharing one database: a primary and its backup.
        let shop_db = fresh_database(backend).await;
        let (primary_config, backup_config) = shop_readers(&shop_db.url, &owner.url, &owner.url);
        let mut primary = Some(UnitProcess::start_config(primary_config.clone()).await);
        let backup = UnitProcess::start_config(backup_config).await;

        let heartbeat: serde_json::Value = client
            .get(format!("{}/heartbeat", backup.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(heartbeat["role"], "backup");
        let first = owner_store
            .current_version("customers")
            .await
            .unwrap()
            .get();
        let primary_url = primary.as_ref().unwrap().url.clone();
        wait_for("the primary copies", Duration::from_secs(30), async || {
            cursor(&primary_url).await >= first
        })
        .await;
        assert_eq!(poller_state(&backup.url).await, "standing-by");

        // The primary dies: the backup notices by heartbeat and polls; new changes arrive.
        drop(primary.take());
        let killed = Instant::now();
        wait_for(
            "the backup takes over",
            Duration::from_secs(30),
            async || poller_state(&backup.url).await == "polling",
        )
        .await;
        // Three missed heartbeats and a patient last check, or the lease, whichever is later,
        // plus a wide margin for a shared machine.
        let took_over = killed.elapsed();
        println!("the backup polls {took_over:?} after the primary was killed");
        assert!(
            took_over < Duration::from_millis(3 * 200 + 2_000 + LEASE_MS) + MARGIN,
            "takeover took {took_over:?}"
        );
        let second = create(2).await;
        wait_for(
            "the backup copies new changes",
            Duration::from_secs(30),
            async || cursor(&backup.url).await >= second,
        )
        .await;

        // The primary returns (same address): the backup stands by again.
        primary = Some(UnitProcess::start_config(primary_config).await);
        let returned = Instant::now();
        wait_for(
            "the backup steps back",
            Duration::from_secs(30),
            async || poller_state(&backup.url).await == "standing-by",
        )
        .await;
        let stepped_back = returned.elapsed();
        println!("the backup stands by {stepped_back:?} after the primary answered again");
        assert!(
            stepped_back < Duration::from_millis(2 * 200) + MARGIN,
            "stepping back took {stepped_back:?}"
        );
        let third = create(3).await;
        let primary_url = primary.as_ref().unwrap().url.clone();
        wait_for(
            "the returned primary copies",
            Duration::from_secs(30),
            async || cursor(&primary_url).await >= third,
        )
        .await;
    }
);

both_backends!(
    a_backup_cut_off_from_a_live_primary_never_applies,
    |backend: Backend| async move {
        let owner_db = fresh_database(backend).await;
        let owner = UnitProcess::start("registration-1", &owner_db.url).await;
        let owner_store = Store::connect(&owner_db.url).await.unwrap();
        let client = hiscale::tls::client();
        let ids = [
            post_customer(&client, &owner.url, customer_json(1), JSON).await,
            post_customer(&client, &owner.url, customer_json(2), JSON).await,
        ];

        // The backup's view of the primary's heartbeat is cut (it points where nothing
        // listens), while both reach the owner and their shared database.
        let shop_db = fresh_database(backend).await;
        let shop_store = Store::connect(&shop_db.url).await.unwrap();
        let primary_config =
            reader_config("shop", &shop_db.url, &owner.url, SHOP, shop::COPIED_ASPECTS);
        let mut backup_config =
            reader_config("shop", &shop_db.url, &owner.url, SHOP, shop::COPIED_ASPECTS);
        backup_config.unit = "shop-2".into();
        backup_config.reader.role = ReaderRole::Backup;
        backup_config.reader.primary_url =
            Some(format!("http://127.0.0.1:{}", tests::process::free_port()));
        backup_config.reader.heartbeat_interval_ms = 200;
        let primary = UnitProcess::start_config(primary_config).await;
        let backup = UnitProcess::start_config(backup_config).await;

        // Writes go on while the backup believes the primary is gone; sample throughout.
        let writing = Duration::from_secs(8);
        let started = std::time::Instant::now();
        let mut last_cursor = 0;
        let mut samples = 0;
        let mut backup_tried = false;
        let mut n = 0u64;
        while started.elapsed() < writing {
            n += 1;
            let id = &ids[usize::try_from(n % 2).unwrap()];
            let reply = client
                .put(format!("{}/customers/{id}/person", owner.url))
                .bearer_auth(tests::ADMIN)
                .header("content-type", JSON)
                .body(format!(
                    r#"{{"type":"natural","firstname":"Cut","lastname":"Off{n}"}}"#
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status().as_u16(), 200);
            let status = replication(&backup.url).await;
            let source = &status["sources"][0];
            assert_eq!(
                source["chunks_applied"], 0,
                "the backup applied a chunk while the primary held the lease: {status}"
            );
            backup_tried |= source["state"] == "waiting";
            let stored = shop_store.cursor("customers").await.unwrap().get();
            assert!(
                stored >= last_cursor,
                "the shared cursor went back from {last_cursor} to {stored}"
            );
            last_cursor = stored;
            samples += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            backup_tried,
            "the backup never asked for the lease: the test did not cut what it meant to"
        );
        let end = owner_store
            .current_version("customers")
            .await
            .unwrap()
            .get();
        wait_for(
            "the primary copies everything",
            Duration::from_secs(30),
            async || cursor(&primary.url).await >= end,
        )
        .await;
        let status = replication(&primary.url).await;
        assert_eq!(status["lease"]["unit"], "shop-1", "{status}");
        println!("{n} writes, {samples} samples, cursor never went back, backup applied nothing");
    }
);

// Readers fail over on progress, not only on liveness (issue 24): the primary's way to its
// source is cut (a relay between them), its heartbeat to the backup stays fine. Before, the
// primary kept renewing its lease, said `reading`, and the copy stopped following for good.
both_backends!(
    a_primary_cut_from_its_source_hands_over_to_its_backup,
    |backend: Backend| async move {
        let owner_db = fresh_database(backend).await;
        let owner = UnitProcess::start("registration-1", &owner_db.url).await;
        let client = hiscale::tls::client();
        let owner_address: std::net::SocketAddr =
            owner.url.trim_start_matches("http://").parse().unwrap();
        let relay = tests::relay::Relay::start(owner_address).await;
        let create = async |n: u64| -> i64 {
            post_customer(&client, &owner.url, customer_json(n), JSON)
                .await
                .parse()
                .unwrap()
        };
        let first = create(1).await;

        let shop_db = fresh_database(backend).await;
        let (primary_config, backup_config) = shop_readers(&shop_db.url, &relay.url(), &owner.url);
        let primary = UnitProcess::start_config(primary_config).await;
        let backup = UnitProcess::start_config(backup_config).await;
        wait_for("the primary copies", Duration::from_secs(30), async || {
            cursor(&primary.url).await >= first
        })
        .await;
        assert_eq!(poller_state(&backup.url).await, "standing-by");

        relay.cut();
        let cut = Instant::now();
        let second = create(2).await;
        wait_for(
            "the backup takes over from the cut-off primary",
            Duration::from_secs(60),
            async || poller_state(&backup.url).await == "polling",
        )
        .await;
        let took_over = cut.elapsed();
        println!("the backup polls {took_over:?} after the primary was cut from its source");
        // A lease of silence, the backup's missed heartbeats and patient check, then the lease
        // the primary gave up (at once), with a wide margin for a shared machine.
        assert!(
            took_over < Duration::from_millis(LEASE_MS + 3 * 200 + 2_000 + LEASE_MS) + MARGIN,
            "takeover took {took_over:?}"
        );
        wait_for(
            "the copy catches up through the backup",
            Duration::from_secs(30),
            async || cursor(&backup.url).await >= second,
        )
        .await;
        let heartbeat: serde_json::Value = client
            .get(format!("{}/heartbeat", primary.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(heartbeat["reader"], "failing", "{heartbeat}");
        let health = client
            .get(format!("{}/health", primary.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            health.starts_with("PASS\n") && health.contains("makes no progress"),
            "{health}"
        );
        // No ping-pong while the primary stays cut off: the backup keeps one epoch.
        let epoch = replication(&backup.url).await["lease"]["epoch"].clone();
        tokio::time::sleep(Duration::from_millis(3 * LEASE_MS)).await;
        let status = replication(&backup.url).await;
        assert_eq!(status["lease"]["epoch"], epoch, "{status}");
        assert_eq!(status["lease"]["unit"], "shop-2", "{status}");

        // The link heals: the primary wants the lease back and the backup steps back.
        relay.restore();
        wait_for(
            "the backup steps back for the primary that reaches its source again",
            Duration::from_secs(60),
            async || poller_state(&backup.url).await == "standing-by",
        )
        .await;
        let third = create(3).await;
        wait_for(
            "the primary copies again",
            Duration::from_secs(30),
            async || cursor(&primary.url).await >= third,
        )
        .await;
    }
);

// A unit started twice under one name (a replacement during a partition, an operator's
// mistake) is two lease holders: one reads, the other waits. Before, both held the same
// epoch under the same name and neither was fenced.
both_backends!(
    a_unit_started_twice_under_one_name_is_fenced,
    |backend: Backend| async move {
        let owner_db = fresh_database(backend).await;
        let owner = UnitProcess::start("registration-1", &owner_db.url).await;
        let client = hiscale::tls::client();
        let first: i64 = post_customer(&client, &owner.url, customer_json(1), JSON)
            .await
            .parse()
            .unwrap();
        let shop_db = fresh_database(backend).await;
        let config = reader_config("shop", &shop_db.url, &owner.url, SHOP, shop::COPIED_ASPECTS);
        let mut twin_config = config.clone();
        twin_config.listen = ([127, 0, 0, 1], tests::process::free_port()).into();
        let one = UnitProcess::start_config(config).await;
        let twin = UnitProcess::start_config(twin_config).await;
        wait_for("one of them copies", Duration::from_secs(30), async || {
            cursor(&one.url).await.max(cursor(&twin.url).await) >= first
        })
        .await;
        // Settled: exactly one holds the lease (by its nonce), the other waits.
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let states = [poller_state(&one.url).await, poller_state(&twin.url).await];
        let mut sorted = states.clone();
        sorted.sort();
        assert_eq!(sorted, ["polling", "waiting"], "{states:?}");
        let lease = replication(&one.url).await["lease"].clone();
        assert_eq!(lease["unit"], "shop-1", "{lease}");
        let holder = lease["holder"].as_str().unwrap().to_owned();
        assert!(
            holder.starts_with("shop-1#") && holder.len() > "shop-1#".len(),
            "{lease}"
        );
        // The reader that waits takes over when the other one dies.
        let (reading, waiting) = if states[0] == "polling" {
            (one, twin)
        } else {
            (twin, one)
        };
        drop(reading);
        let second: i64 = post_customer(&client, &owner.url, customer_json(2), JSON)
            .await
            .parse()
            .unwrap();
        wait_for("the twin takes over", Duration::from_secs(60), async || {
            cursor(&waiting.url).await >= second
        })
        .await;
        let lease = replication(&waiting.url).await["lease"].clone();
        assert_ne!(lease["holder"], holder.as_str(), "{lease}");
    }
);
