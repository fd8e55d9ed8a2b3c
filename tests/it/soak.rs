//! A seeded soak: rounds of random faults under write load, and after each round a check of
//! the owner against its copy. The faults: `kill -9` of an owner unit, of the primary or of
//! the backup reader; a drained unit; the backup's view of the primary's heartbeat cut; the
//! PostgreSQL cluster under owner and copy stopped (cleanly or at once) and started again; the
//! owner's database put back from a `pg_dump` taken under the writes while its units run; the
//! runbook's restore of such a dump (units stopped, restored, started); the primary reader's
//! way to its source cut. The run ends with one line `N rounds, L lost, U unreported lost
//! (K reported lost), S skipped, R regressed, E extra, X reused`, all but K 0:
//!
//! * lost: an aspect the owner holds that the copy lacks or holds otherwise;
//! * unreported lost: after a restore, an acknowledged write the owner no longer holds whose
//!   version the refill's report does not name as possibly lost (K counts those it names:
//!   writes no copy held, which a restore cannot bring back);
//! * skipped: an acknowledged write (or delete) that the owner does not hold, in a round
//!   without a restore;
//! * regressed: an aspect whose version in the copy went back since the previous round;
//! * extra: something the copy holds that the owner does not (deleted there);
//! * reused: a version acknowledged for two different customers over the whole run.
//!
//! The test command runs one round of each fault; `HISCALE_SOAK_ROUNDS` makes it longer
//! (`scripts/soak`), `HISCALE_TEST_SEED` replays a run, and a failing round prints the seed
//! and round count that replay it. The soak owns its PostgreSQL cluster ([`PgCluster`]): it
//! stops it, which the shared server of the other tests must never be.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hiscale::config::ReaderRole;
use hiscale::{Store, UnitConfig, Version};
use tests::load::{LoadReport, Rng, WriteLoad, missing_at_owner, seed, wait_healthy};
use tests::pg_cluster::PgCluster;
use tests::process::{UnitProcess, free_port};
use tests::relay::Relay;
use tests::replication::{poller_state, replication, wait_for};
use tests::{ADMIN, JSON, unit_config};

/// What a store holds of the copied aspects: (id, aspect) → (version, body).
type Held = BTreeMap<(String, String), (i64, Option<serde_json::Value>)>;

const COPIED: [&str; 1] = ["account"];
/// Writers in each round, spread over both owner units, so that both units' faults matter.
const WRITERS: usize = 4;
/// The reader lease: short, so that a takeover after a killed primary is quick.
const LEASE_MS: u64 = 1_500;
/// How long the landscape may take to do something by itself (recover, catch up, step back):
/// generous, for a shared and busy machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// The units, as indices into [`Landscape::units`]; writers use both owner units, the copy
/// polls owner unit 1.
const OWNER_0: usize = 0;
const OWNER_1: usize = 1;
const PRIMARY: usize = 2;
const BACKUP: usize = 3;
const UNIT_NAMES: [&str; 4] = [
    "owner unit 0",
    "owner unit 1",
    "primary reader",
    "backup reader",
];

/// Kinds of fault: `kill -9` of each of the four units, a drain, a cut heartbeat, a database
/// restart, the owner's database put back under running units, the runbook's restore, and the
/// primary cut from its source.
const KINDS: u64 = 12;

/// One round's fault, with the durations drawn for it.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `kill -9` of a unit, started again (same address and database) after `down`.
    Kill { unit: usize, down: Duration },
    /// `PUT /admin/drain` for `time`, then `DELETE /admin/drain`.
    Drain { unit: usize, time: Duration },
    /// The backup loses sight of the primary's heartbeat until it asks for the reader lease,
    /// and for `hold` more.
    CutHeartbeat { hold: Duration },
    /// PostgreSQL stopped (`-m immediate` or `-m fast`) for `down`, then started again.
    RestartDatabase { immediate: bool, down: Duration },
    /// A `pg_dump` of the owner's database under the writes; `after` later the database is
    /// dropped (its sessions ended), created and `pg_restore`d while both owner units run.
    PutBackDatabase { after: Duration },
    /// The runbook's restore: a `pg_dump` under the writes; `after` later both owner units are
    /// killed, the dump restored, and the units started again.
    RestoreFromDump { after: Duration },
    /// The primary reader's way to its source cut for `hold` (its heartbeat to the backup
    /// untouched): the backup must take over and the copy keep following.
    CutSource { hold: Duration },
    /// `POST /admin/purge` at an owner unit every 200 ms for `time`, under the writes (which
    /// delete customers too): the purge works in batches between the writes, and a reader that
    /// falls behind a purged tombstone re-reads from 0 (`410`) and drops what it no longer sees.
    Purge { unit: usize, time: Duration },
    /// [`SLOW_CLIENTS`] clients drip request bodies into an owner unit, a byte every 500 ms,
    /// for `hold`, reconnecting whenever they are cut: each is cut by the unit's body deadline
    /// ([`BODY_DEADLINE_SECS`]), `/health` answers on fresh connections all along, and the
    /// writers beside them meet nothing new.
    SlowClients { unit: usize, hold: Duration },
}

