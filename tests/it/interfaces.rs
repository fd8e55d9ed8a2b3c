//! Interface versions: registration's v2 (`given_name`, `family_name`, `birthdate`, `email`)
//! beside v1 (`firstname`, `lastname`) over one stored model; version state as data shared by
//! every unit through the SA's database; versioned feeds and copies; and a switch of v1 to
//! `retired` and back under load through HAProxy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::StatusCode;
use hiscale::store::{AspectEdit, Change, Target};
use serde_json::{Value, json};
use tests::haproxy::{start_haproxy, wait_passing};
use tests::process::{UnitProcess, free_port};
use tests::replication::{post_customer, replication, wait_for, wait_until_copied};
use tests::{
    ADMIN, BILLING, Backend, JSON, Reply, SHOP, TestApp, XML, both_backends, fresh_database,
    reader_config, request,
};

const V2_JSON: &str = "application/vnd.registration.v2+json";
const V2_XML: &str = "application/vnd.registration.v2+xml";

fn get(uri: &str, accept: &str) -> axum::http::Request<Body> {
    request("GET", uri)
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("accept", accept)
        .body(Body::empty())
        .unwrap()
}

fn write(method: &str, uri: &str, content_type: &str, body: String) -> axum::http::Request<Body> {
    request(method, uri)
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", content_type)
        .header("accept", content_type)
        .body(Body::from(body))
        .unwrap()
}

fn switch(version: &str, body: Value, query: &str) -> axum::http::Request<Body> {
    request("PUT", &format!("/admin/interfaces/{version}{query}"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn v2_customer(n: u32) -> String {
    json!({
        "account": {"login": format!("vtwo{n:04}"), "password": "secret-password"},
        "person": {"type": "natural", "salutation": "MS", "given_name": "Erika",
                   "family_name": format!("Muster{n}"), "birthdate": "1984-02-29",
                   "email": format!("erika{n}@example.org")},
        "addresses": {"home": {"street": "Rheinweg 86", "zip": "53129", "city": "Bonn"}}
    })
    .to_string()
}

async fn create_v2(app: &TestApp, n: u32) -> String {
    let created = app
        .send(write("POST", "/customers", V2_JSON, v2_customer(n)))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.header("content-type"), Some(V2_JSON));
    created.json()["id"].as_str().unwrap().to_owned()
}

fn person(reply: &Reply) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let mut person = reply.json()["person"].clone();
    person.as_object_mut().unwrap().remove("version");
    person
}

both_backends!(
    one_customer_through_v1_and_v2_in_xml_and_json,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let id = create_v2(&app, 1).await;
        let uri = format!("/customers/{id}?aspects=~person");

        let v2 = app.send(get(&uri, V2_JSON)).await;
        assert_eq!(v2.header("content-type"), Some(V2_JSON));
        assert_eq!(
            person(&v2),
            json!({"type": "natural", "salutation": "MS", "given_name": "Erika",
                   "family_name": "Muster1", "birthdate": "1984-02-29", "email": "erika1@example.org"})
        );
        // v1 (also what a bare application/json gets): well-formed, without v2-only fields.
        for accept in [JSON, "application/json"] {
            let v1 = app.send(get(&uri, accept)).await;
            assert_eq!(v1.header("content-type"), Some(JSON));
            assert_eq!(
                person(&v1),
                json!({"type": "natural", "salutation": "MS", "firstname": "Erika", "lastname": "Muster1"})
            );
        }
        // By URL prefix too.
        let prefixed = app
            .send(get(&format!("/v2{uri}"), "application/json"))
            .await;
        assert_eq!(prefixed.header("content-type"), Some(V2_JSON));
        assert_eq!(person(&prefixed)["given_name"], "Erika");

        let v1_xml = app.send(get(&uri, XML)).await;
        assert_eq!(v1_xml.status, StatusCode::OK);
        assert!(
            v1_xml.body.contains("<salutation>MS</salutation><firstname>Erika</firstname><lastname>Muster1</lastname></person>"),
            "{}",
            v1_xml.body
        );
        assert!(!v1_xml.body.contains("birthdate"), "{}", v1_xml.body);
        let v2_xml = app.send(get(&uri, V2_XML)).await;
        assert_eq!(v2_xml.header("content-type"), Some(V2_XML));
        assert!(
            v2_xml.body.contains("<given_name>Erika</given_name><family_name>Muster1</family_name><birthdate>1984-02-29</birthdate><email>erika1@example.org</email>"),
            "{}",
            v2_xml.body
        );

        // The feed in each version.
        let v1_feed = app.send(get("/customers?aspects=~person", JSON)).await;
        assert_eq!(v1_feed.json()["items"][0]["person"]["firstname"], "Erika");
        let v2_feed = app.send(get("/customers?aspects=~person", V2_JSON)).await;
        assert_eq!(v2_feed.json()["items"][0]["person"]["given_name"], "Erika");
        assert_eq!(
            v2_feed.json()["items"][0]["person"]["birthdate"],
            "1984-02-29"
        );

        // OpenAPI per version.
        let v1_doc = app.send(get("/v1/openapi.json", "application/json")).await;
        assert!(v1_doc.body.contains("firstname") && v1_doc.body.contains("registration.v1+json"));
        let v2_doc = app.send(get("/v2/openapi.json", "application/json")).await;
        assert!(v2_doc.body.contains("given_name") && v2_doc.body.contains("registration.v2+json"));
        assert!(!v2_doc.body.contains("firstname"));
        assert_eq!(
            app.send(get("/v3/openapi.json", "application/json"))
                .await
                .status,
            StatusCode::NOT_FOUND
        );
    }
);

