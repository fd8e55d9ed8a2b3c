//! Shop's orders and billing's invoices, in process on both backends, through the framework's
//! test kit: typed fields, the pricing rule, lookups, the cancel command with `If-Match`,
//! sessions by ownership (probed in every collection of both SAs) and deny by default.

use hiscale::testing::{OPERATOR_TOKEN, TestBackend, TestReply, TestUnit};
use serde_json::{Value, json};

const ADMIN: Option<&str> = Some(OPERATOR_TOKEN);
const SHOP_SESSIONS: &str = "~person~address.home~product~order~status";
const BILLING_SESSIONS: &str = "~person~address.bill~bankaccount~invoice~order~status";

async fn shop(backend: &TestBackend) -> TestUnit {
    let unit = TestUnit::start_with(shop::service_area(), backend, |config| {
        config.sessions.grant = Some(SHOP_SESSIONS.into());
    })
    .await
    .expect("shop starts");
    for id in ["1", "2"] {
        unit.seed_copy(
            "customers",
            id,
            id.parse().unwrap(),
            &[
                (
                    "person",
                    json!({"type": "natural", "firstname": "F", "lastname": id}),
                ),
                (
                    "address.home",
                    json!({"street": "S", "zip": "12345", "city": "C"}),
                ),
            ],
        )
        .await
        .expect("seed a customer");
    }
    unit
}

async fn product(unit: &TestUnit, name: &str, amount: &str) -> String {
    let created = unit
        .post(
            "/products",
            ADMIN,
            &json!({"product": {"name": name, "price": {"amount": amount, "currency": "EUR"}}})
                .to_string(),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.json()["id"].as_str().unwrap().to_owned()
}

fn order_body(customer: &str, lines: &[(&str, i64)]) -> String {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(product, quantity)| json!({"product": product, "quantity": quantity}))
        .collect();
    json!({"order": {"customer": customer, "lines": lines}}).to_string()
}

async fn shop_version(unit: &TestUnit, collection: &str) -> i64 {
    unit.state()
        .store()
        .current_version(collection)
        .await
        .unwrap()
        .get()
}