/// The drip-fed clients of a [`Fault::SlowClients`] round.
const SLOW_CLIENTS: usize = 16;
/// The owner units' body deadline in the soak (seconds), short so that a round sees it cut.
const BODY_DEADLINE_SECS: u64 = 2;

impl Fault {
    /// Whether the round rolls the owner's database back (writes answer `503 restoring` until
    /// the refill, and what no copy held may be lost, reported).
    fn restores(self) -> bool {
        matches!(
            self,
            Self::PutBackDatabase { .. } | Self::RestoreFromDump { .. }
        )
    }

    /// Whether writes may meet `503 restoring`: a rollback, or an owner unit started again
    /// (its start gate holds writes until the login copy has polled it).
    fn may_refuse_restoring(self) -> bool {
        self.restores()
            || matches!(self, Self::Kill { unit, .. } if unit == OWNER_0 || unit == OWNER_1)
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Kill { unit, down } => write!(f, "kill -9 {} for {down:?}", UNIT_NAMES[unit]),
            Self::Drain { unit, time } => write!(f, "drain {} for {time:?}", UNIT_NAMES[unit]),
            Self::CutHeartbeat { hold } => write!(
                f,
                "cut the backup's heartbeat until it asks for the lease, then {hold:?} more"
            ),
            Self::RestartDatabase { immediate, down } => write!(
                f,
                "stop PostgreSQL (-m {}) for {down:?}",
                if immediate { "immediate" } else { "fast" }
            ),
            Self::PutBackDatabase { after } => write!(
                f,
                "put the owner's database back from a pg_dump {after:?} old under running units"
            ),
            Self::RestoreFromDump { after } => write!(
                f,
                "restore the owner from a pg_dump {after:?} old (units stopped and started)"
            ),
            Self::CutSource { hold } => {
                write!(f, "cut the primary reader from its source for {hold:?}")
            }
            Self::Purge { unit, time } => {
                write!(f, "purge tombstones at {} for {time:?}", UNIT_NAMES[unit])
            }
            Self::SlowClients { unit, hold } => write!(
                f,
                "{SLOW_CLIENTS} clients drip bodies into {} for {hold:?}",
                UNIT_NAMES[unit]
            ),
        }
    }
}

