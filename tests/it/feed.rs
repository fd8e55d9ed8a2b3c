//! The delta feed at the owner: chunks, root versions, tombstones, limits, long poll,
//! consumers and the tombstone horizon.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::StatusCode;
use tests::{
    ADMIN, BILLING, JSON, LOGIN, SHOP, TestApp, XML, both_backends, create_customer, customer_json,
    request,
};

fn feed(uri: &str, token: &str) -> axum::http::Request<Body> {
    request("GET", uri)
        .header("authorization", format!("Bearer {token}"))
        .header("accept", JSON)
        .body(Body::empty())
        .unwrap()
}

fn person_only(n: usize) -> String {
    serde_json::json!({"person": {"type": "natural", "firstname": "Feed", "lastname": format!("N{n}")}}).to_string()
}

both_backends!(changes_come_in_chunks_with_more, |backend| async move {
    let app = TestApp::start(backend).await;
    let mut ids = Vec::new();
    for n in 0..250 {
        ids.push(create_customer(&app, &person_only(n), JSON).await);
    }
    let mut version = 0i64;
    let mut mores = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let chunk = app
            .send(feed(
                &format!("/customers?version={version}&limit=100&aspects=~person"),
                SHOP,
            ))
            .await;
        assert_eq!(chunk.status, StatusCode::OK, "{}", chunk.body);
        let value = chunk.json();
        let items = value["items"].as_array().unwrap();
        let mut previous = version;
        for item in items {
            let item_version = item["version"].as_i64().unwrap();
            assert!(
                item_version > previous,
                "ascending, and after the asked version"
            );
            previous = item_version;
            assert!(item.get("account").is_none() && item.get("addresses").is_none());
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        mores.push((items.len(), value["more"].as_bool().unwrap()));
        version = value["version"].as_i64().unwrap();
    }
    assert_eq!(mores, vec![(100, true), (100, true), (50, false)]);
    assert_eq!(seen, ids, "every change once, in version order");
    assert_eq!(
        version,
        app.current_version().await,
        "the last chunk ends at the owner's version"
    );
    // Nothing new: an empty chunk at the same version.
    let empty = app
        .send(feed(
            &format!("/customers?version={version}&aspects=~person"),
            SHOP,
        ))
        .await
        .json();
    assert_eq!(empty["items"].as_array().unwrap().len(), 0);
    assert_eq!(empty["version"].as_i64().unwrap(), version);
    assert_eq!(empty["more"], false);
});

// The feed's grouping, as docs/protocol.md decides it: within a chunk a resource comes once,
// with every selected aspect that changed, at the greatest of their versions and in that
// order; when its aspects' versions fall into two chunks, it comes again in the later one with
// the later aspects (so an initial sync never holds back a chunk to gather a resource).
both_backends!(
    a_resource_comes_once_per_chunk_at_its_greatest_version,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let first = create_customer(&app, &person_only(1), JSON).await;
        let second = create_customer(&app, &person_only(2), JSON).await;
        let third = create_customer(&app, &person_only(3), JSON).await;
        // The first customer gains a home address: its person keeps the oldest version of all,
        // its address gets the newest.
        let body = r#"{"street":"Spätere Straße 4","zip":"53111","city":"Bonn"}"#;
        let put = app
            .send(
                request("PUT", &format!("/customers/{first}/address.home"))
                    .header("authorization", format!("Bearer {ADMIN}"))
                    .header("content-type", JSON)
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.body);
        let ids_of = |chunk: &serde_json::Value| -> Vec<String> {
            chunk["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["id"].as_str().unwrap().to_owned())
                .collect()
        };
        let selected = "aspects=~person~address.home";

        // One chunk: the first customer once, last, with both aspects.
        let whole = app
            .send(feed(&format!("/customers?version=0&{selected}"), SHOP))
            .await
            .json();
        assert_eq!(
            ids_of(&whole),
            [second.clone(), third.clone(), first.clone()]
        );
        let last = &whole["items"][2];
        assert_eq!(last["person"]["lastname"], "N1");
        assert_eq!(last["addresses"]["home"]["street"], "Spätere Straße 4");

        // Chunks of two resources: the first customer's person falls into the first chunk, its
        // address into the second, so it comes in both, each time with what that chunk covers.
        let early = app
            .send(feed(
                &format!("/customers?version=0&{selected}&limit=2"),
                SHOP,
            ))
            .await
            .json();
        assert_eq!(ids_of(&early), [first.clone(), second.clone()]);
        assert!(early["items"][0].get("addresses").is_none(), "{early}");
        assert_eq!(early["more"], true);
        let cursor = early["version"].as_i64().unwrap();
        let late = app
            .send(feed(
                &format!("/customers?version={cursor}&{selected}&limit=2"),
                SHOP,
            ))
            .await
            .json();
        assert_eq!(ids_of(&late), [third.clone(), first.clone()]);
        assert!(late["items"][1].get("person").is_none(), "{late}");
        assert_eq!(
            late["items"][1]["addresses"]["home"]["street"],
            "Spätere Straße 4"
        );
    }
);

