//! Write load that runs through database crashes and outages: writer tasks that keep writing
//! to an owner unit over HTTP, retry what got no clear answer, record every acknowledged write
//! and count every answer, plus the checks that come after (is every acknowledged write
//! there, which accounts does a unit hold).
//!
//! Each writer owns the customers it creates and writes them one request at a time, so the
//! last acknowledged write of an aspect is what the owner must hold at the end, and a customer
//! whose delete was acknowledged must be gone (deletes only when asked for: most tests compare
//! accounts, which a delete would only thin out). A write that
//! got a 5xx or no answer at all may or may not have been applied: the writer sends the same
//! request again (same body, same unique login) until it gets a clear answer, so a create
//! applied by a lost attempt shows up as `409 already-taken` on the retry, never as a second
//! customer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::{ADMIN, JSON, Reply};

/// The seed of a test's randomness: `HISCALE_TEST_SEED` when set, else taken from the clock.
/// Printed as `seed = N`, so a failing run can be repeated.
pub fn seed() -> u64 {
    let seed = std::env::var("HISCALE_TEST_SEED")
        .ok()
        .map(|text| {
            text.trim()
                .parse()
                .unwrap_or_else(|_| panic!("HISCALE_TEST_SEED={text:?} is not a whole number"))
        })
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos() as u64)
                .unwrap_or(0)
                % 1_000_000_007
        });
    println!("seed = {seed}");
    seed
}

/// A small deterministic random generator (SplitMix64): the same seed, the same choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// A duration between `low` and `high`.
    pub fn duration(&mut self, low: Duration, high: Duration) -> Duration {
        let span = high.saturating_sub(low).as_millis().max(1) as u64;
        low + Duration::from_millis(self.below(span))
    }
}

/// A write the owner acknowledged (2xx): `field` of `aspect` holds `value` from `version` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub id: String,
    pub aspect: &'static str,
    pub field: &'static str,
    pub value: String,
    pub version: i64,
}

/// One kind of answer: status, error code (empty for success) and whether `Retry-After` came.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AnswerKind {
    pub status: u16,
    pub code: String,
    pub retry_after: bool,
}

impl std::fmt::Display for AnswerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status)?;
        if !self.code.is_empty() {
            write!(f, " {}", self.code)?;
        }
        if self.retry_after {
            write!(f, " (Retry-After)")?;
        }
        Ok(())
    }
}

/// What the writers did, all of them together.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Acknowledged writes, in the order each writer got them.
    pub acks: Vec<Ack>,
    /// Logins of creates that a lost attempt applied (the retry answered `409 already-taken`).
    pub applied_unseen: Vec<String>,
    /// Customers deleted (acknowledged, or applied by a lost attempt: the retry answered
    /// `404`); no writer writes them again.
    pub deleted: Vec<String>,
    /// Every answer, counted by kind.
    pub answers: BTreeMap<AnswerKind, u64>,
    /// Requests that got no answer at all, counted by what went wrong.
    pub transport_errors: BTreeMap<String, u64>,
    /// Answers no writer expects (a 4xx other than those planned, a write given up).
    pub unexpected: Vec<String>,
}

impl LoadReport {
    /// The counts, one kind per line, for the test's output.
    pub fn summary(&self) -> String {
        let mut lines: Vec<String> = self
            .answers
            .iter()
            .map(|(kind, count)| format!("  {kind}: {count}"))
            .collect();
        lines.extend(
            self.transport_errors
                .iter()
                .map(|(kind, count)| format!("  no answer ({kind}): {count}")),
        );
        format!(
            "{} acknowledged writes, {} creates applied by a lost attempt; answers:\n{}",
            self.acks.len(),
            self.applied_unseen.len(),
            lines.join("\n")
        )
    }

    /// How many answers had a status matching `filter`.
    pub fn count(&self, filter: impl Fn(&AnswerKind) -> bool) -> u64 {
        self.answers
            .iter()
            .filter(|(kind, _)| filter(kind))
            .map(|(_, count)| count)
            .sum()
    }