/// Draws the next fault. Kinds come from a seeded bag holding each kind once, refilled when
/// empty: the short default run meets every kind, and a long run meets each equally often.
fn next_fault(rng: &mut Rng, bag: &mut Vec<u64>) -> Fault {
    if bag.is_empty() {
        *bag = (0..KINDS).collect();
        for index in (1..bag.len()).rev() {
            let other = rng.below(index as u64 + 1) as usize;
            bag.swap(index, other);
        }
    }
    match bag.pop().unwrap() {
        kind @ 0..4 => Fault::Kill {
            unit: kind as usize,
            down: rng.duration(Duration::from_millis(300), Duration::from_secs(2)),
        },
        4 => Fault::Drain {
            unit: rng.below(4) as usize,
            time: rng.duration(Duration::from_secs(1), Duration::from_secs(3)),
        },
        5 => Fault::CutHeartbeat {
            hold: rng.duration(Duration::from_millis(300), Duration::from_secs(2)),
        },
        6 => Fault::RestartDatabase {
            immediate: rng.below(2) == 0,
            down: rng.duration(Duration::from_secs(1), Duration::from_secs(4)),
        },
        7 => Fault::PutBackDatabase {
            after: rng.duration(Duration::from_millis(500), Duration::from_secs(3)),
        },
        8 => Fault::RestoreFromDump {
            after: rng.duration(Duration::from_millis(500), Duration::from_secs(3)),
        },
        9 => Fault::CutSource {
            hold: rng.duration(Duration::from_secs(4), Duration::from_secs(8)),
        },
        10 => Fault::Purge {
            unit: if rng.below(2) == 0 { OWNER_0 } else { OWNER_1 },
            time: rng.duration(Duration::from_secs(1), Duration::from_secs(3)),
        },
        _ => Fault::SlowClients {
            unit: if rng.below(2) == 0 { OWNER_0 } else { OWNER_1 },
            hold: rng.duration(Duration::from_secs(3), Duration::from_secs(5)),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeded_faults_lose_nothing() {
    let started = Instant::now();
    let seed = seed();
    let mut rng = Rng::new(seed);
    let rounds: usize = std::env::var("HISCALE_SOAK_ROUNDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(KINDS as usize)
        .clamp(1, 1000);
    let mut landscape = Landscape::start().await;
    landscape.readers_settled().await;
    landscape.gates_open().await;

    let (mut lost, mut skipped, mut regressed, mut extra) = (0, 0, 0, 0);
    let (mut unreported, mut reported, mut reused) = (0, 0, 0);
    let mut acknowledged: BTreeMap<i64, String> = BTreeMap::new();
    let mut bag = Vec::new();
    let mut seen_before = Held::new();
    for round in 0..rounds {
        let fault = next_fault(&mut rng, &mut bag);
        println!("round {round} (seed {seed}): {fault}");
        let _replay = Replay { seed, round, fault };
        let round_started = Instant::now();
        let owners = [landscape.url(OWNER_0), landscape.url(OWNER_1)];
        let load = WriteLoad::start_on(
            &[&owners[0], &owners[1]],
            WRITERS,
            seed ^ round as u64,
            &format!("r{round}"),
            true,
        );
        tokio::time::sleep(rng.duration(Duration::from_millis(300), Duration::from_secs(1))).await;
        let seen = landscape.inflict(fault).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let report = load.stop().await;
        check_answers(round, &report, fault.may_refuse_restoring());
        landscape.all_healthy().await;
        if fault.restores() {
            let refill = landscape.refilled().await;
            let (round_unreported, round_reported) =
                landscape.lost_after_restore(&report, &refill).await;
            println!(
                "round {round}: the refill named {round_reported} lost acknowledged writes \
                 (no copy held them), {round_unreported} lost without a report"
            );
            unreported += round_unreported;
            reported += round_reported;
        } else {
            skipped += missing_at_owner(&owners[0], &report, 20).await.len();
        }
        for ack in &report.acks {
            match acknowledged.get(&ack.version) {
                Some(id) if *id != ack.id => {
                    println!(
                        "round {round}: version {} acknowledged for customer {id} and again for {}",
                        ack.version, ack.id
                    );
                    reused += 1;
                }
                Some(_) => {}
                None => {
                    acknowledged.insert(ack.version, ack.id.clone());
                }
            }
        }
        landscape.readers_settled().await;
        landscape.gates_open().await;

        // Quiet now: the copy must reach the owner and hold exactly what it holds.
        let end = landscape.owner_store.horizon("customers").await.unwrap();
        wait_for(
            &format!("round {round} (seed {seed}): the copy catching up"),
            PATIENCE,
            async || landscape.copy_store.cursor("customers").await.unwrap() >= end,
        )
        .await;
        let owner_held = held(&landscape.owner_store, end).await;
        let copy_held = held(&landscape.copy_store, end).await;
        let round_lost = owner_held
            .iter()
            .filter(|(key, value)| copy_held.get(*key) != Some(*value))
            .count();
        let round_extra = copy_held
            .keys()
            .filter(|key| !owner_held.contains_key(*key))
            .count();
        let round_regressed = seen_before
            .iter()
            .filter(|(key, (version, _))| copy_held.get(*key).is_some_and(|(now, _)| now < version))
            .count();
        println!(
            "round {round}: {seen}{} writes acknowledged, {} customers deleted, {} refused \
             with 503, {} without an answer; {} aspects; lost {round_lost}, regressed \
             {round_regressed}, extra {round_extra}; {:.1} s",
            report.acks.len(),
            report.deleted.len(),
            report.count(|kind| kind.status == 503),
            report.transport_errors.values().sum::<u64>(),
            owner_held.len(),
            round_started.elapsed().as_secs_f64()
        );
        lost += round_lost;
        extra += round_extra;
        regressed += round_regressed;
        seen_before = copy_held;
    }
    println!(
        "{rounds} rounds, {lost} lost, {unreported} unreported lost ({reported} reported lost), \
         {skipped} skipped, {regressed} regressed, {extra} extra, {reused} reused"
    );
    println!(
        "soak (seed {seed}) done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        (lost, unreported, skipped, regressed, extra, reused),
        (0, 0, 0, 0, 0, 0),
        "seed {seed}: replay with HISCALE_TEST_SEED={seed} HISCALE_SOAK_ROUNDS={rounds}"
    );
}

/// What the writers met must be what the faults explain: requests without an answer (a
/// killed unit) and refusals that say why and when to come back (`503 database-unavailable`
/// with `Retry-After`, and `503 restoring` in a round that rolls the owner back), never a
/// `500` or an answer no writer expects. A rollback may lose a customer a writer created
/// after the backup (no copy held it): its later writes answer `404 not-found`, which only
/// such a round explains.
fn check_answers(round: usize, report: &LoadReport, restores: bool) {
    let unexpected: Vec<&String> = report
        .unexpected
        .iter()
        .filter(|answer| !(restores && answer.contains("404 Not Found")))
        .collect();
    assert!(
        unexpected.is_empty(),
        "round {round}: writers got answers they did not expect: {:?}\n{}",
        &unexpected[..unexpected.len().min(10)],
        report.summary()
    );
    assert_eq!(
        report.count(|kind| kind.status >= 500 && kind.status != 503),
        0,
        "round {round}: server errors other than 503:\n{}",
        report.summary()
    );
    assert_eq!(
        report.count(|kind| kind.status == 503
            && !((kind.code == "database-unavailable" || (restores && kind.code == "restoring"))
                && kind.retry_after)),
        0,
        "round {round}: 503 without code database-unavailable (or restoring, in a restore \
         round) and Retry-After:\n{}",
        report.summary()
    );
}

/// On a panic anywhere in a round, names the round and how to replay it.
struct Replay {
    seed: u64,
    round: usize,
    fault: Fault,
}

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "round {} ({}) failed; replay with HISCALE_TEST_SEED={} HISCALE_SOAK_ROUNDS={}",
                self.round,
                self.fault,
                self.seed,
                self.round + 1
            );
        }
    }
}

