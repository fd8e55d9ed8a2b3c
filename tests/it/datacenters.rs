//! Three emulated datacenters in a line (`tests::datacenters::Line`: network namespaces, link
//! proxies with 20 ms one way per hop): a change made in dc1 reaches dc2's copy and then dc3's
//! (relayed by dc2's copy), later with each hop; dc3 cut off for 60 s while dc1 writes
//! converges to dc1 exactly once the link is back; a datacenter's `GET /dc/health` fails
//! naming the SA whose units are all stopped, and passes again when one returns; and when dc2's
//! zone a is lost, its backup reader in zone b takes over. SQLite only;
//! one landscape, the long waits run concurrently, to fit the test command's budget.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tests::datacenters::Line;
use tests::load::{Rng, seed};
use tests::process::run_hiscale;
use tests::{ADMIN, JSON, customer_json};

/// How long the two owner datacenters write, concurrently, in the active/active test; their
/// link is cut for the middle half of it.
const OWNERS_WRITE: Duration = Duration::from_secs(60);

/// Added by each link proxy, in each direction.
const HOP_LATENCY: Duration = Duration::from_millis(20);
/// Changes whose latency is measured.
const CHANGES: usize = 20;
/// How long dc3 is cut off while dc1 writes.
const CUT: Duration = Duration::from_secs(60);
/// The poller backs off up to 30 s while its source is unreachable; then it must catch up.
const CONVERGE_WITHIN: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_line_of_three_datacenters_relays_heals_after_a_long_cut_and_reports_health() {
    let began = Instant::now();
    let seed = seed();
    let line = Line::start(HOP_LATENCY).await;
    println!("three datacenters up in {:.1?}", began.elapsed());
    let client = client();
    let dc1 = line.gateway(0);

    // Everything flows: a first customer reaches the end of the line.
    let id = create(&client, &dc1, seed, 0).await;
    let first = version_at(&client, &dc1, "registration", &id).await;
    seen(
        &client,
        &line.gateway(2),
        &id,
        first,
        Duration::from_secs(90),
    )
    .await;

    let (hop1, hop2) = measure_hops(&client, &line, &id, seed).await;
    println!(
        "change latency, median of {CHANGES}: dc1 -> dc2 {hop1:.1?}, dc1 -> dc2 -> dc3 {hop2:.1?} \
         (the second hop adds {:.1?}; {HOP_LATENCY:?} one way per link)",
        hop2.saturating_sub(hop1)
    );
    // A change crosses one link (its long poll's answer, ≥ 20 ms) to reach dc2 and two to reach
    // dc3, each applied before the next hop can serve it: bounds that hold on a noisy machine.
    assert!(hop1 >= HOP_LATENCY, "dc2 saw changes after {hop1:?}");
    assert!(hop2 >= HOP_LATENCY * 2, "dc3 saw changes after {hop2:?}");
    assert!(
        hop2 > hop1,
        "the latency did not grow with the hops: dc2 {hop1:?}, dc3 {hop2:?}"
    );

    tokio::join!(
        cut_and_heal(&client, &line, seed),
        health_follows_the_units(&client, &line),
        a_lost_zone_hands_reading_to_the_other(&client, &line, seed)
    );
    println!("the datacenter tests took {:.1?}", began.elapsed());
}

