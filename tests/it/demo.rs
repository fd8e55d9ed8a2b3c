//! The demo as a newcomer uses it: a real `hiscale demo` process, real HTTP through its
//! gateway, the README's curl walk-through, the copies, a killed unit and a restart on the
//! same data directory.
//!
//! Only SQLite: with `--postgres` the demo names its databases `hiscale_{sa}` on the server,
//! so runs sharing a server (parallel ones, or a later one finding the data of an earlier)
//! would meet in the same databases, against the suite's rule that every test has its own.

use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use tests::demo::{Demo, Tokens, UNITS, client, is_running, signal};
use tests::process::free_demo_port;
use tests::{EXAMPLE_CUSTOMER_XML, JSON, Reply, XML};

/// Any SA's media type, its newest version: what a plugin or script asks for.
const PLAIN_JSON: &str = "application/json";
const SAMPLE: &str = "12";
const SAMPLE_COUNT: usize = 12;
/// From start to the summary: units healthy, sample loaded, copies caught up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// For the copies to show a change made at the owner.
const COPY_TIMEOUT: Duration = Duration::from_secs(30);
/// For a killed unit to be back: the demo waits 10 s before restarting it.
const RESTART_TIMEOUT: Duration = Duration::from_secs(40);
/// For the demo and every unit to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

const NEW_HOME_XML: &str = r#"<address type="home"><street>Neue Straße 1</street><zip>53113</zip><city>Bonn</city></address>"#;
const NEW_STREET: &str = "Neue Straße 1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_walks_through_the_demo_kills_a_unit_and_restarts_it() {
    let data = tempfile::tempdir().expect("data directory");
    let port = free_demo_port();
    let mut demo = Demo::start(data.path(), port, &["--sample", SAMPLE], START_TIMEOUT).await;
    let tokens = demo.tokens();
    let tokens_file = std::fs::read(data.path().join("tokens.json")).unwrap();
    let gateway = Gateway {
        client: client(),
        base: demo.url(),
    };

    let id = walk_through(&gateway, &tokens).await;
    let session = copies(&gateway, &tokens, &id).await;
    shopping(&gateway, &tokens, &session, &id).await;
    failover(&demo, &gateway, &tokens, &id).await;

    // SIGTERM ends the demo and every unit, and units.json goes with them.
    let units = demo.units();
    assert_eq!(units.len(), UNITS, "{units:?}");
    let status = demo.stop(STOP_TIMEOUT).await;
    assert!(
        status.success(),
        "the demo ended {status}\n{}",
        demo.output()
    );
    wait_until("every unit exited after SIGTERM", STOP_TIMEOUT, || async {
        let running: Vec<String> = units
            .iter()
            .filter(|unit| is_running(unit.pid))
            .map(|unit| format!("{} (pid {})", unit.unit, unit.pid))
            .collect();
        running.is_empty().then_some(()).ok_or(running)
    })
    .await;
    assert!(!demo.units_path().exists(), "units.json outlived the units");
    drop(demo);

    // Again on the same directory: same tokens, same data, no second sample.
    let mut demo = Demo::start(data.path(), port, &["--sample", SAMPLE], START_TIMEOUT).await;
    assert_eq!(
        std::fs::read(data.path().join("tokens.json")).unwrap(),
        tokens_file,
        "tokens.json changed on restart"
    );
    assert_eq!(demo.tokens(), tokens);
    let reply = gateway
        .send(gateway.get(
            &format!("/registration/customers/{id}"),
            &tokens.admin,
            JSON,
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let customer = reply.json();
    assert_eq!(customer["person"]["firstname"], "Oliver", "{customer}");
    assert_eq!(
        customer["addresses"]["home"]["street"], NEW_STREET,
        "{customer}"
    );
    let feed = gateway
        .send(gateway.get("/registration/customers?limit=1000", &tokens.admin, JSON))
        .await;
    assert_eq!(feed.status, 200, "{}", feed.body);
    let feed = feed.json();
    assert_eq!(feed["more"], false, "{feed}");
    assert_eq!(
        feed["items"].as_array().map(Vec::len),
        Some(SAMPLE_COUNT + 1),
        "the sample was loaded again, or something is missing"
    );
    // The copies and the session keys survived as well: the session from before still reads
    // its customer at shop.
    let reply = gateway
        .send(gateway.get(&format!("/shop/customers/{id}"), &session, JSON))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["addresses"]["home"]["street"], NEW_STREET);

    let status = demo.stop(STOP_TIMEOUT).await;
    assert!(
        status.success(),
        "the demo ended {status}\n{}",
        demo.output()
    );
}