/// The units under test and what they stand on: two owner units sharing one database, a
/// primary and a backup login reader sharing another, both databases on the soak's own
/// cluster, and the relay through which the backup watches the primary. Everything is stopped
/// when dropped, units first (fields drop in order).
struct Landscape {
    units: Vec<Option<UnitProcess>>,
    configs: Vec<UnitConfig>,
    relay: Relay,
    /// Between the primary reader and its source (owner unit 1).
    source_relay: Relay,
    owner_db: String,
    /// Where the round's `pg_dump` goes.
    dumps: tempfile::TempDir,
    owner_store: Store,
    copy_store: Store,
    cluster: PgCluster,
}

impl Landscape {
    async fn start() -> Self {
        let cluster = tokio::task::block_in_place(PgCluster::start);
        let owner_db = cluster.database("registration").await;
        let copy_db = cluster.database("login").await;
        let mut configs: Vec<UnitConfig> = (1..=2)
            .map(|n| {
                unit_config(
                    &format!("registration-{n}"),
                    &owner_db,
                    ([127, 0, 0, 1], free_port()).into(),
                )
            })
            .collect();
        let source_relay = Relay::start(configs[OWNER_1].listen).await;
        let mut primary = tests::login_reader_config(&copy_db, &source_relay.url());
        primary.reader.lease_ms = LEASE_MS;
        let relay = Relay::start(primary.listen).await;
        // A rolled-back owner refills itself from the login copy (either reader serves it);
        // after a start it takes no write until login has polled (the start gate: the witness
        // of a restore with the units stopped).
        for owner in &mut configs {
            owner.limits.body_deadline_secs = BODY_DEADLINE_SECS;
            owner.consumers = BTreeMap::from([("customers".to_owned(), vec!["login".to_owned()])]);
            owner.restore_from = vec![hiscale::config::PeerConfig {
                origin: Default::default(),
                sa: "login".into(),
                collection: "customers".into(),
                url: format!("http://{}", primary.listen),
                token: ADMIN.into(),
                aspects: "~account".into(),
                interface_version: 1,
            }];
        }
        let mut backup = primary.clone();
        backup.unit = "login-2".into();
        backup.listen = ([127, 0, 0, 1], free_port()).into();
        backup.reader.role = ReaderRole::Backup;
        backup.reader.primary_url = Some(relay.url());
        backup.reader.heartbeat_interval_ms = 200;
        // The backup reaches the source directly: only the primary's way is cut.
        for source in &mut backup.sources {
            source.url = format!("http://{}", configs[OWNER_1].listen);
        }
        configs.extend([primary, backup]);
        let mut units = Vec::new();
        for config in &configs {
            units.push(Some(UnitProcess::start_config(config.clone()).await));
        }
        Self {
            units,
            relay,
            source_relay,
            owner_db: owner_db.clone(),
            dumps: tempfile::tempdir().unwrap(),
            owner_store: Store::connect(&owner_db).await.unwrap(),
            copy_store: Store::connect(&copy_db).await.unwrap(),
            configs,
            cluster,
        }
    }

