//! Typed aspect fields end to end: one order written in XML reads the same in JSON and back,
//! bad typed input is refused with stable codes before anything is stored, a copy that knows
//! no types serves what the owner serves, and the OpenAPI document's examples are accepted.

use axum::body::Body;
use axum::http::StatusCode;
use serde_json::{Value, json};

use tests::typed_sa::{self, example_order};
use tests::{ADMIN, Backend, Reply, TestApp, both_backends, request};

const TYPED_XML: &str = "application/vnd.typed.v1+xml";
const TYPED_JSON: &str = "application/vnd.typed.v1+json";

/// The example order as a client might write it by hand: indented, an offset timestamp,
/// attributes for `status` and `count`, blanks around a number, an empty list as `<tags/>`.
const HAND_WRITTEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<thing>
  <order status="on_hold" count="3">
    <title>Spring &lt;order&gt; &amp; more</title>
    <weight>1.250</weight>
    <total><amount>27.50</amount><currency>EUR</currency></total>
    <paid>false</paid>
    <due>2026-03-01</due>
    <created>2026-02-27T10:15:00.500+01:00</created>
    <lines>
      <line><sku>A-1</sku><quantity> 2 </quantity><price><amount>10.00</amount><currency>EUR</currency></price></line>
      <line>
        <sku>B-2</sku>
        <quantity>1</quantity>
        <price><amount>7.50</amount><currency>EUR</currency></price>
      </line>
    </lines>
    <tags/>
    <note></note>
    <discount>0.00</discount>
    <priority>-1</priority>
  </order>
  <label><text>fragile</text></label>
</thing>"#;

