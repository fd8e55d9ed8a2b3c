//! A test kit for teams (feature `testing`): one unit of an SA in process, on a fresh store,
//! with an operator token, session tokens for any customer, and a way to seed its copies, so
//! an SA's rules, commands, lookups and grants are tested in a few lines.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use hiscale::testing::{TestBackend, TestUnit};
//! use hiscale::{Collection, ServiceArea};
//!
//! let sa = ServiceArea::new("notes").owns(
//!     Collection::new("notes", "note").document("note", &[]),
//! );
//! let unit = TestUnit::start(sa, &TestBackend::Sqlite).await?;
//! let answer = unit.get("/notes/1", Some(hiscale::testing::OPERATOR_TOKEN)).await;
//! assert_eq!(answer.status, 404);
//! # Ok(()) }
//! ```

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::AppState;
use crate::business::Context;
use crate::config::{CallerConfig, UnitConfig};
use crate::model::ServiceArea;
use crate::session::{SessionIssuer, generate_key_pair};
use crate::store::{ChunkAspect, ChunkItem};
use crate::unit::UnitError;
use crate::version::{ResourceId, Version};

/// The operator's token in every test unit.
pub const OPERATOR_TOKEN: &str = "testing-operator-token-0000";

/// Where a test unit keeps its data.
#[derive(Debug, Clone)]
pub enum TestBackend {
    /// A SQLite file in a temporary directory, removed with the unit.
    Sqlite,
    /// A fresh database on this PostgreSQL server (`postgres://user@host:port`).
    Postgres(String),
}

impl TestBackend {
    /// SQLite, plus PostgreSQL when `HISCALE_TEST_POSTGRES` names a server (the project's
    /// test command always sets it).
    pub fn all_from_env() -> Vec<Self> {
        let mut backends = vec![Self::Sqlite];
        if let Ok(server) = std::env::var("HISCALE_TEST_POSTGRES") {
            backends.push(Self::Postgres(server));
        }
        backends
    }
}

/// One unit of an SA, in process: requests go straight to its router.
#[derive(Debug)]
pub struct TestUnit {
    router: Router,
    state: AppState,
    sessions: SessionIssuer,
    _dir: Option<tempfile::TempDir>,
}

