//! Reading and writing one resource exactly as PROTOCOL.md describes.

use axum::body::Body;
use axum::http::StatusCode;
use tests::{
    ADMIN, EXAMPLE_CUSTOMER_XML, JSON, SHOP, TestApp, XML, both_backends, create_customer,
    customer_json, request,
};

fn get(uri: &str, accept: &str) -> axum::http::Request<Body> {
    request("GET", uri)
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("accept", accept)
        .body(Body::empty())
        .unwrap()
}

fn put(uri: &str, content_type: &str, body: &str) -> axum::http::request::Builder {
    let _ = body;
    request("PUT", uri)
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", content_type)
        .header("accept", JSON)
}

both_backends!(example_customer_round_trips_in_xml, |backend| async move {
    let app = TestApp::start(backend).await;
    let created = app
        .send(
            request("POST", "/customers")
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("content-type", XML)
                .header("x-forwarded-prefix", "/registration")
                .body(Body::from(EXAMPLE_CUSTOMER_XML))
                .unwrap(),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.header("content-type"), Some(XML));
    let id = created
        .body
        .split("<id>")
        .nth(1)
        .unwrap()
        .split("</id>")
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        created.header("location").unwrap(),
        format!("/registration/customers/{id}")
    );

    let read = app.send(get(&format!("/customers/{id}"), XML)).await;
    assert_eq!(read.status, StatusCode::OK);
    let body = &read.body;
    assert!(
        body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><customer><version>"),
        "{body}"
    );
    // One change, one version: every aspect of a new resource carries the resource's version.
    let version = body
        .split("<version>")
        .nth(1)
        .unwrap()
        .split("</version>")
        .next()
        .unwrap();
    assert_eq!(id, version, "the id is the version of the creation");
    for fragment in [
        format!("<id>{id}</id>"),
        "<account><version>".to_owned(),
        "<login>owronka</login><pwdhash>$argon2id$".to_owned(),
        format!(
            "<person type=\"natural\"><version>{version}</version><salutation>MR</salutation><firstname>Oliver</firstname><lastname>Wronka</lastname></person>"
        ),
        format!(
            "<addresses><address type=\"home\"><version>{version}</version><street>Rheinweg 86</street><zip>53129</zip><city>Bonn</city></address><address type=\"bill\"><version>{version}</version><street>Kurfürstenallee 5</street><zip>53177</zip><city>Bonn</city></address></addresses>"
        ),
        format!(
            "<bankaccount><version>{version}</version><owner>Oliver Wronka</owner><iban>DE89370400440532013000</iban><bic>COLSDE55XXX</bic></bankaccount></customer>"
        ),
    ] {
        assert!(body.contains(&fragment), "missing {fragment} in {body}");
    }
    assert!(
        !body.contains("password"),
        "the clear-text password never comes back"
    );
    assert!(body.contains("<salt>"), "salt stored beside the hash");
});

both_backends!(selected_aspects_in_xml_and_json, |backend| async move {
    let app = TestApp::start(backend).await;
    let id = create_customer(&app, EXAMPLE_CUSTOMER_XML, XML).await;
    let uri = format!("/customers/{id}?aspects=~person~address.home");

    let xml = app.send(get(&uri, XML)).await;
    assert_eq!(xml.status, StatusCode::OK);
    assert!(xml.body.contains("<person type=\"natural\">"));
    assert!(xml.body.contains("<addresses><address type=\"home\">"));
    for absent in ["<account>", "type=\"bill\"", "<bankaccount>"] {
        assert!(
            !xml.body.contains(absent),
            "{absent} was not selected: {}",
            xml.body
        );
    }

    let json = app.send(get(&uri, "application/json")).await;
    assert_eq!(json.status, StatusCode::OK);
    assert_eq!(json.header("content-type"), Some(JSON));
    let value = json.json();
    let version = value["version"].as_i64().unwrap();
    assert_eq!(value["id"], serde_json::json!(id));
    assert_eq!(
        value,
        serde_json::json!({
            "id": id, "version": version,
            "person": {"version": version, "type": "natural", "salutation": "MR", "firstname": "Oliver", "lastname": "Wronka"},
            "addresses": {"home": {"version": version, "street": "Rheinweg 86", "zip": "53129", "city": "Bonn"}}
        })
    );
    // The same through the URL prefix.
    let prefixed = app
        .send(get(&format!("/v1{uri}"), "application/json"))
        .await;
    assert_eq!(prefixed.json(), value);
    // The family selector takes every qualified aspect.
    let both = app
        .send(get(&format!("/customers/{id}?aspects=~address"), JSON))
        .await;
    assert_eq!(both.json()["addresses"].as_object().unwrap().len(), 2);
});

