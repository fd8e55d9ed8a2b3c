//! The registration unit in-process on loopback, and the closed-loop load that drives it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use hiscale::config::CallerConfig;
use hiscale::store::{ConnectOptions, SqliteSync};

/// The operator caller of every bench unit (may write, sees every aspect).
pub(super) const TOKEN: &str = "hiscale-bench-operator-token";
pub(super) const MEDIA_TYPE: &str = "application/vnd.registration.v1+json";
/// No single step may take longer; a stuck request or transaction fails the run.
pub(super) const STEP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// One timed measurement: operations per second and latencies of its operations.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    pub(super) per_second: f64,
    pub(super) p50: Duration,
    pub(super) p99: Duration,
}

pub(super) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// One operation of worker `w` with a random number `r`.
pub(super) type Step = Arc<dyn Fn(usize, u64) -> BoxFuture<anyhow::Result<()>> + Send + Sync>;

/// Runs `workers` closed loops of `step` for `duration` and measures them. The first error
/// fails the measurement (numbers with failed operations in them would flatter).
pub(super) async fn drive(
    workers: usize,
    duration: Duration,
    step: Step,
) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let step = Arc::clone(&step);
        tasks.spawn(async move {
            let mut random = XorShift::new(worker as u64);
            let mut latencies = Vec::with_capacity(4096);
            while Instant::now() < deadline {
                let began = Instant::now();
                tokio::time::timeout(STEP_TIMEOUT, step(worker, random.next()))
                    .await
                    .context("an operation took longer than 30 s")??;
                latencies.push(began.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::new();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.context("a load worker panicked").and_then(|r| r) {
            Ok(mine) => latencies.extend(mine),
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    let elapsed = started.elapsed();
    if let Some(error) = failure {
        return Err(error);
    }
    anyhow::ensure!(!latencies.is_empty(), "no operation completed");
    latencies.sort_unstable();
    let at = |fraction: f64| {
        let index = ((latencies.len() as f64 * fraction) as usize).min(latencies.len() - 1);
        latencies[index]
    };
    Ok(Sample {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    })
}

/// xorshift64*: plenty for picking ids, and reproducible per worker.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A registration unit serving on a loopback port of this process.
pub(super) struct Unit {
    pub(super) backend: Backend,
    base: String,
    client: reqwest::Client,
    state: hiscale::http::AppState,
    server: tokio::task::JoinHandle<()>,
    ids: Arc<Vec<String>>,
}

impl Drop for Unit {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Unit {
    pub(super) async fn start(backend: Backend, database: &str) -> anyhow::Result<Self> {
        Self::start_with(backend, database, "registration-bench", Vec::new()).await
    }

    /// A second unit on `of`'s database without the cache of rendered reads, reading the same
    /// customers: single-resource GETs as they were before the cache, measured beside it.
    pub(super) async fn start_uncached(of: &Unit, database: &str) -> anyhow::Result<Self> {
        let mut unit = Self::launch_with(
            of.backend,
            database,
            "registration-uncached",
            Vec::new(),
            ConnectOptions::default(),
            0,
        )
        .await?;
        unit.ids = Arc::clone(&of.ids);
        Ok(unit)
    }

    /// A registration unit named `{name}-{backend}` that also accepts `callers`.
    pub(super) async fn start_with(
        backend: Backend,
        database: &str,
        name: &str,
        callers: Vec<CallerConfig>,
    ) -> anyhow::Result<Self> {
        Self::launch(backend, database, name, callers, ConnectOptions::default()).await
    }

    /// A SQLite registration unit named `{name}-sqlite` whose store runs with `sync`.
    pub(super) async fn start_sqlite(
        database: &str,
        name: &str,
        sync: SqliteSync,
    ) -> anyhow::Result<Self> {
        let options = ConnectOptions {
            sqlite_synchronous: sync,
        };
        Self::launch(Backend::Sqlite, database, name, Vec::new(), options).await
    }

    async fn launch(
        backend: Backend,
        database: &str,
        name: &str,
        callers: Vec<CallerConfig>,
        options: ConnectOptions,
    ) -> anyhow::Result<Self> {
        let read_cache_bytes = hiscale::config::FeedConfig::default().read_cache_bytes;
        Self::launch_with(backend, database, name, callers, options, read_cache_bytes).await
    }

    async fn launch_with(
        backend: Backend,
        database: &str,
        name: &str,
        callers: Vec<CallerConfig>,
        options: ConnectOptions,
        read_cache_bytes: u64,
    ) -> anyhow::Result<Self> {
        let mut config = hiscale::UnitConfig {
            callers: std::iter::once(operator()).chain(callers).collect(),
            ..hiscale::UnitConfig::new(
                registration::NAME,
                &format!("{name}-{}", backend.label()),
                ([127, 0, 0, 1], 0).into(),
                database,
            )
        };
        config.feed.read_cache_bytes = read_cache_bytes;
        let store = hiscale::Store::connect_with(database, options)
            .await
            .with_context(|| format!("opening the {} store", backend.label()))?;
        let state = hiscale::unit::state_with_store(&config, registration::service_area(), store)
            .await
            .with_context(|| format!("starting the {} unit", backend.label()))?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .context("listening on 127.0.0.1")?;
        let address = listener.local_addr()?;
        let app = hiscale::http::app(state.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("bench: unit server stopped: {error}");
            }
        });
        let client = hiscale::tls::client_builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            .timeout(STEP_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            backend,
            base: format!("http://{address}"),
            client,
            state,
            server,
            ids: Arc::default(),
        })
    }

    /// `http://127.0.0.1:{port}`
    pub(super) fn base(&self) -> &str {
        &self.base
    }

    /// The unit's own store (the same pool its handlers use).
    pub(super) fn store(&self) -> &hiscale::Store {
        self.state.store()
    }

    /// A keep-alive client for loopback requests to this unit.
    pub(super) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Creates `count` customers without the account aspect (no password hashing).
    pub(super) async fn seed(&mut self, count: usize) -> anyhow::Result<()> {
        const CREATORS: usize = 4;
        let mut tasks = tokio::task::JoinSet::new();
        for creator in 0..CREATORS {
            let client = self.client.clone();
            let url = format!("{}/customers", self.base);
            tasks.spawn(async move {
                let mut ids = Vec::new();
                for n in (creator..count).step_by(CREATORS) {
                    let response = client
                        .post(&url)
                        .bearer_auth(TOKEN)
                        .header(CONTENT_TYPE, MEDIA_TYPE)
                        .header(ACCEPT, MEDIA_TYPE)
                        .body(customer(n))
                        .send()
                        .await?;
                    let status = response.status();
                    let body = response.text().await?;
                    anyhow::ensure!(
                        status == reqwest::StatusCode::CREATED,
                        "creating a customer: {status}: {body}"
                    );
                    let reply: serde_json::Value = serde_json::from_str(&body)?;
                    let id = reply["id"]
                        .as_str()
                        .context("the created customer has no id")?;
                    ids.push(id.to_owned());
                }
                anyhow::Ok(ids)
            });
        }
        let mut ids = Vec::with_capacity(count);
        while let Some(joined) = tasks.join_next().await {
            ids.extend(joined??);
        }
        ids.sort();
        self.ids = Arc::new(ids);
        Ok(())
    }

    /// `GET /customers/{id}` on random ids.
    pub(super) async fn reads(&self, clients: usize, duration: Duration) -> anyhow::Result<Sample> {
        let urls: Arc<Vec<String>> = Arc::new(
            self.ids
                .iter()
                .map(|id| format!("{}/customers/{id}", self.base))
                .collect(),
        );
        anyhow::ensure!(!urls.is_empty(), "no customers to read");
        let client = self.client.clone();
        let step: Step = Arc::new(
            move |_worker: usize, random: u64| -> BoxFuture<anyhow::Result<()>> {
                let url = &urls[(random % urls.len() as u64) as usize];
                let request = client
                    .get(url)
                    .bearer_auth(TOKEN)
                    .header(ACCEPT, MEDIA_TYPE);
                Box::pin(expect_ok(request, "GET"))
            },
        );
        drive(clients, duration, step).await
    }

    /// `GET /heartbeat`: the same unit's cheapest answer, the reference for its reads.
    pub(super) async fn heartbeats(
        &self,
        clients: usize,
        duration: Duration,
    ) -> anyhow::Result<Sample> {
        let url: Arc<str> = Arc::from(format!("{}/heartbeat", self.base));
        let client = self.client.clone();
        let step: Step = Arc::new(
            move |_worker: usize, _random: u64| -> BoxFuture<anyhow::Result<()>> {
                Box::pin(expect_ok(client.get(&*url), "GET /heartbeat"))
            },
        );
        drive(clients, duration, step).await
    }

    /// `PUT /customers/{id}/address.home`, each writer on its own share of the customers.
    pub(super) async fn writes(
        &self,
        writers: usize,
        duration: Duration,
    ) -> anyhow::Result<Sample> {
        anyhow::ensure!(
            self.ids.len() >= writers,
            "need at least {writers} customers for {writers} writers"
        );
        let shares: Arc<Vec<Vec<String>>> = Arc::new(
            (0..writers)
                .map(|writer| {
                    self.ids
                        .iter()
                        .skip(writer)
                        .step_by(writers)
                        .map(|id| format!("{}/customers/{id}/address.home", self.base))
                        .collect()
                })
                .collect(),
        );
        let client = self.client.clone();
        let step: Step = Arc::new(
            move |writer: usize, random: u64| -> BoxFuture<anyhow::Result<()>> {
                let mine = &shares[writer];
                let url = &mine[(random % mine.len() as u64) as usize];
                let body = serde_json::json!({
                    "street": format!("Teststraße {}", random % 10_000),
                    "zip": "53111",
                    "city": "Bonn",
                })
                .to_string();
                let request = client
                    .put(url)
                    .bearer_auth(TOKEN)
                    .header(CONTENT_TYPE, MEDIA_TYPE)
                    .header(ACCEPT, MEDIA_TYPE)
                    .body(body);
                Box::pin(expect_ok(request, "PUT"))
            },
        );
        drive(writers, duration, step).await
    }

    /// Stops serving and closes the store's pool (bounded: a stuck connection is left behind).
    pub(super) async fn stop(self) {
        self.server.abort();
        let store = self.state.store().clone();
        if tokio::time::timeout(Duration::from_secs(10), store.close())
            .await
            .is_err()
        {
            eprintln!(
                "bench: the {} store did not close in time",
                self.backend.label()
            );
        }
    }
}

/// The bench's operator caller, configured on every bench unit.
pub(super) fn operator() -> CallerConfig {
    CallerConfig {
        name: "bench".into(),
        token: TOKEN.into(),
        grant: "operator".into(),
    }
}

/// A customer as a client writes it, without an account.
fn customer(n: usize) -> String {
    serde_json::json!({
        "person": {"type": "natural", "salutation": "MS", "firstname": "Erika", "lastname": format!("Muster{n}")},
        "addresses": {
            "home": {"street": format!("Hauptstraße {n}"), "zip": "53111", "city": "Bonn"},
            "bill": {"street": "Postfach 1", "zip": "53112", "city": "Bonn"}
        },
        "bankaccount": {"owner": "Erika Muster", "iban": "DE89370400440532013000"}
    })
    .to_string()
}

/// Sends a request of the load and fails the measurement unless it is answered `200`.
async fn expect_ok(request: reqwest::RequestBuilder, what: &'static str) -> anyhow::Result<()> {
    let response = request.send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    anyhow::ensure!(
        status == reqwest::StatusCode::OK,
        "{what} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(())
}
