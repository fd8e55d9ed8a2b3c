//! Every refusal has its status and stable code, in the caller's format, never a 500, and a
//! refused request changes nothing.

use axum::body::Body;
use axum::http::StatusCode;
use tests::{
    ADMIN, BILLING, JSON, SHOP, TestApp, XML, both_backends, create_customer, customer_json,
    request,
};

/// One bad request and what it must get.
struct Case {
    name: &'static str,
    method: &'static str,
    uri: String,
    token: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: String,
    status: u16,
    code: &'static str,
}

fn case(
    name: &'static str,
    method: &'static str,
    uri: impl Into<String>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        uri: uri.into(),
        token: Some(ADMIN),
        headers: Vec::new(),
        body: String::new(),
        status,
        code,
    }
}

impl Case {
    fn token(mut self, token: Option<&'static str>) -> Self {
        self.token = token;
        self
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn body(mut self, content_type: &str, body: impl Into<String>) -> Self {
        self.headers.push(("content-type", content_type.to_owned()));
        self.body = body.into();
        self
    }
}

fn cases(id: &str) -> Vec<Case> {
    let one = format!("/customers/{id}");
    let person = format!("/customers/{id}/person");
    let valid_person = r#"{"type":"natural","firstname":"A","lastname":"B"}"#;
    let billion_laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><customer><person type="natural"><firstname>&lol2;</firstname><lastname>x</lastname></person></customer>"#;
    vec![
        // 401
        case("no token", "GET", &one, 401, "unauthenticated").token(None),
        case("unknown token", "GET", &one, 401, "invalid-token").token(Some("not-a-known-token-at-all")),
        // 403
        case("aspect outside the grant", "GET", format!("{one}?aspects=~account"), 403, "aspect-not-granted").token(Some(SHOP)),
        case("billing may not read the home address", "GET", format!("{one}?aspects=~address"), 403, "aspect-not-granted").token(Some(BILLING)),
        case("reader may not write", "PUT", &person, 403, "write-not-granted").token(Some(SHOP)).body(JSON, valid_person),
        case("reader may not create", "POST", "/customers", 403, "write-not-granted").token(Some(SHOP)).body(JSON, customer_json(90)),
        case("reader may not delete", "DELETE", &one, 403, "write-not-granted").token(Some(BILLING)),
        case("admin endpoints are the operator's", "GET", "/admin/interfaces", 403, "operator-only").token(Some(SHOP)),
        // 404
        case("missing resource", "GET", "/customers/999999", 404, "not-found"),
        case("unknown collection", "GET", "/orders/1", 404, "not-found"),
        case("unknown path", "GET", "/a/b/c/d", 404, "not-found"),
        case("id that is no id", "GET", "/customers/..%2Fetc", 404, "not-found"),
        case("unknown aspect in the path", "PUT", format!("{one}/shoesize"), 404, "unknown-aspect").body(JSON, "{}"),
        case("update of a missing resource", "PUT", "/customers/999999/person", 404, "not-found").body(JSON, valid_person),
        // 405
        case("method not allowed", "PATCH", &one, 405, "method-not-allowed"),
        // 406
        case("format we do not speak", "GET", &one, 406, "not-acceptable").header("accept", "text/html"),
        case("unknown interface version", "GET", &one, 406, "unknown-interface-version").header("accept", "application/vnd.registration.v9+xml"),
        case("unknown URL version", "GET", format!("/v7{one}"), 406, "unknown-interface-version"),
        case("prefix names a version the media type does not", "GET", format!("/v1{one}"), 406, "interface-version-conflict").header("accept", "application/vnd.registration.v2+json"),
        // 412
        case("stale If-Match", "PUT", &person, 412, "precondition-failed").header("if-match", "\"0\"").body(JSON, valid_person),
        case("stale If-Match on delete", "DELETE", &one, 412, "precondition-failed").header("if-match", "\"0\""),
        // 413
        case("body too large", "POST", "/customers", 413, "body-too-large").body(JSON, format!("{{\"x\":\"{}\"}}", "a".repeat(70_000))),
        // 415
        case("no content type", "POST", "/customers", 415, "unsupported-media-type").body("", customer_json(91)),
        case("text is no representation", "POST", "/customers", 415, "unsupported-media-type").body("text/plain", customer_json(92)),
        case("a body in another charset", "POST", "/customers", 415, "unsupported-media-type").body("application/json; charset=iso-8859-1", customer_json(94)),
        // 400: selectors and parameters
        case("selector without tilde", "GET", format!("{one}?aspects=person"), 400, "bad-selector"),
        case("empty selector", "GET", format!("{one}?aspects="), 400, "bad-selector"),
        case("selector too long", "GET", format!("{one}?aspects=~{}", "a".repeat(300)), 400, "selector-too-long"),
        case("unknown aspect in the selector", "GET", format!("{one}?aspects=~shoesize"), 400, "unknown-aspect"),
        case("unknown parameter", "GET", format!("{one}?colour=red"), 400, "unknown-parameter"),
        case("repeated parameter", "GET", format!("{one}?aspects=~person&aspects=~account"), 400, "repeated-parameter"),
        case("garbage If-Match", "PUT", &person, 400, "bad-precondition").header("if-match", "yesterday").body(JSON, valid_person),
        // 400: bodies
        case("forged id", "POST", "/customers", 400, "forged-id").body(JSON, r#"{"id":"5","person":{"type":"natural","firstname":"A","lastname":"B"}}"#),
        case("forged version", "POST", "/customers", 400, "forged-version").body(XML, "<customer><version>99</version><person type=\"natural\"><firstname>A</firstname><lastname>B</lastname></person></customer>"),
        case("forged aspect version", "PUT", &person, 400, "forged-version").body(JSON, r#"{"version":"99","type":"natural","firstname":"A","lastname":"B"}"#),
        case("hash instead of password", "POST", "/customers", 400, "invalid-aspect").body(JSON, r#"{"account":{"login":"mallory","pwdhash":"x","salt":"y"}}"#),
        case("bad IBAN", "POST", "/customers", 400, "invalid-iban").body(JSON, r#"{"bankaccount":{"owner":"A","iban":"DE89370400440532013001"}}"#),
        case("weak password", "POST", "/customers", 400, "weak-password").body(JSON, r#"{"account":{"login":"someone","password":"short"}}"#),
        case("unknown aspect in the body", "POST", "/customers", 400, "unknown-aspect").body(JSON, r#"{"shoesize":{"eu":"42"}}"#),
        case("empty resource", "POST", "/customers", 400, "empty-resource").body(JSON, "{}"),
        case("duplicate aspect", "POST", "/customers", 400, "duplicate-aspect").body(XML, "<customer><person type=\"natural\"><firstname>A</firstname><lastname>B</lastname></person><person type=\"natural\"><firstname>A</firstname><lastname>B</lastname></person></customer>"),
        case("number instead of text", "PUT", &person, 400, "invalid-field").body(JSON, r#"{"type":"natural","firstname":1,"lastname":"B"}"#),
        case("malformed JSON", "POST", "/customers", 400, "malformed-json").body(JSON, "{\"person\":"),
        case("JSON array", "POST", "/customers", 400, "malformed-json").body(JSON, "[]"),
        case("JSON member twice", "PUT", &person, 400, "duplicate-field").body(JSON, r#"{"type":"natural","firstname":"A","firstname":"B","lastname":"C"}"#),
        case("JSON aspect twice", "POST", "/customers", 400, "duplicate-field").body(JSON, r#"{"person":{"type":"natural","firstname":"A","lastname":"B"},"person":{"type":"legal","firstname":"A","lastname":"B"}}"#),
        case("malformed XML", "POST", "/customers", 400, "malformed-xml").body(XML, "<customer><person></customer>"),
        case("DTD refused", "POST", "/customers", 400, "xml-dtd-forbidden").body(XML, billion_laughs),
        case("unknown entity", "POST", "/customers", 400, "xml-entity-forbidden").body(XML, "<customer><person type=\"natural\"><firstname>&lol;</firstname><lastname>B</lastname></person></customer>"),
        case("too deep", "POST", "/customers", 400, "xml-too-deep").body(XML, format!("<customer>{}{}</customer>", "<a>".repeat(20), "</a>".repeat(20))),
        case("wrong root", "POST", "/customers", 400, "wrong-root").body(XML, "<order/>"),
        case("qualifier missing", "POST", "/customers", 400, "missing-qualifier").body(XML, "<customer><addresses><address><street>A</street><zip>12345</zip><city>B</city></address></addresses></customer>"),
        case("qualifier mismatch", "PUT", format!("{one}/address.home"), 400, "qualifier-mismatch").body(XML, "<address type=\"bill\"><street>A</street><zip>12345</zip><city>B</city></address>"),
        case("unknown field", "PUT", &person, 400, "invalid-aspect").body(JSON, r#"{"type":"natural","firstname":"A","lastname":"B","shoesize":"42"}"#),
        case("element where text belongs", "PUT", &person, 400, "invalid-field").body(XML, "<person type=\"natural\"><firstname><b>A</b></firstname><lastname>B</lastname></person>"),
    ]
}

both_backends!(
    every_refusal_has_its_code_and_changes_nothing,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let id = create_customer(&app, &customer_json(1), JSON).await;
        let before_version = app.current_version().await;
        let before_body = read_all(&app, &id).await;
        for case in cases(&id) {
            for accept in ["application/json", "application/xml"] {
                let mut builder = request(case.method, &case.uri);
                if let Some(token) = case.token {
                    builder = builder.header("authorization", format!("Bearer {token}"));
                }
                let mut accept_given = false;
                for (name, value) in &case.headers {
                    if value.is_empty() {
                        continue;
                    }
                    accept_given |= *name == "accept";
                    builder = builder.header(*name, value);
                }
                if !accept_given {
                    builder = builder.header("accept", accept);
                }
                let reply = app
                    .send(builder.body(Body::from(case.body.clone())).unwrap())
                    .await;
                assert_eq!(
                    reply.status.as_u16(),
                    case.status,
                    "{}: {}",
                    case.name,
                    reply.body
                );
                assert_eq!(
                    reply.error_code(),
                    case.code,
                    "{}: {}",
                    case.name,
                    reply.body
                );
                if !accept_given {
                    let json = accept.contains("json");
                    assert_eq!(
                        reply.body.starts_with('{'),
                        json,
                        "{}: error body format for {accept}: {}",
                        case.name,
                        reply.body
                    );
                }
            }
            // Nothing stored changed (a PostgreSQL sequence may skip a number; data never moves).
            assert_eq!(
                read_all(&app, &id).await,
                before_body,
                "{} changed stored data",
                case.name
            );
            assert_eq!(
                app.store_count().await,
                1,
                "{} created something",
                case.name
            );
        }
        let _ = before_version;
    }
);

both_backends!(
    retired_interface_is_gone_until_reactivated,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let id = create_customer(&app, &customer_json(5), JSON).await;
        let switch = |state: &str| {
            request("PUT", "/admin/interfaces/v1")
                .header("authorization", format!("Bearer {ADMIN}"))
                .body(Body::from(format!("{{\"state\":\"{state}\"}}")))
                .unwrap()
        };
        let read = || {
            request("GET", &format!("/customers/{id}"))
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("accept", JSON)
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(
            app.send(switch("deprecated")).await.status,
            StatusCode::NO_CONTENT
        );
        let deprecated = app.send(read()).await;
        assert_eq!(deprecated.status, StatusCode::OK);
        // RFC 9745: the date it was deprecated, `@` and unix seconds.
        assert!(
            deprecated
                .header("deprecation")
                .is_some_and(|value| value.starts_with('@')),
            "{:?}",
            deprecated.header("deprecation")
        );
        assert_eq!(
            app.send(switch("retired")).await.status,
            StatusCode::NO_CONTENT
        );
        let gone = app.send(read()).await;
        assert_eq!(gone.status, StatusCode::GONE);
        assert_eq!(gone.error_code(), "interface-retired");
        assert_eq!(
            app.send(switch("active")).await.status,
            StatusCode::NO_CONTENT
        );
        let back = app.send(read()).await;
        assert_eq!(back.status, StatusCode::OK);
        assert_eq!(back.header("deprecation"), None);
        assert_eq!(
            app.send(switch("asleep")).await.error_code(),
            "bad-interface-state"
        );
    }
);

/// Everything stored about the resource, as the operator reads it.
async fn read_all(app: &TestApp, id: &str) -> String {
    app.send(
        request("GET", &format!("/customers/{id}"))
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("accept", JSON)
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .body
}

/// Spoils one field of a source.
type Spoil = fn(&mut hiscale::config::SourceConfig);

/// Asserts that a unit with `config` does not start, and that its error names `expected`.
async fn assert_refused(config: &hiscale::UnitConfig, sa: hiscale::ServiceArea, expected: &str) {
    let message = hiscale::unit::state(config, sa)
        .await
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        message.contains(expected),
        "expected a refusal naming {expected:?}, got {message:?}"
    );
}

/// A source its poller could only fail on forever stops the unit at start, naming why.
#[tokio::test]
async fn a_unit_refuses_sources_it_could_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/shop.db", dir.path().display());
    let cases: [(&str, Spoil); 5] = [
        ("does not copy", |source| {
            source.collection = "orders".into()
        }),
        ("do not fit the copy", |source| {
            source.aspects = "~person~bankaccount".into();
        }),
        ("limit 0", |source| source.limit = 0),
        ("limit 5000", |source| source.limit = 5000),
        ("wait_secs 600", |source| source.wait_secs = 600),
    ];
    for (expected, spoil) in cases {
        let mut config = tests::reader_config(
            "shop",
            &database,
            "http://127.0.0.1:9/",
            SHOP,
            shop::COPIED_ASPECTS,
        );
        spoil(&mut config.sources[0]);
        assert_refused(&config, shop::service_area(), expected).await;
    }
    // Two sources for one collection.
    let mut config = tests::reader_config(
        "shop",
        &database,
        "http://127.0.0.1:9/",
        SHOP,
        shop::COPIED_ASPECTS,
    );
    config.sources.push(config.sources[0].clone());
    let refused = hiscale::unit::state(&config, shop::service_area()).await;
    assert!(
        refused
            .err()
            .is_some_and(|error| error.to_string().contains("two sources"))
    );
    // The sound configuration starts.
    let config = tests::reader_config(
        "shop",
        &database,
        "http://127.0.0.1:9/",
        SHOP,
        shop::COPIED_ASPECTS,
    );
    assert!(
        hiscale::unit::state(&config, shop::service_area())
            .await
            .is_ok()
    );
}

/// Each SA has a store of its own: a unit of another SA on it is refused at start.
#[tokio::test]
async fn a_unit_refuses_another_service_areas_database() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/registration.db", dir.path().display());
    let owner = tests::unit_config("registration-1", &database, ([127, 0, 0, 1], 0).into());
    hiscale::unit::state(&owner, registration::service_area())
        .await
        .unwrap();
    let shop = tests::reader_config(
        "shop",
        &database,
        "http://127.0.0.1:9/",
        SHOP,
        shop::COPIED_ASPECTS,
    );
    let refused = hiscale::unit::state(&shop, shop::service_area()).await;
    let message = refused
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("used by the registration service area"),
        "{message:?}"
    );
    // A second unit of the same SA is welcome, and both are on record.
    let second = tests::unit_config("registration-2", &database, ([127, 0, 0, 1], 0).into());
    let state = hiscale::unit::state(&second, registration::service_area())
        .await
        .unwrap();
    let units: Vec<String> = state
        .store()
        .units()
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.unit)
        .collect();
    assert_eq!(units, ["registration-1", "registration-2"]);
}

/// Settings a unit cannot run with (or that would overflow a duration it computes) stop it at
/// start with the setting's name and allowed range, before anything listens.
#[tokio::test]
async fn a_unit_refuses_settings_outside_their_range() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/registration.db", dir.path().display());
    type Spoil = fn(&mut hiscale::UnitConfig);
    let cases: [(&str, Spoil); 5] = [
        ("feed.max_chunk_bytes 0 is outside 1024..=", |config| {
            config.feed.max_chunk_bytes = 0
        }),
        (
            "feed.held_back_warn_secs 18446744073709551615 is outside",
            |config| config.feed.held_back_warn_secs = u64::MAX,
        ),
        (
            "reader.heartbeat_interval_ms 0 is outside 50..=60000",
            |config| config.reader.heartbeat_interval_ms = 0,
        ),
        ("limits.max_body_bytes 0 is outside", |config| {
            config.limits.max_body_bytes = 0
        }),
        ("limits.max_connections 0 is outside 1..=100000", |config| {
            config.limits.max_connections = 0
        }),
    ];
    for (expected, spoil) in cases {
        let mut config =
            tests::unit_config("registration-1", &database, ([127, 0, 0, 1], 0).into());
        spoil(&mut config);
        assert_refused(&config, registration::service_area(), expected).await;
    }
}

// Every 405 names the methods its path takes (RFC 9110), as the OpenAPI document lists them:
// the router alone would list every method of the shared `/{collection}/{id}/{aspect}` route.
both_backends!(
    a_405_names_exactly_the_methods_the_path_takes,
    |backend| async move {
        let owner = tests::typed_sa::start(backend, tests::typed_sa::service_area()).await;
        let copy = tests::typed_sa::start(backend, tests::typed_sa::copy_area()).await;
        let cases = [
            (&owner, "PATCH", "/things/1/label", "PUT,DELETE"),
            (&owner, "POST", "/things/1/label", "PUT,DELETE"),
            (&owner, "PUT", "/things/1", "GET,HEAD,DELETE"),
            (&owner, "PUT", "/things", "GET,HEAD,POST"),
            (&copy, "DELETE", "/things/1", "GET,HEAD"),
            (&copy, "POST", "/things", "GET,HEAD"),
            (&copy, "PUT", "/things/1/label", ""),
        ];
        for (app, method, path, allowed) in cases {
            let reply = app
                .send(
                    request(method, path)
                        .header("authorization", format!("Bearer {ADMIN}"))
                        .header("content-type", "application/json")
                        .header("accept", "application/json")
                        .body(Body::from("{}"))
                        .unwrap(),
                )
                .await;
            assert_eq!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: {}",
                reply.body
            );
            assert_eq!(reply.header("allow"), Some(allowed), "{method} {path}");
        }
    }
);
