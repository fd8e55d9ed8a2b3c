//! The GUI's server side, in process: each SA's plugin and manifest served by its own unit
//! (the versions it serves following an operator's retirement), and signing up — an anonymous
//! create where registration declares it open, bounded, answering only the new id — after
//! which the customer edits its own aspects but not its account. The browser drives the same
//! against the demo in `tests/gui` (run by scripts/test).

use hiscale::testing::{OPERATOR_TOKEN, TestBackend, TestUnit};
use serde_json::json;

const REGISTRATION_SESSIONS: &str = "~person~address~bankaccount";

async fn registration() -> TestUnit {
    TestUnit::start_with(
        registration::service_area(),
        &TestBackend::Sqlite,
        |config| {
            config.sessions.grant = Some(REGISTRATION_SESSIONS.into());
        },
    )
    .await
    .expect("registration starts")
}

fn sign_up_body(login: &str) -> String {
    json!({
        "account": {"login": login, "password": "correct horse battery"},
        "person": {"type": "natural", "firstname": "Ada", "lastname": "Lovelace"},
        "addresses": {"home": {"street": "Rheinweg 86", "zip": "53129", "city": "Bonn"}},
    })
    .to_string()
}

#[tokio::test]
async fn every_sa_serves_its_plugin_and_a_manifest_the_shell_can_check() {
    let expectations = [
        (
            registration::service_area(),
            json!([2]),
            json!([1, 2]),
            true,
        ),
        (login::service_area(), json!([1]), json!([1]), true),
        (shop::service_area(), json!([1]), json!([1]), false),
        (billing::service_area(), json!([1]), json!([1]), false),
    ];
    for (sa, needs, serves, public) in expectations {
        let name = sa.name().to_owned();
        let unit = TestUnit::start(sa, &TestBackend::Sqlite).await.unwrap();
        // Public, like the shell that reads it: no token.
        let manifest = unit.get("/gui/manifest.json", None).await;
        assert_eq!(manifest.status, 200, "{name}: {}", manifest.body);
        let manifest = manifest.json();
        assert_eq!(manifest["name"], name.as_str());
        assert_eq!(manifest["entry"], "plugin.js", "{name}");
        assert_eq!(manifest["needs"], needs, "{name}");
        assert_eq!(manifest["serves"], serves, "{name}");
        assert_eq!(manifest["public"], public, "{name}");
        assert!(manifest["title"]["en"].is_string() && manifest["title"]["de"].is_string());
        let module = unit.get("/gui/plugin.js", None).await;
        assert_eq!(module.status, 200, "{name}");
        assert_eq!(
            module.headers["content-type"], "text/javascript; charset=utf-8",
            "{name}"
        );
        assert!(
            module.body.contains("export function mount")
                || module.body.contains("export async function mount"),
            "{name}"
        );
        for missing in ["/gui/other.js", "/gui/..%2FCargo.toml"] {
            let reply = unit.get(missing, None).await;
            assert_eq!(reply.status, 404, "{name} {missing}");
            assert_eq!(reply.error_code(), "not-found", "{name} {missing}");
        }
    }
}

#[tokio::test]
async fn the_manifest_stops_naming_a_retired_version() {
    let unit = registration().await;
    let retired = unit
        .call(
            "PUT",
            "/admin/interfaces/v2",
            Some(OPERATOR_TOKEN),
            Some(r#"{"state":"retired"}"#),
        )
        .await;
    assert!(retired.status.is_success(), "{}", retired.body);
    let manifest = unit.get("/gui/manifest.json", None).await.json();
    assert_eq!(manifest["needs"], json!([2]));
    assert_eq!(manifest["serves"], json!([1]));
}

#[tokio::test]
async fn anyone_signs_up_and_then_edits_only_their_own_aspects() {
    let unit = registration().await;
    let created = unit.post("/customers", None, &sign_up_body("ada")).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    // Only the id: nothing stored (the password hash) comes back to an anonymous caller.
    assert_eq!(created.json(), json!({ "id": id }));
    assert!(
        created.headers["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/customers/{id}"))
    );

    // A taken login, a bad body: the ordinary create's answers.
    let taken = unit.post("/customers", None, &sign_up_body("ADA")).await;
    assert_eq!(
        (taken.status.as_u16(), taken.error_code().as_str()),
        (409, "already-taken")
    );
    let weak = unit
        .post(
            "/customers",
            None,
            r#"{"account":{"login":"bob","password":"short"}}"#,
        )
        .await;
    assert_eq!(
        (weak.status.as_u16(), weak.error_code().as_str()),
        (400, "weak-password")
    );

    // Signed in, the customer replaces its own address, but not its account, and reaches no
    // other customer.
    let session = unit.session(&id);
    let moved = unit
        .call(
            "PUT",
            &format!("/customers/{id}/address.home"),
            Some(&session),
            Some(r#"{"street":"Neue Straße 1","zip":"53113","city":"Bonn"}"#),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    let account = unit
        .call(
            "PUT",
            &format!("/customers/{id}/account"),
            Some(&session),
            Some(r#"{"login":"ada2","password":"correct horse battery"}"#),
        )
        .await;
    assert_eq!(
        (account.status.as_u16(), account.error_code().as_str()),
        (403, "write-not-granted")
    );
    let other = unit.post("/customers", None, &sign_up_body("grace")).await;
    let other_id = other.json()["id"].as_str().unwrap().to_owned();
    let foreign = unit
        .call(
            "PUT",
            &format!("/customers/{other_id}/address.home"),
            Some(&session),
            Some(r#"{"street":"X 1","zip":"53113","city":"Bonn"}"#),
        )
        .await;
    assert_eq!(foreign.status, 404, "{}", foreign.body);
    let read = unit
        .get(&format!("/customers/{id}"), Some(&session))
        .await
        .json();
    assert_eq!(read["addresses"]["home"]["street"], "Neue Straße 1");
    assert!(read.get("account").is_none(), "{read}");
    // A session creates no customers: signing up is anonymous.
    let by_session = unit
        .post("/customers", Some(&session), &sign_up_body("eve"))
        .await;
    assert_eq!(by_session.status, 403, "{}", by_session.body);
}

#[tokio::test]
async fn collections_not_open_to_sign_up_still_need_a_token() {
    let unit = TestUnit::start(shop::service_area(), &TestBackend::Sqlite)
        .await
        .unwrap();
    let reply = unit
        .post("/orders", None, r#"{"order":{"customer":"1","lines":[]}}"#)
        .await;
    assert_eq!(
        (reply.status.as_u16(), reply.error_code().as_str()),
        (401, "unauthenticated")
    );
}

#[tokio::test]
async fn sign_ups_are_limited_per_unit_and_minute() {
    let unit = registration().await;
    // Refused bodies count too (an attacker's probes are attempts): each is cheap to refuse.
    for _ in 0..hiscale::http::SIGN_UPS_PER_MINUTE {
        let reply = unit
            .post("/customers", None, r#"{"account":{"login":"x"}}"#)
            .await;
        assert_eq!(reply.status, 400, "{}", reply.body);
    }
    let refused = unit.post("/customers", None, &sign_up_body("late")).await;
    assert_eq!(
        (refused.status.as_u16(), refused.error_code().as_str()),
        (429, "too-many-sign-ups")
    );
    let wait: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // The operator is not a sign-up and is not limited.
    let operator = unit
        .post(
            "/customers",
            Some(OPERATOR_TOKEN),
            &sign_up_body("admitted"),
        )
        .await;
    assert_eq!(operator.status, 201, "{}", operator.body);
}