fn ids(reply: &TestReply) -> Vec<String> {
    reply.json()["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {}", reply.body))
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_session_places_lists_and_cancels_its_own_orders_priced_from_the_catalogue() {
    for backend in tests::kit_backends() {
        let unit = shop(&backend).await;
        let umbrella = product(&unit, "Umbrella", "12.50").await;
        let tea = product(&unit, "Tea", "3.20").await;
        let mine = unit.session("1");
        let theirs = unit.session("2");

        // The customer comes from the session, the prices from the catalogue.
        let placed = unit
            .post(
                "/orders",
                Some(&mine),
                &order_body("2", &[(&umbrella, 2), (&tea, 1)]),
            )
            .await;
        assert_eq!(placed.status, 201, "{backend:?}: {}", placed.body);
        let order = &placed.json()["order"];
        assert_eq!(order["customer"], "1", "{}", placed.body);
        assert_eq!(
            order["lines"][0]["unit_price"],
            json!({"amount": "12.50", "currency": "EUR"})
        );
        assert_eq!(order["lines"][0]["quantity"], 2);
        assert_eq!(
            order["total"],
            json!({"amount": "28.20", "currency": "EUR"})
        );
        assert_eq!(placed.json()["status"]["status"], "placed");
        let id = placed.json()["id"].as_str().unwrap().to_owned();

        // Bad input changes nothing: a forged price, an unknown product, a bad quantity.
        let before = shop_version(&unit, "orders").await;
        for (body, code) in [
            (
                json!({"order": {"lines": [{"product": umbrella, "quantity": 1, "unit_price": {"amount": "0.01", "currency": "EUR"}}]}}).to_string(),
                "invalid-aspect",
            ),
            (order_body("1", &[("999", 1)]), "unknown-product"),
            (order_body("1", &[(&umbrella, 0)]), "invalid-order"),
            (
                json!({"order": {"lines": [{"product": umbrella, "quantity": "two"}]}}).to_string(),
                "invalid-field",
            ),
            (
                json!({"order": {"lines": [{"product": umbrella, "quantity": 1}]}, "status": {"status": "cancelled"}}).to_string(),
                "invalid-order",
            ),
        ] {
            let refused = unit.post("/orders", Some(&mine), &body).await;
            assert_eq!(
                (refused.status.as_u16(), refused.error_code().as_str()),
                (400, code),
                "{backend:?} {body}: {}",
                refused.body
            );
        }
        let unknown_customer = unit
            .post("/orders", ADMIN, &order_body("77", &[(&tea, 1)]))
            .await;
        assert_eq!(unknown_customer.error_code(), "unknown-customer");
        assert_eq!(shop_version(&unit, "orders").await, before, "{backend:?}");

        // Lookups: by customer for peers and the operator; a session lists its own.
        let by_customer = unit.get("/orders?customer=1", ADMIN).await;
        assert_eq!(ids(&by_customer), vec![id.clone()], "{}", by_customer.body);
        assert!(ids(&unit.get("/orders?customer=2", ADMIN).await).is_empty());
        assert_eq!(
            ids(&unit.get("/orders", Some(&mine)).await),
            vec![id.clone()]
        );
        assert!(ids(&unit.get("/orders", Some(&theirs)).await).is_empty());
        assert!(ids(&unit.get("/orders?customer=1", Some(&theirs)).await).is_empty());

        // Another customer's order looks missing, for reading and for the command alike.
        let foreign = unit.get(&format!("/orders/{id}"), Some(&theirs)).await;
        assert_eq!(
            (foreign.status.as_u16(), foreign.error_code().as_str()),
            (404, "not-found")
        );
        let foreign_cancel = unit
            .call("POST", &format!("/orders/{id}/cancel"), Some(&theirs), None)
            .await;
        assert_eq!(foreign_cancel.status, 404, "{}", foreign_cancel.body);

        // The command honours If-Match, takes one version, and a cancelled order stays so.
        let etag = unit
            .get(&format!("/orders/{id}"), Some(&mine))
            .await
            .headers["etag"]
            .to_str()
            .unwrap()
            .to_owned();
        let stale = unit
            .send(
                axum::http::Request::post(format!("/orders/{id}/cancel"))
                    .header("authorization", format!("Bearer {mine}"))
                    .header("if-match", "\"999\"")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(stale.status, 412, "{}", stale.body);
        let cancelled = unit
            .send(
                axum::http::Request::post(format!("/orders/{id}/cancel"))
                    .header("authorization", format!("Bearer {mine}"))
                    .header("accept", "application/json")
                    .header("content-type", "application/json")
                    .header("if-match", etag.as_str())
                    .body(axum::body::Body::from(r#"{"reason":"too expensive"}"#))
                    .unwrap(),
            )
            .await;
        assert_eq!(cancelled.status, 200, "{}", cancelled.body);
        assert_eq!(cancelled.json()["status"]["status"], "cancelled");
        assert_eq!(cancelled.json()["status"]["reason"], "too expensive");
        let next: i64 = tests::etag_version(&etag).unwrap();
        assert!(cancelled.json()["version"].as_i64().unwrap() > next);
        let again = unit
            .call("POST", &format!("/orders/{id}/cancel"), Some(&mine), None)
            .await;
        assert_eq!(
            (again.status.as_u16(), again.error_code().as_str()),
            (409, "order-cancelled")
        );
        let back = unit
            .call(
                "PUT",
                &format!("/orders/{id}/status"),
                ADMIN,
                Some(r#"{"status":"placed"}"#),
            )
            .await;
        assert_eq!(back.error_code(), "order-cancelled", "{}", back.body);
        let unknown = unit
            .call("POST", &format!("/orders/{id}/refund"), ADMIN, None)
            .await;
        assert_eq!(
            (unknown.status.as_u16(), unknown.error_code().as_str()),
            (404, "unknown-command")
        );

        // Every session reads the catalogue and none writes it.
        assert_eq!(ids(&unit.get("/products", Some(&theirs)).await).len(), 2);
        let write = unit
            .post(
                "/products",
                Some(&mine),
                r#"{"product":{"name":"X","price":{"amount":"1.00","currency":"EUR"}}}"#,
            )
            .await;
        assert_eq!(write.status, 403, "{}", write.body);

        // Its own customer at shop, nobody else's.
        assert_eq!(unit.get("/customers/1", Some(&mine)).await.status, 200);
        assert_eq!(unit.get("/customers/2", Some(&mine)).await.status, 404);
    }
}

#[tokio::test]
async fn lookups_page_by_id_with_a_link_to_the_next_page() {
    for backend in tests::kit_backends() {
        let unit = shop(&backend).await;
        let tea = product(&unit, "Tea", "3.20").await;
        let mut placed = Vec::new();
        for _ in 0..5 {
            let order = unit
                .post("/orders", ADMIN, &order_body("1", &[(&tea, 1)]))
                .await;
            placed.push(order.json()["id"].as_str().unwrap().to_owned());
        }
        unit.post("/orders", ADMIN, &order_body("2", &[(&tea, 1)]))
            .await;
        let mut seen = Vec::new();
        let mut path = "/orders?customer=1&limit=2".to_owned();
        for _ in 0..5 {
            let page = unit.get(&path, ADMIN).await;
            assert_eq!(page.status, 200, "{}", page.body);
            seen.extend(ids(&page));
            let Some(link) = page.headers.get("link") else {
                assert_eq!(page.json()["more"], false);
                break;
            };
            assert_eq!(page.json()["more"], true);
            let link = link.to_str().unwrap();
            path = link[link.find('<').unwrap() + 1..link.find('>').unwrap()].to_owned();
        }
        placed.sort();
        assert_eq!(seen, placed, "{backend:?}");
        let bad = unit.get("/orders?customer=1&after=x!", ADMIN).await;
        assert_eq!(bad.error_code(), "bad-cursor");
        let two = unit.get("/orders?customer=1&status=placed", ADMIN).await;
        assert_eq!(two.error_code(), "unknown-parameter", "{}", two.body);
    }
}

#[tokio::test]
async fn an_sa_without_a_session_grant_shows_sessions_nothing() {
    for backend in tests::kit_backends() {
        let unit = TestUnit::start(shop::service_area(), &backend)
            .await
            .unwrap();
        unit.seed_copy(
            "customers",
            "1",
            1,
            &[(
                "person",
                json!({"type": "natural", "firstname": "F", "lastname": "L"}),
            )],
        )
        .await
        .unwrap();
        let session = unit.session("1");
        for path in ["/customers/1", "/orders", "/products", "/orders/1"] {
            let answer = unit.get(path, Some(&session)).await;
            assert_eq!(
                (answer.status.as_u16(), answer.error_code().as_str()),
                (403, "nothing-granted"),
                "{backend:?} {path}: {}",
                answer.body
            );
        }
    }
}

/// Billing invoices an order from its copy and nothing flows back, so a placed order's lines
/// are frozen: changing them answers `409 order-placed` and stores nothing (session or
/// operator, lines or customer); the same lines again are no change and keep the prices
/// of when it was placed; its status still moves, and a cancelled order stays frozen.
#[tokio::test]
async fn a_placed_orders_lines_and_prices_do_not_change_only_its_status() {
    for backend in tests::kit_backends() {
        let unit = shop(&backend).await;
        let umbrella = product(&unit, "Umbrella", "12.50").await;
        let tea = product(&unit, "Tea", "3.20").await;
        let mine = unit.session("1");
        let placed = unit
            .post("/orders", Some(&mine), &order_body("1", &[(&umbrella, 1)]))
            .await;
        assert_eq!(placed.status, 201, "{backend:?}: {}", placed.body);
        let id = placed.json()["id"].as_str().unwrap().to_owned();
        let total = placed.json()["order"]["total"].clone();

        let before = shop_version(&unit, "orders").await;
        let lines = |lines: &[(&str, i64)]| {
            let body: Value = serde_json::from_str(&order_body("1", lines)).unwrap();
            body["order"].to_string()
        };
        for (token, path, body) in [
            (
                Some(mine.as_str()),
                format!("/orders/{id}/order"),
                lines(&[(&umbrella, 99)]),
            ),
            (
                ADMIN,
                format!("/orders/{id}/order"),
                lines(&[(&umbrella, 1), (&tea, 1)]),
            ),
            (
                ADMIN,
                format!("/orders/{id}/order"),
                json!({"customer": "2", "lines": [{"product": umbrella, "quantity": 1}]})
                    .to_string(),
            ),
        ] {
            let refused = unit.call("PUT", &path, token, Some(&body)).await;
            assert_eq!(
                (refused.status.as_u16(), refused.error_code().as_str()),
                (409, "order-placed"),
                "{backend:?} {path} {body}: {}",
                refused.body
            );
        }
        assert_eq!(shop_version(&unit, "orders").await, before, "{backend:?}");

        // The catalogue's price moves; the same lines again keep the price the order was placed at.
        let repriced = unit
            .call(
                "PUT",
                &format!("/products/{umbrella}/product"),
                ADMIN,
                Some(r#"{"name":"Umbrella","price":{"amount":"99.00","currency":"EUR"}}"#),
            )
            .await;
        assert_eq!(repriced.status, 200, "{}", repriced.body);
        let repeated = unit
            .call(
                "PUT",
                &format!("/orders/{id}/order"),
                Some(&mine),
                Some(&lines(&[(&umbrella, 1)])),
            )
            .await;
        assert_eq!(repeated.status, 200, "{backend:?}: {}", repeated.body);
        assert_eq!(
            repeated.json()["order"]["total"],
            total,
            "{}",
            repeated.body
        );

        // The status moves: a reason on the placed order, then the cancellation, then frozen.
        let noted = unit
            .call(
                "PUT",
                &format!("/orders/{id}/status"),
                Some(&mine),
                Some(r#"{"status":"placed","reason":"gift wrap"}"#),
            )
            .await;
        assert_eq!(noted.status, 200, "{backend:?}: {}", noted.body);
        let cancelled = unit
            .call("POST", &format!("/orders/{id}/cancel"), Some(&mine), None)
            .await;
        assert_eq!(cancelled.status, 200, "{backend:?}: {}", cancelled.body);
        let after_cancel = unit
            .call(
                "PUT",
                &format!("/orders/{id}/order"),
                Some(&mine),
                Some(&lines(&[(&umbrella, 1)])),
            )
            .await;
        assert_eq!(
            after_cancel.error_code(),
            "order-cancelled",
            "{}",
            after_cancel.body
        );
    }
}

#[tokio::test]
async fn billing_invoices_each_order_once_and_voids_cancelled_ones_and_sessions_see_their_own() {
    for backend in tests::kit_backends() {
        let shop = shop(&backend).await;
        let tea = product(&shop, "Tea", "3.20").await;
        let billing = TestUnit::start_with(billing::service_area(), &backend, |config| {
            config.sessions.grant = Some(BILLING_SESSIONS.into());
        })
        .await
        .unwrap();
        let mut orders = Vec::new();
        for customer in ["1", "2", "1"] {
            let placed = shop
                .post("/orders", ADMIN, &order_body(customer, &[(&tea, 3)]))
                .await;
            orders.push(placed.json());
        }
        let cancelled = orders[2]["id"].as_str().unwrap().to_owned();
        let answer = shop
            .call("POST", &format!("/orders/{cancelled}/cancel"), ADMIN, None)
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        // Billing's copy gets shop's documents as they are (what its poller would apply).
        for order in &orders {
            let id = order["id"].as_str().unwrap();
            let current = shop.get(&format!("/orders/{id}"), ADMIN).await.json();
            let strip = |mut value: Value| {
                value.as_object_mut().unwrap().shift_remove("version");
                value
            };
            billing
                .seed_copy(
                    "orders",
                    id,
                    current["version"].as_i64().unwrap(),
                    &[
                        ("order", strip(current["order"].clone())),
                        ("status", strip(current["status"].clone())),
                    ],
                )
                .await
                .unwrap();
            // The copy serves the typed documents unchanged.
            let copied = billing.get(&format!("/orders/{id}"), ADMIN).await.json();
            assert_eq!(
                copied["order"].to_string(),
                strip(current["order"].clone()).to_string().replacen(
                    '{',
                    &format!("{{\"version\":{},", current["version"]),
                    1
                ),
                "{backend:?}"
            );
        }
        assert_eq!(billing.run_jobs_once().await.unwrap(), 3);
        // Handled again (a batch unit killed before it recorded its position): no second invoice.
        billing
            .state()
            .store()
            .advance_job("invoice_orders", hiscale::Version::ZERO)
            .await
            .unwrap();
        let invoices = billing.get("/invoices?version=0", ADMIN).await;
        assert_eq!(ids(&invoices).len(), 3, "{}", invoices.body);
        for invoice in invoices.json()["items"].as_array().unwrap() {
            let order = invoice["invoice"]["order"].as_str().unwrap();
            let expected = if order == cancelled { "void" } else { "open" };
            assert_eq!(invoice["invoice"]["status"], expected, "{invoice}");
            assert_eq!(
                invoice["invoice"]["total"],
                json!({"amount": "9.60", "currency": "EUR"})
            );
        }

        // A session sees its own invoices and orders at billing, nobody else's.
        let mine = billing.session("1");
        let own = billing.get("/invoices", Some(&mine)).await;
        assert_eq!(ids(&own).len(), 2, "{}", own.body);
        let theirs: Vec<String> = ids(&invoices)
            .into_iter()
            .filter(|id| !ids(&own).contains(id))
            .collect();
        let foreign = billing
            .get(&format!("/invoices/{}", theirs[0]), Some(&mine))
            .await;
        assert_eq!(foreign.status, 404, "{}", foreign.body);
        assert_eq!(ids(&billing.get("/orders", Some(&mine)).await).len(), 2);
        let write = billing
            .post("/invoices", Some(&mine), r#"{"invoice":{}}"#)
            .await;
        assert_eq!(write.status, 403, "{}", write.body);
    }
}
