//! TLS where traffic leaves a host, each with a throwaway certificate the test makes itself
//! (`tests::tls::TestPki`): HAProxy terminating HTTPS in front of an owner, copies polling it
//! over HTTPS (with the CA they were given, and without it), units reaching PostgreSQL with the
//! URL's `sslmode`, and the start-up errors of a bad trust configuration.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tests::haproxy::{start_haproxy, wait_passing};
use tests::pg_cluster::PgCluster;
use tests::process::{UnitProcess, free_port, hiscale_binary, run_hiscale};
use tests::replication::{post_customer, replication, wait_for};
use tests::tls::{TestPki, client_trusting};
use tests::{ADMIN, Backend, JSON, LOGIN, fresh_database, unit_config};

/// Registration (one unit) and login (one unit, copying `~account` from registration through
/// the gateway) behind a gateway on `gateway` that terminates TLS with `certificate`; units
/// trust `ca` when given.
fn topology(
    gateway: u16,
    certificate: &Path,
    ca: Option<&Path>,
    registration: (&str, SocketAddr),
    login: (&str, SocketAddr),
) -> String {
    let ca = ca.map_or(String::new(), |ca| {
        format!("ca_certificate = \"{}\"\n", ca.display())
    });
    format!(
        "[gateway]\nlisten = \"127.0.0.1:{gateway}\"\ncheck_interval_ms = 200\n\
         tls_certificate = \"{certificate}\"\n{ca}\n\
         [[sa]]\nname = \"registration\"\ndatabase = \"{}\"\n\
         [sa.grants]\nadmin = \"operator\"\nlogin = \"~account\"\n\
         [[sa.units]]\nname = \"registration-1\"\nlisten = \"{}\"\nzone = \"a\"\n\n\
         [[sa]]\nname = \"login\"\ndatabase = \"{}\"\nsigns_sessions = true\n\
         [sa.grants]\nadmin = \"operator\"\nregistration = \"~account\"\n\
         [[sa.copies]]\ncollection = \"customers\"\nfrom = \"registration\"\n\
         interval_secs = 1\nwait_secs = 2\n\
         [[sa.units]]\nname = \"login-1\"\nlisten = \"{}\"\nzone = \"a\"\nreader = \"primary\"\n",
        registration.0,
        registration.1,
        login.0,
        login.1,
        certificate = certificate.display(),
    )
}

fn secrets() -> String {
    let (signing, public) = hiscale::session::generate_key_pair().unwrap();
    format!(
        "[tokens]\nadmin = \"{ADMIN}\"\nlogin = \"{LOGIN}\"\n\
         registration = \"registration-token-0123456789\"\n\
         [sessions]\nsigning_key_id = \"k1\"\nsigning_key = \"{signing}\"\n\
         public_keys = [{{ id = \"k1\", key = \"{public}\" }}]\n"
    )
}

fn loopback() -> SocketAddr {
    ([127, 0, 0, 1], free_port()).into()
}

