//! Two registration units behind real HAProxy under read and write load: `kill -9` of one
//! unit and its return cost no idempotent read (HAProxy retries them on the other unit), a
//! drained unit costs nothing at all, and every acknowledged write is there afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tests::process::{UnitProcess, free_port};
use tests::replication::{post_customer, wait_for};
use tests::{ADMIN, JSON, fresh_database, unit_config};

/// HAProxy as the deployment runs it, for the two units: round robin, health checks, retries
/// of idempotent requests only (a write is never sent twice), redispatch to the other unit.
fn haproxy_config(listen: u16, units: &[String]) -> String {
    let servers: String = units
        .iter()
        .enumerate()
        .map(|(index, address)| format!("    server registration-{} {address} check\n", index + 1))
        .collect();
    format!(
        "defaults
    mode http
    retries 3
    option redispatch
    retry-on all-retryable-errors
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    default-server inter 200ms fall 2 rise 2

frontend hiscale
    bind 127.0.0.1:{listen}
    default_backend registration

backend registration
    balance roundrobin
    option httpchk GET /health
    http-check expect string PASS
    http-request disable-l7-retry if !METH_GET !METH_HEAD
    http-request set-header X-Forwarded-Prefix /registration
    http-request replace-path ^/registration/?(.*)$ /\\1
{servers}"
    )
}

/// HAProxy in the foreground, stopped when dropped.
struct Haproxy {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_haproxy(config: &str) -> Haproxy {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let binary = std::env::var("HISCALE_HAPROXY").unwrap_or_else(|_| "haproxy".into());
    let child = std::process::Command::new(&binary)
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot start {binary} ({error}): scripts/test installs HAProxy; HAProxy tests \
                 are never skipped"
            )
        });
    Haproxy { child, _dir: dir }
}

/// Counts of one kind of request under load.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_or_drained_unit_costs_no_read_behind_haproxy() {
    let database = fresh_database(tests::Backend::Postgres).await;
    let configs: Vec<_> = (1..=2)
        .map(|n| {
            unit_config(
                &format!("registration-{n}"),
                &database.url,
                ([127, 0, 0, 1], free_port()).into(),
            )
        })
        .collect();
    let mut units = Vec::new();
    for config in &configs {
        units.push(Some(UnitProcess::start_config(config.clone()).await));
    }
    let listen = free_port();
    let addresses: Vec<String> = configs.iter().map(|c| c.listen.to_string()).collect();
    let _haproxy = start_haproxy(&haproxy_config(listen, &addresses));
    let front = format!("http://127.0.0.1:{listen}/registration");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    wait_for(
        "HAProxy to pass requests",
        Duration::from_secs(30),
        async || {
            client
                .get(format!("{front}/health"))
                .send()
                .await
                .is_ok_and(|reply| reply.status().is_success())
        },
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..8 {
        let body = serde_json::json!({"person": {"type": "natural", "firstname": "Ha", "lastname": format!("Proxy{n}")}});
        ids.push(post_customer(&client, &front, body.to_string(), JSON).await);
    }
    let ids = Arc::new(ids);

    // Readers and writers through HAProxy, while units die, return and drain.
    let stop = Arc::new(AtomicBool::new(false));
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
                    let ok = client
                        .get(format!("{front}/customers/{id}"))
                        .bearer_auth(ADMIN)
                        .header("accept", JSON)
                        .send()
                        .await
                        .is_ok_and(|reply| reply.status().is_success());
                    let tally = if ok { &reads.ok } else { &reads.failed };
                    tally.fetch_add(1, Ordering::Relaxed);
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
    drop(units[1].take()); // kill -9
    tokio::time::sleep(Duration::from_secs(3)).await;
    units[1] = Some(UnitProcess::start_config(configs[1].clone()).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_kill = (
        reads.ok.load(Ordering::Relaxed),
        reads.failed.load(Ordering::Relaxed),
        writes.ok.load(Ordering::Relaxed),
        writes.failed.load(Ordering::Relaxed),
    );

    // Drained: HAProxy takes the unit out after two failed checks, before anyone notices.
    let drained = client
        .put(format!("http://{}/admin/drain", configs[0].listen))
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
    assert_eq!(read_failures, 0, "idempotent reads failed behind HAProxy");
    assert!(
        write_failures <= after_kill.3,
        "writes failed while a unit was only drained"
    );

    // Every customer with an acknowledged write holds a writer's value (two writers may share
    // a customer, so not necessarily the last one acknowledged).
    let acknowledged = acknowledged.lock().unwrap().clone();
    for (id, lastname) in acknowledged {
        let current: serde_json::Value = client
            .get(format!("http://{}/customers/{id}", configs[1].listen))
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
