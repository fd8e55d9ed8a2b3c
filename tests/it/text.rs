//! Text every representation can carry (issue 25, items 2 and 9), on both backends through
//! the framework's test kit: writes holding a character XML 1.0 cannot carry are refused with
//! `unrepresentable-character` in JSON and XML, in aspects and commands, and change nothing;
//! an amount with more decimals than its currency has is `too-many-decimals`; and data stored
//! before the rule (written by business code, or seeded into a copy as an older owner's feed
//! would bring it) still answers well-formed XML: resource, feed chunk and error body.

use axum::body::Body;
use axum::http::Request;
use hiscale::ResourceId;
use hiscale::testing::{OPERATOR_TOKEN, TestBackend, TestReply, TestUnit, well_formed_xml};
use serde_json::{Value, json};

const ADMIN: Option<&str> = Some(OPERATOR_TOKEN);
const SHOP_XML: &str = "application/vnd.shop.v1+xml";
const REGISTRATION_XML: &str = "application/vnd.registration.v1+xml";

/// Shop with customer 1 in its copy, as an older registration fed it: control characters and
/// U+FFFE in the person, an escape character and U+FFFF in the home address. (Not NUL:
/// PostgreSQL's `jsonb` cannot hold it at all, so no PostgreSQL store ever did; the unit tests
/// of the XML writer cover it.)
async fn shop(backend: &TestBackend) -> TestUnit {
    let unit = TestUnit::start_with(shop::service_area(), backend, |config| {
        config.sessions.grant = Some("~person~address.home~product~order~status".into());
    })
    .await
    .expect("shop starts");
    unit.seed_copy(
        "customers",
        "1",
        1,
        &[
            (
                "person",
                json!({"type": "nat\u{1}ural", "firstname": "Ol\u{FFFE}ga", "lastname": "W\u{8}"}),
            ),
            (
                "address.home",
                json!({"street": "S\u{1b}[31m", "zip": "12345", "city": "C\u{FFFF}"}),
            ),
        ],
    )
    .await
    .expect("seed a customer");
    unit
}

/// `method path` with `body` in `media` (JSON when `None`), answered in `accept`.
async fn send(
    unit: &TestUnit,
    method: &str,
    path: &str,
    token: &str,
    body: Option<(&str, String)>,
    accept: &str,
) -> TestReply {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("accept", accept)
        .header("authorization", format!("Bearer {token}"));
    let body = match body {
        Some((media, text)) => {
            request = request.header("content-type", media);
            Body::from(text)
        }
        None => Body::empty(),
    };
    unit.send(request.body(body).expect("a valid request"))
        .await
}

/// What a write must not have changed: the order as JSON, and the collections' counters.
async fn snapshot(unit: &TestUnit, order: &str) -> (String, i64, i64) {
    let store = unit.state().store();
    (
        unit.get(&format!("/orders/{order}"), ADMIN).await.body,
        store.current_version("orders").await.unwrap().get(),
        store.current_version("products").await.unwrap().get(),
    )
}

fn assert_refused(reply: &TestReply, code: &str, secret: &str, what: &str) {
    assert_eq!(reply.status, 400, "{what}: {}", reply.body);
    assert_eq!(reply.error_code(), code, "{what}: {}", reply.body);
    assert!(
        !reply.body.contains(secret),
        "{what}: the message echoes the value: {}",
        reply.body
    );
}