    fn url(&self, unit: usize) -> String {
        format!("http://{}", self.configs[unit].listen)
    }

    /// Inflicts `fault` under the running load and undoes it; returns what it saw on the way
    /// (empty, or a sentence ending in `; `).
    async fn inflict(&mut self, fault: Fault) -> String {
        match fault {
            Fault::Kill { unit, down } => {
                drop(self.units[unit].take());
                tokio::time::sleep(down).await;
                self.units[unit] =
                    Some(UnitProcess::start_config(self.configs[unit].clone()).await);
                String::new()
            }
            Fault::Drain { unit, time } => self.drain(unit, time).await,
            Fault::CutHeartbeat { hold } => self.cut_heartbeat(hold).await,
            Fault::RestartDatabase { immediate, down } => {
                self.restart_database(immediate, down).await
            }
            Fault::PutBackDatabase { after } => self.put_back(after, false).await,
            Fault::RestoreFromDump { after } => self.put_back(after, true).await,
            Fault::CutSource { hold } => self.cut_source(hold).await,
            Fault::Purge { unit, time } => self.purge(unit, time).await,
            Fault::SlowClients { unit, hold } => self.slow_clients(unit, hold).await,
        }
    }

    /// Takes a `pg_dump` of the owner's database under the writes, lets `after` pass, and puts
    /// it back: with the owner units running, or (`runbook`) killed first and started after.
    async fn put_back(&mut self, after: Duration, runbook: bool) -> String {
        let dump = self.dumps.path().join("registration.dump");
        tokio::task::block_in_place(|| tests::backup::pg_dump(&self.owner_db, &dump));
        tokio::time::sleep(after).await;
        if runbook {
            for unit in [OWNER_0, OWNER_1] {
                drop(self.units[unit].take());
            }
        }
        // Restored beside the live database, then swapped in: the units see the old state
        // appear at once, as after a failover to a standby that lagged behind.
        let name = self.owner_db.rsplit_once('/').unwrap().1.to_owned();
        let staging = format!("{name}_restored");
        let staging_url = format!("{}{staging}", self.cluster.server_url());
        tokio::task::block_in_place(|| {
            self.cluster
                .psql(&format!("DROP DATABASE IF EXISTS {staging}"), "postgres");
            self.cluster
                .psql(&format!("CREATE DATABASE {staging}"), "postgres");
        });
        tokio::task::block_in_place(|| tests::backup::pg_restore(&staging_url, &dump));
        tokio::task::block_in_place(|| {
            self.cluster
                .psql(&format!("DROP DATABASE {name} WITH (FORCE)"), "postgres");
            self.cluster.psql(
                &format!("ALTER DATABASE {staging} RENAME TO {name}"),
                "postgres",
            );
        });
        if runbook {
            for unit in [OWNER_0, OWNER_1] {
                self.units[unit] =
                    Some(UnitProcess::start_config(self.configs[unit].clone()).await);
            }
        }
        String::new()
    }

    /// Cuts the primary reader's way to its source for `hold`: the backup must take over
    /// (the primary gives its lease up after a lease of silence) while the primary's heartbeat
    /// stays fine, and the primary take the lease back once the link heals.
    async fn cut_source(&self, hold: Duration) -> String {
        let backup = self.url(BACKUP);
        self.source_relay.cut();
        let cut = Instant::now();
        wait_for(
            "the backup taking over from the primary cut from its source",
            PATIENCE,
            async || {
                poller_state(&backup).await == "polling"
                    && self.lease().await.unit == self.configs[BACKUP].unit
            },
        )
        .await;
        let took_over = cut.elapsed();
        tokio::time::sleep(hold.saturating_sub(took_over)).await;
        self.source_relay.restore();
        format!(
            "the backup polled {:.1} s after the primary was cut from its source; ",
            took_over.as_secs_f64()
        )
    }