both_backends!(
    unselected_changes_move_the_root_version,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let id = create_customer(&app, &customer_json(1), JSON).await;
        let first = app
            .send(feed("/customers?aspects=~account", LOGIN))
            .await
            .json();
        assert_eq!(first["items"][0]["id"], serde_json::json!(id));
        assert!(
            first["items"][0]["account"]["pwdhash"]
                .as_str()
                .unwrap()
                .starts_with("$argon2id$")
        );
        let cursor = first["version"].as_i64().unwrap();
        let bill = r#"{"street":"Postfach 2","zip":"53119","city":"Bonn"}"#;
        let put = app
            .send(
                request("PUT", &format!("/customers/{id}/address.bill"))
                    .header("authorization", format!("Bearer {ADMIN}"))
                    .header("content-type", JSON)
                    .body(Body::from(bill))
                    .unwrap(),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK);
        let next = app
            .send(feed(
                &format!("/customers?version={cursor}&aspects=~account"),
                LOGIN,
            ))
            .await
            .json();
        assert!(
            next["items"].as_array().unwrap().is_empty(),
            "address.bill is not in a ~account feed"
        );
        assert!(
            next["version"].as_i64().unwrap() > cursor,
            "yet the root version moved past it"
        );
        assert_eq!(
            next["version"].as_i64().unwrap(),
            app.current_version().await
        );
        let billing = app
            .send(feed(&format!("/customers?version={cursor}"), BILLING))
            .await
            .json();
        let item = &billing["items"][0];
        assert_eq!(item["addresses"]["bill"]["street"], "Postfach 2");
        assert!(
            item.get("person").is_none(),
            "only the aspects that changed after the asked version"
        );
    }
);

