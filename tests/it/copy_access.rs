//! Who may read what at copies, that copies refuse writes, session tokens from login, and
//! that applying a chunk twice (or an older one late) changes nothing.

use std::time::Duration;

use hiscale::session::{Claims, SessionIssuer};
use hiscale::{Store, Version};
use tests::process::UnitProcess;
use tests::replication::{post_customer, wait_until_copied};
use tests::{
    ADMIN, BILLING, Backend, EXAMPLE_CUSTOMER_XML, JSON, LOGIN, SHOP, TestApp, XML, both_backends,
    create_customer, customer_json, fresh_database, reader_config,
};

both_backends!(
    copies_keep_grants_refuse_writes_and_honour_sessions,
    |backend: Backend| async move {
        let owner_db = fresh_database(backend).await;
        let owner = UnitProcess::start("registration-1", &owner_db.url).await;
        let client = hiscale::tls::client();
        let oliver = post_customer(&client, &owner.url, EXAMPLE_CUSTOMER_XML.to_owned(), XML).await;
        let erika = post_customer(&client, &owner.url, customer_json(7), JSON).await;

        let (secret, public) = hiscale::session::generate_key_pair().unwrap();
        let login_db = fresh_database(backend).await;
        let mut login_config = reader_config(
            "login",
            &login_db.url,
            &owner.url,
            LOGIN,
            login::COPIED_ASPECTS,
        );
        let keys = vec![hiscale::config::PublicKeyConfig::new(
            tests::TEST_KEY_ID,
            &public,
        )];
        login_config.sessions.signing_key_id = Some(tests::TEST_KEY_ID.into());
        login_config.sessions.signing_key = Some(secret.clone());
        login_config.sessions.public_keys = keys.clone();
        let shop_db = fresh_database(backend).await;
        let mut shop_config =
            reader_config("shop", &shop_db.url, &owner.url, SHOP, shop::COPIED_ASPECTS);
        shop_config.sessions.public_keys = keys;
        shop_config.sessions.grant = Some(shop::COPIED_ASPECTS.into());
        let login_unit = UnitProcess::start_config(login_config).await;
        let shop_unit = UnitProcess::start_config(shop_config).await;
        let current = Store::connect(&owner_db.url)
            .await
            .unwrap()
            .current_version("customers")
            .await
            .unwrap()
            .get();
        wait_until_copied(&login_unit.url, current, Duration::from_secs(60)).await;
        wait_until_copied(&shop_unit.url, current, Duration::from_secs(60)).await;

        let get = |url: String, token: Option<String>| {
            let client = client.clone();
            async move {
                let mut request = client.get(url).header("accept", JSON);
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let reply = request.send().await.unwrap();
                let status = reply.status().as_u16();
                let content_type = reply
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_owned());
                (status, content_type, reply.text().await.unwrap())
            }
        };
        let shop = &shop_unit.url;
        // The copy serves its owner's media types and only what it holds.
        let (status, content_type, body) =
            get(format!("{shop}/customers/{oliver}"), Some(ADMIN.into())).await;
        assert_eq!(
            (status, content_type.as_deref()),
            (200, Some(JSON)),
            "{body}"
        );
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["person"]["lastname"], "Wronka");
        assert_eq!(value["addresses"]["home"]["city"], "Bonn");
        assert!(
            value.get("account").is_none()
                && value.get("bankaccount").is_none()
                && value["addresses"].get("bill").is_none()
        );
        // Grants hold at the copy as at the owner.
        assert_eq!(get(format!("{shop}/customers/{oliver}"), None).await.0, 401);
        let (status, _, body) = get(
            format!("{shop}/customers/{oliver}?aspects=~address.home"),
            Some(BILLING.into()),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("aspect-not-granted"));
        let (status, _, body) = get(
            format!("{shop}/customers?aspects=~address.home"),
            Some(BILLING.into()),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        // The account is not even known at shop: it never arrived.
        let (status, error_type, body) = get(
            format!("{shop}/customers/{oliver}?aspects=~account"),
            Some(ADMIN.into()),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("unknown-aspect"));
        assert_eq!(
            error_type.as_deref(),
            Some(JSON),
            "errors about a copy speak its owner's media types"
        );
        // The copy's own feed carries the owner's versions.
        let (status, _, body) =
            get(format!("{shop}/customers?version=0"), Some(ADMIN.into())).await;
        assert_eq!(status, 200);
        let feed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(feed["version"].as_i64().unwrap(), current);
        assert_eq!(feed["items"].as_array().unwrap().len(), 2);

        // Copies are read-only and say where to write.
        for (method, path) in [
            (reqwest::Method::POST, "customers".to_owned()),
            (reqwest::Method::PUT, format!("customers/{oliver}/person")),
            (reqwest::Method::DELETE, format!("customers/{oliver}")),
            (
                reqwest::Method::DELETE,
                format!("customers/{oliver}/address.home"),
            ),
        ] {
            let reply = client
                .request(method.clone(), format!("{shop}/{path}"))
                .bearer_auth(ADMIN)
                .header("content-type", JSON)
                .header("accept", JSON)
                .body(r#"{"type":"natural","firstname":"A","lastname":"B"}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status().as_u16(), 405, "{method} {path}");
            let body: serde_json::Value = reply.json().await.unwrap();
            assert_eq!(body["error"]["code"], "read-only-copy");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("registration")
            );
        }

        // Login signs in against its copy of the account and issues a session token.
        let sign_in = |login: &str, password: &str| {
            let client = client.clone();
            let url = format!("{}/sessions", login_unit.url);
            let body = serde_json::json!({"login": login, "password": password}).to_string();
            async move {
                let reply = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("accept", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (
                    reply.status().as_u16(),
                    reply.json::<serde_json::Value>().await.unwrap(),
                )
            }
        };
        assert_eq!(sign_in("owronka", "wrong-password").await.0, 401);
        assert_eq!(
            sign_in("nobody", "geheim-1234").await.1["error"]["code"],
            "bad-credentials"
        );
        let (status, session) = sign_in("OWronka", "geheim-1234").await;
        assert_eq!(status, 201, "{session}");
        assert_eq!(session["customer"], serde_json::json!(oliver));
        let token = session["token"].as_str().unwrap().to_owned();
        // Shop verifies it on its own: no shared state, no call to login.
        let (status, _, body) =
            get(format!("{shop}/customers/{oliver}"), Some(token.clone())).await;
        assert_eq!(status, 200, "{body}");
        // Login grants sessions nothing (its copy holds the password hash): deny by default,
        // the same answer for the session's own customer, another one and none at all.
        let login = &login_unit.url;
        for id in [oliver.as_str(), erika.as_str(), "999999"] {
            let (status, _, body) =
                get(format!("{login}/customers/{id}"), Some(token.clone())).await;
            assert_eq!(
                (
                    status,
                    body.contains("nothing-granted"),
                    body.contains("pwdhash")
                ),
                (403, true, false),
                "{id}: {body}"
            );
        }
        let (status, _, body) = get(format!("{shop}/customers/{erika}"), Some(token.clone())).await;
        assert_eq!((status, body.contains("not-found")), (404, true), "{body}");
        assert_eq!(
            get(format!("{shop}/customers?version=0"), Some(token.clone()))
                .await
                .0,
            403,
            "no feeds for users"
        );
        // Tampered with: another customer's id in the payload, the old signature.
        let parts: Vec<&str> = token.split('.').collect();
        let claims: Claims = serde_json::from_slice(&base64_decode(parts[2])).unwrap();
        let forged = SessionIssuer::new(
            tests::TEST_KEY_ID,
            &hiscale::session::generate_key_pair().unwrap().0,
            60,
        )
        .unwrap()
        .issue_claims(&Claims {
            sub: erika.clone(),
            ..claims.clone()
        });
        let forged_payload = forged.split('.').nth(2).unwrap();
        let tampered = format!("v2.{}.{forged_payload}.{}", parts[1], parts[3]);
        let (status, _, body) = get(format!("{shop}/customers/{erika}"), Some(tampered)).await;
        assert_eq!(
            (status, body.contains("invalid-token")),
            (401, true),
            "{body}"
        );
        // Signed by someone else entirely.
        assert_eq!(
            get(format!("{shop}/customers/{erika}"), Some(forged))
                .await
                .0,
            401
        );
        // Expired, though properly signed.
        let issuer = SessionIssuer::new(tests::TEST_KEY_ID, &secret, 60).unwrap();
        let expired = issuer.issue_claims(&Claims {
            exp: claims.iat - 1,
            ..claims
        });
        let (status, _, body) = get(format!("{shop}/customers/{oliver}"), Some(expired)).await;
        assert_eq!((status, body.contains("expired")), (401, true), "{body}");
    }
);