both_backends!(etag_304_and_growing_versions, |backend| async move {
    let app = TestApp::start(backend).await;
    let id = create_customer(&app, &customer_json(1), JSON).await;
    let uri = format!("/customers/{id}?aspects=~person~address.home");
    let first = app.send(get(&uri, JSON)).await;
    let etag = first.header("etag").unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", first.json()["version"]));

    let not_modified = app
        .send(
            request("GET", &uri)
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("accept", JSON)
                .header("if-none-match", &etag)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert!(not_modified.body.is_empty());

    let body = r#"<address type="home"><street>Neue Straße 1</street><zip>53113</zip><city>Bonn</city></address>"#;
    let updated = app
        .send(
            put(&format!("/customers/{id}/address.home"), XML, body)
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    let new_version = updated.json()["addresses"]["home"]["version"]
        .as_i64()
        .unwrap();
    assert!(new_version > first.json()["version"].as_i64().unwrap());
    assert!(
        updated.json().get("person").is_none(),
        "the answer carries the written aspect"
    );

    let second = app.send(get(&uri, JSON)).await;
    assert_eq!(
        second.json()["addresses"]["home"]["street"],
        "Neue Straße 1"
    );
    assert_eq!(second.json()["version"].as_i64().unwrap(), new_version);
    assert_ne!(second.header("etag").unwrap(), etag);
    // A change of an unselected aspect does not move the selected view's tag.
    let bill = r#"{"street":"Postfach 9","zip":"53119","city":"Bonn"}"#;
    let billed = app
        .send(
            put(&format!("/customers/{id}/address.bill"), JSON, bill)
                .body(Body::from(bill))
                .unwrap(),
        )
        .await;
    assert_eq!(billed.status, StatusCode::OK);
    let third = app.send(get(&uri, JSON)).await;
    assert_eq!(third.header("etag"), second.header("etag"));
});

// JSON of interface version 1, its XML and v2's JSON are three representations of one state,
// each with a tag of its own: a cache holding one never gets 304 for another. A write's
// If-Match is about the state, so the XML's tag of the current version lets it through.
both_backends!(
    each_representation_of_a_state_has_its_own_etag,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let id = create_customer(&app, &customer_json(3), JSON).await;
        let uri = format!("/customers/{id}");
        let json = app.send(get(&uri, JSON)).await;
        let version = json.json()["version"].as_i64().unwrap();
        assert_eq!(json.header("etag"), Some(format!("\"{version}\"").as_str()));
        assert_eq!(json.header("vary"), Some("Accept"));
        let xml = app.send(get(&uri, XML)).await;
        let xml_tag = format!("\"{version}-xml\"");
        assert_eq!(xml.header("etag"), Some(xml_tag.as_str()));
        let v2 = app
            .send(get(&uri, "application/vnd.registration.v2+json"))
            .await;
        assert_eq!(v2.status, StatusCode::OK, "{}", v2.body);
        assert_eq!(
            v2.header("etag"),
            Some(format!("\"{version}-v2\"").as_str())
        );

        let conditional = |accept: &str| {
            request("GET", &uri)
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("accept", accept)
                .header("if-none-match", &xml_tag)
                .body(Body::empty())
                .unwrap()
        };
        let held = app.send(conditional(XML)).await;
        assert_eq!(held.status, StatusCode::NOT_MODIFIED);
        assert_eq!(held.header("vary"), Some("Accept"));
        let other = app.send(conditional(JSON)).await;
        assert_eq!(
            other.status,
            StatusCode::OK,
            "the XML's tag is not the JSON's"
        );
        assert_eq!(other.body, json.body);

        let body = r#"{"type":"natural","firstname":"Erika","lastname":"Xml"}"#;
        let written = app
            .send(
                put(&format!("/customers/{id}/person"), JSON, body)
                    .header("if-match", &xml_tag)
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        assert_eq!(written.status, StatusCode::OK, "{}", written.body);
        let stale = app
            .send(
                put(&format!("/customers/{id}/person"), JSON, body)
                    .header("if-match", &xml_tag)
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    }
);

both_backends!(if_match_guards_writes, |backend| async move {
    let app = TestApp::start(backend).await;
    let id = create_customer(&app, &customer_json(2), JSON).await;
    let current = app.send(get(&format!("/customers/{id}"), JSON)).await;
    let etag = current.header("etag").unwrap().to_owned();
    let body = r#"{"type":"natural","firstname":"Erika","lastname":"Neu"}"#;
    let stale = app
        .send(
            put(&format!("/customers/{id}/person"), JSON, body)
                .header("if-match", "\"0\"")
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.error_code(), "precondition-failed");
    // If-Match compares strongly (RFC 9110): the current tag, made weak, does not match.
    let weak = app
        .send(
            put(&format!("/customers/{id}/person"), JSON, body)
                .header("if-match", format!("W/{etag}"))
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(
        weak.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        weak.body
    );
    assert_eq!(
        app.send(get(&format!("/customers/{id}"), JSON)).await.body,
        current.body
    );
    let fresh = app
        .send(
            put(&format!("/customers/{id}/person"), JSON, body)
                .header("if-match", &etag)
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.body);
    assert_eq!(fresh.json()["person"]["lastname"], "Neu");
});

both_backends!(deletes_leave_tombstones, |backend| async move {
    let app = TestApp::start(backend).await;
    let id = create_customer(&app, &customer_json(3), JSON).await;
    let delete = |uri: String| {
        request("DELETE", &uri)
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap()
    };
    let before = app.current_version().await;
    let gone = app
        .send(delete(format!("/customers/{id}/bankaccount")))
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.current_version().await,
        before + 1,
        "an aspect deletion is a change"
    );
    let read = app.send(get(&format!("/customers/{id}"), JSON)).await;
    assert!(read.json().get("bankaccount").is_none());
    assert_eq!(
        read.json()["version"].as_i64().unwrap(),
        before + 1,
        "the tombstone moves the version"
    );
    assert_eq!(
        app.send(delete(format!("/customers/{id}/bankaccount")))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // The tombstones are what the feed will announce.
    let changes = app
        .state
        .store()
        .read_changes(
            "customers",
            hiscale::Version::new(before).unwrap(),
            hiscale::Version::new(before + 1).unwrap(),
            &["bankaccount".to_owned()],
            10,
        )
        .await
        .unwrap();
    assert_eq!(changes.items.len(), 1);
    assert!(changes.items[0].aspects[0].deleted);

    assert_eq!(
        app.send(delete(format!("/customers/{id}"))).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.send(get(&format!("/customers/{id}"), JSON))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.send(delete(format!("/customers/{id}"))).await.status,
        StatusCode::NOT_FOUND
    );
    let resource = app
        .state
        .store()
        .read("customers", &hiscale::ResourceId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        resource.deleted
            && resource
                .aspects
                .iter()
                .all(|aspect| aspect.deleted && aspect.body.is_none())
    );
    // The login is free again once its holder is deleted.
    create_customer(&app, &customer_json(3), JSON).await;
});

both_backends!(logins_are_unique, |backend| async move {
    let app = TestApp::start(backend).await;
    create_customer(&app, &customer_json(4), JSON).await;
    let before = app.current_version().await;
    let again = app
        .send(
            request("POST", "/customers")
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("content-type", JSON)
                .body(Body::from(
                    customer_json(4).replace("user000004", "USER000004"),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(again.error_code(), "already-taken");
    assert_eq!(app.store_count().await, 1);
    assert!(
        app.current_version().await <= before + 1,
        "at most a version gap, never a stored change"
    );
});

both_backends!(grants_limit_reads, |backend| async move {
    let app = TestApp::start(backend).await;
    let id = create_customer(&app, EXAMPLE_CUSTOMER_XML, XML).await;
    let shop = app
        .send(
            request("GET", &format!("/customers/{id}"))
                .header("authorization", format!("Bearer {SHOP}"))
                .header("accept", JSON)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(shop.status, StatusCode::OK);
    let value = shop.json();
    assert!(
        value.get("account").is_none(),
        "shop never sees the password hash"
    );
    assert!(value.get("bankaccount").is_none());
    assert!(value["addresses"].get("bill").is_none());
    assert_eq!(value["person"]["lastname"], "Wronka");
    assert_eq!(value["addresses"]["home"]["city"], "Bonn");
});

both_backends!(
    sessions_read_only_their_own_resource_within_their_grant,
    |backend| async move {
        let (secret, public) = hiscale::session::generate_key_pair().unwrap();
        let app = TestApp::start_with(backend, |config| {
            config.sessions.public_keys = vec![hiscale::config::PublicKeyConfig::new(
                tests::TEST_KEY_ID,
                &public,
            )];
            config.sessions.grant = Some("~person~address~bankaccount".into());
        })
        .await;
        let mine = create_customer(&app, EXAMPLE_CUSTOMER_XML, XML).await;
        let other = create_customer(&app, &customer_json(8), JSON).await;
        let issuer = hiscale::session::SessionIssuer::new(tests::TEST_KEY_ID, &secret, 60).unwrap();
        let token = issuer.issue(&hiscale::ResourceId::parse(&mine).unwrap(), "owronka");
        let read = |uri: String| {
            request("GET", &uri)
                .header("authorization", format!("Bearer {token}"))
                .header("accept", JSON)
                .body(Body::empty())
                .unwrap()
        };
        let own = app.send(read(format!("/customers/{mine}"))).await;
        assert_eq!(own.status, StatusCode::OK, "{}", own.body);
        assert_eq!(own.json()["person"]["lastname"], "Wronka");
        assert!(
            own.json().get("account").is_none(),
            "not even its own password hash"
        );
        let hash = app
            .send(read(format!("/customers/{mine}?aspects=~account")))
            .await;
        assert_eq!(
            (hash.status, hash.error_code().as_str()),
            (StatusCode::FORBIDDEN, "aspect-not-granted")
        );
        let foreign = app.send(read(format!("/customers/{other}"))).await;
        assert_eq!(
            (foreign.status, foreign.error_code().as_str()),
            (StatusCode::NOT_FOUND, "not-found")
        );
        // Registration lets customers keep their own data (the GUI's "your details"): a
        // session replaces its own person, but not its account (outside the session grant),
        // and reaches no other customer.
        let write = |path: String, body: &'static str| {
            request("PUT", &path)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", JSON)
                .header("accept", JSON)
                .body(Body::from(body))
                .unwrap()
        };
        let person = r#"{"type":"natural","firstname":"A","lastname":"B"}"#;
        let own = app
            .send(write(format!("/customers/{mine}/person"), person))
            .await;
        assert_eq!(own.status, StatusCode::OK, "{}", own.body);
        let account = app
            .send(write(
                format!("/customers/{mine}/account"),
                r#"{"login":"other","password":"correct horse battery"}"#,
            ))
            .await;
        assert_eq!(
            (account.status, account.error_code().as_str()),
            (StatusCode::FORBIDDEN, "write-not-granted")
        );
        let foreign = app
            .send(write(format!("/customers/{other}/person"), person))
            .await;
        assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{}", foreign.body);
    }
);

both_backends!(
    cached_reads_follow_writes_through_another_unit,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let id = create_customer(&app, &customer_json(5), JSON).await;
        let uri = format!("/customers/{id}");
        // A second unit sharing the store: its writes never reach the first unit's memory.
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

        // Read (and cached) twice, in both formats.
        let first = app.send(get(&uri, JSON)).await;
        assert_eq!(first.status, StatusCode::OK);
        assert_eq!(app.send(get(&uri, JSON)).await.body, first.body);
        let first_xml = app.send(get(&uri, XML)).await;
        assert_eq!(app.send(get(&uri, XML)).await.body, first_xml.body);

        // A write through the other unit shows at once, in every representation.
        let body = r#"{"street":"Andere Gasse 2","zip":"53111","city":"Bonn"}"#;
        let put_home = put(&format!("/customers/{id}/address.home"), JSON, body)
            .body(Body::from(body))
            .unwrap();
        assert_eq!(send_second(put_home).await, StatusCode::OK);
        let after = app.send(get(&uri, JSON)).await;
        assert_eq!(
            after.json()["addresses"]["home"]["street"],
            "Andere Gasse 2"
        );
        assert!(after.json()["version"].as_i64() > first.json()["version"].as_i64());
        assert_ne!(after.header("etag"), first.header("etag"));
        assert!(
            app.send(get(&uri, XML))
                .await
                .body
                .contains("Andere Gasse 2")
        );

        // So does a deletion of an aspect, and of the whole resource.
        let delete = |uri: String| {
            request("DELETE", &uri)
                .header("authorization", format!("Bearer {ADMIN}"))
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(
            send_second(delete(format!("/customers/{id}/bankaccount"))).await,
            StatusCode::NO_CONTENT
        );
        let without = app.send(get(&uri, JSON)).await;
        assert!(
            without.json().get("bankaccount").is_none(),
            "{}",
            without.body
        );
        assert_eq!(
            send_second(delete(uri.clone())).await,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            app.send(get(&uri, JSON)).await.status,
            StatusCode::NOT_FOUND
        );
    }
);