    fn merge(&mut self, other: LoadReport) {
        self.acks.extend(other.acks);
        self.applied_unseen.extend(other.applied_unseen);
        self.deleted.extend(other.deleted);
        for (kind, count) in other.answers {
            *self.answers.entry(kind).or_default() += count;
        }
        for (kind, count) in other.transport_errors {
            *self.transport_errors.entry(kind).or_default() += count;
        }
        self.unexpected.extend(other.unexpected);
    }
}

/// Writer tasks running against one owner unit until [`WriteLoad::stop`].
#[derive(Debug)]
pub struct WriteLoad {
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<LoadReport>>,
}

/// How long one write may keep being retried before its writer gives up on it.
const WRITE_DEADLINE: Duration = Duration::from_secs(120);
/// How long a single request may take (a unit waits up to 15 s for a database connection).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);

impl WriteLoad {
    /// Starts `writers` tasks writing to the owner at `url`; `tag` makes their logins unique
    /// (lower-case letters and digits).
    pub fn start(url: &str, writers: usize, seed: u64, tag: &str) -> Self {
        Self::start_on(&[url], writers, seed, tag, false)
    }

    /// Like [`WriteLoad::start`], with writer `i` writing to `urls[i % urls.len()]` (units of
    /// one owner, sharing its database) and, with `deletes`, deleting whole customers now and
    /// then, so that a copy has tombstones to apply too.
    pub fn start_on(urls: &[&str], writers: usize, seed: u64, tag: &str, deletes: bool) -> Self {
        assert!(!urls.is_empty(), "a write load needs a unit to write to");
        let stop = Arc::new(AtomicBool::new(false));
        let client = hiscale::tls::client_builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("an HTTP client");
        let writers = (0..writers)
            .map(|index| {
                let writer = Writer {
                    client: client.clone(),
                    url: urls[index % urls.len()].to_owned(),
                    deletes,
                    prefix: format!("{tag}w{index}n"),
                    rng: Rng::new(seed ^ (index as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407)),
                    stop: stop.clone(),
                    report: LoadReport::default(),
                };
                tokio::spawn(writer.run())
            })
            .collect();
        Self { stop, writers }
    }

    /// Tells the writers to stop after their current write (retried until it gets a clear
    /// answer) and collects what they did.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        let mut report = LoadReport::default();
        for writer in self.writers {
            report.merge(writer.await.expect("a writer task panicked"));
        }
        report
    }
}

/// One write, sent again unchanged until it gets a clear answer.
#[derive(Debug, Clone)]
enum Write {
    Create {
        login: String,
        lastname: String,
    },
    Put {
        id: String,
        aspect: &'static str,
        value: String,
    },
    /// `DELETE …/bankaccount` of a customer that has none: draws a version, then rolls back.
    DeleteMissing {
        id: String,
    },
    /// `DELETE /customers/{id}`: leaves a tombstone that copies must apply.
    DeleteCustomer {
        id: String,
    },
}

/// What a request came back with.
enum Outcome {
    Answer(Reply),
    NoAnswer(String),
}

struct Writer {
    client: reqwest::Client,
    url: String,
    /// Whether this writer deletes customers too.
    deletes: bool,
    prefix: String,
    rng: Rng,
    stop: Arc<AtomicBool>,
    report: LoadReport,
}