/// An answer: status, headers and the body as text.
#[derive(Debug, Clone)]
pub struct TestReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl TestReply {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }

    /// The stable code of an error answer (empty when there is none).
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Why a test unit could not start.
#[derive(Debug, thiserror::Error)]
pub enum TestUnitError {
    #[error("cannot create a temporary directory: {0}")]
    TempDir(#[from] std::io::Error),
    #[error(transparent)]
    Unit(#[from] UnitError),
    #[error("store: {0}")]
    Store(#[from] crate::store::Error),
    #[error("session keys: {0}")]
    Keys(String),
}

/// The key id of a test unit's session key.
const TEST_KEY_ID: &str = "test";

impl TestUnit {
    /// Starts a unit of `sa` on a fresh store; sessions may read every aspect.
    pub async fn start(sa: ServiceArea, backend: &TestBackend) -> Result<Self, TestUnitError> {
        Self::start_with(sa, backend, |_| {}).await
    }

    /// Like [`TestUnit::start`], with the configuration adjusted first (a session grant,
    /// callers with grants, limits).
    pub async fn start_with(
        sa: ServiceArea,
        backend: &TestBackend,
        adjust: impl FnOnce(&mut UnitConfig),
    ) -> Result<Self, TestUnitError> {
        let (database, dir) = fresh_database(sa.name(), backend).await?;
        let (secret, public) =
            generate_key_pair().map_err(|error| TestUnitError::Keys(error.to_string()))?;
        let sessions = SessionIssuer::new(TEST_KEY_ID, &secret, 3600)
            .map_err(|error| TestUnitError::Keys(error.to_string()))?;
        let mut config = UnitConfig::new(
            sa.name(),
            &format!("{}-test", sa.name()),
            ([127, 0, 0, 1], 0).into(),
            &database,
        );
        config.callers = vec![CallerConfig {
            name: "admin".into(),
            token: OPERATOR_TOKEN.into(),
            grant: "operator".into(),
        }];
        config.sessions.public_keys =
            vec![crate::config::PublicKeyConfig::new(TEST_KEY_ID, &public)];
        adjust(&mut config);
        let state = crate::unit::state(&config, sa).await?;
        Ok(Self {
            router: crate::http::app(state.clone()),
            state,
            sessions,
            _dir: dir,
        })
    }

    /// A session token for `customer`, as login would issue it.
    pub fn session(&self, customer: &str) -> String {
        match ResourceId::parse(customer) {
            Some(id) => self.sessions.issue(&id, &format!("customer-{customer}")),
            None => String::from("not-a-customer-id"),
        }
    }

    /// Sends a request as it is.
    pub async fn send(&self, request: Request<Body>) -> TestReply {
        let response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        TestReply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// `method path` with a bearer token and, when given, a JSON body; answers in JSON.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        json: Option<&str>,
    ) -> TestReply {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("accept", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match json {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Body::from(json.to_owned())
            }
            None => Body::empty(),
        };
        match request.body(body) {
            Ok(request) => self.send(request).await,
            Err(error) => TestReply {
                status: StatusCode::BAD_REQUEST,
                headers: HeaderMap::new(),
                body: error.to_string(),
            },
        }
    }

    /// `GET path` in JSON.
    pub async fn get(&self, path: &str, token: Option<&str>) -> TestReply {
        self.call("GET", path, token, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, token: Option<&str>, json: &str) -> TestReply {
        self.call("POST", path, token, Some(json)).await
    }

    /// Puts a resource into one of the SA's copies, as its poller would after reading the
    /// owner's feed: `aspects` are `(name, document)` at `version`.
    pub async fn seed_copy(
        &self,
        collection: &str,
        id: &str,
        version: i64,
        aspects: &[(&str, serde_json::Value)],
    ) -> Result<(), crate::store::Error> {
        let corrupt = || crate::store::Error::Corrupt(format!("seed {collection}/{id}"));
        let version = Version::new(version).ok_or_else(corrupt)?;
        let item = ChunkItem {
            id: ResourceId::parse(id).ok_or_else(corrupt)?,
            version,
            deleted: false,
            aspects: aspects
                .iter()
                .map(|(name, body)| ChunkAspect {
                    name: (*name).to_owned(),
                    version,
                    body: Some(body.to_string()),
                    unique_keys: Vec::new(),
                })
                .collect(),
        };
        let cursor = self.state.store().cursor(collection).await?.max(version);
        self.state
            .store()
            .apply_chunk(collection, &[item], cursor)
            .await
    }

    /// Runs one round of every batch job the SA declares, as a batch unit would; answers how
    /// many changes they handled.
    pub async fn run_jobs_once(&self) -> Result<usize, crate::business::Refusal> {
        let mut handled = 0;
        let jobs = self.state.jobs();
        for reaction in self.state.service_area().reactions() {
            handled += crate::batch::round(&jobs, reaction).await?;
        }
        Ok(handled)
    }

    /// What the SA's business code sees (batch jobs write through it too).
    pub fn context(&self) -> Context {
        self.state.context(None)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }
}

/// Whether `body` is a well-formed XML 1.0 document, read strictly: UTF-8, one root, end tags
/// matching, and every character of names, text, attribute values and character references
/// one XML 1.0 can carry (quick-xml's reader alone does not check characters). Answers what
/// is wrong. For tests that every XML answer, chunk and error body parses.
///
/// ```
/// use hiscale::testing::well_formed_xml;
/// assert!(well_formed_xml(b"<a x=\"1\">b &amp; c</a>").is_ok());
/// assert!(well_formed_xml(b"<a>\x01</a>").is_err());
/// assert!(well_formed_xml(b"<a>&#xFFFE;</a>").is_err());
/// assert!(well_formed_xml(b"<a><b></a>").is_err());
/// ```
pub fn well_formed_xml(body: &[u8]) -> Result<(), String> {
    use quick_xml::events::Event;
    let text = std::str::from_utf8(body).map_err(|error| format!("not UTF-8: {error}"))?;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    reader.config_mut().check_comments = true;
    let characters = |what: &str, text: &str| match crate::types::unrepresentable(text) {
        Some(character) => Err(format!("{what} holds U+{:04X}", u32::from(character))),
        None => Ok(()),
    };
    let (mut depth, mut roots) = (0usize, 0usize);
    loop {
        let event = reader.read_event().map_err(|error| error.to_string())?;
        match event {
            Event::Start(ref element) | Event::Empty(ref element) => {
                if depth == 0 {
                    roots += 1;
                }
                let name = element.name().as_ref().to_owned();
                characters("an element name", &name)?;
                for attribute in element.attributes() {
                    let attribute = attribute.map_err(|error| error.to_string())?;
                    let value = attribute
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|error| error.to_string())?;
                    characters(&format!("an attribute of <{name}>"), &value)?;
                }
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(content) => {
                let content = content.xml10_content();
                characters("text", &content)?;
                if depth == 0 && !content.trim().is_empty() {
                    return Err("text outside the root element".into());
                }
            }
            Event::CData(content) => {
                characters("a CDATA section", &content.xml10_content())?;
            }
            Event::GeneralRef(reference) => match reference.resolve_char_ref() {
                Ok(Some(character)) if crate::types::is_xml_char(character) => {}
                Ok(Some(character)) => {
                    return Err(format!(
                        "a character reference to U+{:04X}",
                        u32::from(character)
                    ));
                }
                Ok(None) if quick_xml::escape::resolve_predefined_entity(&reference).is_some() => {}
                Ok(None) => return Err(format!("an undeclared entity &{};", &*reference)),
                Err(error) => return Err(error.to_string()),
            },
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    match (depth, roots) {
        (0, 1) => Ok(()),
        (0, roots) => Err(format!("{roots} root elements")),
        _ => Err("the document ends inside an element".into()),
    }
}

async fn fresh_database(
    sa: &str,
    backend: &TestBackend,
) -> Result<(String, Option<tempfile::TempDir>), TestUnitError> {
    match backend {
        TestBackend::Sqlite => {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}/{sa}.db", dir.path().display());
            Ok((url, Some(dir)))
        }
        TestBackend::Postgres(server) => {
            let mut random = [0u8; 6];
            getrandom::fill(&mut random).map_err(|error| TestUnitError::Keys(error.to_string()))?;
            let suffix: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
            let url = crate::store::ensure_postgres_database(
                server,
                &format!("hs_kit_{sa}_{}_{suffix}", std::process::id()),
            )
            .await?;
            Ok((url, None))
        }
    }
}

/// Writes `value` as XML the way an OpenAPI schema's `xml` descriptions say (what a generated
/// client or schemathesis writes from the unit's document): the element's `name`, fields that
/// are an `attribute`, lists `wrapped` in their field's element with items named by their own
/// `name`. The root is the schema's `name`, else `body`.
pub fn xml_as_described(value: &serde_json::Value, schema: &serde_json::Value) -> String {
    let mut out = String::new();
    write_described(value, schema, "body", &mut out);
    out
}

fn write_described(
    value: &serde_json::Value,
    schema: &serde_json::Value,
    tag: &str,
    out: &mut String,
) {
    use serde_json::Value;
    let escape = |value: &Value| {
        let text = match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let tag = schema["xml"]["name"].as_str().unwrap_or(tag);
    match value {
        Value::Object(members) => {
            let mut attributes = String::new();
            let mut children = String::new();
            for (name, member) in members {
                let property = &schema["properties"][name];
                if property["xml"]["attribute"] == true {
                    attributes.push_str(&format!(" {name}=\"{}\"", escape(member)));
                } else {
                    write_described(member, property, name, &mut children);
                }
            }
            out.push_str(&format!("<{tag}{attributes}>{children}</{tag}>"));
        }
        Value::Array(items) => {
            let wrapped = schema["xml"]["wrapped"] == true;
            if wrapped {
                out.push_str(&format!("<{tag}>"));
            }
            for item in items {
                write_described(item, &schema["items"], tag, out);
            }
            if wrapped {
                out.push_str(&format!("</{tag}>"));
            }
        }
        other => out.push_str(&format!("<{tag}>{}</{tag}>", escape(other))),
    }
}