both_backends!(
    written_through_v1_read_through_v2_nothing_lost,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let id = create_v2(&app, 2).await;
        let person_uri = format!("/customers/{id}/person");
        let read_uri = format!("/customers/{id}?aspects=~person");

        // A v1 client renames the person; birthdate and email (v1 cannot see them) stay.
        let put = app
            .send(write(
                "PUT",
                &person_uri,
                XML,
                r#"<person type="natural"><salutation>DR</salutation><firstname>Erika</firstname><lastname>Neu</lastname></person>"#.into(),
            ))
            .await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.body);
        assert!(
            put.body.contains("<lastname>Neu</lastname>"),
            "{}",
            put.body
        );
        assert_eq!(
            person(&app.send(get(&read_uri, V2_JSON)).await),
            json!({"type": "natural", "salutation": "DR", "given_name": "Erika",
                   "family_name": "Neu", "birthdate": "1984-02-29", "email": "erika2@example.org"})
        );
        // And back: a v2 write is what v1 then reads.
        let put = app
            .send(write(
                "PUT",
                &person_uri,
                V2_JSON,
                json!({"type": "legal", "given_name": "Erika", "family_name": "GmbH",
                       "email": "info@example.org"})
                .to_string(),
            ))
            .await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.body);
        assert_eq!(
            person(&app.send(get(&read_uri, JSON)).await),
            json!({"type": "legal", "firstname": "Erika", "lastname": "GmbH"})
        );
        // A v1 write with v2 names is refused with v1's field names in mind.
        let wrong = app
            .send(write(
                "PUT",
                &person_uri,
                JSON,
                json!({"type": "natural", "given_name": "E", "family_name": "M"}).to_string(),
            ))
            .await;
        assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.body);
        assert_eq!(wrong.error_code(), "invalid-aspect");

        // Created through v1 (XML), read through v2.
        let created = app
            .send(write(
                "POST",
                "/customers",
                XML,
                r#"<customer><person type="natural"><firstname>Olga</firstname><lastname>Alt</lastname></person></customer>"#.into(),
            ))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let old_id = created
            .body
            .split("<id>")
            .nth(1)
            .unwrap()
            .split("</id>")
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(
            person(
                &app.send(get(&format!("/customers/{old_id}"), V2_JSON))
                    .await
            ),
            json!({"type": "natural", "given_name": "Olga", "family_name": "Alt"})
        );

        // A document stored before v2 existed (firstname/lastname) reads in both versions:
        // upgraded on read, never migrated in one step.
        let committed = app
            .state
            .store()
            .commit(
                "customers",
                vec![Change {
                    target: Target::Create,
                    precondition: None,
                    edits: vec![AspectEdit {
                        aspect: "person".into(),
                        body: Some(
                            json!({"type": "natural", "salutation": "MR", "firstname": "Oliver",
                                   "lastname": "Wronka"})
                            .to_string(),
                        ),
                        unique_keys: Vec::new(),
                    }],
                }],
            )
            .await
            .unwrap();
        let legacy = committed.changes[0].0.to_string();
        let legacy_uri = format!("/customers/{legacy}");
        assert_eq!(
            person(&app.send(get(&legacy_uri, V2_JSON)).await),
            json!({"type": "natural", "salutation": "MR", "given_name": "Oliver", "family_name": "Wronka"})
        );
        assert_eq!(
            person(&app.send(get(&legacy_uri, JSON)).await),
            json!({"type": "natural", "salutation": "MR", "firstname": "Oliver", "lastname": "Wronka"})
        );
        // A v2 write of a legacy document stores the v2 form; v1 still reads it.
        let put = app
            .send(write(
                "PUT",
                &format!("{legacy_uri}/person"),
                V2_JSON,
                json!({"type": "natural", "given_name": "Oliver", "family_name": "Wronka",
                       "birthdate": "1970-01-01"})
                .to_string(),
            ))
            .await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.body);
        assert_eq!(
            person(&app.send(get(&legacy_uri, JSON)).await),
            json!({"type": "natural", "firstname": "Oliver", "lastname": "Wronka"})
        );
    }
);

