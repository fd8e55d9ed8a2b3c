//! What an anonymous caller can make a unit hold stays bounded: password checks run a few at a
//! time (each Argon2 hash holds ~19 MiB), and request metrics keep a fixed set of labels
//! whatever methods clients send.

use std::time::Duration;

use axum::body::Body;
use tests::process::{UnitProcess, free_port};
use tests::{ADMIN, Backend, TestApp, fresh_database, login_reader_config, request};

/// The most memory a process has held, in KiB (`VmHWM`).
fn peak_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// The memory a process holds now, in KiB (`VmRSS`).
fn current_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_passwords_keep_a_login_unit_small() {
    let database = fresh_database(Backend::Sqlite).await;
    // Its source is nowhere: sign-ins of unknown logins still cost a full hash each.
    let config = login_reader_config(&database.url, &format!("http://127.0.0.1:{}", free_port()));
    let unit = UnitProcess::start_config(config).await;
    let before = peak_kib(unit.pid());
    let client = hiscale::tls::client_builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let attempts = 48;
    let tasks: Vec<_> = (0..attempts)
        .map(|n| {
            let (client, url) = (client.clone(), format!("{}/sessions", unit.url));
            tokio::spawn(async move {
                let reply = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(format!(
                        r#"{{"login":"nobody{n}","password":"wrong-password-{n}"}}"#
                    ))
                    .send()
                    .await
                    .unwrap();
                let status = reply.status().as_u16();
                (status, reply.text().await.unwrap())
            })
        })
        .collect();
    let mut refused = 0;
    let mut busy = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            401 => refused += 1,
            503 if body.contains("busy") => busy += 1,
            _ => panic!("{status}: {body}"),
        }
    }
    let after = peak_kib(unit.pid());
    println!(
        "{attempts} concurrent wrong passwords: {refused} refused, {busy} busy; peak memory {} MiB \
         before, {} MiB after",
        before / 1024,
        after / 1024
    );
    assert!(refused >= 4, "only {refused} of {attempts} were checked");
    // Unbounded (and with glibc keeping every freed hash block), 48 wrong passwords took a
    // unit to about 850 MiB; four at a time, given back after each, stay near 110 MiB.
    assert!(
        after < before + 250 * 1024,
        "peak memory grew from {before} KiB to {after} KiB"
    );
    let settled = current_kib(unit.pid());
    println!("memory after the burst: {} MiB", settled / 1024);
    assert!(
        settled < before + 100 * 1024,
        "the hashes' memory was kept: {settled} KiB now, {before} KiB before"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_share_one_metrics_label() {
    let app = TestApp::start(Backend::Sqlite).await;
    for method in ["BREWCOFFEE", "XYZZYMETHOD"] {
        let reply = app
            .send(request(method, "/customers").body(Body::empty()).unwrap())
            .await;
        assert!(reply.status.is_client_error(), "{method}: {}", reply.status);
    }
    let metrics = app
        .send(
            request("GET", "/metrics")
                .header("authorization", format!("Bearer {ADMIN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .body;
    assert!(metrics.contains("method=\"other\""), "{metrics}");
    assert!(!metrics.contains("BREWCOFFEE") && !metrics.contains("XYZZYMETHOD"));
}

/// A login that keeps failing is refused without a password check after
/// `login::MAX_FAILED_ATTEMPTS` tries (per unit, remembered for `login::ATTEMPT_WINDOW`);
/// other logins are not affected.
#[tokio::test]
async fn a_login_that_keeps_failing_is_refused_for_a_while() {
    let database = fresh_database(Backend::Sqlite).await;
    let config = login_reader_config(&database.url, &format!("http://127.0.0.1:{}", free_port()));
    let unit = UnitProcess::start_config(config).await;
    let client = hiscale::tls::client();
    let sign_in = |login: &'static str| {
        client
            .post(format!("{}/sessions", unit.url))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"login":"{login}","password":"wrong-password"}}"#
            ))
            .send()
    };
    for attempt in 1..=login::MAX_FAILED_ATTEMPTS {
        let reply = sign_in("guessed").await.unwrap();
        assert_eq!(reply.status(), 401, "attempt {attempt}");
    }
    let refused = sign_in("GUESSED").await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers()["retry-after"].to_str().unwrap(),
        login::ATTEMPT_WINDOW.as_secs().to_string()
    );
    assert!(refused.text().await.unwrap().contains("too-many-attempts"));
    assert_eq!(sign_in("someone-else").await.unwrap().status(), 401);
}

