//! Figure 5: feed chunks per second of 100 records (billing's aspects, JSON and XML) from the
//! filled replication owner, beside the same chunk pre-serialised in memory and served by a
//! bare axum handler on its own loopback port, with the same client and load.
//!
//! Each feed request starts at a random version, so the owner's chunk cache (full chunks,
//! keyed by version) only serves the rare repeat: what is measured is the query, the
//! grouping and the rendering of a chunk. The runs alternate feed and reference within each
//! repetition, so drift on a shared machine hits both alike.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use super::load::{BoxFuture, Sample, Step, TOKEN, Unit, drive};

/// Records per chunk.
pub(super) const CHUNK_LIMIT: u64 = 100;
/// Concurrent clients.
pub(super) const CLIENTS: usize = 8;

/// The figure's samples for one backend.
#[derive(Debug, Clone, Default)]
pub(super) struct ChunkRates {
    pub(super) json: Vec<Sample>,
    pub(super) json_reference: Vec<Sample>,
    pub(super) xml: Vec<Sample>,
    pub(super) xml_reference: Vec<Sample>,
    /// Bytes of the pre-serialised JSON and XML chunks.
    pub(super) json_bytes: usize,
    pub(super) xml_bytes: usize,
}

/// One format of the feed, by its media type.
#[derive(Debug, Clone, Copy)]
enum Format {
    Json,
    Xml,
}

impl Format {
    fn media_type(self) -> &'static str {
        match self {
            Self::Json => "application/vnd.registration.v1+json",
            Self::Xml => "application/vnd.registration.v1+xml",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Json => "/json",
            Self::Xml => "/xml",
        }
    }
}

/// Measures the owner's feed against the pre-serialised chunk, `repetitions` times each.
pub(super) async fn measure(
    label: &str,
    owner: &Unit,
    top: u64,
    duration: Duration,
    repetitions: usize,
) -> anyhow::Result<ChunkRates> {
    let feed = format!("{}/customers", owner.base());
    let first = |format: Format| {
        owner
            .client()
            .get(format!(
                "{feed}?version=0&limit={CHUNK_LIMIT}&aspects={}",
                billing::COPIED_ASPECTS
            ))
            .bearer_auth(TOKEN)
            .header(ACCEPT, format.media_type())
            .send()
    };
    let json = first(Format::Json).await?.bytes().await?;
    let xml = first(Format::Xml).await?.bytes().await?;
    let mut rates = ChunkRates {
        json_bytes: json.len(),
        xml_bytes: xml.len(),
        ..ChunkRates::default()
    };
    let reference = Reference::start(json, xml).await?;
    let span = top.saturating_sub(CHUNK_LIMIT).max(1);
    for run in 1..=repetitions {
        for format in [Format::Json, Format::Xml] {
            eprintln!(
                "{label}: feed chunks/s ({format:?}) run {run}/{repetitions}, then the \
                 pre-serialised chunk"
            );
            let client = owner.client().clone();
            let url = feed.clone();
            let step: Step = Arc::new(move |_worker, random| -> BoxFuture<anyhow::Result<()>> {
                let request = client
                    .get(format!(
                        "{url}?version={}&limit={CHUNK_LIMIT}&aspects={}",
                        random % span,
                        billing::COPIED_ASPECTS
                    ))
                    .bearer_auth(TOKEN)
                    .header(ACCEPT, format.media_type());
                Box::pin(fetch(request))
            });
            let sample = drive(CLIENTS, duration, step).await?;
            let client = owner.client().clone();
            let url = format!("{}{}", reference.base, format.path());
            let step: Step = Arc::new(move |_worker, _random| -> BoxFuture<anyhow::Result<()>> {
                let request = client
                    .get(&url)
                    .bearer_auth(TOKEN)
                    .header(ACCEPT, format.media_type());
                Box::pin(fetch(request))
            });
            let baseline = drive(CLIENTS, duration, step).await?;
            match format {
                Format::Json => {
                    rates.json.push(sample);
                    rates.json_reference.push(baseline);
                }
                Format::Xml => {
                    rates.xml.push(sample);
                    rates.xml_reference.push(baseline);
                }
            }
        }
    }
    reference.server.abort();
    Ok(rates)
}

/// A `200` with its whole body read, or the measurement fails.
async fn fetch(request: reqwest::RequestBuilder) -> anyhow::Result<()> {
    let response = request.send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    anyhow::ensure!(
        status == reqwest::StatusCode::OK,
        "the feed answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

/// The bare axum server answering the pre-serialised chunks.
struct Reference {
    base: String,
    server: tokio::task::JoinHandle<()>,
}

impl Reference {
    async fn start(json: bytes::Bytes, xml: bytes::Bytes) -> anyhow::Result<Self> {
        let answer = |body: bytes::Bytes, format: Format| {
            move || {
                let body = body.clone();
                async move { ([(CONTENT_TYPE.as_str(), format.media_type())], body) }
            }
        };
        let app = axum::Router::new()
            .route(
                Format::Json.path(),
                axum::routing::get(answer(json, Format::Json)),
            )
            .route(
                Format::Xml.path(),
                axum::routing::get(answer(xml, Format::Xml)),
            );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("listening for the pre-serialised chunk")?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("bench: the pre-serialised chunk's server stopped: {error}");
            }
        });
        Ok(Self { base, server })
    }
}