both_backends!(
    unknown_versions_and_deprecation_headers,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let id = create_v2(&app, 3).await;
        let uri = format!("/customers/{id}");
        for request in [
            get(&uri, "application/vnd.registration.v3+json"),
            get(&format!("/v3{uri}"), "application/json"),
            get(&format!("/v0{uri}"), "application/xml"),
        ] {
            let reply = app.send(request).await;
            assert_eq!(reply.status, StatusCode::NOT_ACCEPTABLE, "{}", reply.body);
            assert_eq!(reply.error_code(), "unknown-interface-version");
        }
        assert_eq!(
            app.send(switch("v3", json!({"state": "active"}), ""))
                .await
                .status,
            StatusCode::NOT_FOUND
        );

        let deprecated = app
            .send(switch(
                "v1",
                json!({"state": "deprecated", "sunset": "2027-06-30T00:00:00Z"}),
                "",
            ))
            .await;
        assert_eq!(
            deprecated.status,
            StatusCode::NO_CONTENT,
            "{}",
            deprecated.body
        );
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for accept in [JSON, XML, "application/json"] {
            let v1 = app
                .send(
                    request("GET", &uri)
                        .header("authorization", format!("Bearer {ADMIN}"))
                        .header("accept", accept)
                        .header("x-forwarded-prefix", "/registration")
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            assert_eq!(v1.status, StatusCode::OK);
            let at: u64 = v1
                .header("deprecation")
                .and_then(|value| value.strip_prefix('@'))
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("Deprecation: {:?}", v1.header("deprecation")));
            assert!(at.abs_diff(before) < 60, "deprecated at {at}, now {before}");
            assert_eq!(v1.header("sunset"), Some("Wed, 30 Jun 2027 00:00:00 GMT"));
            assert_eq!(
                v1.header("link"),
                Some(
                    format!("</registration/v2/customers/{id}>; rel=\"successor-version\"")
                        .as_str()
                )
            );
        }
        let v2 = app.send(get(&uri, V2_JSON)).await;
        assert_eq!(v2.status, StatusCode::OK);
        assert_eq!(v2.header("deprecation"), None);
        assert_eq!(v2.header("sunset"), None);

        // Bare media types move to v2 when the operator says so.
        let moved = app.send(switch("v2", json!({"default": true}), "")).await;
        assert_eq!(moved.status, StatusCode::NO_CONTENT, "{}", moved.body);
        let bare = app.send(get(&uri, "application/json")).await;
        assert_eq!(bare.header("content-type"), Some(V2_JSON));

        // Who uses what.
        let listing = app.send(get("/admin/interfaces", "application/json")).await;
        let listing = listing.json();
        assert_eq!(listing["default"], "v2");
        assert_eq!(listing["interfaces"][0]["state"], "deprecated");
        assert!(
            listing["interfaces"][0]["requests_here"]["admin"]
                .as_u64()
                .unwrap()
                >= 3,
            "{listing}"
        );
        assert!(
            listing["interfaces"][1]["requests_here"]["admin"]
                .as_u64()
                .unwrap()
                >= 2
        );
    }
);

