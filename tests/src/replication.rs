//! Watching copies from the outside, through their own HTTP interface, as an operator would.

use std::time::{Duration, Instant};

use crate::ADMIN;

/// `GET /admin/replication` of a unit, with the operator's token.
pub async fn replication(url: &str) -> serde_json::Value {
    hiscale::tls::client()
        .get(format!("{url}/admin/replication"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("replication status")
        .json()
        .await
        .expect("replication status as JSON")
}

/// The cursor of a unit's first source (0 before its first chunk).
pub async fn cursor(url: &str) -> i64 {
    replication(url).await["sources"][0]["cursor"]
        .as_i64()
        .unwrap_or(0)
}

/// The poller state of a unit's first source (`polling`, `standing-by`, …).
pub async fn poller_state(url: &str) -> String {
    replication(url).await["sources"][0]["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Checks every 100 ms until `check` holds; fails naming `what` after `within`.
pub async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the copy at `url` has applied everything up to `version`.
pub async fn wait_until_copied(url: &str, version: i64, within: Duration) {
    wait_for(
        &format!("{url} copying up to {version}"),
        within,
        async || cursor(url).await >= version,
    )
    .await;
}

/// Creates a customer at a unit over HTTP with the operator's token; returns its id.
pub async fn post_customer(
    client: &reqwest::Client,
    url: &str,
    body: String,
    content_type: &str,
) -> String {
    let reply = client
        .post(format!("{url}/customers"))
        .bearer_auth(ADMIN)
        .header("content-type", content_type)
        .header("accept", crate::JSON)
        .body(body)
        .send()
        .await
        .expect("POST /customers");
    assert_eq!(reply.status().as_u16(), 201);
    let value: serde_json::Value = reply.json().await.expect("created resource as JSON");
    value["id"].as_str().expect("an id").to_owned()
}

/// `POST /admin/purge` at a unit with the operator's token: what it purged, per collection.
pub async fn purge(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client
        .post(format!("{url}/admin/purge"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("POST /admin/purge")
        .json()
        .await
        .expect("purge report as JSON")
}
