//! Copies kept by polling: real unit processes of registration, login, shop and billing on
//! their own databases, talking HTTP.

use std::collections::BTreeMap;
use std::time::Duration;

use hiscale::store::{AspectEdit, Change, Target};
use hiscale::{ResourceId, Store, Version};
use tests::process::UnitProcess;
use tests::replication::{poller_state, post_customer, wait_for, wait_until_copied};
use tests::{
    ADMIN, BILLING, Backend, JSON, LOGIN, SHOP, TestDatabase, both_backends, fresh_database,
    reader_config,
};

/// Live state: per (resource, aspect) the version and document.
type State = BTreeMap<(String, String), (i64, String)>;

const ALL: [&str; 5] = [
    "account",
    "person",
    "address.home",
    "address.bill",
    "bankaccount",
];

/// One reading SA: its database, its unit, and what it copies.
struct Reader {
    database: TestDatabase,
    unit: Option<UnitProcess>,
    config: hiscale::UnitConfig,
    aspects: Vec<&'static str>,
}

impl Reader {
    async fn start(
        backend: Backend,
        sa: &str,
        source: &str,
        token: &str,
        grant: &str,
        aspects: Vec<&'static str>,
        limit: u32,
    ) -> Self {
        let database = fresh_database(backend).await;
        let mut config = reader_config(sa, &database.url, source, token, grant);
        config.sources[0].limit = limit;
        if sa == "login" {
            let (secret, public) = hiscale::session::generate_key_pair().unwrap();
            config.sessions.signing_key_id = Some(tests::TEST_KEY_ID.into());
            config.sessions.signing_key = Some(secret);
            config.sessions.public_keys = vec![hiscale::config::PublicKeyConfig::new(
                tests::TEST_KEY_ID,
                &public,
            )];
        }
        let unit = Some(UnitProcess::start_config(config.clone()).await);
        Self {
            database,
            unit,
            config,
            aspects,
        }
    }

    fn url(&self) -> &str {
        &self.unit.as_ref().expect("running").url
    }

    async fn restart(&mut self) {
        self.unit = None;
        self.unit = Some(UnitProcess::start_config(self.config.clone()).await);
    }

    /// Waits until the copy's cursor reaches `version` (through `/admin/replication`).
    async fn wait_for(&self, version: i64, within: Duration) {
        wait_until_copied(self.url(), version, within).await;
    }

    async fn state(&self) -> State {
        let store = Store::connect(&self.database.url).await.unwrap();
        let until = store.cursor("customers").await.unwrap();
        let state = live_state(&store, until, &ALL).await;
        store.close().await;
        state
    }
}

/// Every live aspect of the named kinds up to `until`, as stored (a copy's documents are in
/// the interface version it polls).
async fn live_state(store: &Store, until: Version, aspects: &[&str]) -> State {
    let names: Vec<String> = aspects.iter().map(|name| (*name).to_owned()).collect();
    let all = store
        .read_changes("customers", Version::ZERO, until, &names, 1_000_000)
        .await
        .unwrap();
    assert!(!all.more);
    state_of(&all.items)
}

/// The owner's live aspects as interface v1 shows them (what the copies poll): the owner
/// stores the canonical v2 documents.
async fn owner_v1_state(store: &Store, until: Version, aspects: &[&str]) -> State {
    let names: Vec<String> = aspects.iter().map(|name| (*name).to_owned()).collect();
    let all = store
        .read_changes("customers", Version::ZERO, until, &names, 1_000_000)
        .await
        .unwrap();
    assert!(!all.more);
    let customers = registration::customers();
    state_of(&hiscale::facade::present_changes(&customers, 1, &all.items))
}

fn state_of(items: &[hiscale::store::ChangedResource]) -> State {
    items
        .iter()
        .filter(|item| !item.deleted)
        .flat_map(|item| {
            item.aspects.iter().filter_map(|aspect| {
                aspect.body.as_ref().map(|body| {
                    (
                        (item.id.to_string(), aspect.name.clone()),
                        (aspect.version.get(), body.clone()),
                    )
                })
            })
        })
        .collect()
}

