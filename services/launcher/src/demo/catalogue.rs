//! Gives an empty demo shop a small catalogue, so a signed-in customer can place an order
//! from the first minute. Posted through the gateway with the operator's token, as an
//! operator would.

use anyhow::{Context, bail};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::json;

const MEDIA_TYPE: &str = "application/vnd.shop.v1+json";

/// The demo's products: name and price in euros.
pub const PRODUCTS: &[(&str, &str)] = &[
    ("Umbrella", "12.50"),
    ("Rain boots", "39.90"),
    ("Raincoat", "59.00"),
    ("Tea, 100 g", "3.20"),
    ("Hot-water bottle", "8.75"),
];

/// Creates [`PRODUCTS`] when shop holds no product yet.
pub async fn ensure(gateway: &str, admin_token: &str) -> anyhow::Result<()> {
    let client = hiscale::tls::client_builder()
        .no_proxy()
        .build()
        .context("cannot build the HTTP client for the catalogue")?;
    let url = format!("{gateway}/shop/products");
    if has_products(&client, &url, admin_token).await? {
        return Ok(());
    }
    for (name, amount) in PRODUCTS {
        let body =
            json!({"product": {"name": name, "price": {"amount": amount, "currency": "EUR"}}});
        let answer = client
            .post(&url)
            .bearer_auth(admin_token)
            .header(ACCEPT, MEDIA_TYPE)
            .header(CONTENT_TYPE, MEDIA_TYPE)
            .body(body.to_string())
            .send()
            .await
            .context("cannot create a product")?;
        if !answer.status().is_success() {
            bail!(
                "shop refused the product {name}: {} {}",
                answer.status(),
                answer.text().await.unwrap_or_default()
            );
        }
    }
    tracing::info!("created {} products in shop's catalogue", PRODUCTS.len());
    Ok(())
}

/// Whether shop holds a product; asks a few times, since a unit that just turned healthy may
/// still be finding its feet behind the gateway.
async fn has_products(
    client: &reqwest::Client,
    url: &str,
    admin_token: &str,
) -> anyhow::Result<bool> {
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        let answer = client
            .get(format!("{url}?version=0&limit=1"))
            .bearer_auth(admin_token)
            .header(ACCEPT, MEDIA_TYPE)
            .send()
            .await;
        match answer {
            Ok(answer) if answer.status().is_success() => {
                let feed: serde_json::Value = answer
                    .json()
                    .await
                    .context("shop's product feed is not JSON")?;
                return Ok(feed["items"]
                    .as_array()
                    .is_some_and(|items| !items.is_empty()));
            }
            Ok(answer) => {
                last = format!(
                    "{} {}",
                    answer.status(),
                    answer.text().await.unwrap_or_default()
                )
            }
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    bail!("shop did not list its products: {last}")
}

/// How often and how patiently the catalogue asks shop.
const ATTEMPTS: usize = 20;
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);