/// A client address that keeps failing, over any number of logins, is refused without a
/// password check after `login::MAX_FAILED_PER_ADDRESS` tries. Behind a trusted proxy (the
/// test's loopback connection is one by default) the address is `X-Forwarded-For`'s last
/// entry, not an entry the client wrote itself; another address is not affected.
#[tokio::test]
async fn a_client_address_that_keeps_failing_is_refused_for_a_while() {
    let database = fresh_database(Backend::Sqlite).await;
    let config = login_reader_config(&database.url, &format!("http://127.0.0.1:{}", free_port()));
    let unit = UnitProcess::start_config(config).await;
    let client = hiscale::tls::client();
    let sign_in = |login: String, forwarded: &'static str| {
        client
            .post(format!("{}/sessions", unit.url))
            .header("content-type", "application/json")
            .header("x-forwarded-for", forwarded)
            .body(format!(
                r#"{{"login":"{login}","password":"wrong-password"}}"#
            ))
            .send()
    };
    // Each login fails once: only the address can reach its limit. A few at a time, as many
    // as a unit hashes at once.
    let attempts: Vec<_> = (0..login::MAX_FAILED_PER_ADDRESS).collect();
    for batch in attempts.chunks(4) {
        let replies = futures_util::future::join_all(batch.iter().map(|n| {
            // The client forges a first entry; the proxy appended the real one.
            sign_in(format!("guess-{n}"), "10.66.66.66, 203.0.113.7")
        }))
        .await;
        for reply in replies {
            assert_eq!(reply.unwrap().status(), 401);
        }
    }
    let refused = sign_in("yet-another".into(), "203.0.113.7").await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.text().await.unwrap().contains("too-many-attempts"));
    // The forged entry was never counted, and other clients go on as before.
    for other in ["10.66.66.66", "203.0.113.8"] {
        let reply = sign_in("yet-another".into(), other).await.unwrap();
        assert_eq!(reply.status(), 401, "{other}");
    }
}

