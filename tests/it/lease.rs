//! The reader lease: only its holder applies chunks, a deposed reader's chunk changes nothing,
//! and a copy's cursor never goes back outside a re-read from 0.

use std::time::Duration;

use hiscale::store::{ChunkAspect, ChunkItem, CursorMove, Error};
use hiscale::{ResourceId, Store, Version};
use tests::{Backend, both_backends, fresh_database};

fn chunk(version: i64, street: &str) -> Vec<ChunkItem> {
    let version = Version::new(version).unwrap();
    vec![ChunkItem {
        id: ResourceId::from_version(Version::new(1).unwrap()),
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
                &chunk(2, "A"),
                Version::new(2).unwrap(),
                &first,
                CursorMove::Forward,
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
                &chunk(3, "B"),
                Version::new(3).unwrap(),
                &first,
                CursorMove::Forward,
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
    a_cursor_goes_back_only_when_a_resync_restarts,
    |backend: Backend| async move {
        let database = fresh_database(backend).await;
        let store = Store::connect(&database.url).await.unwrap();
        let fence = store
            .acquire_lease("shop-1", 60_000, true)
            .await
            .unwrap()
            .unwrap();
        let apply = |version: i64, cursor_move| {
            let store = store.clone();
            let fence = fence.clone();
            async move {
                store
                    .apply_fenced_chunk(
                        "customers",
                        &chunk(version, "X"),
                        Version::new(version).unwrap(),
                        &fence,
                        cursor_move,
                    )
                    .await
                    .unwrap();
                store.cursor("customers").await.unwrap().get()
            }
        };
        assert_eq!(apply(10, CursorMove::Forward).await, 10);
        assert_eq!(
            apply(5, CursorMove::Forward).await,
            10,
            "a late chunk never moves it back"
        );
        assert_eq!(
            apply(4, CursorMove::Restart).await,
            4,
            "a re-read from 0 starts again"
        );
    }
);
