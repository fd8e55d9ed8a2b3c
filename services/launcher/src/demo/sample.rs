//! Fills an empty demo with generated customers, so there is something to read, page through
//! and replicate from the first minute.
//!
//! The customers go in as a client would send them: `POST /registration/customers` through the
//! gateway, with the operator's token. That exercises the whole path (gateway, both units,
//! validation, versioning) and keeps this module ignorant of the store's tables.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::json;
use tokio::task::JoinSet;

/// The media type the sample is written in, also shown in the printed example.
pub const MEDIA_TYPE: &str = "application/vnd.registration.v1+json";

/// What to load, where to send it and where to look whether it is needed.
#[derive(Debug)]
pub struct Options {
    /// The gateway's base URL, e.g. `http://127.0.0.1:8080`.
    pub gateway: String,
    /// The registration database, to count the customers already there.
    pub database: String,
    /// Where that database lives, for the log (never the URL: it may hold a password).
    pub database_label: String,
    pub admin_token: String,
    /// How many customers to create when there are none.
    pub count: usize,
}

/// Creates `count` customers when the registration database holds none; otherwise keeps what
/// is there.
pub async fn ensure(options: Options) -> anyhow::Result<()> {
    let store = hiscale::store::Store::connect(&options.database)
        .await
        .with_context(|| {
            format!(
                "cannot open the registration database in {} to count its customers",
                options.database_label
            )
        })?;
    let existing = store.count_resources(COLLECTION).await;
    store.close().await;
    let existing = existing.context("cannot count the customers already stored")?;
    if existing > 0 {
        tracing::info!(
            "reusing {existing} customers from {}",
            options.database_label
        );
        return Ok(());
    }
    if options.count == 0 {
        return Ok(());
    }
    load(options).await
}

const COLLECTION: &str = "customers";
/// Requests in flight at once: enough to keep both units busy on two cores.
const IN_FLIGHT: usize = 8;

/// Posts customers 1 to `count` with [`IN_FLIGHT`] requests at a time; the first failure stops
/// the load and is returned.
async fn load(options: Options) -> anyhow::Result<()> {
    let client = hiscale::tls::client_builder()
        .no_proxy()
        .build()
        .context("cannot build the HTTP client for the sample")?;
    let started = Instant::now();
    let progress = progress_bar(options.count);
    let work = Arc::new(Work {
        client,
        url: format!("{}/registration/{COLLECTION}", options.gateway),
        token: options.admin_token,
        count: options.count,
        next: AtomicUsize::new(1),
        failed: AtomicBool::new(false),
        progress: progress.clone(),
    });
    let mut workers = JoinSet::new();
    for _ in 0..IN_FLIGHT.min(options.count) {
        workers.spawn(post_until_done(Arc::clone(&work)));
    }
    let mut outcome = Ok(());
    while let Some(joined) = workers.join_next().await {
        let result = joined
            .context("a sample loader task failed")
            .and_then(|result| result);
        if let Err(error) = result {
            work.failed.store(true, Ordering::Relaxed);
            if outcome.is_ok() {
                outcome = Err(error);
            }
        }
    }
    match &outcome {
        Ok(()) => {
            progress.finish_and_clear();
            tracing::info!(
                "loaded {} sample customers in {:.1?}",
                options.count,
                started.elapsed()
            );
        }
        Err(_) => progress.abandon(),
    }
    outcome.context("cannot load the sample customers")
}

/// What the loader tasks share.
struct Work {
    client: reqwest::Client,
    url: String,
    token: String,
    count: usize,
    /// The number of the next customer to create (1-based).
    next: AtomicUsize,
    /// Set when one task failed, so the others stop too.
    failed: AtomicBool,
    progress: ProgressBar,
}

async fn post_until_done(work: Arc<Work>) -> anyhow::Result<()> {
    while !work.failed.load(Ordering::Relaxed) {
        let number = work.next.fetch_add(1, Ordering::Relaxed);
        if number > work.count {
            break;
        }
        let response = work
            .client
            .post(&work.url)
            .bearer_auth(&work.token)
            .header(CONTENT_TYPE, MEDIA_TYPE)
            .header(ACCEPT, MEDIA_TYPE)
            .body(customer(number).to_string())
            .send()
            .await
            .with_context(|| format!("cannot send sample customer {number}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!(
                "creating sample customer {number} was answered {status}: {}",
                body.trim()
            );
        }
        work.progress.inc(1);
    }
    Ok(())
}

fn progress_bar(count: usize) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "sample customers {bar:30} {pos}/{len} {per_sec:>10} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(u64::try_from(count).unwrap_or(u64::MAX)).with_style(style)
}