both_backends!(
    a_chunk_applied_twice_changes_nothing,
    |backend: Backend| async move {
        let owner = TestApp::start(backend).await;
        let first = create_customer(&owner, &customer_json(1), JSON).await;
        create_customer(&owner, &customer_json(2), JSON).await;
        let feed = |version: i64| {
            tests::request("GET", &format!("/customers?version={version}"))
                .header("authorization", format!("Bearer {BILLING}"))
                .header("accept", JSON)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let older = owner.send(feed(0)).await;
        let delete = tests::request("DELETE", &format!("/customers/{first}/bankaccount"))
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(owner.send(delete).await.status.as_u16(), 204);
        let newer = owner.send(feed(0)).await;

        let collection = billing::service_area().copied()[0].clone();
        let parse = |body: &str| {
            let chunk = hiscale::repr::parse_feed(body.as_bytes(), &collection).unwrap();
            let items = hiscale::poller::chunk_items(&collection, &chunk);
            (items, chunk.version)
        };
        let (older_items, older_version) = parse(&older.body);
        let (newer_items, newer_version) = parse(&newer.body);
        let copy_db = fresh_database(backend).await;
        let copy = Store::connect(&copy_db.url).await.unwrap();
        let state = |store: Store| async move {
            let names: Vec<String> = ["person", "address.bill", "bankaccount"]
                .iter()
                .map(|n| (*n).to_owned())
                .collect();
            store
                .read_changes(
                    "customers",
                    Version::ZERO,
                    Version::new(1_000).unwrap(),
                    &names,
                    1_000,
                )
                .await
                .unwrap()
        };
        copy.apply_chunk("customers", &newer_items, newer_version)
            .await
            .unwrap();
        let once = state(copy.clone()).await;
        copy.apply_chunk("customers", &newer_items, newer_version)
            .await
            .unwrap();
        assert_eq!(
            state(copy.clone()).await,
            once,
            "applying the same chunk twice"
        );
        // An older chunk arriving late (a backup that took over too early) loses nothing either.
        copy.apply_chunk("customers", &older_items, older_version)
            .await
            .unwrap();
        let after_older = state(copy.clone()).await;
        assert_eq!(
            after_older.items, once.items,
            "the higher version of each aspect wins"
        );
        let bank = once
            .items
            .iter()
            .find(|item| item.id.as_str() == first)
            .unwrap();
        assert!(
            bank.aspects
                .iter()
                .any(|aspect| aspect.name == "bankaccount" && aspect.deleted),
            "the tombstone stays"
        );
    }
);

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}
