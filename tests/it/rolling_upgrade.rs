//! A rolling upgrade: a unit of the previous release (a unit configured with
//! `newest_interface = 1` stands in for the old binary, which knows only v1) and a unit of the
//! new one (v1 and v2) share registration's database. While the old one runs, documents are
//! stored in v1's form — what the old binary reads — and writes through v2 are refused, since
//! v1's form cannot hold what v2 adds; v1 traffic goes on at both. Once the old unit is gone,
//! the new one stores v2's form, takes v2 writes, and still reads the v1-form documents
//! (upgraded when read).

use std::time::Duration;

use hiscale::store::Store;
use hiscale::version::ResourceId;
use tests::process::{UnitProcess, free_port};
use tests::replication::wait_for;
use tests::{ADMIN, Backend, JSON, both_backends, customer_json, fresh_database, unit_config};

const V2_JSON: &str = "application/vnd.registration.v2+json";

both_backends!(
    an_old_and_a_new_unit_share_the_database_during_a_rolling_upgrade,
    |backend: Backend| async move { rolling_upgrade(backend).await }
);

/// The stored `person` document of customer `id`, as the database holds it.
async fn stored_person(store: &Store, id: &str) -> serde_json::Value {
    let resource = store
        .read("customers", &ResourceId::parse(id).unwrap())
        .await
        .unwrap()
        .expect("the customer is stored");
    let person = resource
        .aspects
        .iter()
        .find(|aspect| aspect.name == "person")
        .and_then(|aspect| aspect.body.as_deref())
        .expect("a person");
    serde_json::from_str(person).unwrap()
}

/// The form a unit stores documents in (`GET /admin/interfaces`'s `stored_as`).
async fn stored_as(client: &reqwest::Client, unit: &str) -> String {
    let reply = client
        .get(format!("{unit}/admin/interfaces"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let value: serde_json::Value = reply.json().await.unwrap();
    value["stored_as"].as_str().unwrap_or_default().to_owned()
}

/// `POST /customers` with `body` of `media`: the status and, when created, the id.
async fn create(
    client: &reqwest::Client,
    unit: &str,
    body: String,
    media: &str,
) -> (u16, Option<String>) {
    let reply = client
        .post(format!("{unit}/customers"))
        .bearer_auth(ADMIN)
        .header("content-type", media)
        .header("accept", media)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    let value: serde_json::Value = reply.json().await.unwrap_or_default();
    let id = value["id"].as_str().map(str::to_owned);
    if status != 201 {
        assert!(value["error"]["code"].is_string(), "{status}: {value}");
        return (status, value["error"]["code"].as_str().map(str::to_owned));
    }
    (status, id)
}

fn v2_customer(n: u64) -> String {
    serde_json::json!({
        "account": {"login": format!("rolling{n:04}"), "password": "secret-password"},
        "person": {"type": "natural", "salutation": "MS", "given_name": "Erika",
                   "family_name": format!("Neu{n}"), "birthdate": "1984-02-29",
                   "email": format!("erika{n}@example.org")}
    })
    .to_string()
}

async fn rolling_upgrade(backend: Backend) {
    let client = hiscale::tls::client();
    let database = fresh_database(backend).await;
    let store = Store::connect(&database.url).await.unwrap();
    let mut old_config = unit_config(
        "registration-1",
        &database.url,
        ([127, 0, 0, 1], free_port()).into(),
    );
    old_config.newest_interface = Some(1);
    let old = UnitProcess::start_config(old_config).await;
    let new = UnitProcess::start_config(unit_config(
        "registration-2",
        &database.url,
        ([127, 0, 0, 1], free_port()).into(),
    ))
    .await;
    assert_eq!(stored_as(&client, &new.url).await, "v1");

    // v1 traffic at both units; what the new one writes is stored as v1 shows it.
    let (status, early) = create(&client, &new.url, customer_json(1), JSON).await;
    assert_eq!(status, 201);
    let early = early.unwrap();
    let person = stored_person(&store, &early).await;
    assert_eq!(
        person["firstname"], "Erika",
        "stored in v1's form: {person}"
    );
    assert!(person.get("given_name").is_none(), "{person}");
    let (status, _) = create(&client, &old.url, customer_json(2), JSON).await;
    assert_eq!(status, 201);
    // v2 reads work at the new unit; v2 writes wait for the old unit to go.
    let read = client
        .get(format!("{}/customers/{early}", new.url))
        .bearer_auth(ADMIN)
        .header("accept", V2_JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 200);
    let read: serde_json::Value = read.json().await.unwrap();
    assert_eq!(read["person"]["given_name"], "Erika", "{read}");
    let (status, code) = create(&client, &new.url, v2_customer(3), V2_JSON).await;
    assert_eq!(
        (status, code.as_deref()),
        (503, Some("interface-upgrading"))
    );
    let (status, _) = create(&client, &old.url, v2_customer(4), V2_JSON).await;
    assert_eq!(status, 406, "the old unit knows no v2");

    // The old unit is gone: within its window (15 s) the new form is written.
    drop(old);
    wait_for(
        "the new unit to store v2's form",
        Duration::from_secs(45),
        async || stored_as(&client, &new.url).await == "v2",
    )
    .await;
    let (status, late) = create(&client, &new.url, v2_customer(5), V2_JSON).await;
    assert_eq!(status, 201);
    let late = late.unwrap();
    let person = stored_person(&store, &late).await;
    assert_eq!(
        person["birthdate"], "1984-02-29",
        "stored in v2's form: {person}"
    );
    assert_eq!(person["given_name"], "Erika", "{person}");
    // The document stored as v1 is still read, in both versions, until its next write
    // stores it in the new form.
    for (media, field) in [(JSON, "firstname"), (V2_JSON, "given_name")] {
        let read = client
            .get(format!("{}/customers/{early}", new.url))
            .bearer_auth(ADMIN)
            .header("accept", media)
            .send()
            .await
            .unwrap();
        let read: serde_json::Value = read.json().await.unwrap();
        assert_eq!(read["person"][field], "Erika", "{media}: {read}");
    }
    let renamed = client
        .put(format!("{}/customers/{early}/person", new.url))
        .bearer_auth(ADMIN)
        .header("content-type", JSON)
        .body(r#"{"type":"natural","salutation":"MS","firstname":"Erika","lastname":"Later"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status().as_u16(), 200);
    let person = stored_person(&store, &early).await;
    assert_eq!(person["family_name"], "Later", "now in v2's form: {person}");

    // An old unit that comes back holds the form back again; one that stops cleanly (SIGTERM)
    // lets go at once, well inside the window a killed one needs.
    let mut again_config = unit_config(
        "registration-3",
        &database.url,
        ([127, 0, 0, 1], free_port()).into(),
    );
    again_config.newest_interface = Some(1);
    let again = UnitProcess::start_config(again_config).await;
    wait_for(
        "the new unit to store v1's form again",
        Duration::from_secs(20),
        async || stored_as(&client, &new.url).await == "v1",
    )
    .await;
    let terminated = std::process::Command::new("kill")
        .args(["-TERM", &again.pid().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let stopping = std::time::Instant::now();
    wait_for(
        "the new unit to store v2's form after the old one stopped",
        Duration::from_secs(30),
        async || stored_as(&client, &new.url).await == "v2",
    )
    .await;
    let took = stopping.elapsed();
    println!(
        "the form switched {:.1} s after SIGTERM",
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(12),
        "a clean stop should not wait out the 15 s window: {took:?}"
    );
}