/// The generated customer number `number`: the same number always gives the same customer,
/// so two fresh demos hold the same data.
fn customer(number: usize) -> serde_json::Value {
    let mut pick = Picker::new(number);
    let (salutation, firstname) = *pick.one(FIRSTNAMES);
    let lastname = *pick.one(LASTNAMES);
    let home = address(&mut pick);
    let bill = if pick.chance(4) {
        address(&mut pick)
    } else {
        home.clone()
    };
    let account = 532_000_000 + u64::try_from(number).unwrap_or_default();
    let (login, password) = credentials(number);
    json!({
        "account": {"login": login, "password": password},
        "person": {
            "type": "natural",
            "salutation": salutation,
            "firstname": firstname,
            "lastname": lastname,
        },
        "addresses": {"home": home, "bill": bill},
        "bankaccount": {
            "owner": format!("{firstname} {lastname}"),
            "iban": registration::iban("DE", &format!("{BANK_CODE:08}{:010}", account % 10_000_000_000)),
            "bic": BIC,
        },
    })
}

/// The login and clear-text password of generated customer `number`, e.g. `user00001` and
/// `demo-00001`: easy to type when trying the demo's sign-in.
pub fn credentials(number: usize) -> (String, String) {
    (format!("user{number:05}"), format!("demo-{number:05}"))
}

fn address(pick: &mut Picker) -> serde_json::Value {
    let street = *pick.one(STREETS);
    let house = 1 + pick.below(120);
    let (zip, city) = *pick.one(CITIES);
    json!({"street": format!("{street} {house}"), "zip": zip, "city": city})
}

/// The bank of the contract's example account.
const BANK_CODE: u32 = 37_040_044;
const BIC: &str = "COLSDE55XXX";

const FIRSTNAMES: &[(&str, &str)] = &[
    ("MS", "Anna"),
    ("MR", "Ben"),
    ("MS", "Clara"),
    ("MR", "David"),
    ("MS", "Emma"),
    ("MR", "Felix"),
    ("MS", "Greta"),
    ("MR", "Hannes"),
    ("MS", "Ida"),
    ("MR", "Jonas"),
    ("MS", "Katharina"),
    ("MR", "Lukas"),
    ("MS", "Mia"),
    ("MR", "Noah"),
    ("MS", "Olivia"),
    ("MR", "Paul"),
];
const LASTNAMES: &[&str] = &[
    "Bauer",
    "Becker",
    "Fischer",
    "Hoffmann",
    "Koch",
    "Meyer",
    "Müller",
    "Richter",
    "Schäfer",
    "Schmidt",
    "Schneider",
    "Schulz",
    "Wagner",
    "Weber",
    "Wolf",
    "Wronka",
];
const STREETS: &[&str] = &[
    "Rheinweg",
    "Kurfürstenallee",
    "Poppelsdorfer Allee",
    "Hauptstraße",
    "Bahnhofstraße",
    "Gartenweg",
    "Lindenstraße",
    "Schillerstraße",
];
const CITIES: &[(&str, &str)] = &[
    ("53129", "Bonn"),
    ("53177", "Bonn"),
    ("50667", "Köln"),
    ("10115", "Berlin"),
    ("20095", "Hamburg"),
    ("80331", "München"),
    ("60311", "Frankfurt am Main"),
    ("04109", "Leipzig"),
];

/// A tiny deterministic generator (SplitMix64) seeded by the customer number: variety without
/// a dependency, and the same customer for the same number on every run.
struct Picker(u64);

impl Picker {
    fn new(seed: usize) -> Self {
        Self(u64::try_from(seed).unwrap_or_default())
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    /// True one time in `times`.
    fn chance(&mut self, times: u64) -> bool {
        self.below(times) == 0
    }

    fn one<'a, T>(&mut self, choices: &'a [T]) -> &'a T {
        let bound = u64::try_from(choices.len()).unwrap_or(u64::MAX);
        let index = usize::try_from(self.below(bound)).unwrap_or_default();
        &choices[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_are_complete_and_reproducible() {
        let first = customer(42);
        assert_eq!(first, customer(42));
        assert_ne!(first["person"], customer(43)["person"]);
        assert_eq!(first["account"]["login"], "user00042");
        assert_eq!(
            credentials(42),
            ("user00042".to_owned(), "demo-00042".to_owned())
        );
        assert_eq!(first["account"]["password"], "demo-00042");
        assert_eq!(first["person"]["type"], "natural");
        for aspect in ["home", "bill"] {
            let address = &first["addresses"][aspect];
            for field in ["street", "zip", "city"] {
                assert!(address[field].is_string(), "{aspect}.{field}");
            }
        }
        let iban = first["bankaccount"]["iban"].as_str().unwrap_or_default();
        assert!(
            iban.len() == 22 && registration::iban_is_valid(iban),
            "{iban}"
        );
        assert!(first.get("id").is_none() && first.get("version").is_none());
    }

    #[test]
    fn logins_are_unique() {
        let mut logins: Vec<_> = (1..=500)
            .map(|number| customer(number)["account"]["login"].to_string())
            .collect();
        logins.sort();
        logins.dedup();
        assert_eq!(logins.len(), 500);
    }
}
