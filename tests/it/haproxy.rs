//! Two registration units behind real HAProxy under read and write load, everything derived
//! from one topology file as a deployment does (`hiscale check`, `hiscale haproxy-config`,
//! `hiscale serve --topology`): `kill -9` of one unit and its return cost no idempotent read
//! (HAProxy retries them on the other unit), a drained unit costs nothing at all, and every
//! acknowledged write is there afterwards. The committed `deploy/haproxy/haproxy.cfg` passes
//! HAProxy's own check.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use std::net::SocketAddr;

use tests::haproxy::{start_haproxy, wait_passing};
use tests::process::{UnitProcess, free_port, run_hiscale};
use tests::replication::post_customer;
use tests::{ADMIN, JSON, fresh_database};

/// A topology of registration's two units on `database` behind a gateway on `gateway`, with
/// health checks every 200 ms so the test does not wait long for HAProxy to notice.
fn topology(gateway: u16, database: &str, units: &[SocketAddr]) -> String {
    let mut text = format!(
        "[gateway]\nlisten = \"127.0.0.1:{gateway}\"\ncheck_interval_ms = 200\n\n\
         [[sa]]\nname = \"registration\"\ndatabase = \"{database}\"\n\
         [sa.grants]\nadmin = \"operator\"\n"
    );
    for (index, address) in units.iter().enumerate() {
        text.push_str(&format!(
            "[[sa.units]]\nname = \"registration-{}\"\nlisten = \"{address}\"\nzone = \"z{index}\"\n",
            index + 1
        ));
    }
    text
}