async fn post(app: &TestApp, media: &str, body: String) -> Reply {
    app.send(
        request("POST", "/things")
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("content-type", media)
            .header("accept", TYPED_JSON)
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

async fn get(app: &TestApp, path: &str, media: &str) -> Reply {
    let reply = app
        .send(
            request("GET", path)
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("accept", media)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
    reply
}

async fn created(app: &TestApp, media: &str, body: String) -> String {
    let reply = post(app, media, body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.json()["id"].as_str().unwrap().to_owned()
}

/// An aspect of a JSON resource without its version.
fn fields(resource: &Value, aspect: &str) -> Value {
    let mut value = resource[aspect].clone();
    value.as_object_mut().unwrap().remove("version");
    value
}

/// An XML resource as a client writes it back: without `<version>` and `<id>` elements.
fn writable(xml: &str) -> String {
    let mut out = String::new();
    let mut rest = xml;
    while let Some(start) = rest.find(['<']) {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let skip = ["<version>", "<id>"]
            .iter()
            .find(|tag| rest.starts_with(**tag))
            .map(|tag| format!("</{}", &tag[1..]));
        match skip {
            Some(end) => {
                let close = rest.find(&end).unwrap() + end.len();
                rest = &rest[close..];
            }
            None => {
                out.push('<');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

async fn version_of(app: &TestApp) -> i64 {
    app.state
        .store()
        .current_version("things")
        .await
        .unwrap()
        .get()
}

both_backends!(typed_xml_and_json_read_the_same, |backend| async move {
    let app = typed_sa::start(backend, typed_sa::service_area()).await;
    let expected = example_order();

    // JSON in, JSON out: every type as written.
    let body = json!({"order": expected, "label": {"text": "fragile"}}).to_string();
    let from_json = created(&app, TYPED_JSON, body).await;
    let read = get(&app, &format!("/things/{from_json}"), TYPED_JSON).await;
    assert_eq!(fields(&read.json(), "order"), expected);

    // Rendered as XML, that document is accepted as XML and reads the same again.
    let xml = get(&app, &format!("/things/{from_json}"), TYPED_XML)
        .await
        .body;
    assert!(
        xml.contains(r#"<order count="3" status="on_hold">"#),
        "{xml}"
    );
    assert!(
        xml.contains("<lines><line><sku>A-1</sku><quantity>2</quantity>"),
        "{xml}"
    );
    assert!(xml.contains("<tags></tags>"), "{xml}");
    let from_xml = created(&app, TYPED_XML, writable(&xml)).await;
    let again = get(&app, &format!("/things/{from_xml}"), TYPED_JSON).await;
    assert_eq!(fields(&again.json(), "order"), expected);
    let xml_again = get(&app, &format!("/things/{from_xml}"), TYPED_XML)
        .await
        .body;
    assert_eq!(writable(&xml_again), writable(&xml), "XML round trip");

    // A hand-written XML order (offset timestamp, blanks, `<tags/>`) means the same values.
    let by_hand = created(&app, TYPED_XML, HAND_WRITTEN.to_owned()).await;
    let read = get(&app, &format!("/things/{by_hand}"), TYPED_JSON).await;
    assert_eq!(fields(&read.json(), "order"), expected);
    assert_eq!(fields(&read.json(), "label"), json!({"text": "fragile"}));

    // Optional fields left out stay out, in both formats.
    let mut sparse = expected.clone();
    for optional in ["note", "discount", "priority", "tags"] {
        sparse.as_object_mut().unwrap().remove(optional);
    }
    let id = created(&app, TYPED_JSON, json!({"order": sparse}).to_string()).await;
    let xml = get(&app, &format!("/things/{id}"), TYPED_XML).await.body;
    assert!(
        !xml.contains("<note>") && !xml.contains("<discount>"),
        "{xml}"
    );
    let id = created(&app, TYPED_XML, writable(&xml)).await;
    let read = get(&app, &format!("/things/{id}"), TYPED_JSON).await;
    sparse["tags"] = json!([]);
    assert_eq!(fields(&read.json(), "order"), sparse);
});

both_backends!(
    typed_aspects_are_replaced_one_by_one,
    |backend| async move {
        let app = typed_sa::start(backend, typed_sa::service_area()).await;
        let id = created(&app, TYPED_XML, HAND_WRITTEN.to_owned()).await;
        let put = |aspect: &str, media: &str, body: String| {
            request("PUT", &format!("/things/{id}/{aspect}"))
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("content-type", media)
                .header("accept", TYPED_JSON)
                .body(Body::from(body))
                .unwrap()
        };
        let mut order = example_order();
        order["status"] = json!("shipped");
        order["paid"] = json!(true);
        let reply = app.send(put("order", TYPED_JSON, order.to_string())).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(fields(&reply.json(), "order"), order);
        let label = r#"<label><text>handle with care</text></label>"#;
        let reply = app.send(put("label", TYPED_XML, label.to_owned())).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let read = get(&app, &format!("/things/{id}"), TYPED_JSON).await.json();
        assert_eq!(fields(&read, "order"), order);
        assert_eq!(fields(&read, "label"), json!({"text": "handle with care"}));
        // XML of a typed aspect (needs `repr::parse_aspect_of` in `put_aspect`).
        let xml = get(&app, &format!("/things/{id}"), TYPED_XML).await.body;
        let start = xml.find("<order").unwrap();
        let end = xml.find("</order>").unwrap() + "</order>".len();
        let aspect = writable(&xml[start..end]).replace("shipped", "draft");
        let reply = app.send(put("order", TYPED_XML, aspect.clone())).await;
        assert_eq!(reply.status, StatusCode::OK, "{aspect}: {}", reply.body);
        order["status"] = json!("draft");
        assert_eq!(fields(&reply.json(), "order"), order);
    }
);

both_backends!(
    typed_bad_input_is_refused_and_stores_nothing,
    |backend| async move {
        let app = typed_sa::start(backend, typed_sa::service_area()).await;
        let before = version_of(&app).await;
        let with = |field: &str, value: Value| {
            let mut order = example_order();
            order[field] = value;
            json!({ "order": order }).to_string()
        };
        let xml_with = |from: &str, to: &str| {
            assert!(HAND_WRITTEN.contains(from), "{from}");
            HAND_WRITTEN.replacen(from, to, 1)
        };
        let many_tags = json!({"order": {"tags": vec!["x"; 2_500]}}).to_string();
        let cases: Vec<(&str, &str, String, &str, &str)> = vec![
            // (what, media, body, code, a word the message must hold)
            (
                "integer as text (XML)",
                TYPED_XML,
                xml_with("<quantity> 2 </quantity>", "<quantity>x</quantity>"),
                "invalid-field",
                "lines[0].quantity",
            ),
            (
                "integer attribute as text",
                TYPED_XML,
                xml_with(r#"count="3""#, r#"count="three""#),
                "invalid-field",
                "count",
            ),
            (
                "integer as a JSON string",
                TYPED_JSON,
                with("count", json!("3")),
                "invalid-field",
                "count",
            ),
            (
                "decimal as a JSON number",
                TYPED_JSON,
                with("weight", json!(1.5)),
                "invalid-field",
                "weight",
            ),
            (
                "decimal with an exponent",
                TYPED_JSON,
                with("weight", json!("1e3")),
                "invalid-aspect",
                "weight",
            ),
            (
                "money amount as a JSON number",
                TYPED_JSON,
                with("total", json!({"amount": 27.5, "currency": "EUR"})),
                "invalid-field",
                "total.amount",
            ),
            (
                "lower-case currency",
                TYPED_JSON,
                with("total", json!({"amount": "27.50", "currency": "eur"})),
                "invalid-aspect",
                "total.currency",
            ),
            (
                "date off the calendar (JSON)",
                TYPED_JSON,
                with("due", json!("2026-02-30")),
                "invalid-aspect",
                "due",
            ),
            (
                "date off the calendar (XML)",
                TYPED_XML,
                xml_with("2026-03-01", "2026-02-30"),
                "invalid-aspect",
                "due",
            ),
            (
                "timestamp without offset",
                TYPED_JSON,
                with("created", json!("2026-02-27T09:15:00")),
                "invalid-aspect",
                "created",
            ),
            (
                "unknown enum value (JSON)",
                TYPED_JSON,
                with("status", json!("lost")),
                "invalid-aspect",
                "status",
            ),
            (
                "unknown enum value (XML)",
                TYPED_XML,
                xml_with("on_hold", "OnHold"),
                "invalid-aspect",
                "status",
            ),
            (
                "boolean as yes",
                TYPED_XML,
                xml_with("<paid>false</paid>", "<paid>yes</paid>"),
                "invalid-field",
                "paid",
            ),
            (
                "boolean as a JSON string",
                TYPED_JSON,
                with("paid", json!("false")),
                "invalid-field",
                "paid",
            ),
            (
                "wrong list child element",
                TYPED_XML,
                xml_with("<line><sku>A-1", "<item><sku>A-1").replacen(
                    "</price></line>",
                    "</price></item>",
                    1,
                ),
                "invalid-field",
                "<line>",
            ),
            (
                "text in a list",
                TYPED_XML,
                xml_with("<tags/>", "<tags>a, b</tags>"),
                "invalid-field",
                "tags",
            ),
            (
                "a record field twice",
                TYPED_XML,
                xml_with(
                    "<currency>EUR</currency></total>",
                    "<currency>EUR</currency><currency>USD</currency></total>",
                ),
                "duplicate-field",
                "currency",
            ),
            (
                "a list as an object (JSON)",
                TYPED_JSON,
                with("lines", json!({"line": []})),
                "invalid-field",
                "lines",
            ),
            (
                "an unknown field in a line",
                TYPED_JSON,
                with(
                    "lines",
                    json!([{"sku": "A", "quantity": 1, "price": {"amount": "1", "currency": "EUR"}, "colour": "red"}]),
                ),
                "invalid-aspect",
                "colour",
            ),
            (
                "a business rule",
                TYPED_JSON,
                with("total", json!({"amount": "27.51", "currency": "EUR"})),
                typed_sa::TOTAL_MISMATCH,
                "27.50 EUR",
            ),
            (
                "too many JSON values",
                TYPED_JSON,
                many_tags,
                "json-too-large",
                "values",
            ),
        ];
        for (what, media, body, code, word) in cases {
            let reply = post(&app, media, body).await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{what}: {}",
                reply.body
            );
            assert_eq!(reply.error_code(), code, "{what}: {}", reply.body);
            assert!(
                reply.body.contains(word),
                "{what}: {word} not in {}",
                reply.body
            );
        }
        assert_eq!(version_of(&app).await, before, "nothing was stored");
        assert_eq!(
            app.state.store().count_resources("things").await.unwrap(),
            0
        );
    }
);

both_backends!(
    typed_copy_serves_what_the_owner_serves,
    |backend: Backend| async move {
        let owner = typed_sa::start(backend, typed_sa::service_area()).await;
        let first = created(&owner, TYPED_XML, HAND_WRITTEN.to_owned()).await;
        let body = json!({"order": example_order()}).to_string();
        let second = created(&owner, TYPED_JSON, body).await;
        let feed = get(&owner, "/things?version=0", TYPED_JSON).await;

        let copy = typed_sa::start(backend, typed_sa::copy_area()).await;
        let collection = typed_sa::copy_area().copied()[0].clone();
        let chunk = hiscale::repr::parse_feed(feed.body.as_bytes(), &collection).unwrap();
        let items = hiscale::poller::chunk_items(&collection, &chunk);
        assert_eq!(items.len(), 2);
        copy.state
            .store()
            .apply_chunk("things", &items, chunk.version)
            .await
            .unwrap();

        for id in [&first, &second] {
            for media in [TYPED_XML, TYPED_JSON] {
                let path = format!("/things/{id}");
                let (at_owner, at_copy) = (
                    get(&owner, &path, media).await,
                    get(&copy, &path, media).await,
                );
                assert_eq!(at_copy.body, at_owner.body, "{path} as {media}");
                assert_eq!(at_copy.header("etag"), at_owner.header("etag"));
                assert_eq!(
                    at_copy.header("content-type"),
                    at_owner.header("content-type")
                );
            }
        }
        let copy_feed = get(&copy, "/things?version=0", TYPED_JSON).await;
        assert_eq!(copy_feed.json(), feed.json(), "the copy's feed");
        let xml_feed = get(&copy, "/things?version=0", TYPED_XML).await;
        assert_eq!(
            xml_feed.body,
            get(&owner, "/things?version=0", TYPED_XML).await.body
        );
    }
);

both_backends!(
    typed_openapi_examples_are_accepted,
    |backend: Backend| async move {
        for (sa, start) in [
            (typed_sa::service_area(), "typed"),
            (registration::service_area(), "registration"),
        ] {
            let probe = typed_sa::start(backend, sa.clone()).await;
            let document = get(&probe, "/openapi.json", "application/json")
                .await
                .json();
            assert_no_dangling_refs(&document, start);
            let mut posted = 0;
            for (path, item) in document["paths"].as_object().unwrap() {
                let Some(content) = item["post"]["requestBody"]["content"].as_object() else {
                    continue;
                };
                for (media, body) in content {
                    let example = &body["example"];
                    assert!(!example.is_null(), "{start} {path} {media} has no example");
                    // The XML example is the XML side's object, written as the schema's `xml`
                    // descriptions say (as a generated client writes it).
                    let text = if media.ends_with("+xml") {
                        hiscale::testing::xml_as_described(example, &body["schema"])
                    } else {
                        example.to_string()
                    };
                    // A fresh store each time: the examples may hold unique values (a login).
                    let app = typed_sa::start(backend, sa.clone()).await;
                    let reply = app
                        .send(
                            request("POST", path)
                                .header("authorization", format!("Bearer {ADMIN}"))
                                .header("content-type", media)
                                .body(Body::from(text.clone()))
                                .unwrap(),
                        )
                        .await;
                    assert_eq!(
                        reply.status,
                        StatusCode::CREATED,
                        "{start} {media}: {text}\n{}",
                        reply.body
                    );
                    posted += 1;
                }
            }
            assert_eq!(posted, 2, "{start}: one JSON and one XML example");
        }
        let copy = typed_sa::start(backend, typed_sa::copy_area()).await;
        let document = get(&copy, "/openapi.json", "application/json").await.json();
        assert_no_dangling_refs(&document, "copy");
    }
);

/// Every `$ref` names a schema the document holds.
fn assert_no_dangling_refs(document: &Value, what: &str) {
    let schemas = &document["components"]["schemas"];
    let mut pending = vec![document];
    let mut refs = 0;
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(members) => {
                if let Some(Value::String(target)) = members.get("$ref") {
                    let name = target.strip_prefix("#/components/schemas/").unwrap();
                    assert!(schemas.get(name).is_some(), "{what}: dangling {target}");
                    refs += 1;
                }
                pending.extend(members.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    assert!(refs > 0, "{what}: no refs at all?");
}