impl Writer {
    async fn run(mut self) -> LoadReport {
        let mut mine: Vec<String> = Vec::new();
        let mut serial = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            serial += 1;
            let unique = format!("{}{serial}", self.prefix);
            let roll = self.rng.below(100);
            let write = if mine.is_empty() || roll < 15 {
                Write::Create {
                    login: unique.clone(),
                    lastname: format!("L{unique}"),
                }
            } else {
                let id = mine[self.rng.below(mine.len() as u64) as usize].clone();
                match roll {
                    15..30 => Write::Put {
                        id,
                        aspect: "account",
                        value: unique,
                    },
                    30..60 => Write::Put {
                        id,
                        aspect: "person",
                        value: format!("L{unique}"),
                    },
                    60..92 => Write::Put {
                        id,
                        aspect: "address.home",
                        value: format!("Weg {unique}"),
                    },
                    92..96 if self.deletes => Write::DeleteCustomer { id },
                    _ => Write::DeleteMissing { id },
                }
            };
            if let Some(id) = self.write(&write).await {
                mine.push(id);
            }
            if let Write::DeleteCustomer { id } = &write {
                // Acknowledged or not, it is never written again (an unclear delete is
                // retried until it is clear, and a delete given up is reported as unexpected).
                mine.retain(|held| held != id);
            }
        }
        self.report
    }

    /// Sends `write` until it gets a clear answer; returns the id of a created customer.
    async fn write(&mut self, write: &Write) -> Option<String> {
        let deadline = Instant::now() + WRITE_DEADLINE;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let reply = match self.send(write).await {
                Outcome::Answer(reply) => reply,
                Outcome::NoAnswer(error) => {
                    if Instant::now() > deadline {
                        self.report.unexpected.push(format!(
                            "{write:?}: no answer within {WRITE_DEADLINE:?} (last: {error})"
                        ));
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if reply.status.is_server_error() {
                if Instant::now() > deadline {
                    self.report.unexpected.push(format!(
                        "{write:?}: still {} after {WRITE_DEADLINE:?}",
                        reply.status
                    ));
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            return self.settled(write, &reply, attempts);
        }
    }

    /// Records a clear answer; returns the id of a created customer.
    fn settled(&mut self, write: &Write, reply: &Reply, attempts: u32) -> Option<String> {
        let version = reply.header("etag").and_then(crate::etag_version);
        match (write, reply.status) {
            (Write::Create { login, lastname }, StatusCode::CREATED) => {
                let id = reply.json()["id"].as_str().unwrap_or_default().to_owned();
                let version = version.unwrap_or_else(|| id.parse().unwrap_or(0));
                for (aspect, field, value) in [
                    ("account", "login", login.clone()),
                    ("person", "lastname", lastname.clone()),
                ] {
                    self.report.acks.push(Ack {
                        id: id.clone(),
                        aspect,
                        field,
                        value,
                        version,
                    });
                }
                Some(id)
            }
            // A lost attempt created it; this retry found its login taken.
            (Write::Create { login, .. }, StatusCode::CONFLICT)
                if attempts > 1 && reply.error_code() == "already-taken" =>
            {
                self.report.applied_unseen.push(login.clone());
                None
            }
            (Write::Put { id, aspect, value }, StatusCode::OK) => {
                self.report.acks.push(Ack {
                    id: id.clone(),
                    aspect,
                    field: field_of(aspect),
                    value: value.clone(),
                    version: version.unwrap_or(0),
                });
                None
            }
            (Write::DeleteMissing { .. }, StatusCode::NOT_FOUND)
                if reply.error_code() == "aspect-not-found" =>
            {
                None
            }
            (Write::DeleteCustomer { id }, StatusCode::NO_CONTENT) => {
                self.report.deleted.push(id.clone());
                None
            }
            // A lost attempt deleted it; this retry found it gone.
            (Write::DeleteCustomer { id }, StatusCode::NOT_FOUND)
                if attempts > 1 && reply.error_code() == "not-found" =>
            {
                self.report.deleted.push(id.clone());
                None
            }
            _ => {
                self.report.unexpected.push(format!(
                    "{write:?} (attempt {attempts}): {} {}",
                    reply.status, reply.body
                ));
                None
            }
        }
    }

    async fn send(&mut self, write: &Write) -> Outcome {
        let request = match write {
            Write::Create { login, lastname } => self
                .client
                .post(format!("{}/customers", self.url))
                .header("content-type", JSON)
                .body(
                    serde_json::json!({
                        "account": {"login": login, "password": "secret-password"},
                        "person": {"type": "natural", "firstname": "Load", "lastname": lastname},
                        "addresses": {"home": {"street": "Am Anfang 1", "zip": "53111", "city": "Bonn"}}
                    })
                    .to_string(),
                ),
            Write::Put { id, aspect, value } => self
                .client
                .put(format!("{}/customers/{id}/{aspect}", self.url))
                .header("content-type", JSON)
                .body(aspect_body(aspect, value).to_string()),
            Write::DeleteMissing { id } => self
                .client
                .delete(format!("{}/customers/{id}/bankaccount", self.url)),
            Write::DeleteCustomer { id } => self
                .client
                .delete(format!("{}/customers/{id}", self.url)),
        };
        let response = match request
            .bearer_auth(ADMIN)
            .header("accept", JSON)
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => return self.no_answer(&error),
        };
        let status = StatusCode::from_u16(response.status().as_u16())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers().clone();
        let body = match response.text().await {
            Ok(body) => body,
            Err(error) => return self.no_answer(&error),
        };
        let reply = Reply {
            status,
            headers,
            body,
        };
        let kind = AnswerKind {
            status: status.as_u16(),
            code: if status.is_success() {
                String::new()
            } else {
                reply.error_code()
            },
            retry_after: reply.header("retry-after").is_some(),
        };
        *self.report.answers.entry(kind).or_default() += 1;
        Outcome::Answer(reply)
    }

    fn no_answer(&mut self, error: &reqwest::Error) -> Outcome {
        let kind = if error.is_timeout() {
            "timeout"
        } else if error.is_connect() {
            "connect"
        } else {
            "other"
        };
        *self
            .report
            .transport_errors
            .entry(kind.to_owned())
            .or_default() += 1;
        Outcome::NoAnswer(error.to_string())
    }
}

/// The field a writer changes in each aspect.
fn field_of(aspect: &str) -> &'static str {
    match aspect {
        "account" => "login",
        "person" => "lastname",
        _ => "street",
    }
}

/// The body a writer PUTs to `aspect`, carrying `value` in [`field_of`]`(aspect)`.
fn aspect_body(aspect: &str, value: &str) -> serde_json::Value {
    match aspect {
        "account" => serde_json::json!({"login": value, "password": "secret-password"}),
        "person" => serde_json::json!({"type": "natural", "firstname": "Load", "lastname": value}),
        _ => serde_json::json!({"street": value, "zip": "53111", "city": "Bonn"}),
    }
}

/// An aspect inside a customer's JSON (`address.home` sits in `addresses.home`).
fn aspect_of<'a>(resource: &'a serde_json::Value, aspect: &str) -> &'a serde_json::Value {
    match aspect.strip_prefix("address.") {
        Some(qualifier) => &resource["addresses"][qualifier],
        None => &resource[aspect],
    }
}