/// The first source of the unit at `url` as `/admin/replication` shows it.
async fn source(url: &str) -> serde_json::Value {
    replication(url).await["sources"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_polls_its_source_over_https_through_haproxy_and_one_without_the_ca_reports_it() {
    let pki = TestPki::new();
    let owner_db = fresh_database(Backend::Sqlite).await;
    let copy_db = fresh_database(Backend::Sqlite).await;
    let untrusting_db = fresh_database(Backend::Sqlite).await;
    let (owner_address, copy_address, untrusting_address) = (loopback(), loopback(), loopback());
    let gateway = free_port();
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let path = files.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let trusting = write(
        "topology.toml",
        topology(
            gateway,
            &pki.server_pem,
            Some(&pki.ca),
            (&owner_db.url, owner_address),
            (&copy_db.url, copy_address),
        ),
    );
    // The same landscape, but its units were given no CA: they trust the host's roots only.
    let untrusting = write(
        "untrusting.toml",
        topology(
            gateway,
            &pki.server_pem,
            None,
            (&owner_db.url, owner_address),
            (&untrusting_db.url, untrusting_address),
        ),
    );
    let secrets = write("secrets.toml", secrets());

    let config = run_hiscale(&[
        "haproxy-config".as_ref(),
        "--topology".as_ref(),
        trusting.as_os_str(),
    ]);
    assert!(
        config.status.success(),
        "{}",
        String::from_utf8_lossy(&config.stderr)
    );
    let config = String::from_utf8(config.stdout).unwrap();
    assert!(
        config.contains(&format!(
            "    bind 127.0.0.1:{gateway} ssl crt {}\n",
            pki.server_pem.display()
        )),
        "{config}"
    );

    let _owner =
        UnitProcess::start_topology(&trusting, &secrets, "registration-1", owner_address).await;
    let _haproxy = start_haproxy(&config);
    let front = format!("https://127.0.0.1:{gateway}/registration");
    let client = client_trusting(&pki.ca);
    wait_passing(&client, &front).await;
    // Plain HTTP on the TLS port gets no answer a client could mistake for the API's.
    let plain = hiscale::tls::client()
        .get(format!("http://127.0.0.1:{gateway}/registration/health"))
        .send()
        .await;
    assert!(
        plain
            .as_ref()
            .map_or(true, |reply| !reply.status().is_success()),
        "plain HTTP was served: {plain:?}"
    );

    // The copy polls https://127.0.0.1:{gateway}/registration with the test's CA; its first
    // poll also opens the owner's start gate, so writes follow it.
    let copy = UnitProcess::start_topology(&trusting, &secrets, "login-1", copy_address).await;
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in 0..3 {
        let body = serde_json::json!({
            "person": {"type": "natural", "firstname": "Tee", "lastname": format!("Ls{n}")},
            "account": {"login": format!("tls{n}"), "password": "secret-password"},
        })
        .to_string();
        // Writes wait for the start gate (503 until the copy polled once).
        loop {
            let reply = client
                .post(format!("{front}/customers"))
                .bearer_auth(ADMIN)
                .header("content-type", JSON)
                .header("accept", JSON)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            if reply.status().as_u16() == 201 {
                let created: serde_json::Value = reply.json().await.unwrap();
                ids.push(created["id"].as_str().unwrap().to_owned());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the owner took no write through HTTPS: {} {}",
                reply.status(),
                reply.text().await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let owner_store = hiscale::Store::connect(&owner_db.url).await.unwrap();
    let head = owner_store
        .current_version("customers")
        .await
        .unwrap()
        .get();
    owner_store.close().await;
    wait_for(
        "the copy to converge over HTTPS",
        Duration::from_secs(30),
        async || source(&copy.url).await["cursor"].as_i64().unwrap_or(0) >= head,
    )
    .await;
    let polled = source(&copy.url).await;
    assert_eq!(polled["url"], front, "{polled}");
    assert_ne!(polled["state"], "failing", "{polled}");
    // The copy holds the accounts: login signs a customer in with one.
    let account: serde_json::Value = client
        .get(format!(
            "https://127.0.0.1:{gateway}/registration/customers/{}",
            ids[0]
        ))
        .bearer_auth(ADMIN)
        .header("accept", JSON)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(account["account"]["login"], "tls0", "{account}");
    let held = hiscale::tls::client()
        .get(format!("{}/customers/{}", copy.url, ids[0]))
        .bearer_auth(ADMIN)
        .header("accept", JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(held.status().as_u16(), 200, "the copy holds the customer");

    // Without the CA the copy cannot trust the gateway: it keeps running and says why.
    let untrusting =
        UnitProcess::start_topology(&untrusting, &secrets, "login-1", untrusting_address).await;
    let mut last = serde_json::Value::Null;
    wait_for(
        "the copy without the CA to report its failing source",
        Duration::from_secs(30),
        async || {
            last = source(&untrusting.url).await;
            last["state"] == "failing"
        },
    )
    .await;
    let error = last["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("certificate"),
        "the failing source does not say the certificate is the problem: {last}"
    );
    assert_eq!(last["cursor"].as_i64().unwrap_or(0), 0, "{last}");
    let health = hiscale::tls::client()
        .get(format!("{}/health", untrusting.url))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success(), "the unit still runs");
    println!("the copy without the CA reports: {error}");
}

/// `hiscale serve --config FILE` of a registration unit with `adjust` applied: the process's
/// exit status and standard error, or a panic when it is still running after 60 s.
fn serve_exits(adjust: impl FnOnce(&mut hiscale::UnitConfig), database: &str) -> (bool, String) {
    let mut config = unit_config("registration-bad", database, loopback());
    adjust(&mut config);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), toml::to_string(&config).unwrap()).unwrap();
    let mut child = std::process::Command::new(hiscale_binary())
        .arg("serve")
        .arg("--config")
        .arg(file.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hiscale serve did not stop within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.success(), stderr)
}

#[test]
fn a_unit_with_a_ca_file_it_cannot_use_refuses_to_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/registration.db", dir.path().display());
    let (ok, stderr) = serve_exits(
        |config| config.ca_certificates = vec!["/nonexistent/hiscale/ca.pem".into()],
        &database,
    );
    assert!(!ok, "started with a missing CA file");
    assert!(
        stderr.contains("ca_certificates: cannot read /nonexistent/hiscale/ca.pem"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let garbage = dir.path().join("ca.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let (ok, stderr) = serve_exits(
        |config| config.ca_certificates = vec![garbage.clone()],
        &database,
    );
    assert!(!ok, "started with a broken CA file");
    assert!(
        stderr.contains(&format!(
            "ca_certificates: {} is not usable",
            garbage.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_reach_postgresql_over_tls_as_the_urls_sslmode_says() {
    let pki = TestPki::new();
    let cluster = tokio::task::block_in_place(|| {
        PgCluster::start_with_ssl(&pki.server_certificate, &pki.server_key)
    });
    tokio::task::block_in_place(|| cluster.psql("CREATE DATABASE hs_tls", "postgres"));
    let base = format!("postgres://postgres@127.0.0.1:{}/hs_tls", cluster.port());

    // verify-full: the server's certificate must chain to the CA and name 127.0.0.1.
    let verified = format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        pki.ca.display()
    );
    let unit = UnitProcess::start("registration-tls", &verified).await;
    let client = hiscale::tls::client();
    let body =
        serde_json::json!({"person": {"type": "natural", "firstname": "Pg", "lastname": "Tls"}});
    let id = post_customer(&client, &unit.url, body.to_string(), JSON).await;
    let read: serde_json::Value = client
        .get(format!("{}/customers/{id}", unit.url))
        .bearer_auth(ADMIN)
        .header("accept", JSON)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["person"]["lastname"], "Tls", "{read}");
    // Every connection the unit holds to its database is encrypted.
    let connections = tokio::task::block_in_place(|| {
        cluster.psql(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = 'hs_tls' AND a.pid <> pg_backend_pid()",
            "postgres",
        )
    });
    let connections: Vec<&str> = connections.lines().collect();
    assert!(
        !connections.is_empty() && connections.iter().all(|ssl| *ssl == "t"),
        "the unit's connections, ssl or not: {connections:?}"
    );
    drop(unit);

    // A CA that did not sign the server's certificate: the unit refuses to start.
    let wrong_ca = format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        pki.other_ca.display()
    );
    let (ok, stderr) = tokio::task::block_in_place(|| serve_exits(|_| {}, &wrong_ca));
    assert!(!ok, "started against a server its CA does not vouch for");
    assert!(
        stderr.to_lowercase().contains("certificate") && !stderr.contains("panicked"),
        "{stderr}"
    );
    drop(cluster);

    // sslmode=require against a server without TLS: refused at start, saying so.
    let plain = tokio::task::block_in_place(PgCluster::start);
    tokio::task::block_in_place(|| plain.psql("CREATE DATABASE hs_plain", "postgres"));
    let required = format!(
        "postgres://postgres@127.0.0.1:{}/hs_plain?sslmode=require",
        plain.port()
    );
    let (ok, stderr) = tokio::task::block_in_place(|| serve_exits(|_| {}, &required));
    assert!(!ok, "started without TLS although the URL requires it");
    assert!(
        stderr.contains("TLS") && !stderr.contains("panicked"),
        "{stderr}"
    );
    println!("sslmode=require against a plain server: {}", stderr.trim());
}