    /// After a restore: waits until no owned collection restores and no refill runs at either
    /// owner unit, and returns the refills' reports (both units may have refilled).
    async fn refilled(&self) -> Vec<serde_json::Value> {
        let status = async |unit: usize| self.admin_restore(unit).await;
        wait_for("the owner's refill to end", PATIENCE, async || {
            let (zero, one) = (status(OWNER_0).await, status(OWNER_1).await);
            zero["restoring"] == serde_json::json!([])
                && zero["refill"]["running"] == false
                && one["refill"]["running"] == false
        })
        .await;
        let mut reports = Vec::new();
        for unit in [OWNER_0, OWNER_1] {
            if let Some(found) = status(unit).await["refill"]["reports"].as_array() {
                reports.extend(found.iter().cloned());
            }
        }
        assert!(!reports.is_empty(), "no unit reports a refill");
        reports
    }

    /// Sorts what the owner lost of the round's acknowledged writes: (unreported, reported).
    /// Reported: its version is among the refill's unseen versions, or among its aspect's
    /// unaccounted ones (no peer holds the aspect); a deletion the owner lost is reported when
    /// the copy did not hold it either.
    async fn lost_after_restore(
        &self,
        report: &LoadReport,
        refills: &[serde_json::Value],
    ) -> (usize, usize) {
        let within = |range: &serde_json::Value, version: i64| {
            range[0].as_i64().is_some_and(|from| from <= version)
                && range[1].as_i64().is_some_and(|to| version <= to)
        };
        let named = |aspect: &str, version: i64| {
            refills.iter().any(|refill| {
                refill["unseen_versions"]
                    .as_array()
                    .is_some_and(|ranges| ranges.iter().any(|range| within(range, version)))
                    || refill["unaccounted"].as_array().is_some_and(|ranges| {
                        ranges.iter().any(|range| {
                            range["aspect"] == aspect
                                && within(&serde_json::json!([range["from"], range["to"]]), version)
                        })
                    })
            })
        };
        let copy = self.url(PRIMARY);
        let client = client();
        let (mut unreported, mut reported) = (0, 0);
        for wrong in tests::load::wrong_at_owner(&self.url(OWNER_0), report).await {
            let is_reported = match &wrong.ack {
                Some(ack) => named(ack.aspect, ack.version),
                None => {
                    let at_copy = client
                        .get(format!("{copy}/customers/{}", wrong.id))
                        .bearer_auth(ADMIN)
                        .header("accept", JSON)
                        .send()
                        .await
                        .expect("GET a customer at the copy")
                        .status()
                        .as_u16();
                    at_copy != 404
                }
            };
            if is_reported {
                reported += 1;
            } else {
                println!("lost without a report: {}", wrong.problem);
                unreported += 1;
            }
        }
        (unreported, reported)
    }