both_backends!(tombstones_in_xml_and_json, |backend| async move {
    let app = TestApp::start(backend).await;
    let kept = create_customer(&app, &customer_json(1), JSON).await;
    let gone = create_customer(&app, &customer_json(2), JSON).await;
    let cursor = app.current_version().await;
    let delete = |uri: String| {
        request("DELETE", &uri)
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        app.send(delete(format!("/customers/{kept}/address.home")))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.send(delete(format!("/customers/{gone}"))).await.status,
        StatusCode::NO_CONTENT
    );

    let json = app
        .send(feed(
            &format!("/customers?version={cursor}&aspects=~person~address.home"),
            SHOP,
        ))
        .await
        .json();
    let items = json["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], serde_json::json!(kept));
    assert_eq!(items[0]["addresses"]["home"]["deleted"], true);
    assert!(items[0]["addresses"]["home"].get("street").is_none());
    assert_eq!(
        items[1],
        serde_json::json!({"id": gone, "version": cursor + 2, "deleted": true})
    );

    let xml = app
        .send(
            request(
                "GET",
                &format!("/customers?version={cursor}&aspects=~person~address.home"),
            )
            .header("authorization", format!("Bearer {SHOP}"))
            .header("accept", XML)
            .body(Body::empty())
            .unwrap(),
        )
        .await;
    assert_eq!(xml.header("content-type"), Some(XML));
    let body = &xml.body;
    assert!(
        body.contains(&format!(
            "<customers version=\"{}\" more=\"false\">",
            cursor + 2
        )),
        "{body}"
    );
    assert!(body.contains(&format!("<addresses><address type=\"home\" deleted=\"true\"><version>{}</version></address></addresses>", cursor + 1)), "{body}");
    assert!(
        body.contains(&format!(
            "<customer deleted=\"true\"><version>{}</version><id>{gone}</id></customer>",
            cursor + 2
        )),
        "{body}"
    );
});

both_backends!(feed_parameters_and_grants, |backend| async move {
    let app = TestApp::start(backend).await;
    create_customer(&app, &customer_json(1), JSON).await;
    let current = app.current_version().await;
    for (query, token, status, code) in [
        ("limit=0".to_owned(), SHOP, 400, "bad-limit"),
        ("limit=1001".to_owned(), SHOP, 400, "bad-limit"),
        ("limit=ten".to_owned(), SHOP, 400, "bad-limit"),
        ("wait=61".to_owned(), SHOP, 400, "bad-wait"),
        ("version=-1".to_owned(), SHOP, 400, "bad-version"),
        ("version=1.5".to_owned(), SHOP, 400, "bad-version"),
        ("since=1".to_owned(), SHOP, 400, "unknown-parameter"),
        (
            format!("version={}", current + 1),
            SHOP,
            409,
            "version-ahead",
        ),
        (
            "aspects=~account".to_owned(),
            SHOP,
            403,
            "aspect-not-granted",
        ),
        (
            "aspects=~address".to_owned(),
            BILLING,
            403,
            "aspect-not-granted",
        ),
        ("aspects=~shoesize".to_owned(), SHOP, 400, "unknown-aspect"),
        (
            "".to_owned(),
            "no-such-token-0123456789",
            401,
            "invalid-token",
        ),
    ] {
        let reply = app.send(feed(&format!("/customers?{query}"), token)).await;
        assert_eq!(
            (reply.status.as_u16(), reply.error_code().as_str()),
            (status, code),
            "{query}: {}",
            reply.body
        );
    }
    let anonymous = app
        .send(request("GET", "/customers").body(Body::empty()).unwrap())
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    // Without `aspects`, a consumer gets exactly its grant.
    let shop = app.send(feed("/customers", SHOP)).await.json();
    let item = shop["items"][0].as_object().unwrap();
    let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, vec!["addresses", "id", "person", "version"]);
    assert_eq!(shop["items"][0]["addresses"].as_object().unwrap().len(), 1);
});

