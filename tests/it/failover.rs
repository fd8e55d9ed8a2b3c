//! Primary and backup readers: the backup stands by while the primary answers its heartbeat,
//! takes over polling when the primary is gone, and steps back when it returns.

use std::time::Duration;

use hiscale::Store;
use hiscale::config::ReaderRole;
use tests::process::UnitProcess;
use tests::replication::{cursor, poller_state, post_customer, wait_for};
use tests::{Backend, JSON, SHOP, both_backends, customer_json, fresh_database, reader_config};

both_backends!(
    the_backup_takes_over_and_steps_back,
    |backend: Backend| async move {
        let owner_db = fresh_database(backend).await;
        let owner = UnitProcess::start("registration-1", &owner_db.url).await;
        let owner_store = Store::connect(&owner_db.url).await.unwrap();
        let client = reqwest::Client::new();
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
        let primary_config =
            reader_config("shop", &shop_db.url, &owner.url, SHOP, shop::COPIED_ASPECTS);
        let mut backup_config =
            reader_config("shop", &shop_db.url, &owner.url, SHOP, shop::COPIED_ASPECTS);
        backup_config.unit = "shop-2".into();
        backup_config.reader.role = ReaderRole::Backup;
        backup_config.reader.primary_url = Some(format!("http://{}", primary_config.listen));
        backup_config.reader.heartbeat_interval_ms = 200;
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
        wait_for(
            "the backup takes over",
            Duration::from_secs(30),
            async || poller_state(&backup.url).await == "polling",
        )
        .await;
        let second = create(2).await;
        wait_for(
            "the backup copies new changes",
            Duration::from_secs(30),
            async || cursor(&backup.url).await >= second,
        )
        .await;

        // The primary returns (same address): the backup stands by again.
        primary = Some(UnitProcess::start_config(primary_config).await);
        wait_for(
            "the backup steps back",
            Duration::from_secs(30),
            async || poller_state(&backup.url).await == "standing-by",
        )
        .await;
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