fn granted(owner: &State, aspects: &[&str]) -> State {
    owner
        .iter()
        .filter(|((_, aspect), _)| aspects.contains(&aspect.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn assert_copy_equals(owner: &State, reader: &Reader, copy: &State) {
    let expected = granted(owner, &reader.aspects);
    let differences = tests::differences(&expected, copy, 10);
    assert!(
        differences.is_empty(),
        "{} differs from the owner: {differences:?}",
        reader.config.sa
    );
    assert!(!expected.is_empty());
}

async fn post(client: &reqwest::Client, url: &str, body: serde_json::Value) -> String {
    post_customer(client, url, body.to_string(), JSON).await
}

/// Deletes a resource or an aspect at the owner, which must answer `204`.
async fn delete_ok(client: &reqwest::Client, url: String) {
    assert_eq!(
        write(client, reqwest::Method::DELETE, &url, None).await,
        204,
        "DELETE {url}"
    );
}

async fn write(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<serde_json::Value>,
) -> u16 {
    let mut request = client
        .request(method, url)
        .bearer_auth(ADMIN)
        .header("content-type", JSON);
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    request.send().await.unwrap().status().as_u16()
}

fn customer(n: usize, with_account: bool) -> serde_json::Value {
    let mut value = serde_json::json!({
        "person": {"type": "natural", "firstname": "Copy", "lastname": format!("N{n}")},
        "addresses": {"home": {"street": format!("Weg {n}"), "zip": "53111", "city": "Bonn"},
                      "bill": {"street": format!("Postfach {n}"), "zip": "53112", "city": "Bonn"}},
        "bankaccount": {"owner": "Copy", "iban": "DE89370400440532013000"}
    });
    if with_account {
        value["account"] =
            serde_json::json!({"login": format!("copy{n:06}"), "password": "secret-password"});
    }
    value
}

const WRITERS: usize = 8;
const CHANGES_PER_WRITER: usize = 500;

// A copy that starts behind asks for each next chunk while it applies the one before
// (pipelining): the initial sync of 60 customers in chunks of 5 takes 11 of its 12 chunks from
// a request already under way, and the copy ends exactly as the owner.
both_backends!(
    an_initial_sync_asks_for_the_next_chunk_while_applying,
    |backend: Backend| async move {
        let owner_db = fresh_database(backend).await;
        let owner = UnitProcess::start("registration-1", &owner_db.url).await;
        let client = hiscale::tls::client();
        for n in 0..60 {
            post(&client, &owner.url, customer(n, false)).await;
        }
        let owner_store = Store::connect(&owner_db.url).await.unwrap();
        let current = owner_store.current_version("customers").await.unwrap();
        let reader = Reader::start(
            backend,
            "shop",
            &owner.url,
            SHOP,
            "~person~address.home",
            vec!["person", "address.home"],
            5,
        )
        .await;
        reader
            .wait_for(current.get(), Duration::from_secs(60))
            .await;
        let status = tests::replication::replication(reader.url()).await;
        let source = &status["sources"][0];
        assert_eq!(source["chunks_applied"], 12, "{status}");
        assert_eq!(source["chunks_prefetched"], 11, "{status}");
        let owner_state = owner_v1_state(&owner_store, current, &ALL).await;
        assert_copy_equals(&owner_state, &reader, &reader.state().await);
    }
);

both_backends!(no_change_is_skipped, |backend: Backend| async move {
    let owner_db = fresh_database(backend).await;
    let owners = [
        UnitProcess::start("registration-1", &owner_db.url).await,
        UnitProcess::start("registration-2", &owner_db.url).await,
    ];
    let owner_store = Store::connect(&owner_db.url).await.unwrap();
    let client = hiscale::tls::client();
    let held_id = post(&client, &owners[0].url, customer(0, false)).await;
    let source = owners[0].url.clone();
    let readers = [
        Reader::start(
            backend,
            "login",
            &source,
            LOGIN,
            "~account",
            vec!["account"],
            7,
        )
        .await,
        Reader::start(
            backend,
            "shop",
            &owners[1].url,
            SHOP,
            "~person~address.home",
            vec!["person", "address.home"],
            7,
        )
        .await,
        Reader::start(
            backend,
            "billing",
            &source,
            BILLING,
            "~person~address.bill~bankaccount",
            vec!["person", "address.bill", "bankaccount"],
            7,
        )
        .await,
    ];

    let hold = match backend {
        Backend::Sqlite => Duration::from_millis(800),
        Backend::Postgres => Duration::from_secs(3),
    };
    let held_store = owner_store.clone();
    let held = tokio::spawn(async move {
        let pending = held_store
            .prepare(
                "customers",
                vec![Change {
                    target: Target::Update(ResourceId::parse(&held_id).unwrap()),
                    precondition: None,
                    edits: vec![AspectEdit {
                        aspect: "person".into(),
                        body: Some(
                            r#"{"type":"natural","firstname":"Held","lastname":"Late"}"#.into(),
                        ),
                        unique_keys: Vec::new(),
                    }],
                }],
            )
            .await
            .unwrap();
        tokio::time::sleep(hold).await;
        pending.commit().await.unwrap();
    });

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let client = client.clone();
        let urls = [owners[0].url.clone(), owners[1].url.clone()];
        writers.push(tokio::spawn(async move {
            let mut mine: Vec<String> = Vec::new();
            let mut changes = 0;
            let mut step = 0;
            while changes < CHANGES_PER_WRITER {
                step += 1;
                let url = &urls[step % 2];
                let n = writer * 10_000 + step;
                if mine.len() < 12 || step % 25 == 0 {
                    mine.push(post(&client, url, customer(n, mine.len() < 2)).await);
                    changes += 1;
                    continue;
                }
                let id = mine[step % mine.len()].clone();
                // The first two resources (with accounts) are never deleted, so login has data.
                let deletable = mine.iter().position(|kept| *kept == id).is_some_and(|index| index >= 2);
                let (method, path, body) = match step % 10 {
                    0 => (reqwest::Method::DELETE, format!("{url}/customers/{id}/address.bill"), None),
                    1 if deletable && step % 30 == 1 => (reqwest::Method::DELETE, format!("{url}/customers/{id}"), None),
                    2 | 3 => (reqwest::Method::PUT, format!("{url}/customers/{id}/person"), Some(serde_json::json!({"type": "natural", "firstname": "P", "lastname": format!("S{step}")}))),
                    4 | 5 => (reqwest::Method::PUT, format!("{url}/customers/{id}/address.bill"), Some(serde_json::json!({"street": format!("B {step}"), "zip": "53112", "city": "Bonn"}))),
                    6 => (reqwest::Method::PUT, format!("{url}/customers/{id}/bankaccount"), Some(serde_json::json!({"owner": format!("O{step}"), "iban": "DE89370400440532013000"}))),
                    _ => (reqwest::Method::PUT, format!("{url}/customers/{id}/address.home"), Some(serde_json::json!({"street": format!("H {step}"), "zip": "53111", "city": "Bonn"}))),
                };
                let status = write(&client, method.clone(), &path, body).await;
                match status {
                    200 | 204 => changes += 1,
                    // A deleted resource or aspect: the owner refuses, nothing changes.
                    404 => {}
                    other => panic!("{method} {path}: {other}"),
                }
                if method == reqwest::Method::DELETE && path.ends_with(&format!("customers/{id}")) && status == 204 {
                    mine.retain(|kept| *kept != id);
                }
            }
            changes
        }));
    }
    let mut total = 0;
    for writer in writers {
        total += writer.await.unwrap();
    }
    held.await.unwrap();
    assert!(total >= 4000, "{total} changes");

    let current = owner_store.current_version("customers").await.unwrap();
    let owner = owner_v1_state(&owner_store, current, &ALL).await;
    for reader in &readers {
        reader
            .wait_for(current.get(), Duration::from_secs(180))
            .await;
        let copy = reader.state().await;
        assert_copy_equals(&owner, reader, &copy);
        assert!(
            copy.keys()
                .all(|(_, aspect)| reader.aspects.contains(&aspect.as_str())),
            "{} holds an ungranted aspect",
            reader.config.sa
        );
    }
    // The password hash never reached shop or billing by any path: not even as a row.
    for reader in &readers[1..] {
        let store = Store::connect(&reader.database.url).await.unwrap();
        let accounts = store
            .read_changes(
                "customers",
                Version::ZERO,
                current,
                &["account".to_owned()],
                1_000_000,
            )
            .await
            .unwrap();
        assert!(
            accounts.items.is_empty(),
            "{} holds accounts",
            reader.config.sa
        );
        store.close().await;
    }
});

both_backends!(
    deletes_propagate_and_a_resync_after_410_ends_equal,
    |backend: Backend| async move {
        let owner_db = fresh_database(backend).await;
        let mut config = tests::unit_config(
            "registration-1",
            &owner_db.url,
            ([127, 0, 0, 1], tests::process::free_port()).into(),
        );
        config.feed.tombstone_max_age_secs = 0;
        let owner = UnitProcess::start_config(config).await;
        let owner_store = Store::connect(&owner_db.url).await.unwrap();
        let client = hiscale::tls::client();
        let mut ids = Vec::new();
        for n in 0..6 {
            ids.push(post(&client, &owner.url, customer(n, false)).await);
        }
        let mut shop = Reader::start(
            backend,
            "shop",
            &owner.url,
            SHOP,
            "~person~address.home",
            vec!["person", "address.home"],
            2,
        )
        .await;
        let current = owner_store
            .current_version("customers")
            .await
            .unwrap()
            .get();
        shop.wait_for(current, Duration::from_secs(60)).await;

        // Deletes reach a running copy.
        delete_ok(&client, format!("{}/customers/{}", owner.url, ids[0])).await;
        delete_ok(
            &client,
            format!("{}/customers/{}/address.home", owner.url, ids[1]),
        )
        .await;
        let current = owner_store
            .current_version("customers")
            .await
            .unwrap()
            .get();
        shop.wait_for(current, Duration::from_secs(60)).await;
        let owner_state = owner_v1_state(&owner_store, Version::new(current).unwrap(), &ALL).await;
        assert_copy_equals(&owner_state, &shop, &shop.state().await);

        // Stopped, the copy misses deletions whose tombstones are purged meanwhile: 410, resync.
        shop.unit = None;
        delete_ok(&client, format!("{}/customers/{}", owner.url, ids[2])).await;
        delete_ok(
            &client,
            format!("{}/customers/{}/address.home", owner.url, ids[3]),
        )
        .await;
        post(&client, &owner.url, customer(99, false)).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let purged = tests::replication::purge(&client, &owner.url).await;
        assert!(
            purged["purged"][0]["report"]["aspect_tombstones"]
                .as_u64()
                .unwrap()
                >= 2,
            "{purged}"
        );
        shop.restart().await;
        let current = owner_store
            .current_version("customers")
            .await
            .unwrap()
            .get();
        shop.wait_for(current, Duration::from_secs(60)).await;
        // The resync has finished once the poller says so.
        wait_for(
            "the resync to finish",
            Duration::from_secs(30),
            async || poller_state(shop.url()).await == "polling",
        )
        .await;
        let owner_state = owner_v1_state(&owner_store, Version::new(current).unwrap(), &ALL).await;
        let copy = shop.state().await;
        assert_copy_equals(&owner_state, &shop, &copy);
        assert!(
            !copy.keys().any(|(id, _)| *id == ids[2]),
            "the resource deleted while the copy was away is gone"
        );
    }
);

both_backends!(
    a_stopped_reader_catches_up_on_20000_changes,
    |backend: Backend| async move {
        let owner_db = fresh_database(backend).await;
        let owner = UnitProcess::start("registration-1", &owner_db.url).await;
        let owner_store = Store::connect(&owner_db.url).await.unwrap();
        let client = hiscale::tls::client();
        post(&client, &owner.url, customer(0, false)).await;
        let mut billing = Reader::start(
            backend,
            "billing",
            &owner.url,
            BILLING,
            "~person~address.bill~bankaccount",
            vec!["person", "address.bill", "bankaccount"],
            500,
        )
        .await;
        let first = owner_store
            .current_version("customers")
            .await
            .unwrap()
            .get();
        billing.wait_for(first, Duration::from_secs(60)).await;
        billing.unit = None;

        // 20,000 changes while the reader is away, written through the owner's store in batches.
        let person = r#"{"type":"natural","firstname":"Bulk","lastname":"Load"}"#;
        let bill = r#"{"street":"Postfach 1","zip":"53112","city":"Bonn"}"#;
        for _ in 0..40 {
            let changes = (0..500)
                .map(|_| Change {
                    target: Target::Create,
                    precondition: None,
                    edits: vec![
                        AspectEdit {
                            aspect: "person".into(),
                            body: Some(person.into()),
                            unique_keys: Vec::new(),
                        },
                        AspectEdit {
                            aspect: "address.bill".into(),
                            body: Some(bill.into()),
                            unique_keys: Vec::new(),
                        },
                    ],
                })
                .collect();
            owner_store.commit("customers", changes).await.unwrap();
        }
        let current = owner_store.current_version("customers").await.unwrap();
        assert_eq!(current.get(), first + 20_000);
        billing.restart().await;
        billing
            .wait_for(current.get(), Duration::from_secs(240))
            .await;
        let owner_state = owner_v1_state(&owner_store, current, &ALL).await;
        let copy = billing.state().await;
        assert_eq!(copy.len(), 20_000 * 2 + 3);
        assert_copy_equals(&owner_state, &billing, &copy);
    }
);