#[tokio::test]
async fn unrepresentable_characters_are_refused_on_every_input_path_and_change_nothing() {
    for backend in tests::kit_backends() {
        let unit = shop(&backend).await;
        let product = unit
            .post(
                "/products",
                ADMIN,
                r#"{"product": {"name": "Umbrella", "price": {"amount": "12.50", "currency": "EUR"}}}"#,
            )
            .await;
        assert_eq!(product.status, 201, "{}", product.body);
        let product = product.json()["id"].as_str().unwrap().to_owned();
        let session = unit.session("1");
        let order = unit
            .post(
                "/orders",
                Some(&session),
                &json!({"order": {"customer": "1", "lines": [{"product": product, "quantity": 2}]}})
                    .to_string(),
            )
            .await;
        assert_eq!(order.status, 201, "{}", order.body);
        let order = order.json()["id"].as_str().unwrap().to_owned();
        let before = snapshot(&unit, &order).await;

        let status_path = format!("/orders/{order}/status");
        let cancel_path = format!("/orders/{order}/cancel");
        // JSON: a NUL and a U+FFFE, in an aspect and in a command, by a session and the operator.
        for (character, token) in [("\\u0000", session.as_str()), ("\\ufffe", OPERATOR_TOKEN)] {
            let status = format!(r#"{{"status": "placed", "reason": "secret{character}"}}"#);
            let reply = send(
                &unit,
                "PUT",
                &status_path,
                token,
                Some(("application/json", status)),
                "application/json",
            )
            .await;
            assert_refused(&reply, "unrepresentable-character", "secret", "PUT status");
            let cancel = format!(r#"{{"reason": "secret{character}"}}"#);
            let reply = send(
                &unit,
                "POST",
                &cancel_path,
                token,
                Some(("application/json", cancel)),
                "application/json",
            )
            .await;
            assert_refused(&reply, "unrepresentable-character", "secret", "cancel");
            let product = format!(
                r#"{{"product": {{"name": "secret{character}", "price": {{"amount": "1.00", "currency": "EUR"}}}}}}"#
            );
            let reply = unit.post("/products", ADMIN, &product).await;
            assert_refused(&reply, "unrepresentable-character", "secret", "product");
        }
        // XML: as character references and raw, answered as well-formed XML error bodies.
        for (body, path) in [
            (
                "<status><status>placed</status><reason>secret&#x1;</reason></status>".to_owned(),
                &status_path,
            ),
            (
                "<status><status>placed</status><reason>secret\u{FFFE}</reason></status>"
                    .to_owned(),
                &status_path,
            ),
            (
                "<cancel><reason>secret&#xFFFF;</reason></cancel>".to_owned(),
                &cancel_path,
            ),
        ] {
            let method = if path == &status_path { "PUT" } else { "POST" };
            let reply = send(
                &unit,
                method,
                path,
                &session,
                Some((SHOP_XML, body.clone())),
                SHOP_XML,
            )
            .await;
            assert_eq!(reply.status, 400, "{body}: {}", reply.body);
            assert!(
                reply
                    .body
                    .contains("<code>unrepresentable-character</code>"),
                "{body}: {}",
                reply.body
            );
            well_formed_xml(reply.body.as_bytes()).unwrap();
        }
        // Money: more decimals than the currency has.
        for (amount, currency) in [("12.555", "EUR"), ("12.5", "JPY")] {
            let reply = unit
                .post(
                    "/products",
                    ADMIN,
                    &json!({"product": {"name": "Hat", "price": {"amount": amount, "currency": currency}}})
                        .to_string(),
                )
                .await;
            assert_refused(&reply, "too-many-decimals", amount, "price");
        }
        let reply = send(
            &unit,
            "POST",
            "/products",
            OPERATOR_TOKEN,
            Some((
                SHOP_XML,
                "<product><product><name>Hat</name><price><amount>1.005</amount>\
                 <currency>USD</currency></price></product></product>"
                    .to_owned(),
            )),
            SHOP_XML,
        )
        .await;
        assert_eq!(reply.status, 400, "{}", reply.body);
        assert!(
            reply.body.contains("<code>too-many-decimals</code>"),
            "{}",
            reply.body
        );
        assert!(!reply.body.contains("1.005"), "{}", reply.body);
        assert_eq!(snapshot(&unit, &order).await, before, "{backend:?}");
    }
}

#[tokio::test]
async fn data_stored_before_the_rule_answers_well_formed_xml() {
    for backend in tests::kit_backends() {
        let unit = shop(&backend).await;
        let product = unit
            .post(
                "/products",
                ADMIN,
                r#"{"product": {"name": "Umbrella", "price": {"amount": "12.50", "currency": "EUR"}}}"#,
            )
            .await;
        let product = product.json()["id"].as_str().unwrap().to_owned();
        let order = unit
            .post(
                "/orders",
                ADMIN,
                &json!({"order": {"customer": "1", "lines": [{"product": product, "quantity": 1}]}})
                    .to_string(),
            )
            .await;
        assert_eq!(order.status, 201, "{}", order.body);
        let order = order.json()["id"].as_str().unwrap().to_owned();
        // Business code writes past the edge: what an order held before the rule.
        let context = unit.context();
        let mut draft = context
            .read("orders", &ResourceId::parse(&order).unwrap())
            .await
            .unwrap()
            .expect("the order");
        let old_reason = "old\u{1}reason\u{1b}\u{FFFE}\u{FFFF}";
        draft
            .set("status", &json!({"status": "placed", "reason": old_reason}))
            .unwrap();
        context.update(draft).await.unwrap();

        let session = unit.session("1");
        for (path, token, media) in [
            (format!("/orders/{order}"), OPERATOR_TOKEN, SHOP_XML),
            (format!("/orders/{order}"), session.as_str(), SHOP_XML),
            ("/orders?version=0".to_owned(), OPERATOR_TOKEN, SHOP_XML),
            ("/customers/1".to_owned(), OPERATOR_TOKEN, REGISTRATION_XML),
            (
                "/customers?version=0".to_owned(),
                OPERATOR_TOKEN,
                REGISTRATION_XML,
            ),
        ] {
            let reply = send(&unit, "GET", &path, token, None, media).await;
            assert_eq!(reply.status, 200, "{path}: {}", reply.body);
            well_formed_xml(reply.body.as_bytes())
                .unwrap_or_else(|error| panic!("{path}: {error}: {:?}", reply.body));
            assert!(reply.body.contains('\u{FFFD}'), "{path}: {}", reply.body);
        }
        // An error body whose message names what the client sent (a selector with controls).
        let reply = send(
            &unit,
            "GET",
            &format!("/orders/{order}?aspects=~st%01atus%00"),
            OPERATOR_TOKEN,
            None,
            SHOP_XML,
        )
        .await;
        assert_eq!(reply.status, 400, "{}", reply.body);
        well_formed_xml(reply.body.as_bytes()).unwrap();
        // JSON still carries what is stored, character for character: nothing was rewritten.
        let stored: Value = unit.get(&format!("/orders/{order}"), ADMIN).await.json();
        assert_eq!(stored["status"]["reason"], json!(old_reason), "{backend:?}");
        // A registration answer in XML of such a customer too (v1 shows the person's facade).
        let registration = TestUnit::start(registration::service_area(), &backend)
            .await
            .expect("registration starts");
        let mut customer = hiscale::Draft::new("customers");
        customer
            .set(
                "person",
                &json!({"type": "natural", "given_name": "A\u{2}", "family_name": "B\u{FFFE}"}),
            )
            .unwrap();
        let customer = registration.context().create(customer).await.unwrap();
        let id = customer.id().unwrap().as_str().to_owned();
        for accept in [REGISTRATION_XML, "application/vnd.registration.v2+xml"] {
            let reply = send(
                &registration,
                "GET",
                &format!("/customers/{id}"),
                OPERATOR_TOKEN,
                None,
                accept,
            )
            .await;
            assert_eq!(reply.status, 200, "{accept}: {}", reply.body);
            well_formed_xml(reply.body.as_bytes()).unwrap();
        }
    }
}

#[tokio::test]
async fn a_birthdate_before_1900_or_in_the_future_is_refused() {
    for backend in tests::kit_backends() {
        let unit = TestUnit::start(registration::service_area(), &backend)
            .await
            .expect("registration starts");
        let person = |birthdate: &str| {
            json!({"person": {"type": "natural", "given_name": "Olga", "family_name": "Wronka",
                "birthdate": birthdate}})
            .to_string()
        };
        let versions = unit
            .state()
            .store()
            .current_version("customers")
            .await
            .unwrap();
        for birthdate in ["0000-01-01", "1899-12-31", "9999-12-31"] {
            let reply = unit.post("/v2/customers", ADMIN, &person(birthdate)).await;
            assert_refused(&reply, "invalid-birthdate", birthdate, birthdate);
        }
        let after = unit
            .state()
            .store()
            .current_version("customers")
            .await
            .unwrap();
        assert_eq!(after, versions, "{backend:?}");
        // Signing up (anonymous) goes through the same parser: a NUL in a name is refused.
        let sign_up = json!({"person": {"type": "natural", "given_name": "Olga",
            "family_name": "Wron\u{0}ka"}});
        let reply = unit.post("/v2/customers", None, &sign_up.to_string()).await;
        assert_refused(&reply, "unrepresentable-character", "Wron", "sign-up");
        let after = unit
            .state()
            .store()
            .current_version("customers")
            .await
            .unwrap();
        assert_eq!(after, versions, "{backend:?}");
        let reply = unit
            .post("/v2/customers", ADMIN, &person("1900-01-01"))
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
}

/// A copy applies an older owner's chunk whose documents hold NUL (which no PostgreSQL store
/// can hold) and control characters: it stores it on both backends, the NUL as U+FFFD, and
/// answers it as well-formed XML.
#[tokio::test]
async fn a_copy_applies_an_older_owners_chunk_and_answers_well_formed_xml() {
    for backend in tests::kit_backends() {
        let unit = TestUnit::start(shop::service_area(), &backend)
            .await
            .expect("shop starts");
        let chunk = json!({"version": 3, "more": false, "items": [{
            "id": "3", "version": 3,
            "person": {"version": 3, "type": "nat\u{0}ural", "firstname": "A\u{0}\u{1}",
                "lastname": "B\u{FFFE}"},
            "addresses": {"home": {"version": 3, "street": "S\u{0}", "zip": "1", "city": "C"}}
        }]});
        let sa = shop::service_area();
        let customers = sa.collection("customers").expect("shop copies customers");
        let parsed = hiscale::repr::parse_feed(chunk.to_string().as_bytes(), customers)
            .expect("a feed chunk");
        let items = hiscale::poller::chunk_items(customers, &parsed);
        let store = unit.state().store();
        let cursor = store.cursor("customers").await.unwrap().max(parsed.version);
        store
            .apply_chunk("customers", &items, cursor)
            .await
            .unwrap_or_else(|error| panic!("{backend:?}: {error}"));
        for path in ["/customers/3", "/customers?version=0"] {
            let reply = send(&unit, "GET", path, OPERATOR_TOKEN, None, REGISTRATION_XML).await;
            assert_eq!(reply.status, 200, "{path}: {}", reply.body);
            well_formed_xml(reply.body.as_bytes())
                .unwrap_or_else(|error| panic!("{path}: {error}: {:?}", reply.body));
        }
        let stored = unit.get("/customers/3", ADMIN).await.json();
        assert_eq!(
            stored["person"]["firstname"],
            json!("A\u{FFFD}\u{1}"),
            "{backend:?}"
        );
    }
}