/// The README's curl walk-through; answers the new customer's id.
async fn walk_through(gateway: &Gateway, tokens: &Tokens) -> String {
    let admin = &tokens.admin;
    let created = gateway
        .send(
            gateway
                .request(Method::POST, "/registration/customers", admin)
                .header("content-type", XML)
                .body(EXAMPLE_CUSTOMER_XML),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let location = created.header("location").unwrap_or_default().to_owned();
    let id = location
        .strip_prefix("/registration/customers/")
        .unwrap_or_else(|| panic!("Location {location:?} is not a registration customer"))
        .to_owned();
    assert!(!id.is_empty() && !id.contains('/'), "{location}");

    // Two aspects back, in XML (the default) and in JSON (media type or /v1/ prefix).
    let path = format!("/registration/customers/{id}?aspects=~person~address.home");
    let xml = gateway
        .send(gateway.request(Method::GET, &path, admin))
        .await;
    assert_eq!(xml.status, 200, "{}", xml.body);
    assert_eq!(xml.header("content-type"), Some(XML));
    for part in [
        "<firstname>Oliver</firstname>",
        "<address type=\"home\">",
        "<street>Rheinweg 86</street>",
    ] {
        assert!(xml.body.contains(part), "no {part} in {}", xml.body);
    }
    for part in ["<account>", "<bankaccount>", "type=\"bill\""] {
        assert!(!xml.body.contains(part), "{part} in {}", xml.body);
    }
    let json = gateway.send(gateway.get(&path, admin, JSON)).await;
    assert_eq!(json.status, 200, "{}", json.body);
    assert_eq!(json.header("content-type"), Some(JSON));
    let body = json.json();
    assert_eq!(
        keys(&body),
        ["addresses", "id", "person", "version"],
        "{body}"
    );
    assert_eq!(keys(&body["addresses"]), ["home"], "{body}");
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["person"]["lastname"], "Wronka");
    assert_eq!(body["addresses"]["home"]["street"], "Rheinweg 86");
    let prefixed = gateway
        .send(gateway.get(
            &format!("/registration/v1/customers/{id}?aspects=~person~address.home"),
            admin,
            "application/json",
        ))
        .await;
    assert_eq!(prefixed.status, 200, "{}", prefixed.body);
    assert_eq!(prefixed.json(), body);

    // Conditional reads: the XML has a tag of its own, which a JSON read does not match.
    let etag = xml.header("etag").expect("an ETag").to_owned();
    assert!(etag.ends_with("-xml\""), "{etag}");
    let unchanged = gateway
        .send(
            gateway
                .request(Method::GET, &path, admin)
                .header("accept", XML)
                .header("if-none-match", &etag),
        )
        .await;
    assert_eq!(unchanged.status, 304, "{}", unchanged.body);
    assert!(unchanged.body.is_empty(), "{}", unchanged.body);
    assert_eq!(unchanged.header("vary"), Some("Accept"));
    let as_json = gateway
        .send(
            gateway
                .request(Method::GET, &path, admin)
                .header("accept", JSON)
                .header("if-none-match", &etag),
        )
        .await;
    assert_eq!(as_json.status, 200, "{}", as_json.body);
    assert_eq!(
        etag_version(as_json.header("etag")),
        etag_version(Some(&etag)),
        "one state, two representations"
    );

    // The other tokens: shop may not read the account, nobody reads without a token.
    let refused = gateway
        .send(gateway.get(
            &format!("/registration/customers/{id}?aspects=~account"),
            &tokens.shop,
            JSON,
        ))
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.error_code(), "aspect-not-granted");
    let anonymous = gateway
        .send(gateway.client.get(format!("{}{path}", gateway.base)))
        .await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);

    // The delta feed as shop polls it: chunks of its aspects only.
    let chunk = gateway
        .send(gateway.get(
            "/registration/customers?version=0&limit=3",
            &tokens.shop,
            "application/json",
        ))
        .await;
    assert_eq!(chunk.status, 200, "{}", chunk.body);
    let chunk = chunk.json();
    assert_eq!(chunk["more"], true, "{chunk}");
    let items = chunk["items"].as_array().expect("feed items");
    assert_eq!(items.len(), 3, "{chunk}");
    for item in items {
        assert_eq!(
            keys(item),
            ["addresses", "id", "person", "version"],
            "{item}"
        );
    }

    // A change of address.home: its version grows, the old ETag no longer matches.
    let home_before = body["addresses"]["home"]["version"].as_i64().unwrap();
    let put = gateway
        .send(
            gateway
                .request(
                    Method::PUT,
                    &format!("/registration/customers/{id}/address.home"),
                    admin,
                )
                .header("content-type", XML)
                .body(NEW_HOME_XML),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert!(
        etag_version(put.header("etag")) > etag_version(Some(&etag)),
        "{:?} after {etag}",
        put.header("etag")
    );
    let home = gateway
        .send(gateway.get(
            &format!("/registration/customers/{id}?aspects=~address.home"),
            admin,
            JSON,
        ))
        .await;
    assert_eq!(home.status, 200, "{}", home.body);
    let home = home.json();
    assert_eq!(home["addresses"]["home"]["street"], NEW_STREET, "{home}");
    let home_after = home["addresses"]["home"]["version"].as_i64().unwrap();
    assert!(home_after > home_before, "{home_before} → {home_after}");
    let changed = gateway
        .send(
            gateway
                .request(Method::GET, &path, admin)
                .header("accept", XML)
                .header("if-none-match", &etag),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    id
}

/// The copies at shop, billing and login; answers a session token of the new customer.
async fn copies(gateway: &Gateway, tokens: &Tokens, id: &str) -> String {
    let admin = &tokens.admin;
    let shop_path = format!("/shop/customers/{id}");
    // Shop's copy shows the changed home address once it has caught up.
    let shop = wait_until(
        "shop's copy shows the new home address",
        COPY_TIMEOUT,
        || async {
            let reply = gateway
                .send(gateway.get(&shop_path, admin, "application/json"))
                .await;
            let street =
                (reply.status == 200).then(|| reply.json()["addresses"]["home"]["street"].clone());
            match street {
                Some(street) if street == NEW_STREET => Ok(reply),
                _ => Err(format!("{} {}", reply.status, reply.body)),
            }
        },
    )
    .await;
    assert!(
        shop.header("content-type")
            .is_some_and(|media| media.starts_with("application/vnd.registration.v1+")),
        "{:?}",
        shop.header("content-type")
    );
    let body = shop.json();
    assert_eq!(
        keys(&body),
        ["addresses", "id", "person", "version"],
        "{body}"
    );
    assert_eq!(keys(&body["addresses"]), ["home"], "{body}");
    assert_eq!(body["person"]["firstname"], "Oliver");

    let billing = wait_until("billing's copy has the customer", COPY_TIMEOUT, || async {
        let reply = gateway
            .send(gateway.get(
                &format!("/billing/customers/{id}"),
                admin,
                "application/json",
            ))
            .await;
        if reply.status == 200 {
            Ok(reply)
        } else {
            Err(format!("{} {}", reply.status, reply.body))
        }
    })
    .await;
    let body = billing.json();
    assert_eq!(
        keys(&body),
        ["addresses", "bankaccount", "id", "person", "version"],
        "{body}"
    );
    assert_eq!(keys(&body["addresses"]), ["bill"], "{body}");
    assert_eq!(body["bankaccount"]["iban"], "DE89370400440532013000");

    // Shop holds no account to give: asking for one is a bad selector there.
    let refused = gateway
        .send(gateway.get(&format!("{shop_path}?aspects=~account"), admin, JSON))
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.error_code(), "unknown-aspect");

    // Signing in at login works once its copy holds the account.
    let signed_in = wait_until("login signs owronka in", COPY_TIMEOUT, || async {
        let reply = gateway
            .send(sign_in(gateway, "owronka", "geheim-1234"))
            .await;
        if reply.status == 201 {
            Ok(reply)
        } else {
            Err(format!("{} {}", reply.status, reply.body))
        }
    })
    .await;
    let session = signed_in.json();
    assert_eq!(session["customer"], id, "{session}");
    let token = session["token"]
        .as_str()
        .expect("a session token")
        .to_owned();
    let wrong = gateway
        .send(sign_in(gateway, "owronka", "not-the-password"))
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);

    // The session reads its own customer at shop (in XML, the default), and no other.
    let own = gateway
        .send(gateway.request(Method::GET, &shop_path, &token))
        .await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert!(own.body.contains(&format!("<id>{id}</id>")), "{}", own.body);
    let other = other_customer(gateway, admin, id).await;
    let other_path = format!("/shop/customers/{other}");
    let as_admin = gateway.send(gateway.get(&other_path, admin, JSON)).await;
    assert_eq!(as_admin.status, 200, "{}", as_admin.body);
    let as_session = gateway.send(gateway.get(&other_path, &token, JSON)).await;
    // Another customer's resource looks missing: a session learns nothing of others.
    assert_eq!(as_session.status, 404, "{}", as_session.body);
    assert_eq!(as_session.error_code(), "not-found");

    // Shop's replication status, as the operator sees it.
    let replication = gateway
        .send(gateway.get("/shop/admin/replication", admin, "application/json"))
        .await;
    assert_eq!(replication.status, 200, "{}", replication.body);
    let replication = replication.json();
    // The customers, and login's revocations of sessions (every SA but login copies them).
    let collections: Vec<&str> = replication["sources"]
        .as_array()
        .map(|sources| {
            sources
                .iter()
                .filter_map(|source| source["collection"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(collections, ["customers", "revocations"], "{replication}");
    token
}

/// The signed-in customer shops: browses the catalogue, places an order (its own, priced by
/// shop), billing copies it through the gateway and a batch unit invoices it; a cancellation
/// voids the invoice.
async fn shopping(gateway: &Gateway, tokens: &Tokens, session: &str, id: &str) {
    let catalogue = gateway
        .send(gateway.get("/shop/products", session, PLAIN_JSON))
        .await;
    assert_eq!(catalogue.status, 200, "{}", catalogue.body);
    let products = catalogue.json()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(products.len(), 5, "{}", catalogue.body);
    let product = products[0]["id"].as_str().unwrap().to_owned();
    let price = products[0]["product"]["price"].clone();

    let placed = gateway
        .send(
            gateway
                .request(Method::POST, "/shop/orders", session)
                .header("content-type", PLAIN_JSON)
                .header("accept", PLAIN_JSON)
                .body(
                    serde_json::json!({"order": {"lines": [{"product": product, "quantity": 2}]}})
                        .to_string(),
                ),
        )
        .await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    let order = placed.json();
    assert_eq!(order["order"]["customer"], id, "{order}");
    assert_eq!(order["order"]["lines"][0]["unit_price"], price, "{order}");
    let order_id = order["id"].as_str().unwrap().to_owned();
    let total = order["order"]["total"].clone();

    let invoice_of_order = |wanted: &'static str| {
        let order_id = order_id.clone();
        async move {
            let reply = gateway
                .send(gateway.get("/billing/invoices", session, PLAIN_JSON))
                .await;
            let invoice = reply.json()["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|item| item["invoice"]["order"] == order_id.as_str())
                .cloned();
            match invoice {
                Some(invoice) if invoice["invoice"]["status"] == wanted => Ok(invoice),
                _ => Err(format!("{} {}", reply.status, reply.body)),
            }
        }
    };
    let invoice = wait_until("billing invoices the order", COPY_TIMEOUT, || {
        invoice_of_order("open")
    })
    .await;
    assert_eq!(invoice["invoice"]["total"], total, "{invoice}");
    assert_eq!(invoice["invoice"]["customer"], id, "{invoice}");
    let by_order = gateway
        .send(gateway.get(
            &format!("/billing/invoices?order={order_id}"),
            &tokens.admin,
            PLAIN_JSON,
        ))
        .await;
    assert_eq!(
        by_order.json()["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        by_order.body
    );

    // Invoiced, the order cannot be re-priced: its lines are frozen once placed (a repeat of
    // the same lines is no change), so the invoice keeps saying what the order says.
    let change_lines = |quantity: i64| {
        gateway
            .request(
                Method::PUT,
                &format!("/shop/orders/{order_id}/order"),
                session,
            )
            .header("content-type", PLAIN_JSON)
            .header("accept", PLAIN_JSON)
            .body(
                serde_json::json!({"lines": [{"product": product, "quantity": quantity}]})
                    .to_string(),
            )
    };
    let refused = gateway.send(change_lines(99)).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.error_code(), "order-placed", "{}", refused.body);
    let repeated = gateway.send(change_lines(2)).await;
    assert_eq!(repeated.status, 200, "{}", repeated.body);
    assert_eq!(
        repeated.json()["order"]["total"],
        total,
        "{}",
        repeated.body
    );
    check_invoices(gateway, tokens, &[]);
    // An invoice corrected by hand to another total is what the operator's check names.
    let invoice_id = invoice["id"].as_str().unwrap().to_owned();
    let mut wrong = invoice["invoice"].clone();
    wrong.as_object_mut().unwrap().remove("version");
    wrong["total"] = serde_json::json!({"amount": "0.01", "currency": "EUR"});
    let corrected = gateway
        .send(
            gateway
                .request(
                    Method::PUT,
                    &format!("/billing/invoices/{invoice_id}/invoice"),
                    &tokens.admin,
                )
                .header("content-type", PLAIN_JSON)
                .body(wrong.to_string()),
        )
        .await;
    assert_eq!(corrected.status, 200, "{}", corrected.body);
    check_invoices(gateway, tokens, &[&order_id]);

    let cancelled = gateway
        .send(
            gateway
                .request(
                    Method::POST,
                    &format!("/shop/orders/{order_id}/cancel"),
                    session,
                )
                .header("accept", PLAIN_JSON),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    wait_until("billing voids the invoice", COPY_TIMEOUT, || {
        invoice_of_order("void")
    })
    .await;
    check_invoices(gateway, tokens, &[]);
}

/// Runs `hiscale check-invoices` against the gateway as the operator: it names exactly the
/// orders `differing` and fails when there is one.
fn check_invoices(gateway: &Gateway, tokens: &Tokens, differing: &[&str]) {
    let token_file = tempfile::NamedTempFile::new().expect("a token file");
    std::fs::write(token_file.path(), &tokens.admin).expect("write the token");
    // The command blocks until it has read both feeds: off the runtime's worker threads.
    let output = tokio::task::block_in_place(|| {
        std::process::Command::new(tests::process::hiscale_binary())
            .args(["check-invoices", "--url", &gateway.base, "--token-file"])
            .arg(token_file.path())
            .stdin(std::process::Stdio::null())
            .output()
    })
    .expect("hiscale check-invoices runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let named: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("order "))
        .filter_map(|line| line.split(':').next())
        .collect();
    assert_eq!(
        named,
        differing,
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.success(), differing.is_empty(), "{stdout}");
}

/// Kills registration-1 with SIGKILL: the gateway keeps answering through registration-2, and
/// the demo starts registration-1 again.
async fn failover(demo: &Demo, gateway: &Gateway, tokens: &Tokens, id: &str) {
    let killed = demo.unit("registration-1");
    assert!(is_running(killed.pid), "{killed:?} is not running");
    signal(killed.pid, "KILL");
    wait_until("registration-1 is gone", Duration::from_secs(5), || async {
        if is_running(killed.pid) {
            Err(killed.pid)
        } else {
            Ok(())
        }
    })
    .await;

    // A request the gateway had already sent on a connection to the killed unit can fail
    // (502); a client retrying it reaches the other unit.
    let path = format!("/registration/customers/{id}");
    let mut retries = 0;
    for _ in 0..10 {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let reply = gateway.send(gateway.get(&path, &tokens.admin, JSON)).await;
            if reply.status == 200 {
                assert_eq!(reply.json()["id"], id);
                break;
            }
            assert!(
                reply.status == 502 && attempt < 3,
                "a read with registration-1 down: {} {}",
                reply.status,
                reply.body
            );
            retries += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(retries <= 2, "{retries} reads had to be retried");

    let client = client();
    let restarted = wait_until("registration-1 is back", RESTART_TIMEOUT, || async {
        let unit = demo.unit("registration-1");
        if unit.pid == killed.pid || !is_running(unit.pid) {
            return Err(format!("pid {}", unit.pid));
        }
        let health = client
            .get(format!("{}/health", unit.url))
            .send()
            .await
            .map_err(|error| error.to_string())?;
        let status = health.status();
        let body = health.text().await.unwrap_or_default();
        if status == 200 && body.starts_with("PASS") {
            Ok(unit)
        } else {
            Err(format!("pid {}: {status} {body}", unit.pid))
        }
    })
    .await;
    assert_eq!(
        restarted.url, killed.url,
        "a restarted unit keeps its address"
    );
    demo.assert_alive();
}

/// The gateway of a running demo.
struct Gateway {
    client: reqwest::Client,
    base: String,
}

impl Gateway {
    fn request(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    fn get(&self, path: &str, token: &str, accept: &str) -> RequestBuilder {
        self.request(Method::GET, path, token)
            .header("accept", accept)
    }

    async fn send(&self, request: RequestBuilder) -> Reply {
        let response = request.send().await.expect("the gateway answers");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.expect("a body");
        Reply {
            status,
            headers,
            body,
        }
    }
}

fn sign_in(gateway: &Gateway, login: &str, password: &str) -> RequestBuilder {
    gateway
        .client
        .post(format!("{}/login/sessions", gateway.base))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(serde_json::json!({"login": login, "password": password}).to_string())
}

/// Some customer other than `id`, from registration's feed.
async fn other_customer(gateway: &Gateway, admin: &str, id: &str) -> String {
    let feed = gateway
        .send(gateway.get("/registration/customers?limit=1000", admin, JSON))
        .await;
    assert_eq!(feed.status, 200, "{}", feed.body);
    feed.json()["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["id"].as_str())
        .find(|other| *other != id)
        .expect("a sample customer")
        .to_owned()
}

/// The member names of a JSON object, sorted.
fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .map(|object| object.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// The version in an ETag such as `"13"`.
fn etag_version(etag: Option<&str>) -> i64 {
    etag.and_then(tests::etag_version)
        .unwrap_or_else(|| panic!("not a version ETag: {etag:?}"))
}

/// Calls `check` every 200 ms until it answers `Ok` (returned) or `within` has passed
/// (a failure naming `what` and the last `Err`).
async fn wait_until<T, E, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < deadline,
                "not within {within:?}: {what} (last: {last:?})"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long a held service area is watched staying down: past the supervisor's restart
/// backoff (10 s), after which a unit that merely died would be back.
const HELD_LONGER_THAN_A_RESTART: Duration = Duration::from_secs(12);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_the_gui_shell_and_an_operator_holds_a_service_area_stopped() {
    let data = tempfile::tempdir().expect("data directory");
    let mut demo = Demo::start(
        data.path(),
        free_demo_port(),
        &["--sample", "2"],
        START_TIMEOUT,
    )
    .await;
    let tokens = demo.tokens();
    let gateway = Gateway {
        client: client(),
        base: demo.url(),
    };

    // The shell, with a policy allowing only this origin's scripts, and its plugin list.
    let shell = gateway
        .send(gateway.client.get(format!("{}/", gateway.base)))
        .await;
    assert_eq!(shell.status, 200, "{}", shell.body);
    assert!(shell.body.contains("/shell/shell.js"), "{}", shell.body);
    let policy = shell.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let plugins = gateway
        .send(
            gateway
                .client
                .get(format!("{}/shell/plugins.json", gateway.base)),
        )
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&plugins.body).unwrap(),
        serde_json::json!({"login": "login", "plugins": ["registration", "shop", "billing"]})
    );
    let manifest = |sa: &str| {
        gateway
            .client
            .get(format!("{}/{sa}/gui/manifest.json", gateway.base))
    };
    let shop_manifest = gateway.send(manifest("shop")).await;
    assert_eq!(shop_manifest.status, 200, "{}", shop_manifest.body);

    // Holding is the operator's.
    let hold = |token: Option<&str>, sa: &str, method: Method| {
        let request = gateway
            .client
            .request(method, format!("{}/admin/held/{sa}", gateway.base));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    };
    for (token, sa, status, code) in [
        (None, "shop", 401, "unauthenticated"),
        (Some(tokens.shop.as_str()), "shop", 403, "operator-only"),
        (
            Some(tokens.admin.as_str()),
            "warehouse",
            404,
            "unknown-service-area",
        ),
    ] {
        let reply = gateway.send(hold(token, sa, Method::PUT)).await;
        assert_eq!(reply.status, status, "{}", reply.body);
        assert_eq!(reply.error_code(), code, "{}", reply.body);
    }

    // Held: both shop units stop and stay stopped past a restart's backoff; the others serve.
    let shop_units: Vec<_> = demo
        .units()
        .into_iter()
        .filter(|unit| unit.sa == "shop")
        .collect();
    let held = gateway
        .send(hold(Some(&tokens.admin), "shop", Method::PUT))
        .await;
    assert_eq!(held.status, 200, "{}", held.body);
    wait_until("both shop units stopped", RESTART_TIMEOUT, || async {
        let running: Vec<_> = shop_units
            .iter()
            .filter(|unit| is_running(unit.pid))
            .collect();
        running
            .is_empty()
            .then_some(())
            .ok_or(format!("{running:?}"))
    })
    .await;
    tokio::time::sleep(HELD_LONGER_THAN_A_RESTART).await;
    let down = gateway.send(manifest("shop")).await;
    // Its units fail their checks: the gateway answers as HAProxy does with no server up.
    assert_eq!(down.status, 503, "{}", down.body);
    assert_eq!(down.error_code(), "no-unit-available");
    assert!(
        demo.units()
            .iter()
            .filter(|unit| unit.sa == "shop")
            .all(|unit| !is_running(unit.pid)),
        "a held unit was restarted"
    );
    let list = gateway
        .send(
            gateway
                .client
                .get(format!("{}/admin/held", gateway.base))
                .bearer_auth(&tokens.admin),
        )
        .await;
    let list: Value = serde_json::from_str(&list.body).unwrap();
    assert_eq!(list["held"]["shop"], true, "{list}");
    assert_eq!(list["held"]["billing"], false, "{list}");
    let others = gateway.send(manifest("billing")).await;
    assert_eq!(others.status, 200, "{}", others.body);
    // The datacenter's health (one implicit datacenter here) names the held SA, and only it.
    let dc_health = || gateway.client.get(format!("{}/dc/health", gateway.base));
    // A unit's check may miss the gateway's 2 s timeout on a loaded machine, which names its SA
    // for that one answer; the held SA must be named, and the others must stop being named.
    wait_until(
        "the datacenter names shop alone",
        RESTART_TIMEOUT,
        || async {
            let reply = gateway.send(dc_health()).await;
            assert!(
                reply.body.contains("shop has no passing unit"),
                "{}: {}",
                reply.status,
                reply.body
            );
            (reply.status == 503 && reply.body == "FAIL\nshop has no passing unit\n")
                .then_some(())
                .ok_or(reply.body)
        },
    )
    .await;

    // Released: the units start again at once and serve.
    let released = gateway
        .send(hold(Some(&tokens.admin), "shop", Method::DELETE))
        .await;
    assert_eq!(released.status, 200, "{}", released.body);
    wait_until("shop serves again", RESTART_TIMEOUT, || async {
        let reply = gateway.send(manifest("shop")).await;
        (reply.status == 200).then_some(()).ok_or(reply.status)
    })
    .await;
    wait_until("the datacenter passes again", RESTART_TIMEOUT, || async {
        let reply = gateway.send(dc_health()).await;
        (reply.status == 200 && reply.body == "PASS\n")
            .then_some(())
            .ok_or(reply.body)
    })
    .await;
    let status = demo.stop(STOP_TIMEOUT).await;
    assert!(
        status.success(),
        "the demo ended {status}\n{}",
        demo.output()
    );
}

/// An answer a unit makes before reading a body — `413` for a body announced too large, `405`,
/// `401` — reaches the client through the gateway every time: the unit reads and discards the
/// rest (bounded) instead of resetting the connection under the gateway's feet, which the
/// gateway turned into `502` for about half of such requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answers_to_large_bodies_reach_the_client_through_the_gateway() {
    let data = tempfile::tempdir().expect("data directory");
    let mut demo = Demo::start(
        data.path(),
        free_demo_port(),
        &["--sample", "1"],
        START_TIMEOUT,
    )
    .await;
    let tokens = demo.tokens();
    let client = client();
    let body = vec![b'a'; 12 * 1024 * 1024];
    let customers = format!("{}/registration/customers", demo.url());
    // Registration is open to sign-up, so the anonymous write goes to shop's orders.
    let orders = format!("{}/shop/orders", demo.url());
    // Beyond the 32 MiB a unit reads to let its early answer through, the gateway refuses the
    // body itself (it knows the units' limit) and reads it, so the 413 still arrives; it used
    // to reach the client as 502.
    let beyond_draining = vec![b'a'; 40 * 1024 * 1024];
    let cases = [
        (
            Method::POST,
            &customers,
            Some(tokens.admin.as_str()),
            "413",
            &body,
            20,
        ),
        (
            Method::PATCH,
            &customers,
            Some(tokens.admin.as_str()),
            "405",
            &body,
            20,
        ),
        (Method::POST, &orders, None, "401", &body, 20),
        (
            Method::POST,
            &customers,
            Some(tokens.admin.as_str()),
            "413",
            &beyond_draining,
            5,
        ),
    ];
    for (method, url, token, expected, body, times) in cases {
        let mut statuses = Vec::new();
        for _ in 0..times {
            let mut request = client
                .request(method.clone(), url.as_str())
                .header("content-type", "application/json")
                .body(body.clone());
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            statuses.push(match request.send().await {
                Ok(response) => response.status().as_str().to_owned(),
                Err(error) => format!("error: {error}"),
            });
        }
        assert!(
            statuses.iter().all(|status| status == expected),
            "{method} {url} with {} bytes, expecting {expected} {times} times: {statuses:?}",
            body.len()
        );
    }
    demo.stop(STOP_TIMEOUT).await;
}

/// The gateway honours the units' `/health` as HAProxy does: a drained unit leaves the
/// rotation within a few checks (it kept getting requests before), and comes back once undrained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_stops_routing_to_a_drained_unit() {
    let data = tempfile::tempdir().expect("data directory");
    let mut demo = Demo::start(
        data.path(),
        free_demo_port(),
        &["--sample", "1"],
        START_TIMEOUT,
    )
    .await;
    let tokens = demo.tokens();
    let client = client();
    let drained = demo.unit("registration-1");
    let heartbeat = format!("{}/registration/heartbeat", demo.url());
    // Which units answer ten requests through the gateway, in order.
    let answering = async || {
        let mut units = Vec::new();
        for _ in 0..10 {
            let reply = client.get(&heartbeat).send().await.unwrap();
            assert_eq!(reply.status(), 200);
            let body: Value = reply.json().await.unwrap();
            units.push(body["unit"].as_str().unwrap_or_default().to_owned());
        }
        units
    };
    assert!(
        answering()
            .await
            .iter()
            .any(|unit| unit == "registration-1")
    );
    let drain = client
        .put(format!("{}/admin/drain", drained.url))
        .bearer_auth(&tokens.admin)
        .send()
        .await
        .unwrap();
    assert!(drain.status().is_success(), "{}", drain.status());
    // Two failed checks a second apart take it out.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let units = answering().await;
    assert!(
        units.iter().all(|unit| unit == "registration-2"),
        "a drained unit still gets requests: {units:?}"
    );
    let undrain = client
        .delete(format!("{}/admin/drain", drained.url))
        .bearer_auth(&tokens.admin)
        .send()
        .await
        .unwrap();
    assert!(undrain.status().is_success(), "{}", undrain.status());
    wait_until(
        "registration-1 is back in the rotation",
        Duration::from_secs(10),
        || async {
            let units = answering().await;
            units
                .iter()
                .any(|unit| unit == "registration-1")
                .then_some(())
                .ok_or(format!("{units:?}"))
        },
    )
    .await;
    demo.stop(STOP_TIMEOUT).await;
}
