//! Waits for the units' start gates: after a start, an owner takes no write until every SA
//! copying from it has polled (`framework/src/gate.rs`). The readers poll through the gateway,
//! which starts only after the units are healthy, so the sample waits here for a few seconds
//! rather than meeting `503 restoring`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often each unit is asked.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Waits until no unit at `addresses` holds writes, at most `timeout`; logs the units still
/// holding (and for whom) when it gives up, and goes on: the sample then reports the `503`.
pub async fn wait_open(addresses: &[SocketAddr], admin_token: &str, timeout: Duration) {
    let client = hiscale::tls::client_builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let started = Instant::now();
    let mut holding = Vec::new();
    while started.elapsed() < timeout {
        holding.clear();
        for address in addresses {
            if let Some(held) = held(&client, *address, admin_token).await {
                holding.push(format!("{address}: {held}"));
            }
        }
        if holding.is_empty() {
            tracing::info!(
                seconds = started.elapsed().as_secs_f32(),
                "every owner's consumers have reported: writes are taken"
            );
            return;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    tracing::warn!(?holding, "start gates still hold writes; going on");
}

/// What the unit's start gate holds, or `None` when it holds nothing. A unit that does not
/// answer counts as holding.
async fn held(client: &reqwest::Client, address: SocketAddr, admin_token: &str) -> Option<String> {
    let answer = client
        .get(format!("http://{address}/admin/restore"))
        .bearer_auth(admin_token)
        .send()
        .await;
    let body: serde_json::Value = match answer {
        Ok(answer) if answer.status().is_success() => answer.json().await.ok()?,
        Ok(answer) => return Some(format!("answered {}", answer.status())),
        Err(error) => return Some(error.to_string()),
    };
    match body["gate"].as_array() {
        Some(gate) if gate.is_empty() => None,
        _ => Some(body["gate"].to_string()),
    }
}
