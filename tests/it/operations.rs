//! What operators and HAProxy ask a unit: health, heartbeat, metrics, OpenAPI and docs.

use axum::body::Body;
use axum::http::StatusCode;
use tests::{ADMIN, JSON, TestApp, both_backends, create_customer, customer_json, request};

both_backends!(health_heartbeat_and_drain, |backend| async move {
    let app = TestApp::start(backend).await;
    let health = app
        .send(request("GET", "/health").body(Body::empty()).unwrap())
        .await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "PASS\n")
    );
    let heartbeat = app
        .send(request("GET", "/heartbeat").body(Body::empty()).unwrap())
        .await;
    assert_eq!(heartbeat.json()["unit"], "registration-test");
    assert_eq!(heartbeat.json()["sa"], "registration");

    let drain = |method: &str| {
        request(method, "/admin/drain")
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(app.send(drain("PUT")).await.status, StatusCode::NO_CONTENT);
    let drained = app
        .send(request("GET", "/health").body(Body::empty()).unwrap())
        .await;
    assert_eq!(drained.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        drained.body.starts_with("FAIL\ndraining"),
        "{}",
        drained.body
    );
    assert_eq!(
        app.send(drain("DELETE")).await.status,
        StatusCode::NO_CONTENT
    );

    // A database that is gone fails the check with a reason.
    app.state.store().close().await;
    let failed = app
        .send(request("GET", "/health").body(Body::empty()).unwrap())
        .await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(failed.body.contains("database"), "{}", failed.body);
});

