//! Test harness: fresh databases on both backends, the registration app in-process, and real
//! unit processes of the `hiscale` binary.
//!
//! PostgreSQL comes from `scripts/test`, which starts a throwaway cluster and exports its URL
//! as `HISCALE_TEST_POSTGRES`; without it (plain `cargo test`) the first PostgreSQL test starts
//! one for the test process ([`postgres_server`]). Without PostgreSQL's binaries the PostgreSQL
//! variants fail loudly: they are never silently skipped.
#![allow(clippy::unwrap_used, clippy::panic)]

pub mod backup;
pub mod datacenters;
pub mod demo;
pub mod drip;
pub mod haproxy;
pub mod load;
pub mod pg_cluster;
pub mod process;
pub mod relay;
pub mod replication;
pub mod tls;
pub mod typed_sa;

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use hiscale::config::{CallerConfig, UnitConfig};

/// Runs a test body once per backend: `both_backends!(name, |backend| async move { … })`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)($crate::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                ($body)($crate::Backend::Postgres).await;
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database only this test uses; SQLite files are removed when it is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// Tokens every test landscape uses.
pub const ADMIN: &str = "test-admin-token-0123456789";
pub const LOGIN: &str = "test-login-token-0123456789";
pub const SHOP: &str = "test-shop-token-0123456789";
pub const BILLING: &str = "test-billing-token-0123456789";

/// The callers of the demo: operator, and one grant per consuming SA.
pub fn callers() -> Vec<CallerConfig> {
    [
        ("admin", ADMIN, "operator"),
        ("login", LOGIN, "~account"),
        ("shop", SHOP, "~person~address.home"),
        ("billing", BILLING, "~person~address.bill~bankaccount"),
    ]
    .into_iter()
    .map(|(name, token, grant)| CallerConfig {
        name: name.into(),
        token: token.into(),
        grant: grant.into(),
    })
    .collect()
}

/// Creates an empty database on `backend`.
pub async fn fresh_database(backend: Backend) -> TestDatabase {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unique = format!(
        "{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let url = format!("sqlite://{}/registration.db", dir.path().display());
            TestDatabase {
                url,
                _dir: Some(dir),
            }
        }
        Backend::Postgres => {
            let server = postgres_server();
            let url =
                hiscale::store::ensure_postgres_database(&server, &format!("hs_test_{unique}"))
                    .await
                    .expect("create a test database");
            TestDatabase { url, _dir: None }
        }
    }
}

/// The throwaway PostgreSQL server: `scripts/test`'s (`HISCALE_TEST_POSTGRES`), else one this
/// test process starts on first use where PostgreSQL's binaries are installed (plain `cargo
/// test`), stopped when the process ends. Without binaries the PostgreSQL variants fail
/// loudly: they are never skipped.
pub fn postgres_server() -> String {
    static STARTED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    match std::env::var("HISCALE_TEST_POSTGRES") {
        Ok(url) => url,
        Err(_) => STARTED
            .get_or_init(pg_cluster::PgCluster::for_this_process)
            .clone(),
    }
}

/// The test kit's backends for the project's own tests: SQLite and always PostgreSQL
/// ([`postgres_server`]), where the kit's `TestBackend::all_from_env` leaves PostgreSQL out
/// when no server is named (what a team's tests may want; ours never skip it).
pub fn kit_backends() -> Vec<hiscale::testing::TestBackend> {
    vec![
        hiscale::testing::TestBackend::Sqlite,
        hiscale::testing::TestBackend::Postgres(postgres_server()),
    ]
}

/// A unit configuration for the registration SA on `database`.
pub fn unit_config(unit: &str, database: &str, listen: std::net::SocketAddr) -> UnitConfig {
    UnitConfig {
        callers: callers(),
        ..UnitConfig::new(registration::NAME, unit, listen, database)
    }
}

/// The registration app in-process (no socket), on a fresh database.
pub struct TestApp {
    pub router: Router,
    pub state: hiscale::http::AppState,
    pub database: TestDatabase,
}

impl TestApp {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Like [`TestApp::start`], with the configuration adjusted first.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut UnitConfig)) -> Self {
        let database = fresh_database(backend).await;
        let mut config = unit_config(
            "registration-test",
            &database.url,
            ([127, 0, 0, 1], 0).into(),
        );
        adjust(&mut config);
        let state = hiscale::unit::state(&config, registration::service_area())
            .await
            .expect("unit state");
        let router = hiscale::http::app(state.clone());
        Self {
            router,
            state,
            database,
        }
    }

    /// Sends one request and returns status, headers and body text.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let (status, headers, bytes) = self.send_raw(request).await;
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// Sends one request and returns status, headers and the body's bytes as they came (a
    /// compressed body stays compressed).
    pub async fn send_raw(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, axum::body::Bytes) {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible service");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, headers, bytes)
    }

    /// How many live customers the store holds.
    pub async fn store_count(&self) -> u64 {
        self.state
            .store()
            .count_resources("customers")
            .await
            .expect("count")
    }

    /// The collection's newest version: unchanged means nothing was written.
    pub async fn current_version(&self) -> i64 {
        self.state
            .store()
            .current_version("customers")
            .await
            .expect("version")
            .get()
    }
}

/// A response, read completely.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }

    /// The stable error code of an error body, XML or JSON.
    pub fn error_code(&self) -> String {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&self.body) {
            return value["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        }
        self.body
            .split("<code>")
            .nth(1)
            .and_then(|rest| rest.split("</code>").next())
            .unwrap_or_default()
            .to_owned()
    }
}