/// Runs `hiscale ARGS…` to its end; its stdout, or a panic with its stderr.
fn hiscale(args: &[&std::ffi::OsStr]) -> String {
    let output = run_hiscale(args);
    assert!(
        output.status.success(),
        "hiscale {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn health(client: &reqwest::Client, unit: &UnitProcess) -> String {
    client
        .get(format!("{}/health", unit.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Counts of one kind of request under load.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Why requests failed (status and error code, or the client's error), first few only.
    reasons: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    /// Counts a failure and keeps why, for the test's message.
    fn failed(&self, reason: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut reasons = self.reasons.lock().unwrap();
        if reasons.len() < 10 {
            reasons.push(reason);
        }
    }
}

/// A failed answer in words: its status and the protocol's error code, or the client's error.
async fn why(answer: Result<reqwest::Response, reqwest::Error>) -> Option<String> {
    match answer {
        Ok(reply) if reply.status().is_success() => None,
        Ok(reply) => {
            let status = reply.status().as_u16();
            let body = reply.text().await.unwrap_or_default();
            Some(format!(
                "{status} {}",
                body.chars().take(160).collect::<String>()
            ))
        }
        Err(error) => Some(format!("client error: {error:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_or_drained_unit_costs_no_read_behind_haproxy() {
    let database = fresh_database(tests::Backend::Postgres).await;
    let addresses: Vec<SocketAddr> = (0..2)
        .map(|_| ([127, 0, 0, 1], free_port()).into())
        .collect();
    let listen = free_port();
    let files = tempfile::tempdir().unwrap();
    let topology_path = files.path().join("topology.toml");
    let secrets_path = files.path().join("secrets.toml");
    std::fs::write(&topology_path, topology(listen, &database.url, &addresses)).unwrap();
    std::fs::write(&secrets_path, format!("[tokens]\nadmin = \"{ADMIN}\"\n")).unwrap();
    let checked = hiscale(&[
        "check".as_ref(),
        "--topology".as_ref(),
        topology_path.as_os_str(),
    ]);
    assert!(
        checked.contains("1 service areas, 2 units, 0 warnings"),
        "{checked}"
    );
    let start = async |index: usize| {
        UnitProcess::start_topology(
            &topology_path,
            &secrets_path,
            &format!("registration-{}", index + 1),
            addresses[index],
        )
        .await
    };
    let client = hiscale::tls::client_builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // The first unit in a fresh store is alone while the topology names a peer; it says so in
    // /health (still PASS) until the peer has recorded itself in the same store.
    let first = start(0).await;
    let alone = health(&client, &first).await;
    assert!(
        alone.starts_with("PASS\nwarning: alone in this store") && alone.contains("registration-2"),
        "{alone}"
    );
    let mut units = [Some(first), Some(start(1).await)];
    let together = health(&client, units[0].as_ref().unwrap()).await;
    // (The test cluster runs with fsync off, which /health reports as a postgres warning.)
    assert!(
        together.starts_with("PASS\n") && !together.contains("alone"),
        "{together}"
    );

    let config = hiscale(&[
        "haproxy-config".as_ref(),
        "--topology".as_ref(),
        topology_path.as_os_str(),
    ]);
    let _haproxy = start_haproxy(&config);
    let front = format!("http://127.0.0.1:{listen}/registration");
    wait_passing(&client, &front).await;
    let mut ids = Vec::new();
    for n in 0..8 {
        let body = serde_json::json!({"person": {"type": "natural", "firstname": "Ha", "lastname": format!("Proxy{n}")}});
        ids.push(post_customer(&client, &front, body.to_string(), JSON).await);
    }
    let ids = Arc::new(ids);

    // Readers and writers through HAProxy, while units die, return and drain.
    let stop = Arc::new(AtomicBool::new(false));
    let began = std::time::Instant::now();
    let reads = Arc::new(Tally::default());
    let writes = Arc::new(Tally::default());
    let acknowledged = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let mut tasks = Vec::new();
    for task in 0..6usize {
        let (client, front, ids, stop) = (client.clone(), front.clone(), ids.clone(), stop.clone());
        let (reads, writes, acknowledged) = (reads.clone(), writes.clone(), acknowledged.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = &ids[(task + n as usize) % ids.len()];
                if task < 4 {
                    let answer = client
                        .get(format!("{front}/customers/{id}"))
                        .bearer_auth(ADMIN)
                        .header("accept", JSON)
                        .send()
                        .await;
                    match why(answer).await {
                        None => {
                            reads.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(reason) => reads.failed(format!(
                            "at {:.2} s: {reason}",
                            began.elapsed().as_secs_f64()
                        )),
                    }
                } else {
                    let lastname = format!("W{task}x{n}");
                    let answer = client
                        .put(format!("{front}/customers/{id}/person"))
                        .bearer_auth(ADMIN)
                        .header("content-type", JSON)
                        .body(format!(
                            r#"{{"type":"natural","firstname":"Ha","lastname":"{lastname}"}}"#
                        ))
                        .send()
                        .await;
                    if answer.is_ok_and(|reply| reply.status().is_success()) {
                        writes.ok.fetch_add(1, Ordering::Relaxed);
                        acknowledged.lock().unwrap().insert(id.clone(), lastname);
                    } else {
                        writes.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("killed at {:.2} s", began.elapsed().as_secs_f64());
    drop(units[1].take()); // kill -9
    tokio::time::sleep(Duration::from_secs(3)).await;
    units[1] = Some(start(1).await);
    println!("back at {:.2} s", began.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_kill = (
        reads.ok.load(Ordering::Relaxed),
        reads.failed.load(Ordering::Relaxed),
        writes.ok.load(Ordering::Relaxed),
        writes.failed.load(Ordering::Relaxed),
    );

    // Drained: HAProxy takes the unit out after two failed checks, before anyone notices.
    let drained = client
        .put(format!("http://{}/admin/drain", addresses[0]))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(drained.status().is_success());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let read_failures = reads.failed.load(Ordering::Relaxed);
    let write_failures = writes.failed.load(Ordering::Relaxed);
    println!(
        "kill -9 and return: {} reads ok, {} failed; {} writes ok, {} failed; \
         then drained: {} reads ok, {} failed in all",
        after_kill.0,
        after_kill.1,
        after_kill.2,
        after_kill.3,
        reads.ok.load(Ordering::Relaxed),
        read_failures
    );
    assert_eq!(
        read_failures,
        0,
        "idempotent reads failed behind HAProxy: {:?}",
        reads.reasons.lock().unwrap()
    );
    assert!(
        write_failures <= after_kill.3,
        "writes failed while a unit was only drained"
    );

    // Every customer with an acknowledged write holds a writer's value (two writers may share
    // a customer, so not necessarily the last one acknowledged).
    let acknowledged = acknowledged.lock().unwrap().clone();
    for (id, lastname) in acknowledged {
        let current: serde_json::Value = client
            .get(format!("http://{}/customers/{id}", addresses[1]))
            .bearer_auth(ADMIN)
            .header("accept", JSON)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let name = current["person"]["lastname"].as_str().unwrap_or_default();
        assert!(
            name.starts_with('W'),
            "customer {id}: acknowledged {lastname}, found {current}"
        );
    }
}

#[test]
fn the_committed_haproxy_config_passes_haproxys_check() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy/haproxy.cfg");
    let binary = std::env::var("HISCALE_HAPROXY").unwrap_or_else(|_| "haproxy".into());
    let output = std::process::Command::new(&binary)
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {binary} ({error}): scripts/test installs it"));
    assert!(
        output.status.success(),
        "haproxy -c refused {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // What HAProxy just accepted includes the routing of writes to units that take them.
    let config = std::fs::read_to_string(&path).unwrap();
    for line in [
        "    acl writing method POST PUT PATCH DELETE\n",
        "    use_backend registration-write if registration writing { nbsrv(registration-write) gt 0 }\n",
        "\nbackend registration-write\n",
        "    option httpchk GET /health/write\n",
    ] {
        assert!(
            config.contains(line),
            "{line:?} missing from {}",
            path.display()
        );
    }
}

/// Issue 25 behind real HAProxy: a request whose body is drip-fed a byte a second is answered
/// `408 request-too-slow` by HAProxy within its `timeout http-request` (the unit never holds
/// it), and one client address holding the topology's `max_connections_per_client`
/// connections is answered `429 too-many-client-connections` on the next, until it lets go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_cuts_drip_fed_requests_and_bounds_connections_per_client() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let database = fresh_database(tests::Backend::Sqlite).await;
    let address: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let listen = free_port();
    let files = tempfile::tempdir().unwrap();
    let topology_path = files.path().join("topology.toml");
    let secrets_path = files.path().join("secrets.toml");
    let text = topology(listen, &database.url, &[address]).replacen(
        "check_interval_ms = 200\n",
        "check_interval_ms = 200\nmax_connections_per_client = 3\n",
        1,
    );
    std::fs::write(&topology_path, text).unwrap();
    std::fs::write(&secrets_path, format!("[tokens]\nadmin = \"{ADMIN}\"\n")).unwrap();
    let _unit =
        UnitProcess::start_topology(&topology_path, &secrets_path, "registration-1", address).await;
    let config = hiscale(&[
        "haproxy-config".as_ref(),
        "--topology".as_ref(),
        topology_path.as_os_str(),
    ]);
    let _haproxy = start_haproxy(&config);
    let front = format!("http://127.0.0.1:{listen}/registration");
    // A client of its own, dropped (with its kept-alive connection) before counting.
    wait_passing(&hiscale::tls::client(), &front).await;
    let gateway: SocketAddr = ([127, 0, 0, 1], listen).into();
    let head = |method: &str, extra: &str| {
        format!("{method} /registration/heartbeat HTTP/1.1\r\nHost: x\r\n{extra}\r\n")
    };

    // Drip-fed: HAProxy waits for the body (http-buffer-request) and gives up at 10 s.
    let started = std::time::Instant::now();
    let mut dripping = TcpStream::connect(gateway).await.unwrap();
    dripping
        .write_all(
            head(
                "POST",
                "Content-Type: application/json\r\nContent-Length: 1000\r\n",
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        tokio::select! {
            read = dripping.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(read) => answer.extend_from_slice(&buffer[..read]),
            },
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                // The peer may be gone already; the read ends the loop then.
                let _ = dripping.write_all(b" ").await;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(14),
            "HAProxy held a drip-fed request for 14 s"
        );
    }
    let answer = String::from_utf8_lossy(&answer);
    println!("HAProxy cut a drip-fed body after {:?}", started.elapsed());
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request-too-slow"), "{answer}");

    // Three connections at once from this address are served, the fourth is refused.
    let mut held = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(gateway).await.unwrap();
        stream.write_all(head("GET", "").as_bytes()).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .unwrap()
            .unwrap_or(0);
        let answer = String::from_utf8_lossy(&buffer[..read]).into_owned();
        statuses.push(answer.lines().next().unwrap_or_default().to_owned());
        if answer.starts_with("HTTP/1.1 429") {
            assert!(answer.contains("too-many-client-connections"), "{answer}");
        }
        held.push(stream);
    }
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 429 Too Many Requests"
        ]
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = hiscale::tls::client()
        .get(format!("{front}/heartbeat"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
}