/// Registration owns the customers in dc1 and in dc2 (active/active): both write their own
/// customers for 60 s, seeded, while the ways into dc1 and dc2 are cut for the middle 30 s
/// (the two owners cannot reach each other, nor dc3 its relay in dc2). No id is issued twice
/// (dc1's counter draws odd versions, dc2's even); a write sent to the wrong datacenter is
/// refused there (`421`, naming the home) and lands nowhere; afterwards the copies in all three
/// datacenters (dc3's relayed) hold the union, equal to each home's state. SQLite; its own
/// line of three, run beside the other datacenter test.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_owner_datacenters_write_through_a_cut_and_every_copy_holds_the_union() {
    let began = Instant::now();
    let seed = seed();
    let line = Line::start_with_owners(HOP_LATENCY, 2).await;
    println!(
        "three datacenters, two owners, up in {:.1?}",
        began.elapsed()
    );
    let client = client();
    let (dc1, dc2) = (line.gateway(0), line.gateway(1));

    let home_dc1 = create(&client, &dc1, seed, 10_000).await;
    let before = version_at(&client, &dc1, "registration", &home_dc1).await;
    wrong_datacenter_refuses(&client, &dc2, &home_dc1, "dc1").await;
    assert_eq!(
        version_at(&client, &dc1, "registration", &home_dc1).await,
        before,
        "a write refused at dc2 changed the customer at its home"
    );

    let cut = async {
        tokio::time::sleep(OWNERS_WRITE / 4).await;
        line.entries[0].cut();
        line.entries[1].cut();
        tokio::time::sleep(OWNERS_WRITE / 2).await;
        // The cut was real: dc1's copy of dc2's origin stood behind dc2 (which kept writing).
        let owner = state(&client, &dc2, "registration").await.0;
        let copy = state_of(&client, &dc1, "login", Some("dc2")).await.0;
        line.entries[0].restore();
        line.entries[1].restore();
        assert!(
            copy < owner,
            "dc1 reached {copy} of dc2's {owner} while cut off"
        );
        println!("at the end of the cut dc1's copy of dc2's origin stood at {copy} of {owner}");
    };
    let (created_dc1, created_dc2, ()) = tokio::join!(
        write_for(&client, &dc1, seed, 20_000, OWNERS_WRITE),
        write_for(&client, &dc2, seed, 30_000, OWNERS_WRITE),
        cut
    );
    let restored = Instant::now();
    println!(
        "{} customers created at dc1 and {} at dc2 in {OWNERS_WRITE:?}, cut apart for half of it",
        created_dc1.len(),
        created_dc2.len()
    );
    let number = |id: &String| id.parse::<i64>().expect("a numeric id");
    assert!(
        created_dc1.iter().map(number).all(|id| id % 2 == 1),
        "{created_dc1:?}"
    );
    assert!(
        created_dc2.iter().map(number).all(|id| id % 2 == 0),
        "{created_dc2:?}"
    );
    let mut every: Vec<i64> = created_dc1.iter().chain(&created_dc2).map(number).collect();
    let issued = every.len();
    every.sort_unstable();
    every.dedup();
    assert_eq!(every.len(), issued, "an id was issued twice");

    let at_dc1 = state(&client, &dc1, "registration").await.1;
    let at_dc2 = state(&client, &dc2, "registration").await.1;
    assert!(
        at_dc1.keys().all(|id| !at_dc2.contains_key(id)),
        "a customer lives at both homes"
    );
    let union: BTreeMap<String, serde_json::Value> = at_dc1.into_iter().chain(at_dc2).collect();
    let deadline = restored + CONVERGE_WITHIN;
    for datacenter in 0..3 {
        let gateway = line.gateway(datacenter);
        loop {
            let (_, mut copy) = state_of(&client, &gateway, "login", Some("dc1")).await;
            copy.extend(state_of(&client, &gateway, "login", Some("dc2")).await.1);
            if copy == union {
                break;
            }
            if Instant::now() >= deadline {
                let differences = tests::differences(&union, &copy, 10);
                panic!(
                    "dc{}'s copy did not become the union of both homes within \
                     {CONVERGE_WITHIN:?} of the link's return: {differences:#?}\n{}",
                    datacenter + 1,
                    line.log_tail(&format!("login-dc{}-1", datacenter + 1))
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    println!(
        "every copy holds the union ({} customers) {:.1?} after the link came back",
        union.len(),
        restored.elapsed()
    );
    // A copy of several origins serves one at a time.
    let unnamed = client
        .get(format!("{}/login/customers?version=0", line.gateway(2)))
        .bearer_auth(ADMIN)
        .header("accept", JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(unnamed.status().as_u16(), 400);
    assert!(unnamed.text().await.unwrap().contains("origin-required"));
    // And its OpenAPI document says so: origin= is required, one of the two.
    let document: serde_json::Value = client
        .get(format!("{}/login/openapi.json", line.gateway(2)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let origin = document["paths"]["/customers"]["get"]["parameters"]
        .as_array()
        .and_then(|parameters| parameters.iter().find(|p| p["name"] == "origin"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(origin["required"], true, "{origin}");
    assert_eq!(origin["schema"]["enum"], serde_json::json!(["dc1", "dc2"]));
    println!("the active/active test took {:.1?}", began.elapsed());
}

/// A write to customer `id` (homed in `home`) sent to `gateway`'s registration: `421
/// wrong-datacenter` naming the home, and the read is refused the same way.
async fn wrong_datacenter_refuses(client: &reqwest::Client, gateway: &str, id: &str, home: &str) {
    let written = client
        .put(format!("{gateway}/registration/customers/{id}/account"))
        .bearer_auth(ADMIN)
        .header("content-type", JSON)
        .header("accept", JSON)
        .body(
            serde_json::json!({"login": "misdirected", "password": "secret-password"}).to_string(),
        )
        .send()
        .await
        .expect("PUT account");
    assert_eq!(written.status().as_u16(), 421);
    let body = written.text().await.unwrap();
    assert!(
        body.contains("wrong-datacenter") && body.contains(&format!("datacenter {home}")),
        "{body}"
    );
    let read = client
        .get(format!("{gateway}/registration/customers/{id}"))
        .bearer_auth(ADMIN)
        .header("accept", JSON)
        .send()
        .await
        .expect("GET customer");
    assert_eq!(read.status().as_u16(), 421);
}

/// Writes at `gateway`'s registration for `duration` (creates, account changes, deletions,
/// seeded; logins numbered from `first`); every id it created.
async fn write_for(
    client: &reqwest::Client,
    gateway: &str,
    seed: u64,
    first: u64,
    duration: Duration,
) -> Vec<String> {
    let mut rng = Rng::new(seed ^ first);
    let mut live: Vec<String> = Vec::new();
    let mut created = Vec::new();
    let began = Instant::now();
    let mut writes = 0_u64;
    while began.elapsed() < duration {
        let choice = rng.below(10);
        if live.is_empty() || choice < 2 {
            let id = create(client, gateway, seed, first + writes).await;
            created.push(id.clone());
            live.push(id);
        } else if choice < 3 && live.len() > 1 {
            let id = live.swap_remove(rng.below(live.len() as u64) as usize);
            delete(client, gateway, &id).await;
        } else {
            let id = &live[rng.below(live.len() as u64) as usize];
            put_account(client, gateway, id, &format!("w{}x{seed}", first + writes)).await;
        }
        writes += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    created
}

/// Changes one customer's account at dc1 `CHANGES` times; the median time until dc2's copy
/// and dc3's copy show each change.
async fn measure_hops(
    client: &reqwest::Client,
    line: &Line,
    id: &str,
    seed: u64,
) -> (Duration, Duration) {
    let (dc1, dc2, dc3) = (line.gateway(0), line.gateway(1), line.gateway(2));
    let mut hop1 = Vec::new();
    let mut hop2 = Vec::new();
    for change in 0..CHANGES {
        let version = put_account(client, &dc1, id, &format!("hop{change}x{seed}")).await;
        let written = Instant::now();
        let within = Duration::from_secs(30);
        let (at2, at3) = tokio::join!(
            seen(client, &dc2, id, version, within),
            seen(client, &dc3, id, version, within)
        );
        hop1.push(at2 - written);
        hop2.push(at3 - written);
    }
    (median(hop1), median(hop2))
}

/// Cuts dc3's way into dc2 for `CUT` while dc1 writes (creates, account changes, deletions,
/// seeded), then restores it: dc3 must end equal to dc1, its cursor never going back.
async fn cut_and_heal(client: &reqwest::Client, line: &Line, seed: u64) {
    let (dc1, dc2, dc3) = (line.gateway(0), line.gateway(1), line.gateway(2));
    let dc3_reader = line.unit_url("login-dc3-1");
    let cursor_before = cursor(client, &dc3_reader).await;
    line.entries[1].cut();
    let cut_at = Instant::now();
    let mut rng = Rng::new(seed);
    let mut ids: Vec<String> = Vec::new();
    let mut writes = 0_u64;
    let mut cursors = vec![cursor_before];
    let mut next_look = Instant::now();
    while cut_at.elapsed() < CUT {
        let choice = rng.below(10);
        if ids.is_empty() || choice < 2 {
            ids.push(create(client, &dc1, seed, 1000 + writes).await);
        } else if choice < 3 && ids.len() > 1 {
            let id = ids.swap_remove(rng.below(ids.len() as u64) as usize);
            delete(client, &dc1, &id).await;
        } else {
            let id = &ids[rng.below(ids.len() as u64) as usize];
            put_account(client, &dc1, id, &format!("w{writes}x{seed}")).await;
        }
        writes += 1;
        if Instant::now() >= next_look {
            cursors.push(cursor(client, &dc3_reader).await);
            next_look = Instant::now() + Duration::from_secs(2);
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let owner = state(client, &dc1, "registration").await;
    let during_cut = cursor(client, &dc3_reader).await;
    cursors.push(during_cut);
    // The cut was real: dc3 got nothing of the writes (a chunk already on its way may land).
    assert!(
        during_cut < owner.0,
        "dc3 reached {during_cut} of {} while cut off",
        owner.0
    );
    line.entries[1].restore();
    let restored = Instant::now();
    println!("{writes} writes at dc1 during the {CUT:?} cut; dc3 stood at {during_cut}");
    let deadline = restored + CONVERGE_WITHIN;
    loop {
        let copy = state(client, &dc3, "login").await;
        cursors.push(cursor(client, &dc3_reader).await);
        if copy.1 == owner.1 {
            break;
        }
        if Instant::now() >= deadline {
            let differences = tests::differences(&owner.1, &copy.1, 10);
            panic!(
                "dc3 did not converge to dc1 within {CONVERGE_WITHIN:?} of the link's return: \
                 {differences:#?}\n{}",
                line.log_tail("login-dc3-1")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "dc3 equal to dc1 ({} customers) {:.1?} after the link came back",
        owner.1.len(),
        restored.elapsed()
    );
    assert!(
        cursors.windows(2).all(|pair| pair[0] <= pair[1]),
        "dc3's cursor went back: {cursors:?}"
    );
    // dc2, never cut off, holds the same.
    assert_eq!(state(client, &dc2, "login").await.1, owner.1);
}

/// Stops every login unit of dc1: dc1's `/dc/health` fails naming login (and only login);
/// one unit back and it passes again. dc2's stays `PASS` meanwhile.
async fn health_follows_the_units(client: &reqwest::Client, line: &Line) {
    let (dc1, dc2) = (line.gateway(0), line.gateway(1));
    assert_eq!(dc_health(client, &dc1).await, (200, "PASS\n".to_owned()));
    line.stop("login-dc1-1");
    line.stop("login-dc1-2");
    let failing = wait_health(client, &dc1, 503).await;
    assert_eq!(failing, "FAIL\nlogin has no passing unit\n");
    assert_eq!(dc_health(client, &dc2).await.0, 200);
    line.restart("login-dc1-2");
    let passing = wait_health(client, &dc1, 200).await;
    assert_eq!(passing, "PASS\n");
}

/// dc2's zone a is lost (its primary reader killed): the backup in zone b takes over reading,
/// and a change made in dc1 afterwards reaches dc2's copy through it.
async fn a_lost_zone_hands_reading_to_the_other(client: &reqwest::Client, line: &Line, seed: u64) {
    tokio::time::sleep(Duration::from_secs(5)).await;
    line.stop("login-dc2-1");
    let backup = line.unit_url("login-dc2-2");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let heartbeat: serde_json::Value =
            match client.get(format!("{backup}/heartbeat")).send().await {
                Ok(reply) => reply.json().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            };
        if heartbeat["reader"] == "reading" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dc2's backup in zone b did not take over: {heartbeat}\n{}",
            line.log_tail("login-dc2-2")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let id = create(client, &line.gateway(0), seed, 900_000).await;
    let version = version_at(client, &line.gateway(0), "registration", &id).await;
    seen(
        client,
        &line.gateway(1),
        &id,
        version,
        Duration::from_secs(60),
    )
    .await;
    println!("dc2's zone a lost: its zone b backup reads, and carried a change made after");
}

/// Asks `/dc/health` until it answers `status` (bounded); its body then.
async fn wait_health(client: &reqwest::Client, gateway: &str, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (answered, body) = dc_health(client, gateway).await;
        if answered == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{gateway}/dc/health still answers {answered} {body:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The status and body of `GET /dc/health`; status 0 when nothing answered (yet).
async fn dc_health(client: &reqwest::Client, gateway: &str) -> (u16, String) {
    let reply = match client.get(format!("{gateway}/dc/health")).send().await {
        Ok(reply) => reply,
        Err(error) => return (0, error.to_string()),
    };
    let status = reply.status().as_u16();
    (status, reply.text().await.unwrap_or_default())
}

fn client() -> reqwest::Client {
    hiscale::tls::client_builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Creates a customer at dc1's registration; its id. Waits (bounded) while the owner's start
/// gate holds writes until its readers in dc1 and dc2 have polled.
async fn create(client: &reqwest::Client, dc1: &str, seed: u64, n: u64) -> String {
    let body = customer_json(n).replace(&format!("user{n:06}"), &format!("u{n}x{seed}"));
    let deadline = Instant::now() + Duration::from_secs(90);
    let reply = loop {
        let reply = client
            .post(format!("{dc1}/registration/customers"))
            .bearer_auth(ADMIN)
            .header("content-type", JSON)
            .header("accept", JSON)
            .body(body.clone())
            .send()
            .await
            .expect("POST /customers");
        if reply.status().as_u16() != 503 || Instant::now() >= deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(reply.status().as_u16(), 201);
    let created: serde_json::Value = reply.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

/// Replaces a customer's account at dc1; the version of the change.
/// A `503` (a unit's start gate right after a restart, on a loaded machine: seen in CI) is
/// asked again, as a client honouring `Retry-After` does, for up to 90 s.
async fn put_account(client: &reqwest::Client, dc1: &str, id: &str, login: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(90);
    let reply = loop {
        let reply = client
            .put(format!("{dc1}/registration/customers/{id}/account"))
            .bearer_auth(ADMIN)
            .header("content-type", JSON)
            .header("accept", JSON)
            .body(serde_json::json!({"login": login, "password": "secret-password"}).to_string())
            .send()
            .await
            .expect("PUT account");
        if reply.status().as_u16() != 503 || Instant::now() >= deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let status = reply.status().as_u16();
    let body = reply.text().await.unwrap_or_default();
    // The body says why (a 503 names the gate, the database or the drain).
    assert_eq!(status, 200, "PUT account answered {status}: {body}");
    let written: serde_json::Value = serde_json::from_str(&body).unwrap();
    written["version"].as_i64().expect("the change's version")
}

async fn delete(client: &reqwest::Client, dc1: &str, id: &str) {
    let reply = client
        .delete(format!("{dc1}/registration/customers/{id}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("DELETE customer");
    assert!(reply.status().is_success(), "{}", reply.status());
}

/// The version of customer `id`'s account at `sa` behind `gateway`; 0 when it is not there.
async fn version_at(client: &reqwest::Client, gateway: &str, sa: &str, id: &str) -> i64 {
    let Ok(reply) = client
        .get(format!("{gateway}/{sa}/customers/{id}?aspects=~account"))
        .bearer_auth(ADMIN)
        .header("accept", JSON)
        .send()
        .await
    else {
        return 0;
    };
    if !reply.status().is_success() {
        return 0;
    }
    let value: serde_json::Value = reply.json().await.unwrap_or_default();
    value["version"].as_i64().unwrap_or(0)
}

/// When login's copy behind `gateway` first shows customer `id` at `version` or later
/// (looked at every 2 ms, at most `within`).
async fn seen(
    client: &reqwest::Client,
    gateway: &str,
    id: &str,
    version: i64,
    within: Duration,
) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        if version_at(client, gateway, "login", id).await >= version {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{gateway} did not show version {version} of customer {id} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The cursor of the copy a unit keeps (its first source's).
async fn cursor(client: &reqwest::Client, unit: &str) -> i64 {
    let Ok(reply) = client
        .get(format!("{unit}/admin/replication"))
        .bearer_auth(ADMIN)
        .send()
        .await
    else {
        return 0;
    };
    let value: serde_json::Value = reply.json().await.unwrap_or_default();
    value["sources"][0]["cursor"].as_i64().unwrap_or(0)
}

/// Everything `sa` behind `gateway` serves of the customers' accounts, read from its feed from
/// 0: the feed's last version, and every live item (version and account) by id.
async fn state(
    client: &reqwest::Client,
    gateway: &str,
    sa: &str,
) -> (i64, BTreeMap<String, serde_json::Value>) {
    state_of(client, gateway, sa, None).await
}

/// [`state`] of one origin's changes (`origin=`), for a collection owned in several
/// datacenters.
async fn state_of(
    client: &reqwest::Client,
    gateway: &str,
    sa: &str,
    origin: Option<&str>,
) -> (i64, BTreeMap<String, serde_json::Value>) {
    let origin = origin.map_or_else(String::new, |origin| format!("&origin={origin}"));
    let mut items = BTreeMap::new();
    let mut version = 0;
    for _ in 0..1000 {
        let reply = client
            .get(format!(
                "{gateway}/{sa}/customers?version={version}&aspects=~account&limit=500{origin}"
            ))
            .bearer_auth(ADMIN)
            .header("accept", JSON)
            .send()
            .await
            .expect("the feed");
        assert!(
            reply.status().is_success(),
            "{gateway}/{sa}: {}",
            reply.status()
        );
        let chunk: serde_json::Value = reply.json().await.expect("a feed chunk");
        for item in chunk["items"].as_array().into_iter().flatten() {
            let id = item["id"].as_str().unwrap_or("").to_owned();
            // A copy keeps no tombstone of a resource it never held (created and deleted
            // while it was cut off): what must agree is what lives.
            if item["deleted"] == serde_json::Value::Bool(true) {
                items.remove(&id);
            } else {
                items.insert(id, item.clone());
            }
        }
        version = chunk["version"].as_i64().unwrap_or(version);
        if chunk["more"] != serde_json::Value::Bool(true) {
            return (version, items);
        }
    }
    panic!("{gateway}/{sa}'s feed did not end within 1000 chunks");
}

fn median(mut durations: Vec<Duration>) -> Duration {
    durations.sort();
    durations[durations.len() / 2]
}

/// One datacenter's HAProxy configuration, generated from the line's topology
/// (`hiscale haproxy-config --datacenter dc2`), passes HAProxy's check and answers
/// `GET /dc/health` from its own health checks: `FAIL` naming login while none of dc2's login
/// units answers, `PASS` once one does. Without `--datacenter`, a topology of three refuses.
#[tokio::test]
async fn haproxy_answers_a_datacenters_health_from_its_checks() {
    let dir = tempfile::tempdir().unwrap();
    // Three loopback addresses stand for the datacenters: HAProxy needs no namespace.
    let addresses = [2, 3, 4].map(|host| std::net::Ipv4Addr::new(127, 0, 231, host));
    let urls = addresses.map(|address| format!("http://{address}:9000"));
    let gateway_port = tests::process::free_port();
    let (text, units) = hiscale::emulation::LineTopology {
        addresses: &addresses,
        urls: &urls,
        gateway_port,
        first_unit_port: 8100,
        databases: dir.path(),
        quick_failover: true,
        owners: 1,
    }
    .write();
    let topology = dir.path().join("topology.toml");
    std::fs::write(&topology, text).unwrap();
    let topology = topology.to_str().unwrap();

    let refused = run_hiscale(&["haproxy-config", "--topology", topology]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("name one with --datacenter"), "{stderr}");

    let generated = run_hiscale(&[
        "haproxy-config",
        "--topology",
        topology,
        "--datacenter",
        "dc2",
    ]);
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let config = dir.path().join("haproxy.cfg");
    std::fs::write(&config, &generated.stdout).unwrap();
    let binary = std::env::var("HISCALE_HAPROXY").unwrap_or_else(|_| "haproxy".into());
    let checked = std::process::Command::new(&binary)
        .args(["-c", "-f"])
        .arg(&config)
        .output()
        .expect("haproxy (scripts/test installs it)");
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let _haproxy = Running(
        std::process::Command::new(&binary)
            .args(["-db", "-f"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = client();
    let gateway = format!("http://{}:{gateway_port}", addresses[1]);
    let failing = wait_health(&client, &gateway, 503).await;
    assert_eq!(failing, "FAIL\nlogin has no passing unit\n");

    // A stand-in for dc2's first login unit whose /health passes.
    let unit = units
        .iter()
        .find(|unit| unit.name == "login-dc2-1")
        .unwrap();
    let listener = tokio::net::TcpListener::bind(unit.listen).await.unwrap();
    let app = axum::Router::new().route("/health", axum::routing::get(|| async { "PASS\n" }));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let passing = wait_health(&client, &gateway, 200).await;
    assert_eq!(passing, "PASS\n");
    server.abort();
}

/// A process killed when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The link proxy holds every byte back by its latency each way, and a cut closes open
/// connections and refuses new ones until restored.
#[tokio::test]
async fn a_link_adds_its_latency_and_can_be_cut_and_restored() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0_u8; 64];
                while let Ok(read) = stream.read(&mut buffer).await {
                    if read == 0 || stream.write_all(&buffer[..read]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let latency = Duration::from_millis(50);
    let link =
        hiscale::emulation::LinkProxy::start("127.0.0.1:0".parse().unwrap(), target, latency)
            .await
            .unwrap();
    let round_trip = async |stream: &mut tokio::net::TcpStream| {
        let sent = Instant::now();
        stream.write_all(b"ping").await?;
        let mut answer = [0_u8; 4];
        stream.read_exact(&mut answer).await?;
        assert_eq!(&answer, b"ping");
        Ok::<Duration, std::io::Error>(sent.elapsed())
    };
    let mut stream = tokio::net::TcpStream::connect(link.address())
        .await
        .unwrap();
    let took = round_trip(&mut stream).await.unwrap();
    assert!(took >= latency * 2, "a round trip took {took:?}");
    assert!(took < Duration::from_secs(5), "a round trip took {took:?}");

    link.cut();
    assert!(link.is_cut());
    let bounded = Duration::from_secs(5);
    let open = tokio::time::timeout(bounded, round_trip(&mut stream)).await;
    assert!(
        matches!(open, Ok(Err(_))),
        "an open connection outlived the cut: {open:?}"
    );
    let mut fresh = tokio::net::TcpStream::connect(link.address())
        .await
        .unwrap();
    let refused = tokio::time::timeout(bounded, round_trip(&mut fresh)).await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "a new connection passed the cut: {refused:?}"
    );

    link.restore();
    let mut again = tokio::net::TcpStream::connect(link.address())
        .await
        .unwrap();
    let took = round_trip(&mut again).await.unwrap();
    assert!(took >= latency * 2, "a round trip took {took:?}");
}

/// Namespaces and veths a dead run left behind (found by the prefix and a process id that no
/// longer runs) are removed before new ones are made; the new ones go when dropped.
#[test]
fn leftovers_of_a_dead_run_are_removed_and_a_network_removes_its_own() {
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let namespace = format!("hsdc-{dead:x}-77");
    let veth = format!("hsdc{dead:x}x77");
    let ip = |args: &[&str]| {
        let output = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    ip(&["netns", "add", &namespace]);
    ip(&[
        "link",
        "add",
        &veth,
        "type",
        "veth",
        "peer",
        "name",
        &format!("hsdc{dead:x}y77"),
    ]);
    let network = hiscale::emulation::Network::create(1).unwrap();
    assert!(
        !ip(&["netns", "list"]).contains(&namespace),
        "the leftover namespace stayed"
    );
    assert!(
        !ip(&["-o", "link", "show"]).contains(&veth),
        "the leftover veth stayed"
    );
    let own = network.sites()[0].namespace.clone();
    assert!(ip(&["netns", "list"]).contains(&own));
    // A process inside sees its own address only.
    let inside = network
        .command(0, std::path::Path::new("ip"))
        .args(["-o", "-4", "addr", "show"])
        .output()
        .unwrap();
    let inside = String::from_utf8_lossy(&inside.stdout);
    assert!(
        inside.contains(&format!("inet {}/24", network.sites()[0].address)),
        "{inside}"
    );
    drop(network);
    assert!(
        !ip(&["netns", "list"]).contains(&own),
        "the namespace outlived its network"
    );
}