/// Checks at the owner that each aspect holds its last acknowledged value, at that version or
/// a later one, and that each deleted customer is gone; returns what is wrong (at most `limit`
/// lines).
pub async fn missing_at_owner(url: &str, report: &LoadReport, limit: usize) -> Vec<String> {
    let mut problems: Vec<String> = wrong_at_owner(url, report)
        .await
        .into_iter()
        .map(|wrong| wrong.problem)
        .collect();
    problems.truncate(limit);
    problems
}

/// One acknowledged write the owner does not hold.
#[derive(Debug, Clone)]
pub struct WrongAtOwner {
    /// The last acknowledged write of the aspect; `None` for a deleted customer the owner
    /// holds again (a delete's version is not known to the writer).
    pub ack: Option<Ack>,
    pub id: String,
    pub problem: String,
}

/// Every acknowledged write (the last per aspect) and deletion the owner does not hold.
pub async fn wrong_at_owner(url: &str, report: &LoadReport) -> Vec<WrongAtOwner> {
    let deleted: std::collections::BTreeSet<&str> =
        report.deleted.iter().map(String::as_str).collect();
    let mut last: BTreeMap<(&str, &str), &Ack> = BTreeMap::new();
    for ack in report
        .acks
        .iter()
        .filter(|ack| !deleted.contains(ack.id.as_str()))
    {
        last.insert((ack.id.as_str(), ack.aspect), ack);
    }
    let client = hiscale::tls::client();
    let get = async |id: &str| {
        client
            .get(format!("{url}/customers/{id}"))
            .bearer_auth(ADMIN)
            .header("accept", JSON)
            .send()
            .await
            .expect("GET a customer at the owner")
    };
    let mut resources: BTreeMap<&str, Option<serde_json::Value>> = BTreeMap::new();
    let mut problems = Vec::new();
    for ((id, aspect), ack) in last {
        if !resources.contains_key(id) {
            let response = get(id).await;
            let resource = if response.status().is_success() {
                Some(response.json().await.expect("a customer as JSON"))
            } else {
                None
            };
            resources.insert(id, resource);
        }
        let wrong = |problem: String| WrongAtOwner {
            ack: Some((*ack).clone()),
            id: id.to_owned(),
            problem,
        };
        let Some(resource) = &resources[id] else {
            problems.push(wrong(format!(
                "customer {id} is missing (acknowledged {ack:?})"
            )));
            continue;
        };
        let stored = aspect_of(resource, aspect);
        let value = stored[ack.field].as_str().unwrap_or_default();
        let version = stored["version"].as_i64().unwrap_or(0);
        if value != ack.value || version < ack.version {
            problems.push(wrong(format!(
                "customer {id} {aspect}: holds {:?} at version {version}, acknowledged {:?} at version {}",
                value, ack.value, ack.version
            )));
        }
    }
    for id in deleted {
        let status = get(id).await.status().as_u16();
        if status != 404 {
            problems.push(WrongAtOwner {
                ack: None,
                id: id.to_owned(),
                problem: format!("customer {id} was deleted, yet the owner answers {status}"),
            });
        }
    }
    problems
}

