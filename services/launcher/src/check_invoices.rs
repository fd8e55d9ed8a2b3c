//! `hiscale check-invoices`: names every open invoice whose total is not its order's total
//! now — orders changed after billing invoiced them, which shop refuses since a placed
//! order's lines are frozen, but which older data may hold. Reads shop's orders and billing's
//! invoices through the gateway as the operator (each feed paged from 0: the current state),
//! prints one line per difference, and exits non-zero when there is one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use hiscale::types::Money;
use serde_json::{Map, Value};

/// Where the landscape is and the operator's token.
#[derive(Debug, Clone, Args)]
pub struct CheckInvoicesOptions {
    /// The gateway's URL (HAProxy, or the demo's), e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// A file holding the operator's bearer token.
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,
}

/// Resources per feed page (the feed's maximum).
const PAGE: u32 = 1000;
/// How long one page may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this many pages per collection (10 million resources): a bound, not a limit met.
const MAX_PAGES: usize = 10_000;

pub async fn run(options: &CheckInvoicesOptions) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&options.token_file)
        .with_context(|| format!("cannot read {}", options.token_file.display()))?
        .trim()
        .to_owned();
    let client = hiscale::tls::client_builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("cannot build the HTTP client")?;
    let base = options.url.trim_end_matches('/');
    let feed = Feed {
        client: &client,
        token: &token,
    };
    let orders = feed
        .current(&format!("{base}/shop/orders"), "~order")
        .await?;
    let invoices = feed
        .current(&format!("{base}/billing/invoices"), "~invoice")
        .await?;
    let order_totals: BTreeMap<String, Option<Money>> = orders
        .into_iter()
        .map(|(id, aspects)| {
            let total = aspects
                .get("order")
                .and_then(|order| order.get("total"))
                .and_then(|total| serde_json::from_value(total.clone()).ok());
            (id, total)
        })
        .collect();
    let mut parsed = Vec::with_capacity(invoices.len());
    for (id, aspects) in invoices {
        let Some(document) = aspects.get("invoice") else {
            continue;
        };
        let mut document = document.clone();
        if let Some(fields) = document.as_object_mut() {
            fields.remove("version");
        }
        let invoice: billing::Invoice = serde_json::from_value(document)
            .with_context(|| format!("invoice {id} does not read as an invoice"))?;
        parsed.push((id, invoice));
    }
    let differences = billing::audit::differences(
        &order_totals,
        parsed.iter().map(|(id, invoice)| (id.as_str(), invoice)),
    );
    for difference in &differences {
        println!(
            "order {}: invoice {} says {} {}, the order says {}",
            difference.order,
            difference.invoice,
            difference.invoiced.amount,
            difference.invoiced.currency,
            difference
                .now
                .as_ref()
                .map_or("no total".to_owned(), |now| format!(
                    "{} {}",
                    now.amount, now.currency
                )),
        );
    }
    println!(
        "{} of {} orders differ from their open invoice ({} invoices read)",
        differences.len(),
        order_totals.len(),
        parsed.len()
    );
    if !differences.is_empty() {
        bail!(
            "{} invoices do not say what their order says",
            differences.len()
        );
    }
    Ok(())
}

/// Reads a collection's current state through its feed.
struct Feed<'a> {
    client: &'a reqwest::Client,
    token: &'a str,
}

impl Feed<'_> {
    /// Every live resource of the feed at `url` with the `aspects` selected (a selector of plain
    /// names, no characters to escape): id → aspects.
    async fn current(
        &self,
        url: &str,
        aspects: &str,
    ) -> anyhow::Result<BTreeMap<String, Map<String, Value>>> {
        let mut resources: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        let mut version = 0_u64;
        for _ in 0..MAX_PAGES {
            let reply = self
                .client
                .get(format!(
                    "{url}?version={version}&aspects={aspects}&limit={PAGE}"
                ))
                .bearer_auth(self.token)
                .header("accept", "application/json")
                .send()
                .await
                .with_context(|| format!("cannot read {url}"))?;
            let status = reply.status();
            let body = reply
                .text()
                .await
                .with_context(|| format!("cannot read {url}"))?;
            if !status.is_success() {
                bail!("{url} answered {status}: {body}");
            }
            let chunk: Value = serde_json::from_str(&body)
                .with_context(|| format!("{url} answered no feed chunk"))?;
            for item in chunk["items"].as_array().into_iter().flatten() {
                let Some(id) = item["id"].as_str() else {
                    continue;
                };
                if item["deleted"] == true {
                    resources.remove(id);
                    continue;
                }
                let entry = resources.entry(id.to_owned()).or_default();
                for (name, value) in item.as_object().into_iter().flatten() {
                    if value["deleted"] == true {
                        entry.remove(name);
                    } else if value.is_object() {
                        entry.insert(name.clone(), value.clone());
                    }
                }
            }
            let next = chunk["version"].as_u64().unwrap_or(version);
            eprintln!(
                "check-invoices: {url}: {} resources, version {next}",
                resources.len()
            );
            if chunk["more"] != true {
                return Ok(resources);
            }
            if next <= version {
                bail!("{url} did not move past version {version}");
            }
            version = next;
        }
        bail!("{url} had more than {MAX_PAGES} pages")
    }
}
