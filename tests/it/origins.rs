//! Active/active owners at the store: two owner datacenters draw versions (and ids) from
//! interleaved counters that never meet, concurrently; a store that owned alone switches to its
//! counter without going back; a resource is written, and read, only at its home.

use hiscale::store::{AspectEdit, Change, Error, Target};
use hiscale::{ResourceId, Store, Version};
use tests::{Backend, both_backends, fresh_database};

const WRITERS: usize = 4;
const CREATES_PER_WRITER: usize = 25;

fn owners() -> Vec<String> {
    vec!["dc1".to_owned(), "dc2".to_owned()]
}

fn create() -> Change {
    Change {
        target: Target::Create,
        precondition: None,
        edits: vec![AspectEdit {
            aspect: "person".into(),
            body: Some(r#"{"lastname":"Ng"}"#.into()),
            unique_keys: Vec::new(),
        }],
    }
}

fn update(id: &ResourceId) -> Change {
    Change {
        target: Target::Update(id.clone()),
        ..create()
    }
}

/// A store of owner datacenter `own` on a database of its own.
async fn owner(backend: Backend, own: &str) -> (tests::TestDatabase, Store) {
    let database = fresh_database(backend).await;
    let store = Store::connect(&database.url).await.unwrap();
    store.register_collection("customers").await.unwrap();
    store
        .use_origin(&owners(), own, &["customers"])
        .await
        .unwrap();
    (database, store)
}

/// `WRITERS` concurrent writers creating customers; every version drawn, in the order each
/// writer got them.
async fn create_concurrently(store: &Store) -> Vec<Vec<i64>> {
    let writers = (0..WRITERS).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut versions = Vec::new();
            for _ in 0..CREATES_PER_WRITER {
                let committed = store.commit("customers", vec![create()]).await.unwrap();
                let (id, version) = committed.changes[0].clone();
                assert_eq!(
                    id,
                    ResourceId::from_version(version),
                    "an id is its creation version"
                );
                versions.push(version.get());
            }
            versions
        })
    });
    let mut all = Vec::new();
    for writer in writers {
        all.push(writer.await.unwrap());
    }
    all
}

both_backends!(
    two_owner_datacenters_never_draw_the_same_version,
    |backend: Backend| async move {
        let ((_one, dc1), (_two, dc2)) = tokio::join!(owner(backend, "dc1"), owner(backend, "dc2"));
        let (at_dc1, at_dc2) = tokio::join!(create_concurrently(&dc1), create_concurrently(&dc2));
        for (name, writers, parity) in [("dc1", &at_dc1, 1), ("dc2", &at_dc2, 0)] {
            for versions in writers {
                assert!(
                    versions.windows(2).all(|pair| pair[0] < pair[1]),
                    "{name}: one writer's versions went back: {versions:?}"
                );
                assert!(
                    versions.iter().all(|version| version % 2 == parity),
                    "{name} drew a version of the other counter: {versions:?}"
                );
            }
        }
        let mut every: Vec<i64> = at_dc1.iter().chain(&at_dc2).flatten().copied().collect();
        let drawn = every.len();
        every.sort_unstable();
        every.dedup();
        assert_eq!(every.len(), drawn, "a version was drawn twice");
        assert_eq!(drawn, 2 * WRITERS * CREATES_PER_WRITER);
        // Nothing is missing below the last: each counter skips only the other's numbers.
        assert_eq!(*every.last().unwrap(), i64::try_from(drawn).unwrap());
    }
);

both_backends!(
    a_resource_is_written_and_read_only_at_its_home,
    |backend: Backend| async move {
        let (_one, dc1) = owner(backend, "dc1").await;
        let own = dc1
            .commit("customers", vec![create()])
            .await
            .unwrap()
            .changes[0]
            .0
            .clone();
        assert_eq!(own.as_str(), "1");
        dc1.commit("customers", vec![update(&own)]).await.unwrap();
        let elsewhere = ResourceId::parse("2").unwrap();
        let refused = dc1.commit("customers", vec![update(&elsewhere)]).await;
        assert!(
            matches!(&refused, Err(Error::WrongHome { home, .. }) if home == "dc2"),
            "{refused:?}"
        );
        let read = dc1.read("customers", &elsewhere).await;
        assert!(matches!(read, Err(Error::WrongHome { .. })), "{read:?}");
        // A missing resource of its own is just missing.
        let missing = ResourceId::parse("7").unwrap();
        assert!(dc1.read("customers", &missing).await.unwrap().is_none());
        // Nothing of the refused write was stored: the counter did not move for it.
        assert_eq!(dc1.current_version("customers").await.unwrap().get(), 3);
    }
);

both_backends!(
    the_owner_datacenters_are_fixed_once_a_collection_holds_data,
    |backend: Backend| async move {
        // A store that drew versions alone does not become one of several owners: another
        // datacenter's counter would hand out numbers it already used.
        let database = fresh_database(backend).await;
        let alone = Store::connect(&database.url).await.unwrap();
        alone.register_collection("customers").await.unwrap();
        alone.use_origin(&[], "", &["customers"]).await.unwrap();
        alone.commit("customers", vec![create()]).await.unwrap();
        alone.close().await;
        let refused = Store::connect(&database.url).await.unwrap();
        let error = refused
            .use_origin(&owners(), "dc2", &["customers"])
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("one owner datacenter, which drew versions up to 1"),
            "{error}"
        );

        // An owner datacenter keeps its list and its place in it, across restarts.
        let (database, dc2) = owner(backend, "dc2").await;
        dc2.commit("customers", vec![create()]).await.unwrap();
        dc2.close().await;
        for (names, own) in [
            (vec!["dc2".to_owned(), "dc1".to_owned()], "dc2"),
            (owners(), "dc1"),
            (Vec::new(), ""),
        ] {
            let store = Store::connect(&database.url).await.unwrap();
            let error = store
                .use_origin(&names, own, &["customers"])
                .await
                .unwrap_err();
            assert!(matches!(error, Error::OriginsFixed { .. }), "{error}");
            store.close().await;
        }
        let again = Store::connect(&database.url).await.unwrap();
        again
            .use_origin(&owners(), "dc2", &["customers"])
            .await
            .unwrap();
        let next = again.commit("customers", vec![create()]).await.unwrap();
        assert_eq!(next.changes[0].1, Version::new(4).unwrap());
        again.close().await;

        // A PostgreSQL sequence set by hand off the origin's counter stops the unit rather
        // than being realigned: it may already have issued another datacenter's numbers.
        if backend == Backend::Postgres {
            let admin = sqlx::PgPool::connect(&database.url).await.unwrap();
            sqlx::query("SELECT setval('hs_version_customers', 7, true)")
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            let store = Store::connect(&database.url).await.unwrap();
            let error = store
                .use_origin(&owners(), "dc2", &["customers"])
                .await
                .unwrap_err();
            assert!(
                matches!(error, Error::Corrupt(ref message) if message.contains("stands at 7")),
                "{error}"
            );
        }
    }
);
