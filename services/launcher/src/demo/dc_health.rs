//! `GET /dc/health` at a datacenter's gateway, for a global load balancer choosing between
//! datacenters: `PASS` while every SA of the datacenter has a unit whose own `/health`
//! passes; otherwise `503` and `FAIL`, then one line per SA without one. HAProxy's generated
//! configuration answers the same question from its own checks (naming only the first such SA).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

/// How long one unit's `/health` may take before it counts as failing (HAProxy's check
/// timeout is 3 s; a datacenter's answer should come sooner than a balancer gives up).
const UNIT_TIMEOUT: Duration = Duration::from_secs(2);

/// The service areas of one datacenter, each with its service units.
struct Areas {
    areas: Vec<(String, Vec<SocketAddr>)>,
    client: reqwest::Client,
}

/// The `/dc/health` route over `areas`.
pub fn routes(areas: Vec<(String, Vec<SocketAddr>)>) -> Router {
    let client = hiscale::tls::client_builder()
        .timeout(UNIT_TIMEOUT)
        .build()
        .unwrap_or_default();
    Router::new()
        .route("/dc/health", axum::routing::get(answer))
        .with_state(Arc::new(Areas { areas, client }))
}

async fn answer(State(areas): State<Arc<Areas>>) -> Response {
    let mut checks = tokio::task::JoinSet::new();
    for (index, (_, units)) in areas.areas.iter().enumerate() {
        for unit in units {
            let client = areas.client.clone();
            let url = format!("http://{unit}/health");
            checks.spawn(async move { (index, super::unit_health::passes(&client, &url).await) });
        }
    }
    let mut passing = vec![false; areas.areas.len()];
    while let Some(checked) = checks.join_next().await {
        if let Ok((index, true)) = checked {
            passing[index] = true;
        }
    }
    let reasons: Vec<String> = areas
        .areas
        .iter()
        .zip(&passing)
        .filter(|(_, passes)| !**passes)
        .map(|((sa, _), _)| format!("{sa} has no passing unit"))
        .collect();
    let (status, body) = verdict(&reasons);
    (status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// `PASS`, or `FAIL` and the reasons, one a line.
fn verdict(reasons: &[String]) -> (StatusCode, String) {
    if reasons.is_empty() {
        (StatusCode::OK, "PASS\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("FAIL\n{}\n", reasons.join("\n")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_names_every_sa_without_a_passing_unit() {
        assert_eq!(verdict(&[]), (StatusCode::OK, "PASS\n".to_owned()));
        let reasons = [
            "shop has no passing unit".to_owned(),
            "x has no passing unit".to_owned(),
        ];
        assert_eq!(
            verdict(&reasons),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "FAIL\nshop has no passing unit\nx has no passing unit\n".to_owned()
            )
        );
    }
}
