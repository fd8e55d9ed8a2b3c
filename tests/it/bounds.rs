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
    let client = reqwest::Client::builder()
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
    let client = reqwest::Client::new();
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