both_backends!(metrics_count_requests, |backend| async move {
    let app = TestApp::start(backend).await;
    create_customer(&app, &customer_json(1), JSON).await;
    let metrics = app
        .send(request("GET", "/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .body
            .lines()
            .any(|line| line.starts_with("hiscale_http_requests_total{")
                && line.contains("route=\"/{collection}\"")
                && line.contains("status=\"201\"")),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains("hiscale_writes_total"));
});

both_backends!(openapi_and_offline_docs, |backend| async move {
    let app = TestApp::start(backend).await;
    let document = app
        .send(request("GET", "/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(document.status, StatusCode::OK);
    let value = document.json();
    for path in [
        "/customers",
        "/customers/{id}",
        "/customers/{id}/person",
        "/customers/{id}/address.home",
        "/health",
    ] {
        assert!(
            value["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    let schemas = &value["components"]["schemas"];
    assert!(schemas.get("customer_account_input").is_some());
    assert!(
        schemas["customer_account_input"]["properties"]
            .get("password")
            .is_some()
    );
    assert!(
        schemas["customer_account"]["properties"]
            .get("pwdhash")
            .is_some()
    );

    let page = app
        .send(request("GET", "/docs/").body(Body::empty()).unwrap())
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("swagger"), "{}", page.body);
    // Everything the page loads is served by the unit itself: no CDN.
    for needle in ["http://", "https://"] {
        let external: Vec<&str> = page
            .body
            .split(['"', '\''])
            .filter(|part| part.starts_with(needle))
            .collect();
        assert!(external.is_empty(), "the docs page loads {external:?}");
    }
    let initializer = app
        .send(
            request("GET", "/docs/swagger-initializer.js")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(initializer.status, StatusCode::OK);
    assert!(initializer.body.contains("/openapi.json"));
    let bundle = app
        .send(
            request("GET", "/docs/swagger-ui-bundle.js")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(bundle.status, StatusCode::OK);
    assert!(
        bundle.body.len() > 100_000,
        "the Swagger UI bundle is served locally"
    );
});

both_backends!(
    redirects_honour_the_forwarded_prefix,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let docs = |prefix: Option<&str>| {
            let mut builder = request("GET", "/docs");
            if let Some(prefix) = prefix {
                builder = builder.header("x-forwarded-prefix", prefix);
            }
            builder.body(Body::empty()).unwrap()
        };
        let direct = app.send(docs(None)).await;
        assert!(direct.status.is_redirection(), "{:?}", direct.status);
        assert_eq!(direct.header("location"), Some("/docs/"));
        // Behind the gateway or HAProxy the client must come back under the prefix.
        let proxied = app.send(docs(Some("/registration"))).await;
        assert!(proxied.status.is_redirection());
        assert_eq!(proxied.header("location"), Some("/registration/docs/"));
        // A prefix that is not a plain path is ignored, never echoed.
        let hostile = app.send(docs(Some("//evil.example"))).await;
        assert_eq!(hostile.header("location"), Some("/docs/"));
    }
);

/// The benchmark's short version (`hiscale bench --quick`) runs to its end and prints its
/// tables, the figures with them: SQLite → SQLite, PostgreSQL → PostgreSQL across the
/// bench's own two durable clusters and PostgreSQL's logical replication of the same rows
/// beside them (figure 1), feed chunks against the pre-serialised chunk (figure 5), peak RSS
/// (figure 6), writes against raw inserts (figure 3), the sync with gzip-compressed chunks and the bytes per record on the wire
/// against logical replication's `COPY` (figure 7). The numbers are not checked, only that each figure was measured; the full runs
/// are a separate command. It also writes RESULTS.md (the figures as a Markdown table) and the
/// SVG plots into `--results-dir`: the table's rows and the plots' lines are checked to be
/// there, not their values.
#[tokio::test]
async fn the_benchmark_runs_its_short_version() {
    let results = tempfile::tempdir().expect("a results directory");
    let results_dir = results.path().join("bench");
    let results_arg = results_dir.to_str().expect("a UTF-8 temporary path");
    let printed = tests::process::hiscale_bench(
        &["--quick", "--results-dir", results_arg],
        std::time::Duration::from_secs(480),
    )
    .await;
    for expected in [
        "writes/s",
        "FULL/NORMAL",
        "initial sync owner → copy",
        "figure 1: initial sync of 5000 customers",
        "ratio to logical replication",
        "publisher fsync=on synchronous_commit=on",
        "figure 5: feed chunks/s",
        "figure 6: peak RSS",
        "the same GETs without the read cache",
        "GET /heartbeat req/s",
        "render JSON through trees (before)",
    ] {
        assert!(printed.contains(expected), "no {expected:?} in:\n{printed}");
    }
    let row = |label: &str| -> Vec<String> {
        let line = printed
            .lines()
            .find(|line| line.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no row {label:?} in:\n{printed}"));
        line.split(" | ")
            .map(|cell| cell.trim().trim_end_matches('|').trim().to_owned())
            .collect()
    };
    // Both backends synced every customer, and every figure has a value in each column.
    let counted = row("customers counted on the copy");
    assert_eq!(
        counted[1..],
        ["5000 of 5000", "5000 of 5000"],
        "{counted:?}"
    );
    // (label, value columns: sqlite and postgres, and the reference where there is one)
    for (label, columns) in [
        ("initial sync, customers/s", 3),
        ("ratio to logical replication", 3),
        ("figure 5: feed chunks/s", 2),
        ("figure 6: peak RSS", 2),
        ("figure 7: bytes on the wire per record", 2),
        ("the same with gzip-compressed chunks", 2),
    ] {
        let cells = row(label);
        assert!(
            cells.len() > columns
                && cells[1..=columns]
                    .iter()
                    .all(|cell| !cell.is_empty() && cell != "–"),
            "a figure is missing in {cells:?}"
        );
    }

    let markdown = std::fs::read_to_string(results_dir.join("RESULTS.md"))
        .unwrap_or_else(|error| panic!("no RESULTS.md in {results_arg}: {error}\n{printed}"));
    assert!(
        markdown.contains("| figure | HiScale | reference | ratio | goal |"),
        "no table header in:\n{markdown}"
    );
    // (the figure cell's start, whether the ratio is a measured one rather than "—")
    for (figure, measured_ratio) in [
        ("1: initial sync SQLite → SQLite", true),
        ("1: initial sync PostgreSQL → PostgreSQL", true),
        ("5: feed chunks/s of 100 records, JSON, SQLite", true),
        ("5: feed chunks/s of 100 records, JSON, PostgreSQL", true),
        ("3: PUT address.home vs raw single-row INSERT", true),
        ("2: long-poll lag, SQLite", true),
        ("2: long-poll lag, PostgreSQL", true),
        ("1 (gzip): initial sync SQLite → SQLite", true),
        ("1 (gzip): initial sync PostgreSQL → PostgreSQL", true),
        (
            "7: bytes on the wire per record, initial sync from SQLite",
            true,
        ),
        (
            "7: bytes on the wire per record, initial sync from PostgreSQL",
            true,
        ),
        ("6: peak RSS during fill and sync, SQLite", false),
        ("6: peak RSS during fill and sync, PostgreSQL", false),
    ] {
        let line = markdown
            .lines()
            .find(|line| line.starts_with(&format!("| {figure}")))
            .unwrap_or_else(|| panic!("no row {figure:?} in:\n{markdown}"));
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 5, "{line}");
        assert!(
            !cells[1].is_empty() && !cells[1].contains("not measured"),
            "{line}"
        );
        let ratio = cells[3];
        assert!(!ratio.is_empty(), "no ratio cell in {line}");
        if measured_ratio {
            assert!(ratio.ends_with('×'), "no ratio in {line}");
        }
    }
    for plot in ["sync-rate.svg", "lag-cdf.svg"] {
        let svg = std::fs::read_to_string(results_dir.join(plot))
            .unwrap_or_else(|error| panic!("no {plot} in {results_arg}: {error}"));
        assert!(
            svg.starts_with("<svg") || svg.starts_with("<?xml"),
            "{plot} is no SVG: {svg}"
        );
        assert!(
            svg.contains("<path") || svg.contains("<polyline"),
            "{plot} has no line: {svg}"
        );
        assert!(
            markdown.contains(&format!("]({plot})")),
            "RESULTS.md does not show {plot}"
        );
    }
}

// One id per request, kept from the caller when well formed, so one action can be followed
// through every unit's log; a fresh one otherwise. Answers carry it, errors included.
both_backends!(a_request_id_is_carried_or_made, |backend| async move {
    let app = TestApp::start(backend).await;
    let carried = app
        .send(
            request("GET", "/customers/999999")
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("accept", JSON)
                .header("x-request-id", "gateway-7f3a-42")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(carried.status, StatusCode::NOT_FOUND);
    assert_eq!(carried.headers["x-request-id"], "gateway-7f3a-42");
    let made = |id: Option<&str>| {
        let mut builder = request("GET", "/heartbeat");
        if let Some(id) = id {
            builder = builder.header("x-request-id", id);
        }
        builder.body(Body::empty()).unwrap()
    };
    let first = app.send(made(None)).await.headers["x-request-id"].clone();
    let second = app.send(made(None)).await.headers["x-request-id"].clone();
    assert_ne!(first, second);
    let spoiled = "a".repeat(65);
    let replaced = app.send(made(Some(&spoiled))).await.headers["x-request-id"].clone();
    assert!(!replaced.is_empty() && replaced != spoiled.as_str());
});