both_backends!(
    state_survives_a_restart_and_reaches_a_second_unit,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let id = create_v2(&app, 4).await;
        let uri = format!("/customers/{id}");
        // A second unit sharing the store.
        let config = tests::unit_config(
            "registration-second",
            &app.database.url,
            ([127, 0, 0, 1], 0).into(),
        );
        let second_state = hiscale::unit::state(&config, registration::service_area())
            .await
            .unwrap();
        let second = hiscale::http::app(second_state);
        let send_second = async |request: axum::http::Request<Body>| -> StatusCode {
            use tower::ServiceExt;
            second.clone().oneshot(request).await.unwrap().status()
        };
        assert_eq!(send_second(get(&uri, JSON)).await, StatusCode::OK);

        let retired = app
            .send(switch("v1", json!({"state": "retired"}), ""))
            .await;
        assert_eq!(retired.status, StatusCode::NO_CONTENT, "{}", retired.body);
        let gone = app.send(get(&uri, JSON)).await;
        assert_eq!(gone.status, StatusCode::GONE);
        assert_eq!(gone.error_code(), "interface-retired");
        let switched = Instant::now();
        while send_second(get(&uri, JSON)).await != StatusCode::GONE {
            assert!(
                switched.elapsed() < Duration::from_secs(2),
                "the second unit still serves v1 after 2 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("the second unit followed within {:?}", switched.elapsed());
        assert_eq!(send_second(get(&uri, V2_JSON)).await, StatusCode::OK);

        // Retiring the last version not retired is refused.
        let last = app
            .send(switch("v2", json!({"state": "retired"}), "?force=true"))
            .await;
        assert_eq!(last.status, StatusCode::CONFLICT);
        assert_eq!(last.error_code(), "last-active-interface");

        // A restart (a new state on the same store) keeps it.
        let restarted = hiscale::unit::state(&config, registration::service_area())
            .await
            .unwrap();
        let restarted = hiscale::http::app(restarted);
        use tower::ServiceExt;
        let status = restarted
            .clone()
            .oneshot(get(&uri, JSON))
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::GONE);
        assert_eq!(
            app.send(switch("v1", json!({"state": "active"}), ""))
                .await
                .status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(app.send(get(&uri, JSON)).await.status, StatusCode::OK);
    }
);

both_backends!(
    retiring_a_polled_version_needs_force,
    |backend| async move {
        let app = TestApp::start(backend).await;
        create_v2(&app, 5).await;
        let poll = |accept: &str| {
            request("GET", "/customers?version=0&aspects=~person")
                .header("authorization", format!("Bearer {SHOP}"))
                .header("accept", accept)
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(app.send(poll(JSON)).await.status, StatusCode::OK);
        let refused = app
            .send(switch("v1", json!({"state": "retired"}), ""))
            .await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        assert_eq!(refused.error_code(), "interface-in-use");
        assert!(refused.body.contains("shop"), "{}", refused.body);
        // Still active: the refusal changed nothing.
        assert_eq!(app.send(poll(JSON)).await.status, StatusCode::OK);

        let forced = app
            .send(switch("v1", json!({"state": "retired"}), "?force=true"))
            .await;
        assert_eq!(forced.status, StatusCode::NO_CONTENT, "{}", forced.body);
        let gone = app.send(poll(JSON)).await;
        assert_eq!(gone.status, StatusCode::GONE);
        assert_eq!(gone.error_code(), "interface-retired");
        // The consumer moved to v2: nothing polls v1 any more.
        assert_eq!(app.send(poll(V2_JSON)).await.status, StatusCode::OK);
        let listing = app
            .send(get("/admin/interfaces", "application/json"))
            .await
            .json();
        assert_eq!(
            listing["interfaces"][1]["feed_consumers"][0]["consumer"],
            "shop"
        );
    }
);

/// A shop copy polling v1 and a billing copy polling v2 of the same owner are both exact in
/// their version; retiring v1 (forced) stops the shop copy with `interface-retired`, without
/// a re-read loop, and it goes on once v1 is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_poll_their_own_version_and_stop_when_it_retires() {
    let backend = Backend::Postgres;
    let owner_db = fresh_database(backend).await;
    let owner = UnitProcess::start("registration-1", &owner_db.url).await;
    let client = hiscale::tls::client();
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(post_customer(&client, &owner.url, v2_customer(100 + n), V2_JSON).await);
    }
    let shop_db = fresh_database(backend).await;
    let shop = UnitProcess::start_config(reader_config(
        "shop",
        &shop_db.url,
        &owner.url,
        SHOP,
        shop::COPIED_ASPECTS,
    ))
    .await;
    let billing_db = fresh_database(backend).await;
    let mut billing_config = reader_config(
        "billing",
        &billing_db.url,
        &owner.url,
        BILLING,
        billing::COPIED_ASPECTS,
    );
    billing_config.sources[0].interface_version = 2;
    let billing = UnitProcess::start_config(billing_config).await;
    let newest: i64 = ids.last().unwrap().parse().unwrap();
    wait_until_copied(&shop.url, newest, Duration::from_secs(20)).await;
    wait_until_copied(&billing.url, newest, Duration::from_secs(20)).await;

    let read = async |url: &str, id: &str, accept: &str| -> Value {
        let reply = client
            .get(format!("{url}/customers/{id}?aspects=~person"))
            .bearer_auth(ADMIN)
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status().as_u16(), 200, "{url} {accept}");
        reply.json().await.unwrap()
    };
    for id in &ids {
        assert_eq!(
            read(&shop.url, id, JSON).await,
            read(&owner.url, id, JSON).await
        );
        assert_eq!(
            read(&billing.url, id, V2_JSON).await,
            read(&owner.url, id, V2_JSON).await
        );
    }
    // A copy serves only the version it holds.
    let other = client
        .get(format!("{}/customers/{}", shop.url, ids[0]))
        .bearer_auth(ADMIN)
        .header("accept", V2_JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 406);

    let retire = client
        .put(format!("{}/admin/interfaces/v1?force=true", owner.url))
        .bearer_auth(ADMIN)
        .body(json!({"state": "retired"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(retire.status().as_u16(), 204);
    wait_for(
        "shop to report interface-retired",
        Duration::from_secs(30),
        async || replication(&shop.url).await["sources"][0]["state"] == "interface-retired",
    )
    .await;
    // No loop: the copy holds what it had (no re-read dropped it) and stays stopped.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = replication(&shop.url).await;
    assert_eq!(
        status["sources"][0]["state"], "interface-retired",
        "{status}"
    );
    assert_eq!(read(&shop.url, &ids[0], JSON).await["id"], ids[0].as_str());
    // Billing (v2) goes on.
    // (post_customer asks for v1 answers, which are gone now.)
    let created = client
        .post(format!("{}/customers", owner.url))
        .bearer_auth(ADMIN)
        .header("content-type", V2_JSON)
        .header("accept", V2_JSON)
        .body(v2_customer(200))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let created: Value = created.json().await.unwrap();
    let later: i64 = created["id"].as_str().unwrap().parse().unwrap();
    wait_for("billing to copy on", Duration::from_secs(20), async || {
        let status = replication(&billing.url).await;
        let cursor = status["sources"][0]["cursor"].as_i64().unwrap_or(0);
        if cursor < later {
            println!("billing: {status}");
        }
        cursor >= later
    })
    .await;
}

/// Counts of one interface version's requests under load.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    gone: AtomicU64,
    gone_too_early: AtomicU64,
    server_errors: AtomicU64,
    other: AtomicU64,
}

impl Tally {
    fn line(&self) -> String {
        format!(
            "{} ok, {} 410 ({} too early), {} 5xx, {} other",
            self.ok.load(Ordering::Relaxed),
            self.gone.load(Ordering::Relaxed),
            self.gone_too_early.load(Ordering::Relaxed),
            self.server_errors.load(Ordering::Relaxed),
            self.other.load(Ordering::Relaxed)
        )
    }
}

/// Mixed v1 and v2 reads and writes through HAProxy against two unit processes sharing one
/// PostgreSQL database while v1 is retired (at one unit) and re-activated: v2 never fails, v1
/// sees `410` only after the switch (on every unit within 2 s) and never a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retiring_v1_under_load_through_haproxy_costs_v2_nothing() {
    let database = fresh_database(Backend::Postgres).await;
    let addresses: Vec<std::net::SocketAddr> = (0..2)
        .map(|_| ([127, 0, 0, 1], free_port()).into())
        .collect();
    let listen = free_port();
    let files = tempfile::tempdir().unwrap();
    let topology_path = files.path().join("topology.toml");
    let secrets_path = files.path().join("secrets.toml");
    let mut topology = format!(
        "[gateway]\nlisten = \"127.0.0.1:{listen}\"\ncheck_interval_ms = 200\n\n\
         [[sa]]\nname = \"registration\"\ndatabase = \"{}\"\n[sa.grants]\nadmin = \"operator\"\n",
        database.url
    );
    for (index, address) in addresses.iter().enumerate() {
        topology.push_str(&format!(
            "[[sa.units]]\nname = \"registration-{}\"\nlisten = \"{address}\"\nzone = \"z{index}\"\n",
            index + 1
        ));
    }
    std::fs::write(&topology_path, topology).unwrap();
    std::fs::write(&secrets_path, format!("[tokens]\nadmin = \"{ADMIN}\"\n")).unwrap();
    let mut units = Vec::new();
    for (index, address) in addresses.iter().enumerate() {
        units.push(
            UnitProcess::start_topology(
                &topology_path,
                &secrets_path,
                &format!("registration-{}", index + 1),
                *address,
            )
            .await,
        );
    }
    let config = tests::process::run_hiscale(&[
        "haproxy-config".as_ref(),
        "--topology".as_ref(),
        topology_path.as_os_str(),
    ]);
    assert!(config.status.success());
    let haproxy = start_haproxy(&String::from_utf8(config.stdout).unwrap());
    let client = hiscale::tls::client_builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let front = format!("http://127.0.0.1:{listen}/registration");
    wait_passing(&client, &front).await;
    let mut ids = Vec::new();
    // One customer per load task, which only that task writes (so writers never meet on a
    // resource: a v1 write through the facade is pinned to what it read), read by all.
    for n in 0..8 {
        ids.push(post_customer(&client, &front, v2_customer(300 + n), V2_JSON).await);
    }
    let ids = Arc::new(ids);

    let started = Instant::now();
    // Milliseconds since `started` at which v1 was retired (u64::MAX before), and at which
    // every unit must have followed.
    let retired_at = Arc::new(AtomicU64::new(u64::MAX));
    let reactivated_at = Arc::new(AtomicU64::new(u64::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let v1 = Arc::new(Tally::default());
    let v2 = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for task in 0..8usize {
        let (client, front, ids, stop) = (client.clone(), front.clone(), ids.clone(), stop.clone());
        let (retired_at, reactivated_at) = (retired_at.clone(), reactivated_at.clone());
        let (tally, media, is_v1) = if task % 2 == 0 {
            (v1.clone(), JSON, true)
        } else {
            (v2.clone(), V2_JSON, false)
        };
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let writing = n.is_multiple_of(3);
                let id = if writing {
                    &ids[task]
                } else {
                    &ids[(task + n) % ids.len()]
                };
                let sent = started.elapsed().as_millis() as u64;
                let builder = if writing {
                    let body = if is_v1 {
                        json!({"type": "natural", "firstname": "Load", "lastname": format!("V1x{n}")})
                    } else {
                        json!({"type": "natural", "given_name": "Load", "family_name": format!("V2x{n}"),
                               "email": "load@example.org"})
                    };
                    client
                        .put(format!("{front}/customers/{id}/person"))
                        .header("content-type", media)
                        .body(body.to_string())
                } else {
                    client.get(format!("{front}/customers/{id}"))
                };
                let answer = builder
                    .bearer_auth(ADMIN)
                    .header("accept", media)
                    .send()
                    .await;
                let answered = started.elapsed().as_millis() as u64;
                let status = answer.map(|reply| reply.status().as_u16()).unwrap_or(0);
                match status {
                    200..=299 => tally.ok.fetch_add(1, Ordering::Relaxed),
                    410 => {
                        // A 410 is due only once the switch was asked for, and no longer than
                        // 2 s after the re-activation was stored.
                        let too_early = answered < retired_at.load(Ordering::Relaxed)
                            || sent > reactivated_at.load(Ordering::Relaxed).saturating_add(2_000);
                        if too_early {
                            tally.gone_too_early.fetch_add(1, Ordering::Relaxed);
                        }
                        tally.gone.fetch_add(1, Ordering::Relaxed)
                    }
                    500..=599 => tally.server_errors.fetch_add(1, Ordering::Relaxed),
                    _ => {
                        println!("unexpected answer {status} to v{}", if is_v1 { 1 } else { 2 });
                        tally.other.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_switch = v1.line();
    // The operator switches at one unit (through HAProxy: whichever it picks).
    retired_at.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    let retire = client
        .put(format!("{front}/admin/interfaces/v1"))
        .bearer_auth(ADMIN)
        .body(json!({"state": "retired"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(retire.status().as_u16(), 204);
    // Within 2 s every unit answers v1 with 410.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for address in &addresses {
        let reply = client
            .get(format!("http://{address}/customers/{}", ids[0]))
            .bearer_auth(ADMIN)
            .header("accept", JSON)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status().as_u16(), 410, "{address} still serves v1");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = v1.line();
    let reactivate = client
        .put(format!("{front}/admin/interfaces/v1"))
        .bearer_auth(ADMIN)
        .body(json!({"state": "active"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(reactivate.status().as_u16(), 204);
    reactivated_at.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    println!("v1 before the switch: {before_switch}");
    println!("v1 until re-activated: {during}");
    println!("v1 in all: {}", v1.line());
    println!("v2 in all: {}", v2.line());
    assert!(v2.ok.load(Ordering::Relaxed) > 0, "v2: {}", v2.line());
    assert_eq!(v2.gone.load(Ordering::Relaxed), 0, "v2: {}", v2.line());
    assert_eq!(
        v2.server_errors.load(Ordering::Relaxed),
        0,
        "v2: {}",
        v2.line()
    );
    assert_eq!(v2.other.load(Ordering::Relaxed), 0, "v2: {}", v2.line());
    assert_eq!(
        v1.server_errors.load(Ordering::Relaxed),
        0,
        "v1: {}",
        v1.line()
    );
    assert_eq!(
        v1.gone_too_early.load(Ordering::Relaxed),
        0,
        "v1: {}",
        v1.line()
    );
    assert!(
        v1.gone.load(Ordering::Relaxed) > 0,
        "v1 was never refused: {}",
        v1.line()
    );
    assert_eq!(v1.other.load(Ordering::Relaxed), 0, "v1: {}", v1.line());
    drop(haproxy);
    drop(units);
}