    /// Drains `unit` for `time`: its `/health` fails (HAProxy would send it nothing new),
    /// while it keeps serving whoever asks it directly, the writers included; then back.
    /// Drips bodies into `unit` from [`SLOW_CLIENTS`] clients for `hold`, checking `/health`
    /// every 250 ms meanwhile; says how the drip-fed requests ended.
    async fn slow_clients(&self, unit: usize, hold: Duration) -> String {
        let address = self.configs[unit].listen;
        let until = Instant::now() + hold;
        let give_up = Duration::from_secs(4 * BODY_DEADLINE_SECS);
        let clients: Vec<_> = (0..SLOW_CLIENTS)
            .map(|_| {
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    while Instant::now() < until {
                        outcomes.push(
                            tests::drip::drip_one(
                                address,
                                false,
                                Duration::from_millis(500),
                                give_up,
                            )
                            .await,
                        );
                    }
                    outcomes
                })
            })
            .collect();
        let mut checks = 0;
        while Instant::now() < until {
            let check = tests::drip::check(address, "/health").await;
            assert!(
                check.is_ok(),
                "/health of {} under slow clients: {check:?}",
                UNIT_NAMES[unit]
            );
            checks += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let mut outcomes = Vec::new();
        for client in clients {
            outcomes.extend(client.await.expect("a slow client"));
        }
        let bound = Duration::from_secs(BODY_DEADLINE_SECS + 2);
        for outcome in &outcomes {
            assert!(
                outcome.took <= bound
                    && (outcome.answer.is_empty() || outcome.answer.contains("body-too-slow")),
                "a drip-fed request at {} ended so: {outcome:?}",
                UNIT_NAMES[unit]
            );
        }
        let cut = outcomes
            .iter()
            .filter(|outcome| outcome.answer.contains("body-too-slow"))
            .count();
        format!(
            "{} drip-fed requests, {cut} answered 408 body-too-slow, {checks} /health checks \
             passed; ",
            outcomes.len()
        )
    }

    /// Purges at `unit` every 200 ms for `time`; says how many tombstones went.
    async fn purge(&self, unit: usize, time: Duration) -> String {
        let client = client();
        let url = self.url(unit);
        let until = Instant::now() + time;
        let mut purged = 0;
        while Instant::now() < until {
            let reply = client
                .post(format!("{url}/admin/purge"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .expect("POST /admin/purge");
            let status = reply.status().as_u16();
            let body = reply.text().await.unwrap_or_default();
            assert_eq!(
                status, 200,
                "POST /admin/purge at {}: {body}",
                UNIT_NAMES[unit]
            );
            let report: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            purged += count_purged(&report);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        format!("{purged} resource tombstones purged; ")
    }

    async fn drain(&self, unit: usize, time: Duration) -> String {
        let client = client();
        let url = self.url(unit);
        let drain = async |method: reqwest::Method| {
            client
                .request(method, format!("{url}/admin/drain"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .expect("/admin/drain")
                .status()
                .as_u16()
        };
        assert_eq!(drain(reqwest::Method::PUT).await, 204, "PUT /admin/drain");
        let until = Instant::now() + time;
        let mut served = 0;
        while Instant::now() < until {
            let health = client
                .get(format!("{url}/health"))
                .send()
                .await
                .expect("/health of a drained unit");
            let status = health.status().as_u16();
            let body = health.text().await.unwrap_or_default();
            assert!(
                status == 503 && body.contains("draining"),
                "/health of the drained {}: {status} {body}",
                UNIT_NAMES[unit]
            );
            let feed = client
                .get(format!(
                    "{url}/customers?version=0&aspects=~account&limit=5"
                ))
                .bearer_auth(ADMIN)
                .header("accept", JSON)
                .send()
                .await
                .expect("a direct read of a drained unit");
            assert_eq!(
                feed.status().as_u16(),
                200,
                "a direct read of the drained {}",
                UNIT_NAMES[unit]
            );
            served += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            drain(reqwest::Method::DELETE).await,
            204,
            "DELETE /admin/drain"
        );
        format!("{served} direct reads served while drained; ")
    }

    /// Cuts the backup's view of the primary's heartbeat while both run. The backup then
    /// believes the primary gone and asks for the reader lease, yet must apply nothing while
    /// the primary holds it. Only if the primary's lease lapses meanwhile (a busy machine) may
    /// the backup take over, under a new epoch: that is allowed, and said.
    async fn cut_heartbeat(&self, hold: Duration) -> String {
        let backup = self.url(BACKUP);
        let primary_unit = &self.configs[PRIMARY].unit;
        let lease_at_cut = self.lease().await;
        let applied_at_cut = chunks_applied(&backup).await;
        self.relay.cut();
        let cut = Instant::now();
        let mut asked_after = None;
        let mut took_over = false;
        loop {
            // Applied chunks first, the lease after: a chunk the backup applied shows with the
            // epoch it applied under, or a later one.
            let status = replication(&backup).await;
            let lease = self.lease().await;
            let same_lease =
                lease.epoch == lease_at_cut.epoch && lease_at_cut.unit == *primary_unit;
            let applied = status["sources"][0]["chunks_applied"].as_u64().unwrap_or(0);
            assert!(
                !same_lease || applied == applied_at_cut,
                "the backup applied {} chunks while cut off from the primary, which held the \
                 lease all along (epoch {}): {status}",
                applied - applied_at_cut,
                lease.epoch
            );
            took_over |= lease.epoch != lease_at_cut.epoch;
            if asked_after.is_none() && (status["sources"][0]["state"] == "waiting" || took_over) {
                asked_after = Some(cut.elapsed());
            }
            match asked_after {
                Some(asked) if cut.elapsed() >= asked + hold => break,
                Some(_) => {}
                None => assert!(
                    cut.elapsed() < PATIENCE,
                    "the backup did not ask for the lease within {PATIENCE:?} of the cut: {status}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.relay.restore();
        format!(
            "the backup asked for the lease {:.1} s after the cut and {}; ",
            asked_after.unwrap_or_default().as_secs_f64(),
            if took_over {
                "took over once the primary's lease had lapsed"
            } else {
                "applied nothing"
            }
        )
    }

    /// Stops PostgreSQL under every unit for `down`, and starts it again on the same port: the
    /// units (never restarted) must reconnect by themselves.
    async fn restart_database(&mut self, immediate: bool, down: Duration) -> String {
        tokio::task::block_in_place(|| {
            if immediate {
                self.cluster.crash();
            } else {
                self.cluster.stop();
            }
        });
        let stopped = Instant::now();
        // The outage is real: the units see it.
        let health = client()
            .get(format!("{}/health", self.url(OWNER_0)))
            .send()
            .await
            .expect("/health during the outage")
            .status()
            .as_u16();
        assert_eq!(
            health, 503,
            "/health of owner unit 0 with PostgreSQL stopped"
        );
        tokio::time::sleep(down.saturating_sub(stopped.elapsed())).await;
        tokio::task::block_in_place(|| self.cluster.start_again());
        String::new()
    }

    /// Waits until both owner units' start gates are open (login has polled since they
    /// started), so that a round's writes meet no `503 restoring` but a fault's own.
    async fn gates_open(&self) {
        for unit in [OWNER_0, OWNER_1] {
            wait_for("an owner unit's start gate to open", PATIENCE, async || {
                self.admin_restore(unit).await["gate"] == serde_json::json!([])
            })
            .await;
        }
    }

    /// `GET /admin/restore` of an owner unit: its restoring state, start gate and refill.
    async fn admin_restore(&self, unit: usize) -> serde_json::Value {
        client()
            .get(format!("{}/admin/restore", self.url(unit)))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("GET /admin/restore")
            .json()
            .await
            .expect("/admin/restore as JSON")
    }

    /// Waits until every unit answers `/health` with success again.
    async fn all_healthy(&self) {
        for unit in 0..self.units.len() {
            wait_healthy(&self.url(unit), PATIENCE).await;
        }
    }

    /// Waits until the primary holds the reader lease and the backup stands by: whatever the
    /// fault, the readers end up there.
    async fn readers_settled(&self) {
        let backup = self.url(BACKUP);
        wait_for("the backup reader standing by", PATIENCE, async || {
            poller_state(&backup).await == "standing-by"
        })
        .await;
        let primary_unit = &self.configs[PRIMARY].unit;
        wait_for(
            "the primary reader holding the lease",
            PATIENCE,
            async || self.lease().await.unit == *primary_unit,
        )
        .await;
    }

    /// The reader lease as the copy's database holds it.
    async fn lease(&self) -> hiscale::store::LeaseState {
        self.copy_store
            .lease()
            .await
            .unwrap()
            .expect("a reader took the lease")
    }
}

/// An HTTP client whose requests cannot hang the soak.
fn client() -> reqwest::Client {
    hiscale::tls::client_builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// Chunks the unit at `url` applied since it started.
async fn chunks_applied(url: &str) -> u64 {
    replication(url).await["sources"][0]["chunks_applied"]
        .as_u64()
        .unwrap_or(0)
}

/// The live copied aspects a store holds up to `until`.
async fn held(store: &Store, until: Version) -> Held {
    let names: Vec<String> = COPIED.iter().map(|name| (*name).to_owned()).collect();
    let all = store
        .read_changes("customers", Version::ZERO, until, &names, 1_000_000)
        .await
        .unwrap();
    all.items
        .into_iter()
        .filter(|item| !item.deleted)
        .flat_map(|item| {
            let id = item.id.as_str().to_owned();
            item.aspects
                .into_iter()
                .filter(|aspect| !aspect.deleted)
                .map(move |aspect| {
                    (
                        (id.clone(), aspect.name),
                        (
                            aspect.version.get(),
                            aspect
                                .body
                                .and_then(|body| serde_json::from_str(&body).ok()),
                        ),
                    )
                })
        })
        .collect()
}

/// The resource tombstones a purge report (`{"purged": [{"collection", "report"}]}`) removed.
fn count_purged(report: &serde_json::Value) -> u64 {
    report["purged"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["report"]["resource_tombstones"].as_u64())
        .sum()
}