/// A reading unit's configuration: `sa` copies `aspects` of customers from `source_url`.
pub fn reader_config(
    sa: &str,
    database: &str,
    source_url: &str,
    token: &str,
    aspects: &str,
) -> UnitConfig {
    let port = process::free_port();
    UnitConfig {
        callers: callers(),
        sources: vec![hiscale::config::SourceConfig {
            origin: Default::default(),
            collection: "customers".into(),
            url: source_url.into(),
            token: token.into(),
            aspects: aspects.into(),
            interval_secs: 1,
            wait_secs: 2,
            limit: 7,
            interface_version: 1,
            pipeline: true,
            compress: true,
        }],
        ..UnitConfig::new(
            sa,
            &format!("{sa}-1"),
            ([127, 0, 0, 1], port).into(),
            database,
        )
    }
}

/// A login unit copying `~account` from `source_url`, with a fresh session key pair (login
/// refuses to start without one).
pub fn login_reader_config(database: &str, source_url: &str) -> UnitConfig {
    let mut config = reader_config("login", database, source_url, LOGIN, login::COPIED_ASPECTS);
    let (secret, public) = hiscale::session::generate_key_pair().expect("a session key pair");
    config.sessions.signing_key_id = Some(TEST_KEY_ID.into());
    config.sessions.signing_key = Some(secret);
    config.sessions.public_keys = vec![hiscale::config::PublicKeyConfig::new(TEST_KEY_ID, &public)];
    config
}

/// The key id of the session keys tests generate.
pub const TEST_KEY_ID: &str = "k1";

/// A request builder with the common headers.
pub fn request(method: &str, uri: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(uri)
}

/// The design's example customer as a client writes it (password instead of hash).
pub const EXAMPLE_CUSTOMER_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<customer>
  <account><login>owronka</login><password>geheim-1234</password></account>
  <person type="natural"><salutation>MR</salutation><firstname>Oliver</firstname><lastname>Wronka</lastname></person>
  <addresses>
    <address type="home"><street>Rheinweg 86</street><zip>53129</zip><city>Bonn</city></address>
    <address type="bill"><street>Kurfürstenallee 5</street><zip>53177</zip><city>Bonn</city></address>
  </addresses>
  <bankaccount><owner>Oliver Wronka</owner><iban>DE89370400440532013000</iban><bic>COLSDE55XXX</bic></bankaccount>
</customer>"#;

/// A customer in JSON with a login made from `n`.
pub fn customer_json(n: u64) -> String {
    serde_json::json!({
        "account": {"login": format!("user{n:06}"), "password": "secret-password"},
        "person": {"type": "natural", "salutation": "MS", "firstname": "Erika", "lastname": format!("Muster{n}")},
        "addresses": {
            "home": {"street": format!("Hauptstraße {n}"), "zip": "53111", "city": "Bonn"},
            "bill": {"street": "Postfach 1", "zip": "53112", "city": "Bonn"}
        },
        "bankaccount": {"owner": "Erika Muster", "iban": "DE89370400440532013000"}
    })
    .to_string()
}

/// The version an `ETag` names: `"7"`, or `"7-xml"` for another representation of state 7
/// (weak or not).
pub fn etag_version(etag: &str) -> Option<i64> {
    etag.trim_start_matches("W/")
        .trim_matches('"')
        .split('-')
        .next()?
        .parse()
        .ok()
}

pub const XML: &str = "application/vnd.registration.v1+xml";
pub const JSON: &str = "application/vnd.registration.v1+json";

/// Creates a customer through the app and returns its id.
pub async fn create_customer(app: &TestApp, body: &str, content_type: &str) -> String {
    let reply = app
        .send(
            request("POST", "/customers")
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("content-type", content_type)
                .header("accept", JSON)
                .body(Body::from(body.to_owned()))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.json()["id"].as_str().unwrap().to_owned()
}

/// What differs between two states keyed the same way: entries `expected` has that `actual`
/// lacks or holds otherwise, then entries only `actual` has; at most `limit` lines, for
/// assertion messages that stay readable.
pub fn differences<K, V>(
    expected: &std::collections::BTreeMap<K, V>,
    actual: &std::collections::BTreeMap<K, V>,
    limit: usize,
) -> Vec<String>
where
    K: Ord + std::fmt::Debug,
    V: PartialEq + std::fmt::Debug,
{
    expected
        .iter()
        .filter(|(key, value)| actual.get(*key) != Some(*value))
        .map(|(key, value)| format!("{key:?}: expected {value:?}, found {:?}", actual.get(key)))
        .chain(
            actual
                .keys()
                .filter(|key| !expected.contains_key(*key))
                .map(|key| format!("{key:?} only found, not expected")),
        )
        .take(limit)
        .collect()
}

/// Checks where a refill starts (`restored_to`) against where the backup's data ends: exactly
/// there on SQLite, whose versions commit in order; at or below it on PostgreSQL, where the
/// refill starts from the greatest consumer position the restored data recorded (a version
/// drawn earlier may have committed after the backup's snapshot).
pub fn assert_refill_starts(backend: Backend, restored_to: &serde_json::Value, data_ends: i64) {
    let restored_to = restored_to.as_i64().expect("restored_to is a number");
    match backend {
        Backend::Sqlite => assert_eq!(restored_to, data_ends, "where the refill starts"),
        Backend::Postgres => assert!(
            (0..=data_ends).contains(&restored_to),
            "the refill starts at {restored_to}, beyond the backup's data (up to {data_ends})"
        ),
    }
}

/// The value of the metric `series` (its name and labels as `/metrics` prints them, e.g.
/// `hiscale_commit_notices_total{direction="received"}`) at the unit at `url`; `None` when the
/// unit does not report it.
pub async fn metric(client: &reqwest::Client, url: &str, series: &str) -> Option<f64> {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics' text");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}