/// Every live customer's account login at the unit at `url` (owner or copy), read through its
/// feed with the operator's token: `{id → login}`.
pub async fn account_logins(url: &str) -> BTreeMap<String, String> {
    let client = hiscale::tls::client();
    let mut logins = BTreeMap::new();
    let mut version = 0;
    for _ in 0..10_000 {
        let chunk: serde_json::Value = client
            .get(format!(
                "{url}/customers?version={version}&aspects=~account&limit=1000"
            ))
            .bearer_auth(ADMIN)
            .header("accept", JSON)
            .send()
            .await
            .expect("GET the feed")
            .json()
            .await
            .expect("a feed chunk as JSON");
        for item in chunk["items"].as_array().expect("feed items") {
            let id = item["id"].as_str().expect("an id").to_owned();
            let account = &item["account"];
            if item["deleted"] == true || account["deleted"] == true {
                logins.remove(&id);
            } else if let Some(login) = account["login"].as_str() {
                logins.insert(id, login.to_owned());
            }
        }
        version = chunk["version"].as_i64().expect("a feed version");
        if chunk["more"] != true {
            return logins;
        }
    }
    panic!("the feed at {url} did not end within 10 000 chunks");
}

/// Waits (up to `within`) until the copy at `copy_url` holds exactly the owner's accounts;
/// fails with the differences.
pub async fn wait_until_same_accounts(owner_url: &str, copy_url: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let owner = account_logins(owner_url).await;
        let copy = account_logins(copy_url).await;
        let differences = crate::differences(&owner, &copy, 10);
        if differences.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the login copy does not hold exactly the owner's accounts after {within:?} \
             ({} at the owner, {} in the copy); differences: {differences:?}",
            owner.len(),
            copy.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What a test under load checks at the end: the writers met no surprise, every acknowledged
/// write is at the owner, each login is held once, and the copy has exactly the owner's
/// accounts.
pub async fn check_after_load(report: &LoadReport, owner_url: &str, copy_url: &str) {
    assert!(
        report.unexpected.is_empty(),
        "writers got answers they did not expect: {:?}",
        &report.unexpected[..report.unexpected.len().min(10)]
    );
    assert!(
        report.acks.len() > 20,
        "the writers got too few writes acknowledged to tell anything: {}",
        report.summary()
    );
    let missing = missing_at_owner(owner_url, report, 10).await;
    assert!(
        missing.is_empty(),
        "acknowledged writes are not at the owner: {missing:?}"
    );
    let owner = account_logins(owner_url).await;
    let mut holders: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, login) in &owner {
        holders.entry(login).or_default().push(id);
    }
    let doubled: Vec<_> = holders.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(
        doubled.is_empty(),
        "logins held by more than one customer: {doubled:?}"
    );
    let lost: Vec<&String> = report
        .applied_unseen
        .iter()
        .filter(|login| !holders.contains_key(login.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "creates answered 409 already-taken on retry, yet no customer holds their login: {lost:?}"
    );
    wait_until_same_accounts(owner_url, copy_url, Duration::from_secs(60)).await;
}

/// Waits until the unit at `url` answers `/health` with success (after its database came back).
pub async fn wait_healthy(url: &str, within: Duration) {
    let client = hiscale::tls::client_builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client");
    crate::replication::wait_for(&format!("{url}/health passing"), within, async || {
        client
            .get(format!("{url}/health"))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    })
    .await;
}
