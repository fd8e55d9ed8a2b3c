//! Waits, for a while, until the reading service areas' copies have caught up with the owner,
//! so that the examples printed next already find the sample customers at login, shop and
//! billing. Slow copies are only reported: they keep polling in the background.
//!
//! The owner knows every consumer's position: a consumer asks for the changes after the version
//! it has stored, so once its position (`GET /admin/consumers`) equals the owner's current
//! version it holds everything. One request through the gateway answers for all copies,
//! whichever unit of each reading service area happens to be polling, and without depending on
//! what a unit's `/admin/replication` remembers since it started.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use tokio::time::Instant;

/// Where to ask and for whom to wait.
#[derive(Debug)]
pub struct Options {
    /// The gateway's base URL, e.g. `http://127.0.0.1:8080`.
    pub gateway: String,
    pub admin_token: String,
    /// The owner's service area and the collection the others copy.
    pub owner: &'static str,
    pub collection: &'static str,
    /// The consuming service areas (named as they are known to the owner).
    pub consumers: Vec<String>,
    /// How long to wait before giving up with a warning.
    pub timeout: Duration,
}

/// Polls the owner's consumer positions until every consumer has caught up or the time is up;
/// never fails the demo.
pub async fn wait(options: Options) {
    let started = Instant::now();
    let deadline = started + options.timeout;
    let client = match hiscale::tls::client_builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!("cannot check whether the copies caught up: {error}");
            return;
        }
    };
    let url = format!("{}/{}/admin/consumers", options.gateway, options.owner);
    let spinner = spinner();
    loop {
        let last = match positions(&client, &url, &options).await {
            Ok(progress) if progress.caught_up() => {
                spinner.finish_and_clear();
                tracing::info!(
                    "the copies at {} caught up with {} (version {}) in {:.1?}",
                    options.consumers.join(", "),
                    options.owner,
                    progress.target,
                    started.elapsed()
                );
                return;
            }
            Ok(progress) => progress.describe(options.owner),
            Err(error) => format!("{error:#}"),
        };
        spinner.set_message(format!("copies catching up: {last}"));
        if Instant::now() >= deadline {
            spinner.abandon_with_message(format!("copies still catching up: {last}"));
            tracing::warn!(
                "the copies have not caught up after {:?} ({last}); they keep polling in the \
                 background, so the examples below may not find everything at first",
                options.timeout
            );
            return;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(250);

fn spinner() -> ProgressBar {
    let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let spinner = ProgressBar::new_spinner().with_style(style);
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}

/// The owner's current version and where each awaited consumer stands (`None`: it has not
/// polled yet).
#[derive(Debug, PartialEq, Eq)]
struct Progress {
    target: i64,
    consumers: BTreeMap<String, Option<i64>>,
}

impl Progress {
    fn caught_up(&self) -> bool {
        self.consumers
            .values()
            .all(|position| position.is_some_and(|version| version >= self.target))
    }

    /// E.g. `registration at 240; billing at 200, login at 240, shop not polled yet`.
    fn describe(&self, owner: &str) -> String {
        let consumers: Vec<String> = self
            .consumers
            .iter()
            .map(|(name, position)| match position {
                Some(version) => format!("{name} at {version}"),
                None => format!("{name} not polled yet"),
            })
            .collect();
        format!("{owner} at {}; {}", self.target, consumers.join(", "))
    }
}

/// What `GET /admin/consumers` answers (fields not needed here are ignored).
#[derive(Debug, Deserialize)]
struct ConsumersAnswer {
    collections: Vec<CollectionPositions>,
}

#[derive(Debug, Deserialize)]
struct CollectionPositions {
    collection: String,
    version: i64,
    consumers: Vec<ConsumerPosition>,
}

#[derive(Debug, Deserialize)]
struct ConsumerPosition {
    consumer: String,
    version: i64,
}

async fn positions(
    client: &reqwest::Client,
    url: &str,
    options: &Options,
) -> anyhow::Result<Progress> {
    let response = client
        .get(url)
        .bearer_auth(&options.admin_token)
        .send()
        .await
        .with_context(|| format!("cannot ask {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("{url} answered {status}: {}", body.trim());
    }
    let answer: ConsumersAnswer = response
        .json()
        .await
        .with_context(|| format!("{url} did not answer the expected JSON"))?;
    progress(&answer, options.collection, &options.consumers)
}

fn progress(
    answer: &ConsumersAnswer,
    collection: &str,
    consumers: &[String],
) -> anyhow::Result<Progress> {
    let positions = answer
        .collections
        .iter()
        .find(|positions| positions.collection == collection)
        .with_context(|| format!("the owner reports no collection {collection}"))?;
    Ok(Progress {
        target: positions.version,
        consumers: consumers
            .iter()
            .map(|name| {
                let position = positions
                    .consumers
                    .iter()
                    .find(|consumer| consumer.consumer == *name)
                    .map(|consumer| consumer.version);
                (name.clone(), position)
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: serde_json::Value) -> anyhow::Result<ConsumersAnswer> {
        Ok(serde_json::from_value(json)?)
    }

    #[test]
    fn caught_up_once_every_consumer_has_asked_from_the_current_version() -> anyhow::Result<()> {
        let behind = answer(serde_json::json!({"collections": [{
        "collection": "customers", "version": 40,
        "consumers": [
            {"consumer": "login", "version": 40, "lag_versions": 0, "seconds_since_poll": 1},
            {"consumer": "shop", "version": 20, "lag_versions": 20, "seconds_since_poll": 0},
            {"consumer": "someone-else", "version": 0, "lag_versions": 40, "seconds_since_poll": 9}
        ]}]}))?;
        let progress = progress(
            &behind,
            "customers",
            &["login".to_owned(), "shop".to_owned(), "billing".to_owned()],
        )?;
        assert!(!progress.caught_up());
        assert_eq!(
            progress.describe("registration"),
            "registration at 40; billing not polled yet, login at 40, shop at 20"
        );

        let done = answer(serde_json::json!({"collections": [{
        "collection": "customers", "version": 40,
        "consumers": [
            {"consumer": "login", "version": 40},
            {"consumer": "shop", "version": 40},
            {"consumer": "billing", "version": 40}
        ]}]}))?;
        assert!(progress_of(&done)?.caught_up());
        Ok(())
    }

    #[test]
    fn an_answer_without_the_collection_is_an_error() -> anyhow::Result<()> {
        let other = answer(serde_json::json!({"collections": []}))?;
        assert!(progress_of(&other).is_err());
        Ok(())
    }

    fn progress_of(answer: &ConsumersAnswer) -> anyhow::Result<Progress> {
        progress(
            answer,
            "customers",
            &["login".to_owned(), "shop".to_owned(), "billing".to_owned()],
        )
    }
}