/// Credentials come as JSON in UTF-8 or not at all: a form, a missing type or another charset
/// is `415` before any password work (and counts as no attempt).
#[tokio::test]
async fn a_login_takes_credentials_only_as_json() {
    let database = fresh_database(Backend::Sqlite).await;
    let config = login_reader_config(&database.url, &format!("http://127.0.0.1:{}", free_port()));
    let unit = UnitProcess::start_config(config).await;
    let client = hiscale::tls::client();
    let body = r#"{"login":"someone","password":"wrong-password"}"#;
    for content_type in [
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        Some("application/json; charset=utf-16"),
        Some("application/xml"),
        None,
    ] {
        let mut request = client.post(format!("{}/sessions", unit.url)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let reply = request.send().await.unwrap();
        assert_eq!(reply.status(), 415, "{content_type:?}");
        assert!(
            reply
                .text()
                .await
                .unwrap()
                .contains("unsupported-media-type"),
            "{content_type:?}"
        );
    }
    for content_type in ["application/json", "Application/JSON; charset=\"UTF-8\""] {
        let reply = client
            .post(format!("{}/sessions", unit.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            reply.status(),
            401,
            "{content_type}: a checked, wrong password"
        );
    }
}

/// A unit closes connections whose headers never finish, idle connections, and requests whose
/// body stalls, each after its configured time; beyond its connection cap it closes new
/// connections at once, and serves again when they are gone.
#[tokio::test]
async fn slow_idle_and_surplus_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let database = fresh_database(Backend::Sqlite).await;
    let mut config = tests::unit_config(
        "registration-bounds",
        &database.url,
        ([127, 0, 0, 1], free_port()).into(),
    );
    config.limits.header_read_timeout_secs = 2;
    config.limits.body_read_timeout_secs = 2;
    config.limits.max_connections = 6;
    let unit = UnitProcess::start_config(config.clone()).await;
    let address = config.listen;
    // How long until the unit closes `stream` (reads until end of file), bounded.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<(Duration, String)> {
        let started = std::time::Instant::now();
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(
                tokio::time::Instant::from_std(started + within),
                stream.read(&mut buffer),
            )
            .await
            {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    return Some((started.elapsed(), String::from_utf8_lossy(&received).into()));
                }
                Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
                Err(_) => return None,
            }
        }
    }
    let limit = Duration::from_secs(8);

    let mut slow_headers = TcpStream::connect(address).await.unwrap();
    slow_headers
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(address).await.unwrap();
    let mut stalled_body = TcpStream::connect(address).await.unwrap();
    stalled_body
        .write_all(b"POST /customers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"")
        .await
        .unwrap();
    let (slow, idle_closed, stalled) = tokio::join!(
        closed_within(&mut slow_headers, limit),
        closed_within(&mut idle, limit),
        closed_within(&mut stalled_body, limit),
    );
    assert!(slow.is_some(), "slow headers were kept open");
    assert!(idle_closed.is_some(), "an idle connection was kept open");
    let (_, answer) = stalled.expect("a stalled body was kept open");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "a stalled body got: {answer}"
    );

    // At the cap, a new connection is taken on one of the few kept for checks: a check is
    // answered there, anything else is `503 too-many-connections`; the held ones still serve.
    let mut held = Vec::new();
    for _ in 0..6 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /heartbeat HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 512];
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }
    for (request, expected) in [
        ("GET /health", "HTTP/1.1 200"),
        ("GET /customers", "HTTP/1.1 503"),
    ] {
        let mut surplus = TcpStream::connect(address).await.unwrap();
        let head = format!("{request} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n");
        surplus.write_all(head.as_bytes()).await.unwrap();
        let (_, answer) = closed_within(&mut surplus, Duration::from_secs(2))
            .await
            .expect("a connection kept for checks stays open after its answer");
        assert!(answer.starts_with(expected), "{request}: {answer}");
        if expected.ends_with("503") {
            assert!(answer.contains("too-many-connections"), "{answer}");
        }
    }
    // With those kept connections taken too, a new connection is closed at once; a kept one
    // that sends no head is closed within 2 s.
    let mut kept = Vec::new();
    for _ in 0..16 {
        kept.push(TcpStream::connect(address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut surplus = TcpStream::connect(address).await.unwrap();
    let (at_once, _) = closed_within(&mut surplus, Duration::from_secs(1))
        .await
        .expect("a connection beyond the cap and the kept ones was kept open");
    assert!(at_once < Duration::from_secs(1));
    let (silent, _) = closed_within(&mut kept[0], Duration::from_secs(4))
        .await
        .expect("a kept connection without a head was kept open");
    assert!(silent < Duration::from_secs(4), "{silent:?}");
    drop(kept);
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = reqwest::get(format!("{}/health", unit.url)).await.unwrap();
    assert_eq!(health.status(), 200);
}

/// An oversized request head gets an answer in the protocol's format, with a code, from a real
/// unit process (hyper in front): a long target is `414 uri-too-long`, many or large headers
/// `431 headers-too-large`; hyper's own limits, which answer without a body, lie beyond.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_are_refused_with_a_code() {
    let database = fresh_database(Backend::Sqlite).await;
    let unit = UnitProcess::start("registration-1", &database.url).await;
    let client = hiscale::tls::client();
    let long_target = format!("{}/customers?aspects=~{}", unit.url, "a".repeat(9 * 1024));
    let mut many = reqwest::header::HeaderMap::new();
    for index in 0..70 {
        many.insert(
            reqwest::header::HeaderName::try_from(format!("x-filler-{index}")).unwrap(),
            reqwest::header::HeaderValue::from_static("1"),
        );
    }
    let cases = [
        (client.get(&long_target), 414, "uri-too-long"),
        (
            client.get(format!("{}/customers", unit.url)).headers(many),
            431,
            "headers-too-large",
        ),
        (
            client
                .get(format!("{}/customers", unit.url))
                .header("x-filler", "b".repeat(40 * 1024)),
            431,
            "headers-too-large",
        ),
    ];
    for (request, status, code) in cases {
        let response = request
            .bearer_auth(ADMIN)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    // Within the bounds, the same unit answers as usual.
    let ok = client
        .get(format!("{}/health", unit.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
}