both_backends!(long_poll_wakes_on_a_write, |backend| async move {
    let app = TestApp::start(backend).await;
    let id = create_customer(&app, &customer_json(1), JSON).await;
    let current = app.current_version().await;
    let router = app.router.clone();
    let started = Instant::now();
    let waiting = tokio::spawn(async move {
        use tower::ServiceExt;
        let response = router
            .oneshot(feed(
                &format!("/customers?version={current}&wait=30&aspects=~person"),
                SHOP,
            ))
            .await
            .unwrap();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (
            started.elapsed(),
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
        )
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the request is held while nothing is newer"
    );
    let body = r#"{"type":"natural","firstname":"Woken","lastname":"Up"}"#;
    let put = app
        .send(
            request("PUT", &format!("/customers/{id}/person"))
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("content-type", JSON)
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    let (elapsed, chunk) = waiting.await.unwrap();
    assert_eq!(chunk["items"][0]["person"]["firstname"], "Woken");
    assert!(
        elapsed < Duration::from_secs(20),
        "woken by the write, not by the 30 s timeout ({elapsed:?})"
    );
    // An empty long poll ends when its time is up.
    let now = app.current_version().await;
    let quiet = app
        .send(feed(&format!("/customers?version={now}&wait=1"), SHOP))
        .await
        .json();
    assert!(quiet["items"].as_array().unwrap().is_empty());
});

both_backends!(consumers_and_the_tombstone_horizon, |backend| async move {
    let app =
        TestApp::start_with(backend, |config| config.feed.tombstone_max_age_secs = 3600).await;
    let a = create_customer(&app, &customer_json(1), JSON).await;
    let b = create_customer(&app, &customer_json(2), JSON).await;
    let first = app.send(feed("/customers", SHOP)).await.json()["version"]
        .as_i64()
        .unwrap();
    let delete = request("DELETE", &format!("/customers/{a}"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(delete).await.status, StatusCode::NO_CONTENT);
    app.send(feed(&format!("/customers?version={first}"), BILLING))
        .await;
    // An operator reading the feed by hand is no consumer: it pins no tombstone.
    app.send(feed("/customers?version=0", ADMIN)).await;

    let consumers = app
        .send(
            request("GET", "/admin/consumers")
                .header("authorization", format!("Bearer {ADMIN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .json();
    let listed = &consumers["collections"][0]["consumers"];
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["consumer"] != "admin"),
        "{listed}"
    );
    let shop = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["consumer"] == "shop")
        .unwrap();
    assert_eq!(shop["version"], 0);
    assert_eq!(
        shop["lag_versions"].as_i64().unwrap(),
        app.current_version().await
    );

    // Shop (at 0) has not passed the tombstone, so the purge keeps it.
    let purge = || {
        request("POST", "/admin/purge")
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap()
    };
    let kept = app.send(purge()).await.json();
    assert_eq!(kept["purged"][0]["report"]["aspect_tombstones"], 0);
    // Once every known consumer has passed it, it goes, and anyone still behind must resync.
    let end = app.current_version().await;
    app.send(feed(&format!("/customers?version={end}"), SHOP))
        .await;
    app.send(feed(&format!("/customers?version={end}"), BILLING))
        .await;
    let purged = app.send(purge()).await.json();
    assert_eq!(
        purged["purged"][0]["report"]["resource_tombstones"], 1,
        "{purged}"
    );
    let behind = app
        .send(feed(&format!("/customers?version={first}"), LOGIN))
        .await;
    assert_eq!(behind.status, StatusCode::GONE);
    assert_eq!(behind.error_code(), "resync-required");
    // From 0 the whole state comes again, without the purged resource.
    let all = app.send(feed("/customers?version=0", LOGIN)).await.json();
    let ids: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![b.as_str()]);
});

both_backends!(
    a_chunk_comes_gzip_compressed_when_the_client_asks,
    |backend| async move {
        let app = TestApp::start(backend).await;
        for n in 0..100 {
            create_customer(&app, &person_only(n), JSON).await;
        }
        let uri = "/customers?version=0&limit=100&aspects=~person";
        let plain = app.send(feed(uri, SHOP)).await;
        assert_eq!(plain.status, StatusCode::OK);
        assert!(
            plain.headers.get("content-encoding").is_none(),
            "not asked for"
        );

        let mut asking = feed(uri, SHOP);
        asking
            .headers_mut()
            .insert("accept-encoding", "gzip".parse().unwrap());
        let (status, headers, compressed) = app.send_raw(asking).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-encoding"], "gzip");
        let mut inflated = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&compressed[..]),
            &mut inflated,
        )
        .unwrap();
        assert_eq!(inflated, plain.body, "the same chunk");
        assert!(
            compressed.len() * 3 < plain.body.len(),
            "{} compressed bytes of {}",
            compressed.len(),
            plain.body.len()
        );
    }
);

