//! Sessions that end: a logout and a change of the password reach every SA through login's
//! revocations, which each SA copies like any copied data; and the session key rotates (old
//! and new public key side by side, then the old one removed) without signing anyone out
//! before its time. Real unit processes throughout.

use std::time::{Duration, Instant};

use hiscale::config::{CallerConfig, PublicKeyConfig, SourceConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::demo::{Demo, Tokens, client};
use tests::process::{UnitProcess, free_demo_port, free_port};
use tests::replication::{post_customer, wait_until_copied};
use tests::{
    ADMIN, Backend, JSON, LOGIN, both_backends, fresh_database, reader_config, unit_config,
};

/// From start to the summary: units healthy, sample loaded, copies caught up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// For a new customer to reach every copy.
const COPY_TIMEOUT: Duration = Duration::from_secs(30);
/// For a revocation to reach every SA (the feed's lag is milliseconds to a second).
const REVOKE_TIMEOUT: Duration = Duration::from_secs(10);
/// For the demo to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Answers in a row that must agree, so that both units of an SA behind the round-robin
/// gateway have answered.
const IN_A_ROW: usize = 4;

const PASSWORD: &str = "first-password-1";
const NEW_PASSWORD: &str = "second-password-2";

/// A reply's status and body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: String,
}

impl Answer {
    fn code(&self) -> String {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|body| body["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

async fn send(
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<(&str, String)>,
) -> Answer {
    let mut request = client()
        .request(method, url)
        .header("accept", "application/json");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some((content_type, body)) = body {
        request = request.header("content-type", content_type).body(body);
    }
    let reply = request.send().await.expect("the request reaches the unit");
    Answer {
        status: reply.status(),
        body: reply.text().await.unwrap_or_default(),
    }
}

/// Signs `login` in at `login_url`; the token.
async fn sign_in(login_url: &str, login: &str, password: &str) -> Result<String, Answer> {
    let answer = send(
        Method::POST,
        &format!("{login_url}/sessions"),
        None,
        Some((
            "application/json",
            json!({"login": login, "password": password}).to_string(),
        )),
    )
    .await;
    if answer.status != StatusCode::CREATED {
        return Err(answer);
    }
    let body: Value = serde_json::from_str(&answer.body).expect("a session");
    Ok(body["token"].as_str().expect("a token").to_owned())
}

/// Waits (at most `within`) until `url` answers `token` with `status` (and `code`, if given)
/// `IN_A_ROW` times in a row; panics with the last answer otherwise.
async fn wait_for(
    url: &str,
    token: &str,
    status: StatusCode,
    code: Option<&str>,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    let mut agreeing = 0;
    loop {
        let answer = send(Method::GET, url, Some(token), None).await;
        let fits = answer.status == status && code.is_none_or(|code| answer.code() == code);
        agreeing = if fits { agreeing + 1 } else { 0 };
        if agreeing >= IN_A_ROW {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer {status} {code:?} {IN_A_ROW} times in a row within \
             {within:?}; last: {} {}",
            answer.status,
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn customer(login: &str, password: &str) -> String {
    json!({
        "account": {"login": login, "password": password},
        "person": {"type": "natural", "salutation": "MS", "firstname": "Erika", "lastname": "Muster"},
        "addresses": {
            "home": {"street": "Hauptstraße 1", "zip": "53111", "city": "Bonn"},
            "bill": {"street": "Postfach 1", "zip": "53112", "city": "Bonn"}
        },
        "bankaccount": {"owner": "Erika Muster", "iban": "DE89370400440532013000"}
    })
    .to_string()
}

/// The demo's landscape as committed (its topology derives every SA's copy of login's
/// revocations): a logout ends that session at registration, shop and billing within
/// seconds and leaves the customer's other session alone; a new password ends both, and a
/// session signed in with the new one works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_and_a_new_password_end_sessions_at_every_sa() {
    let data = tempfile::tempdir().expect("data directory");
    let mut demo = Demo::start(
        data.path(),
        free_demo_port(),
        &["--sample", "2"],
        START_TIMEOUT,
    )
    .await;
    let tokens: Tokens = demo.tokens();
    let gateway = demo.url();
    let login_url = format!("{gateway}/login");

    let created = send(
        Method::POST,
        &format!("{gateway}/registration/customers"),
        Some(&tokens.admin),
        Some(("application/json", customer("erika.sessions", PASSWORD))),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = serde_json::from_str::<Value>(&created.body).expect("json")["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let own = |sa: &str| format!("{gateway}/{sa}/customers/{id}");
    for sa in ["login", "shop", "billing"] {
        wait_for(&own(sa), &tokens.admin, StatusCode::OK, None, COPY_TIMEOUT).await;
    }

    let first = sign_in(&login_url, "erika.sessions", PASSWORD)
        .await
        .unwrap_or_else(|answer| panic!("sign-in: {} {}", answer.status, answer.body));
    let second = sign_in(&login_url, "erika.sessions", PASSWORD)
        .await
        .unwrap_or_else(|answer| panic!("sign-in: {} {}", answer.status, answer.body));
    assert_ne!(first, second);
    for sa in ["registration", "shop", "billing"] {
        for token in [&first, &second] {
            wait_for(&own(sa), token, StatusCode::OK, None, COPY_TIMEOUT).await;
        }
    }

    // Signing out without a token, or with a stranger's, ends nothing.
    let logout = format!("{login_url}/sessions/current");
    let anonymous = send(Method::DELETE, &logout, None, None).await;
    assert_eq!(
        (anonymous.status, anonymous.code().as_str()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    let forged = send(Method::DELETE, &logout, Some("v2.k1.e30.c2ln"), None).await;
    assert_eq!(
        (forged.status, forged.code().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid-token")
    );

    // The first session signs out: every SA refuses it within seconds.
    let started = Instant::now();
    let out = send(Method::DELETE, &logout, Some(&first), None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    for sa in ["registration", "shop", "billing"] {
        wait_for(
            &own(sa),
            &first,
            StatusCode::UNAUTHORIZED,
            Some("session-revoked"),
            REVOKE_TIMEOUT,
        )
        .await;
    }
    println!("logout reached every SA in {:?}", started.elapsed());
    // Signing out again is harmless: the session is over, as asked.
    let again = send(Method::DELETE, &logout, Some(&first), None).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT, "{}", again.body);
    // The customer's other session goes on.
    for sa in ["registration", "shop", "billing"] {
        wait_for(&own(sa), &second, StatusCode::OK, None, REVOKE_TIMEOUT).await;
    }

    // A new password (the operator's write of the account at registration) ends every
    // session signed in before it: login sees the change in its copy and revokes.
    let changed = send(
        Method::PUT,
        &format!("{gateway}/registration/customers/{id}/account"),
        Some(&tokens.admin),
        Some((
            "application/json",
            json!({"login": "erika.sessions", "password": NEW_PASSWORD}).to_string(),
        )),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    let started = Instant::now();
    for sa in ["registration", "shop", "billing"] {
        wait_for(
            &own(sa),
            &second,
            StatusCode::UNAUTHORIZED,
            Some("session-revoked"),
            REVOKE_TIMEOUT,
        )
        .await;
    }
    println!(
        "the new password reached every SA in {:?}",
        started.elapsed()
    );

    // Signed in with the new password (once login's copy has it), a session works everywhere.
    let deadline = Instant::now() + COPY_TIMEOUT;
    let third = loop {
        match sign_in(&login_url, "erika.sessions", NEW_PASSWORD).await {
            Ok(token) => break token,
            Err(answer) => assert!(
                Instant::now() < deadline && answer.status == StatusCode::UNAUTHORIZED,
                "sign-in with the new password: {} {}",
                answer.status,
                answer.body
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for sa in ["registration", "shop", "billing"] {
        wait_for(&own(sa), &third, StatusCode::OK, None, REVOKE_TIMEOUT).await;
    }
    assert!(
        sign_in(&login_url, "erika.sessions", PASSWORD)
            .await
            .is_err(),
        "the old password still signs in"
    );

    // Every SA but login copies the revocations; login grants sessions nothing to read them.
    let revocations = send(
        Method::GET,
        &format!("{gateway}/shop/revocations?version=0"),
        Some(&tokens.admin),
        None,
    )
    .await;
    assert_eq!(revocations.status, StatusCode::OK, "{}", revocations.body);
    let items = serde_json::from_str::<Value>(&revocations.body).expect("a feed chunk")["items"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(items >= 2, "{}", revocations.body);

    let status = demo.stop(STOP_TIMEOUT).await;
    assert!(
        status.success(),
        "the demo ended {status}\n{}",
        demo.output()
    );
}

/// A unit configuration for login signing with `signing` (id, secret) and verifying with
/// `keys`, copying the customers' `~account` from `owner`.
fn login_config(
    database: &str,
    owner: &str,
    listen: std::net::SocketAddr,
    signing: (&str, &str),
    keys: &[PublicKeyConfig],
) -> hiscale::UnitConfig {
    let mut config = reader_config("login", database, owner, LOGIN, login::COPIED_ASPECTS);
    config.listen = listen;
    config.sessions.signing_key_id = Some(signing.0.into());
    config.sessions.signing_key = Some(signing.1.into());
    config.sessions.public_keys = keys.to_vec();
    // Registration reads login's revocations under its own name.
    config.callers.push(CallerConfig {
        name: "registration".into(),
        token: REGISTRATION_TOKEN.into(),
        grant: hiscale::revocation::SELECTOR.into(),
    });
    config
}

const REGISTRATION_TOKEN: &str = "test-registration-token-0123456789";

/// A registration unit verifying sessions with `keys` and copying login's revocations.
fn registration_config(
    database: &str,
    listen: std::net::SocketAddr,
    login: &str,
    keys: &[PublicKeyConfig],
) -> hiscale::UnitConfig {
    let mut config = unit_config("registration-1", database, listen);
    config.sessions.public_keys = keys.to_vec();
    config.sessions.grant = Some("~person~address~bankaccount".into());
    config.sessions.revocations_from = Some(login::NAME.into());
    config.sources.push(SourceConfig {
        origin: Default::default(),
        collection: hiscale::revocation::COLLECTION.into(),
        url: login.into(),
        token: REGISTRATION_TOKEN.into(),
        aspects: hiscale::revocation::SELECTOR.into(),
        interval_secs: 1,
        wait_secs: 20,
        limit: 1000,
        interface_version: 1,
        pipeline: true,
        compress: true,
    });
    config
}

both_backends!(
    the_session_key_rotates_without_signing_anyone_out_early,
    |backend: Backend| async move {
        let (old_secret, old_public) = hiscale::session::generate_key_pair().unwrap();
        let (new_secret, new_public) = hiscale::session::generate_key_pair().unwrap();
        let old_key = PublicKeyConfig::new("2026-05", &old_public);
        let new_key = PublicKeyConfig::new("2026-11", &new_public);
        let registration_db = fresh_database(backend).await;
        let login_db = fresh_database(backend).await;
        let registration_at: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let login_at: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let registration_url = format!("http://{registration_at}");
        let login_url = format!("http://{login_at}");
        let start_registration = |keys: Vec<PublicKeyConfig>| {
            let config =
                registration_config(&registration_db.url, registration_at, &login_url, &keys);
            UnitProcess::start_config(config)
        };
        let start_login = |signing: (&'static str, String), keys: Vec<PublicKeyConfig>| {
            let config = login_config(
                &login_db.url,
                &registration_url,
                login_at,
                (signing.0, &signing.1),
                &keys,
            );
            UnitProcess::start_config(config)
        };

        // Before the rotation: one key everywhere.
        let mut registration = start_registration(vec![old_key.clone()]).await;
        let mut login = start_login(("2026-05", old_secret.clone()), vec![old_key.clone()]).await;
        let id = post_customer(
            &client(),
            &registration_url,
            customer("rita.rotation", PASSWORD),
            JSON,
        )
        .await;
        let current = hiscale::Store::connect(&registration_db.url)
            .await
            .unwrap()
            .current_version("customers")
            .await
            .unwrap()
            .get();
        wait_until_copied(&login.url, current, COPY_TIMEOUT).await;
        let own = format!("{registration_url}/customers/{id}");
        let old_token = sign_in(&login_url, "rita.rotation", PASSWORD)
            .await
            .unwrap_or_else(|answer| panic!("{} {}", answer.status, answer.body));
        assert!(old_token.starts_with("v2.2026-05."), "{old_token}");
        wait_for(&own, &old_token, StatusCode::OK, None, REVOKE_TIMEOUT).await;

        // On this backend too, a logout reaches the owner's copy of the revocations.
        let short = sign_in(&login_url, "rita.rotation", PASSWORD)
            .await
            .unwrap();
        wait_for(&own, &short, StatusCode::OK, None, REVOKE_TIMEOUT).await;
        let out = send(
            Method::DELETE,
            &format!("{login_url}/sessions/current"),
            Some(&short),
            None,
        )
        .await;
        assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
        wait_for(
            &own,
            &short,
            StatusCode::UNAUTHORIZED,
            Some("session-revoked"),
            REVOKE_TIMEOUT,
        )
        .await;

        // Step 1: the new public key beside the old one, everywhere.
        let both = vec![old_key.clone(), new_key.clone()];
        drop(registration);
        registration = start_registration(both.clone()).await;
        drop(login);
        login = start_login(("2026-05", old_secret.clone()), both.clone()).await;
        wait_for(&own, &old_token, StatusCode::OK, None, REVOKE_TIMEOUT).await;

        // Step 2: login signs with the new key; sessions of either key work.
        drop(login);
        login = start_login(("2026-11", new_secret.clone()), both.clone()).await;
        let new_token = sign_in(&login_url, "rita.rotation", PASSWORD)
            .await
            .unwrap_or_else(|answer| panic!("{} {}", answer.status, answer.body));
        assert!(new_token.starts_with("v2.2026-11."), "{new_token}");
        wait_for(&own, &old_token, StatusCode::OK, None, REVOKE_TIMEOUT).await;
        wait_for(&own, &new_token, StatusCode::OK, None, REVOKE_TIMEOUT).await;
        // The revocation of before the restarts still holds.
        wait_for(
            &own,
            &short,
            StatusCode::UNAUTHORIZED,
            Some("session-revoked"),
            REVOKE_TIMEOUT,
        )
        .await;

        // Step 3: the old public key removed; its sessions are refused, the new ones go on.
        drop(registration);
        registration = start_registration(vec![new_key.clone()]).await;
        drop(login);
        login = start_login(("2026-11", new_secret.clone()), vec![new_key.clone()]).await;
        let refused = send(Method::GET, &own, Some(&old_token), None).await;
        assert_eq!(
            (refused.status, refused.code().as_str()),
            (StatusCode::UNAUTHORIZED, "invalid-token"),
            "{}",
            refused.body
        );
        assert!(refused.body.contains("2026-05"), "{}", refused.body);
        wait_for(&own, &new_token, StatusCode::OK, None, REVOKE_TIMEOUT).await;
        let out = send(
            Method::DELETE,
            &format!("{login_url}/sessions/current"),
            Some(&old_token),
            None,
        )
        .await;
        assert_eq!(out.code(), "invalid-token", "{}", out.body);
        drop(login);
        drop(registration);
    }
);

// No caller deletes a revocation before its `exp`, the operator included (issue 25): the
// operator's DELETE at login answers `405 read-only-copy` and the session stays revoked at
// every SA; POST and PUT answer the same (before: `400 read-only-copy`, and a DELETE revived
// the session everywhere within seconds); login's OpenAPI document lists reads only.
both_backends!(
    no_caller_deletes_a_revocation_before_its_exp,
    |backend: Backend| async move {
        let (secret, public) = hiscale::session::generate_key_pair().unwrap();
        let keys = vec![PublicKeyConfig::new("2026-05", &public)];
        let registration_db = fresh_database(backend).await;
        let login_db = fresh_database(backend).await;
        let registration_at: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let login_at: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let registration_url = format!("http://{registration_at}");
        let login_url = format!("http://{login_at}");
        let _registration = UnitProcess::start_config(registration_config(
            &registration_db.url,
            registration_at,
            &login_url,
            &keys,
        ))
        .await;
        let _login = UnitProcess::start_config(login_config(
            &login_db.url,
            &registration_url,
            login_at,
            ("2026-05", &secret),
            &keys,
        ))
        .await;
        let id = post_customer(
            &client(),
            &registration_url,
            customer("rosa.revoked", PASSWORD),
            JSON,
        )
        .await;
        let current = hiscale::Store::connect(&registration_db.url)
            .await
            .unwrap()
            .current_version("customers")
            .await
            .unwrap()
            .get();
        wait_until_copied(&_login.url, current, COPY_TIMEOUT).await;
        let own = format!("{registration_url}/customers/{id}");
        let token = sign_in(&login_url, "rosa.revoked", PASSWORD)
            .await
            .unwrap_or_else(|answer| panic!("{} {}", answer.status, answer.body));
        wait_for(&own, &token, StatusCode::OK, None, REVOKE_TIMEOUT).await;
        let out = send(
            Method::DELETE,
            &format!("{login_url}/sessions/current"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
        wait_for(
            &own,
            &token,
            StatusCode::UNAUTHORIZED,
            Some("session-revoked"),
            REVOKE_TIMEOUT,
        )
        .await;

        let listed = send(
            Method::GET,
            &format!("{login_url}/revocations?version=0"),
            Some(ADMIN),
            None,
        )
        .await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
        let listed: Value = serde_json::from_str(&listed.body).unwrap();
        let revocation = listed["items"][0]["id"]
            .as_str()
            .expect("a revocation")
            .to_owned();
        let entry = json!({"customer": id, "sid": "forged", "exp": 4_102_444_800_i64}).to_string();
        let writes = [
            (
                Method::DELETE,
                format!("{login_url}/revocations/{revocation}"),
                None,
            ),
            (
                Method::DELETE,
                format!("{login_url}/revocations/{revocation}/revocation"),
                None,
            ),
            (
                Method::POST,
                format!("{login_url}/revocations"),
                Some(json!({"revocation": entry}).to_string()),
            ),
            (
                Method::PUT,
                format!("{login_url}/revocations/{revocation}/revocation"),
                Some(entry.clone()),
            ),
            (
                Method::DELETE,
                format!("{registration_url}/revocations/{revocation}"),
                None,
            ),
        ];
        for (method, url, body) in writes {
            let answer = send(
                method.clone(),
                &url,
                Some(ADMIN),
                body.map(|body| ("application/json", body)),
            )
            .await;
            assert_eq!(
                (answer.status, answer.code().as_str()),
                (StatusCode::METHOD_NOT_ALLOWED, "read-only-copy"),
                "{method} {url}: {}",
                answer.body
            );
        }
        // Like any 405, it names what the path takes: reads only.
        let refused = client()
            .delete(format!("{login_url}/revocations/{revocation}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            refused
                .headers()
                .get("allow")
                .and_then(|value| value.to_str().ok()),
            Some("GET,HEAD")
        );
        // Given the copies time to take a deletion (they poll with a long poll: at once), the
        // entry is still at login and the session still revoked at registration.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let kept = send(
            Method::GET,
            &format!("{login_url}/revocations/{revocation}"),
            Some(ADMIN),
            None,
        )
        .await;
        assert_eq!(kept.status, StatusCode::OK, "{}", kept.body);
        wait_for(
            &own,
            &token,
            StatusCode::UNAUTHORIZED,
            Some("session-revoked"),
            REVOKE_TIMEOUT,
        )
        .await;

        // Login's OpenAPI document advertises reads of the revocations only.
        let document = send(
            Method::GET,
            &format!("{login_url}/openapi.json"),
            None,
            None,
        )
        .await;
        assert_eq!(document.status, StatusCode::OK, "{}", document.body);
        let document: Value = serde_json::from_str(&document.body).unwrap();
        let paths = document["paths"].as_object().unwrap();
        let revocation_paths: Vec<(&String, &Value)> = paths
            .iter()
            .filter(|(path, _)| path.starts_with("/revocations"))
            .collect();
        assert!(!revocation_paths.is_empty(), "{}", document["paths"]);
        for (path, item) in revocation_paths {
            for method in ["post", "put", "delete", "patch"] {
                assert!(
                    item.get(method).is_none(),
                    "{path} advertises {method}: {item}"
                );
            }
        }
    }
);
