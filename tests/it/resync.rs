//! A re-read after `410` is durable: interrupted by `kill -9` of its reader, the other reader
//! of the SA finishes it; what the owner deleted meanwhile is gone from the copy, and a copy
//! polling that copy is sent to re-read as well and drops the same.

use std::time::Duration;

use hiscale::config::ReaderRole;
use hiscale::{Origin, ResourceId, Store};
use tests::process::{UnitProcess, free_port};
use tests::replication::{post_customer, wait_for};
use tests::{ADMIN, Backend, JSON, SHOP, both_backends, fresh_database, reader_config};

const CUSTOMERS: usize = 150;
const DELETED: usize = 5;

both_backends!(
    an_interrupted_resync_is_finished_by_the_other_reader,
    |backend: Backend| async move {
        let owner_db = fresh_database(backend).await;
        let mut owner_config = tests::unit_config(
            "registration-1",
            &owner_db.url,
            ([127, 0, 0, 1], free_port()).into(),
        );
        owner_config.feed.tombstone_max_age_secs = 0;
        let owner = UnitProcess::start_config(owner_config).await;
        let owner_store = Store::connect(&owner_db.url).await.unwrap();
        let client = hiscale::tls::client();
        let mut ids = Vec::new();
        for n in 0..CUSTOMERS {
            let body = serde_json::json!({
                "person": {"type": "natural", "firstname": "Re", "lastname": format!("Sync{n}")},
                "addresses": {"home": {"street": format!("Weg {n}"), "zip": "53111", "city": "Bonn"}}
            });
            ids.push(post_customer(&client, &owner.url, body.to_string(), JSON).await);
        }

        // Shop: a primary and a backup on one database, reading one resource per chunk so
        // that a re-read takes long enough to be interrupted; a second shop copy reads the
        // first (through the primary's address).
        let shop_db = fresh_database(backend).await;
        let shop_store = Store::connect(&shop_db.url).await.unwrap();
        let mut primary_config =
            reader_config("shop", &shop_db.url, &owner.url, SHOP, shop::COPIED_ASPECTS);
        primary_config.sources[0].limit = 1;
        primary_config.reader.lease_ms = 1_500;
        let mut backup_config = primary_config.clone();
        backup_config.unit = "shop-2".into();
        backup_config.listen = ([127, 0, 0, 1], free_port()).into();
        backup_config.reader.role = ReaderRole::Backup;
        backup_config.reader.primary_url = Some(format!("http://{}", primary_config.listen));
        backup_config.reader.heartbeat_interval_ms = 200;
        let second_db = fresh_database(backend).await;
        let second_store = Store::connect(&second_db.url).await.unwrap();
        let mut second_config = reader_config(
            "shop",
            &second_db.url,
            &format!("http://{}", primary_config.listen),
            SHOP,
            shop::COPIED_ASPECTS,
        );
        second_config.unit = "shop-far-1".into();
        second_config.sources[0].limit = 50;

        let mut primary = Some(UnitProcess::start_config(primary_config.clone()).await);
        let mut backup = Some(UnitProcess::start_config(backup_config.clone()).await);
        let _second = UnitProcess::start_config(second_config).await;
        let version = owner_store.current_version("customers").await.unwrap();
        for (what, store) in [("shop", &shop_store), ("the far copy", &second_store)] {
            wait_for(
                &format!("{what} copies all"),
                Duration::from_secs(90),
                async || store.cursor("customers").await.unwrap() >= version,
            )
            .await;
        }

        // Both shop readers are away while the owner deletes and purges the tombstones.
        drop(primary.take());
        drop(backup.take());
        for id in &ids[..DELETED] {
            let reply = client
                .delete(format!("{}/customers/{id}", owner.url))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status().as_u16(), 204);
        }
        // Tombstones older than the maximum age (0 s) go whoever has passed them.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let purged = tests::replication::purge(&client, &owner.url).await;
        assert!(
            purged["purged"][0]["report"]["resource_tombstones"].as_u64() >= Some(1),
            "{purged}"
        );

        // The backup comes alone (the primary is gone): it takes over, gets 410 and re-reads;
        // it dies half-way.
        backup = Some(UnitProcess::start_config(backup_config).await);
        wait_for("a re-read under way", Duration::from_secs(60), async || {
            let position = shop_store
                .copy_position("customers", &Origin::single())
                .await
                .unwrap();
            position.resync.is_some_and(|(_, at)| at.get() > 20)
        })
        .await;
        drop(backup.take());
        let interrupted = shop_store
            .copy_position("customers", &Origin::single())
            .await
            .unwrap();
        let (generation, at) = interrupted.resync.expect("the re-read was interrupted");
        assert!(
            at < owner_store.current_version("customers").await.unwrap(),
            "the re-read had finished before it was interrupted"
        );
        println!("re-read {generation} interrupted at {at}");

        // The primary finishes the same re-read (the same generation, from where it stood).
        primary = Some(UnitProcess::start_config(primary_config).await);
        let end = owner_store.current_version("customers").await.unwrap();
        // Sampled while it runs: the same generation, never behind where it was interrupted.
        let mut samples = Vec::new();
        wait_for(
            "the re-read to finish",
            Duration::from_secs(90),
            async || {
                let position = shop_store
                    .copy_position("customers", &Origin::single())
                    .await
                    .unwrap();
                if let Some(resync) = position.resync {
                    samples.push(resync);
                }
                position.resync.is_none() && position.cursor >= end
            },
        )
        .await;
        assert!(
            samples.iter().all(|(g, p)| *g == generation && *p >= at),
            "the re-read started over instead of resuming at {at}: {samples:?}"
        );
        println!("re-read resumed and finished; {} samples", samples.len());

        let id = |text: &String| ResourceId::parse(text).unwrap();
        for (name, store) in [("shop", &shop_store), ("the far copy", &second_store)] {
            // The far copy learns of the deletions by re-reading from shop in turn.
            wait_for(
                &format!("the deletions to arrive at {name}"),
                Duration::from_secs(90),
                async || {
                    let mut gone = true;
                    for deleted in &ids[..DELETED] {
                        gone &= store
                            .read("customers", &id(deleted))
                            .await
                            .unwrap()
                            .is_none_or(|resource| resource.deleted);
                    }
                    gone && store.cursor("customers").await.unwrap() >= end
                },
            )
            .await;
            for kept in &ids[DELETED..] {
                let resource = store.read("customers", &id(kept)).await.unwrap();
                assert!(
                    resource.is_some_and(|resource| !resource.deleted),
                    "customer {kept} vanished from a copy"
                );
            }
        }
        drop(primary);
    }
);

