//! The reader lease: only its holder applies chunks, a deposed reader's chunk changes nothing,
//! and a copy's cursor never goes back outside a re-read from 0.

use std::time::Duration;

use hiscale::store::{ApplyMode, ChunkAspect, ChunkItem, Error};
use hiscale::{Origin, ResourceId, Store, Version};
use tests::{Backend, both_backends, fresh_database};

fn chunk(version: i64, street: &str) -> Vec<ChunkItem> {
    item_of(1, version, street)
}

/// A chunk with resource `version` (its id is its version) holding a person.
fn item(version: i64, street: &str) -> Vec<ChunkItem> {
    item_of(version, version, street)
}

fn item_of(id: i64, version: i64, street: &str) -> Vec<ChunkItem> {
    let version = Version::new(version).unwrap();
    vec![ChunkItem {
        id: ResourceId::from_version(Version::new(id).unwrap()),
        version,
        deleted: false,
        aspects: vec![ChunkAspect {
            name: "person".into(),
            version,
            body: Some(format!(r#"{{"lastname":"{street}"}}"#)),
            unique_keys: Vec::new(),
        }],
    }]
}

both_backends!(
    only_the_lease_holder_applies,
    |backend: Backend| async move {
        let database = fresh_database(backend).await;
        let store = Store::connect(&database.url).await.unwrap();
        let lease_ms = 400;

        let first = store.acquire_lease("shop-1", lease_ms, true).await.unwrap();
        let first = first.expect("a free lease is taken");
        assert!(
            store
                .acquire_lease("shop-2", lease_ms, true)
                .await
                .unwrap()
                .is_none(),
            "a held lease is not taken, even by a unit that may take expired ones"
        );
        let renewed = store.acquire_lease("shop-1", lease_ms, true).await.unwrap();
        assert_eq!(
            renewed.as_ref().map(|f| f.epoch),
            Some(first.epoch),
            "renewal keeps the epoch"
        );
        store
            .apply_fenced_chunk(
                "customers",
                &Origin::single(),
                &chunk(2, "A"),
                Version::new(2).unwrap(),
                &first,
                ApplyMode::Follow,
            )
            .await
            .unwrap();

        // Without renewal the lease expires; only then may the other unit take it.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            store
                .acquire_lease("shop-2", lease_ms, false)
                .await
                .unwrap()
                .is_none(),
            "an expired lease is taken only when the caller may"
        );
        let second = store
            .acquire_lease("shop-2", lease_ms * 10, true)
            .await
            .unwrap()
            .expect("an expired lease is taken");
        assert_eq!(second.epoch, first.epoch + 1, "a new holder, a new epoch");

        // The deposed holder's chunk changes nothing, cursor included.
        let deposed = store
            .apply_fenced_chunk(
                "customers",
                &Origin::single(),
                &chunk(3, "B"),
                Version::new(3).unwrap(),
                &first,
                ApplyMode::Follow,
            )
            .await;
        assert!(matches!(deposed, Err(Error::Fenced { .. })), "{deposed:?}");
        assert_eq!(store.cursor("customers").await.unwrap().get(), 2);
        let stored = store
            .read(
                "customers",
                &ResourceId::from_version(Version::new(1).unwrap()),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.aspects[0].body.as_deref(),
            Some(r#"{"lastname":"A"}"#)
        );
        assert!(
            store
                .acquire_lease("shop-1", lease_ms, true)
                .await
                .unwrap()
                .is_none()
        );

        // Released, it is free for the next (with a new epoch again).
        assert!(store.release_lease("shop-2").await.unwrap());
        let third = store
            .acquire_lease("shop-1", lease_ms, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(third.epoch, second.epoch + 1);
        let state = store.lease().await.unwrap().unwrap();
        assert_eq!(
            (state.holder.as_str(), state.epoch),
            ("shop-1", third.epoch)
        );
    }
);

both_backends!(
    a_resync_keeps_the_cursor_and_drops_what_it_did_not_deliver,
    |backend: Backend| async move {
        let database = fresh_database(backend).await;
        let store = Store::connect(&database.url).await.unwrap();
        let fence = store
            .acquire_lease("shop-1", 60_000, true)
            .await
            .unwrap()
            .unwrap();
        let mut both = chunk(4, "Kept");
        both.extend(item(5, "Gone"));
        let apply = |items: Vec<ChunkItem>, version: i64, mode| {
            let store = store.clone();
            let fence = fence.clone();
            async move {
                store
                    .apply_fenced_chunk(
                        "customers",
                        &Origin::single(),
                        &items,
                        Version::new(version).unwrap(),
                        &fence,
                        mode,
                    )
                    .await
                    .unwrap();
                store
                    .copy_position("customers", &Origin::single())
                    .await
                    .unwrap()
            }
        };
        assert_eq!(apply(both, 10, ApplyMode::Follow).await.cursor.get(), 10);
        assert_eq!(
            apply(chunk(3, "Old"), 5, ApplyMode::Follow)
                .await
                .cursor
                .get(),
            10,
            "a late chunk never moves the cursor back"
        );

        // A re-read from 0 delivers only the first resource: the source deleted the other and
        // purged its tombstone. The cursor (the copy's own feed horizon) stays meanwhile.
        let generation = store
            .start_resync("customers", &Origin::single(), &fence, "~person")
            .await
            .unwrap();
        let position = apply(chunk(4, "Kept"), 11, ApplyMode::Resync { generation }).await;
        assert_eq!(position.cursor.get(), 10);
        assert_eq!(
            position.resync,
            Some((generation, Version::new(11).unwrap()))
        );
        // A second reader resuming it sees the same durable state.
        let resumed = Store::connect(&database.url).await.unwrap();
        assert_eq!(
            resumed
                .copy_position("customers", &Origin::single())
                .await
                .unwrap(),
            position
        );

        let dropped = store
            .finish_resync(
                "customers",
                &Origin::single(),
                &fence,
                generation,
                Version::new(12).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(dropped, 1);
        let position = store
            .copy_position("customers", &Origin::single())
            .await
            .unwrap();
        assert_eq!((position.cursor.get(), position.resync), (12, None));
        let id = |n: i64| ResourceId::from_version(Version::new(n).unwrap());
        assert!(store.read("customers", &id(1)).await.unwrap().is_some());
        assert!(store.read("customers", &id(5)).await.unwrap().is_none());
        // The copy's own readers below 12 must re-read too: it dropped what they may hold.
        assert_eq!(store.purged_through("customers").await.unwrap().get(), 12);
    }
);
