//! The GUI shell's files (`gui-shell/` at the repository's root), embedded at compile time and
//! served at `/` and `/shell/…` by the demo's gateway and by `hiscale shell` (the unit that
//! serves them behind HAProxy, which serves no files). `/shell/plugins.json` names the login
//! plugin and the others, from the service areas the landscape runs.
//!
//! Every answer carries the shell's Content-Security-Policy: scripts, styles and requests only
//! from this origin (the plugins are modules of the SAs, on the same origin through the
//! gateway), no inline script, no framing.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;

/// What the shell's `plugins.json` lists: the login plugin's SA and the others, in order.
#[derive(Debug, Clone)]
pub struct PluginList {
    pub login: String,
    pub plugins: Vec<String>,
}

impl PluginList {
    /// Every SA of the landscape; the one named `login` (if any) is the shell's first plugin.
    pub fn of(service_areas: impl IntoIterator<Item = String>) -> Self {
        let plugins: Vec<String> = service_areas.into_iter().collect();
        Self {
            login: login::NAME.to_owned(),
            plugins: plugins.into_iter().filter(|sa| sa != login::NAME).collect(),
        }
    }

    fn json(&self) -> String {
        serde_json::json!({"login": self.login, "plugins": self.plugins}).to_string()
    }
}

/// `hiscale shell --topology FILE`: serves the shell (and `/health` for HAProxy's check) on
/// the topology's `[gateway] shell` address until SIGTERM or Ctrl-C.
pub async fn serve(topology: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let topology = crate::topology::load_checked(topology)?;
    let datacenter = topology.datacenter(None)?;
    let address = datacenter.gateway.shell.context(
        "the topology names no [gateway] shell address for the unit serving the GUI shell",
    )?;
    let plugins = PluginList::of(
        topology
            .in_datacenter(&datacenter.name)
            .map(|sa| sa.name.get_ref().clone()),
    );
    let app: Router = routes(plugins).route("/health", get(|| async { "PASS\n" }));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("the shell cannot listen on {address}"))?;
    tracing::info!("GUI shell on http://{address}/");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    // TCP_NODELAY: see the demo's gateway (Nagle's algorithm against delayed ACKs).
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        })
        .await
        .context("the shell's server failed")
}

/// The policy sent with every shell file: only this origin's scripts may run.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The shell's routes: `/`, `/index.html`, `/shell/plugins.json` and `/shell/{file}`.
pub fn routes<S: Clone + Send + Sync + 'static>(plugins: PluginList) -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/shell/plugins.json", get(plugin_list))
        .route("/shell/{file}", get(file))
        .with_state(std::sync::Arc::new(plugins))
}

/// The shell's files, by the name under `/shell/`.
const FILES: &[(&str, &str, &str)] = &[
    (
        "shell.js",
        include_str!("../../../gui-shell/shell.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "texts.js",
        include_str!("../../../gui-shell/texts.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "ui.js",
        include_str!("../../../gui-shell/ui.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "shell.css",
        include_str!("../../../gui-shell/shell.css"),
        "text/css; charset=utf-8",
    ),
];
const INDEX: &str = include_str!("../../../gui-shell/index.html");

async fn index() -> Response {
    answer(INDEX, "text/html; charset=utf-8")
}

async fn plugin_list(State(plugins): State<std::sync::Arc<PluginList>>) -> Response {
    answer(plugins.json(), "application/json")
}

async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, body, content_type)) => answer(*body, content_type),
        None => {
            let body = serde_json::json!({"error": {
                "code": hiscale::codes::NOT_FOUND,
                "message": format!("the shell has no file {name:?}"),
            }});
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

fn answer(body: impl Into<String>, content_type: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body.into(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn serves_the_shell_with_its_policy_and_the_plugin_list() -> anyhow::Result<()> {
        let app: Router = routes(PluginList::of(
            ["registration", "login", "shop"].map(String::from),
        ));
        async fn get(app: &Router, path: &str) -> anyhow::Result<(StatusCode, Response)> {
            let request = axum::http::Request::get(path).body(Body::empty())?;
            let response = app.clone().oneshot(request).await?;
            Ok((response.status(), response))
        }
        let (status, response) = get(&app, "/").await?;
        assert_eq!(status, StatusCode::OK);
        let policy = response.headers()[header::CONTENT_SECURITY_POLICY].to_str()?;
        assert!(policy.contains("script-src 'self'"), "{policy}");
        let body = to_bytes(response.into_body(), 1 << 20).await?;
        assert!(String::from_utf8(body.to_vec())?.contains("/shell/shell.js"));
        let (status, response) = get(&app, "/shell/plugins.json").await?;
        assert_eq!(status, StatusCode::OK);
        let body: serde_json::Value =
            serde_json::from_slice(&to_bytes(response.into_body(), 1 << 20).await?)?;
        assert_eq!(
            body,
            serde_json::json!({"login": "login", "plugins": ["registration", "shop"]})
        );
        let (status, _) = get(&app, "/shell/../Cargo.toml").await?;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = get(&app, "/shell/nothing.js").await?;
        assert_eq!(status, StatusCode::NOT_FOUND);
        Ok(())
    }
}