both_backends!(
    changing_a_copys_aspects_fills_and_drops_them,
    |backend: Backend| async move {
        let owner_db = fresh_database(backend).await;
        let owner = UnitProcess::start("registration-1", &owner_db.url).await;
        let owner_store = Store::connect(&owner_db.url).await.unwrap();
        let client = hiscale::tls::client();
        let mut ids = Vec::new();
        for n in 0..20 {
            let body = serde_json::json!({
                "person": {"type": "natural", "firstname": "As", "lastname": format!("Pect{n}")},
                "addresses": {"home": {"street": format!("Weg {n}"), "zip": "53111", "city": "Bonn"}}
            });
            ids.push(post_customer(&client, &owner.url, body.to_string(), JSON).await);
        }
        let version = owner_store.current_version("customers").await.unwrap();
        let shop_db = fresh_database(backend).await;
        let shop_store = Store::connect(&shop_db.url).await.unwrap();
        let mut config = reader_config("shop", &shop_db.url, &owner.url, SHOP, "~person");
        config.sources[0].limit = 7;

        // What every customer holds in the copy, once the copy is through with `aspects`.
        let holds = async |aspects: &[&str]| {
            wait_for(
                &format!("the copy to hold exactly {aspects:?}"),
                Duration::from_secs(60),
                async || {
                    let position = shop_store
                        .copy_position("customers", &Origin::single())
                        .await
                        .unwrap();
                    if position.resync.is_some() || position.cursor < version {
                        return false;
                    }
                    let mut exact = true;
                    for id in &ids {
                        let names: Vec<String> = shop_store
                            .read("customers", &ResourceId::parse(id).unwrap())
                            .await
                            .unwrap()
                            .map(|resource| {
                                resource
                                    .aspects
                                    .into_iter()
                                    .filter(|aspect| !aspect.deleted)
                                    .map(|aspect| aspect.name)
                                    .collect()
                            })
                            .unwrap_or_default();
                        let mut names = names;
                        names.sort();
                        let mut expected: Vec<&str> = aspects.to_vec();
                        expected.sort_unstable();
                        exact &= names == expected;
                    }
                    exact
                },
            )
            .await;
        };
        let unit = UnitProcess::start_config(config.clone()).await;
        holds(&["person"]).await;
        drop(unit);

        // An aspect added: filled from version 0, the cursor kept.
        config.sources[0].aspects = "~person~address.home".into();
        let unit = UnitProcess::start_config(config.clone()).await;
        holds(&["person", "address.home"]).await;
        drop(unit);

        // An aspect removed: dropped from the copy.
        config.sources[0].aspects = "~address.home".into();
        let _unit = UnitProcess::start_config(config).await;
        holds(&["address.home"]).await;
        assert_eq!(
            shop_store
                .copy_position("customers", &Origin::single())
                .await
                .unwrap()
                .aspects
                .as_deref(),
            Some("~address.home")
        );
    }
);