/// A transaction in flight below the newest version holds the feed's horizon back: a one-off
/// read waits up to 0.5 s for it (so it shows what was committed when asked), but a long poll
/// that already has something newer to show answers at once, since its consumer asks again
/// right away. Only PostgreSQL has writers in flight beside others (SQLite has one writer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_with_news_does_not_wait_for_writers_in_flight() {
    use hiscale::store::{AspectEdit, Change, Target};
    let app = TestApp::start(tests::Backend::Postgres).await;
    let id = create_customer(&app, &person_only(1), JSON).await;
    // The horizon settles only at versions it saw handed out with their writers finished.
    app.send(feed("/customers?version=0", SHOP)).await;
    let held = app
        .state
        .store()
        .prepare(
            "customers",
            vec![Change {
                target: Target::Update(hiscale::ResourceId::parse(&id).unwrap()),
                precondition: None,
                edits: vec![AspectEdit {
                    aspect: "person".into(),
                    body: Some(r#"{"type":"natural","firstname":"Held","lastname":"Open"}"#.into()),
                    unique_keys: Vec::new(),
                }],
            }],
        )
        .await
        .unwrap();

    let started = Instant::now();
    let polled = app
        .send(feed("/customers?version=0&wait=5&aspects=~person", SHOP))
        .await;
    let long_poll = started.elapsed();
    let started = Instant::now();
    let read = app
        .send(feed("/customers?version=0&aspects=~person", SHOP))
        .await;
    let one_off = started.elapsed();
    held.commit().await.unwrap();

    for reply in [&polled, &read] {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let chunk = reply.json();
        assert_eq!(chunk["items"].as_array().unwrap().len(), 1, "{chunk}");
        assert_eq!(chunk["items"][0]["person"]["lastname"], "N1", "{chunk}");
    }
    assert!(
        long_poll < Duration::from_millis(400),
        "the long poll waited {long_poll:?} for the writer in flight"
    );
    assert!(
        one_off >= Duration::from_millis(500),
        "the one-off read answered after {one_off:?}, without giving the writer in flight its 0.5 s"
    );
}

/// The horizon waits for writers of the SA's own database only: a transaction left open in
/// another database of the same server (another SA's) does not hold this feed back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_in_another_database_does_not_hold_this_feed_back() {
    use sqlx::Connection;
    let app = TestApp::start(tests::Backend::Postgres).await;
    let other = tests::fresh_database(tests::Backend::Postgres).await;
    sqlx::any::install_default_drivers();
    let mut forgotten = sqlx::AnyConnection::connect(&other.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut forgotten).await.unwrap();
    sqlx::query("SELECT CAST(txid_current() AS TEXT)")
        .execute(&mut forgotten)
        .await
        .unwrap();

    create_customer(&app, &person_only(7), JSON).await;
    let chunk = app
        .send(feed("/customers?version=0&aspects=~person", SHOP))
        .await
        .json();
    sqlx::query("ROLLBACK")
        .execute(&mut forgotten)
        .await
        .unwrap();
    assert_eq!(
        chunk["items"][0]["person"]["lastname"], "N7",
        "the write was held back by another database's transaction: {chunk}"
    );
}

// An operator pages a feed from 0 after a purge (issue 25): page by page it gets the current
// state, as a re-reading consumer does; before, its second page answered `410 resync-required`
// and paging from 0 again met the same answer.
both_backends!(
    an_operator_pages_a_feed_from_zero_after_a_purge,
    |backend| async move {
        let app =
            TestApp::start_with(backend, |config| config.feed.tombstone_max_age_secs = 0).await;
        let mut ids = Vec::new();
        for n in 0..5 {
            ids.push(create_customer(&app, &person_only(n), JSON).await);
        }
        for gone in [&ids[0], &ids[2]] {
            let delete = request("DELETE", &format!("/customers/{gone}"))
                .header("authorization", format!("Bearer {ADMIN}"))
                .body(Body::empty())
                .unwrap();
            assert_eq!(app.send(delete).await.status, StatusCode::NO_CONTENT);
        }
        // No consumer is known, so age alone decides: older than 0 s once a second has passed.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let purge = request("POST", "/admin/purge")
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap();
        let purged = app.send(purge).await.json();
        assert_eq!(
            purged["purged"][0]["report"]["resource_tombstones"], 2,
            "{purged}"
        );
        let mut version = 0i64;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let page = app
                .send(feed(
                    &format!("/customers?version={version}&limit=2&aspects=~person"),
                    ADMIN,
                ))
                .await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            let page = page.json();
            for item in page["items"].as_array().unwrap() {
                seen.push(item["id"].as_str().unwrap().to_owned());
            }
            version = page["version"].as_i64().unwrap();
            if page["more"] != true {
                break;
            }
        }
        assert_eq!(seen, vec![ids[1].clone(), ids[3].clone(), ids[4].clone()]);
    }
);
