//! The topology's checks, derivations and HAProxy output on a small landscape of its own.

#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::model::{Collection, ServiceArea};

fn customers() -> Collection {
    Collection::new("customers", "customer")
        .document("account", &[])
        .document("person", &["type"])
        .qualified_documents("address", "addresses", &["home", "bill"])
}

/// An owner and two SAs that copy from it, as a team's binary would declare them.
pub(super) fn areas() -> Vec<ServiceArea> {
    vec![
        ServiceArea::new("registration").owns(customers()),
        ServiceArea::new("login").copies(
            "registration",
            Collection::new("customers", "customer").document("account", &[]),
        ),
        ServiceArea::new("shop").copies(
            "registration",
            Collection::new("customers", "customer")
                .document("person", &["type"])
                .qualified_documents("address", "addresses", &["home"]),
        ),
    ]
}

pub(super) const GOOD: &str = r#"
[gateway]
listen = "127.0.0.1:8080"
stats = "127.0.0.1:8404"

[[sa]]
name = "registration"
database = "postgres://db/registration"
[sa.grants]
admin = "operator"
login = "~account"
shop = "~person~address.home"
[[sa.units]]
name = "registration-1"
listen = "127.0.0.1:8081"
zone = "a"
[[sa.units]]
name = "registration-2"
listen = "127.0.0.1:8082"
zone = "b"

[[sa]]
name = "login"
database = "sqlite:///var/lib/hiscale/login.db"
signs_sessions = true
[sa.grants]
admin = "operator"
registration = "~account"
[[sa.copies]]
collection = "customers"
from = "registration"
aspects = "~account"
[[sa.units]]
name = "login-1"
listen = "127.0.0.1:8083"
zone = "a"
reader = "primary"
[[sa.units]]
name = "login-2"
listen = "127.0.0.1:8084"
zone = "b"
reader = "backup"

[[sa]]
name = "shop"
database = "postgres://db/shop"
[sa.grants]
registration = "operator"
[[sa.copies]]
collection = "customers"
from = "registration"
aspects = "~person~address.home"
limit = 500
[[sa.units]]
name = "shop-1"
listen = "127.0.0.1:8085"
zone = "a"
reader = "primary"
[[sa.units]]
name = "shop-2"
listen = "127.0.0.1:8086"
zone = "b"
reader = "backup"
"#;

pub(super) fn secrets() -> Secrets {
    let mut secrets = Secrets::default();
    for name in ["admin", "login", "shop", "registration"] {
        secrets
            .tokens
            .insert(name.to_owned(), format!("{name}-token-0123456789"));
    }
    secrets.sessions.public_keys = vec![
        PublicKeyConfig::new("old", "public-old"),
        PublicKeyConfig::new("new", "public-new"),
    ];
    secrets.sessions.signing_key_id = Some("new".into());
    secrets.sessions.signing_key = Some("signing".into());
    secrets
}

/// The findings of `text` with `GOOD`'s part `from` replaced by `to`.
pub(super) fn errors_with(from: &str, to: &str) -> Vec<Finding> {
    assert!(GOOD.contains(from), "the test's topology has no {from:?}");
    let text = GOOD.replacen(from, to, 1);
    match Topology::parse(&text, "t.toml").unwrap().check(&areas()) {
        Ok(warnings) => panic!("accepted, with warnings {warnings:?}"),
        Err(TopologyError::Refused { findings }) => findings,
        Err(other) => panic!("not a refusal: {other}"),
    }
}

/// The line of `GOOD` (after replacing) on which `needle` first appears.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text.find(needle).unwrap();
    text[..at].matches('\n').count() + 1
}

#[test]
fn a_consistent_topology_passes_without_warnings() {
    let topology = Topology::parse(GOOD, "t.toml").unwrap();
    assert_eq!(topology.check(&areas()).unwrap(), Vec::<Finding>::new());
}

#[test]
fn aspects_beyond_the_grant_are_refused_on_the_copys_line() {
    let narrower = "shop = \"~person\"\n";
    let findings = errors_with("shop = \"~person~address.home\"\n", narrower);
    assert_eq!(findings.len(), 1, "{findings:?}");
    let text = GOOD.replacen("shop = \"~person~address.home\"\n", narrower, 1);
    // A [[sa.copies]] table's span starts at its header; shop's is the second copy table.
    let header = text.match_indices("[[sa.copies]]").nth(1).unwrap().0;
    let expected = text[..header].matches('\n').count() + 1;
    assert_eq!(findings[0].line, Some(expected), "{}", findings[0]);
    assert!(
        findings[0]
            .message
            .contains("grants shop only ~person: ~address.home lie outside"),
        "{}",
        findings[0]
    );
}

#[test]
fn a_copy_the_sa_does_not_declare_is_refused() {
    let findings = errors_with(
        "aspects = \"~person~address.home\"",
        "aspects = \"~person~address.bill\"",
    );
    assert!(
        findings[0]
            .message
            .contains("do not fit the copy shop declares"),
        "{}",
        findings[0]
    );
}

#[test]
fn bounds_beyond_the_feeds_are_refused() {
    let findings = errors_with("limit = 500", "limit = 5000");
    assert!(
        findings[0].message.contains("limit 5000"),
        "{}",
        findings[0]
    );
}

#[test]
fn an_unknown_service_area_names_its_line() {
    let findings = errors_with("name = \"shop\"", "name = \"shoop\"");
    let text = GOOD.replacen("name = \"shop\"", "name = \"shoop\"", 1);
    assert_eq!(findings[0].line, Some(line_of(&text, "name = \"shoop\"")));
    assert!(
        findings[0].to_string().starts_with("t.toml:"),
        "{}",
        findings[0]
    );
    assert!(
        findings[0]
            .message
            .contains("runs no service area \"shoop\"")
    );
}

#[test]
fn reader_roles_need_exactly_one_primary() {
    let findings = errors_with("reader = \"backup\"", "reader = \"primary\"");
    assert!(
        findings[0]
            .message
            .contains("exactly one unit with reader = \"primary\", has 2"),
        "{}",
        findings[0]
    );
    let findings = errors_with(
        "zone = \"a\"\n[[sa.units]]",
        "zone = \"a\"\nreader = \"primary\"\n[[sa.units]]",
    );
    assert!(
        findings[0].message.contains("copies nothing"),
        "{}",
        findings[0]
    );
}

#[test]
fn a_declared_copy_without_source_is_refused() {
    let findings = errors_with(
        "[[sa.copies]]\ncollection = \"customers\"\nfrom = \"registration\"\naspects = \"~account\"\n",
        "",
    );
    assert!(
        findings[0].message.contains("names no source"),
        "{}",
        findings[0]
    );
}

#[test]
fn a_ring_of_sources_is_refused() {
    let text = GOOD
        .replacen(
            "from = \"registration\"\naspects = \"~account\"",
            "from = \"shop\"\naspects = \"~account\"",
            1,
        )
        .replacen(
            "from = \"registration\"\naspects = \"~person~address.home\"",
            "from = \"login\"\naspects = \"~person~address.home\"",
            1,
        );
    let Err(TopologyError::Refused { findings }) =
        Topology::parse(&text, "t.toml").unwrap().check(&areas())
    else {
        panic!("a ring was accepted");
    };
    assert!(
        findings
            .iter()
            .any(|f| f.message.contains("form a ring (login -> shop -> login)")),
        "{findings:?}"
    );
}

#[test]
fn sqlite_shared_across_hosts_and_reused_addresses_are_refused() {
    let findings = errors_with("listen = \"127.0.0.1:8084\"", "listen = \"10.0.0.2:8084\"");
    assert!(
        findings[0].message.contains("share a SQLite file"),
        "{}",
        findings[0]
    );
    let findings = errors_with("listen = \"127.0.0.1:8086\"", "listen = \"127.0.0.1:8085\"");
    assert!(
        findings[0].message.contains("as shop-1 does"),
        "{}",
        findings[0]
    );
    // The GUI shell's unit is an address like any other.
    let findings = errors_with("[gateway]\n", "[gateway]\nshell = \"127.0.0.1:8085\"\n");
    assert!(
        findings[0]
            .message
            .contains("listens on 127.0.0.1:8085, as the GUI shell does"),
        "{}",
        findings[0]
    );
}

#[test]
fn a_backup_in_its_primarys_zone_is_a_warning() {
    let text = GOOD.replacen(
        "zone = \"b\"\nreader = \"backup\"",
        "zone = \"a\"\nreader = \"backup\"",
        1,
    );
    let warnings = Topology::parse(&text, "t.toml")
        .unwrap()
        .check(&areas())
        .unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .message
            .contains("same zone as its primary login-1")
    );
}

#[test]
fn a_backup_unit_watches_its_primary_and_polls_through_the_gateway() {
    let topology = Topology::parse(GOOD, "t.toml").unwrap();
    let config = topology
        .unit_config("login-2", &secrets(), &areas())
        .unwrap();
    assert_eq!(config.sa, "login");
    assert_eq!(config.listen.to_string(), "127.0.0.1:8084");
    assert_eq!(config.reader.role, ReaderRole::Backup);
    assert_eq!(
        config.reader.primary_url.as_deref(),
        Some("http://127.0.0.1:8083")
    );
    assert_eq!(config.peers, ["login-1"]);
    assert_eq!(config.sources.len(), 1);
    let source = &config.sources[0];
    assert_eq!(source.url, "http://127.0.0.1:8080/registration");
    assert_eq!(source.token, "login-token-0123456789");
    assert_eq!(source.aspects, "~account");
    assert_eq!(config.sessions.signing_key.as_deref(), Some("signing"));
    assert_eq!(config.sessions.signing_key_id.as_deref(), Some("new"));
    assert_eq!(config.sessions.public_keys.len(), 2);
    assert_eq!(config.sessions.revocations_from, None, "login owns them");
    // Every other SA reads login's revocations of sessions, besides what it granted before.
    let grants: Vec<_> = config
        .callers
        .iter()
        .map(|c| (c.name.as_str(), c.grant.as_str()))
        .collect();
    assert_eq!(
        grants,
        [
            ("admin", "operator"),
            ("registration", "~account~revocation"),
            ("shop", "~revocation")
        ]
    );
}

#[test]
fn an_owner_unit_gets_its_callers_and_no_signing_key() {
    let topology = Topology::parse(GOOD, "t.toml").unwrap();
    let config = topology
        .unit_config("registration-1", &secrets(), &areas())
        .unwrap();
    assert_eq!(config.reader.role, ReaderRole::Primary);
    // Its one source: login's revocations of sessions, which every SA but login copies.
    assert_eq!(config.sources.len(), 1);
    let revocations = &config.sources[0];
    assert_eq!(
        (
            revocations.collection.as_str(),
            revocations.url.as_str(),
            revocations.token.as_str(),
            revocations.aspects.as_str()
        ),
        (
            "revocations",
            "http://127.0.0.1:8080/login",
            "registration-token-0123456789",
            "~revocation"
        )
    );
    assert_eq!(config.sessions.revocations_from.as_deref(), Some("login"));
    assert_eq!(config.sessions.public_keys.len(), 2);
    assert_eq!(config.sessions.signing_key, None);
    assert_eq!(config.sessions.signing_key_id, None);
    let grants: Vec<_> = config
        .callers
        .iter()
        .map(|c| (c.name.as_str(), c.grant.as_str()))
        .collect();
    assert_eq!(
        grants,
        [
            ("admin", "operator"),
            ("login", "~account"),
            ("shop", "~person~address.home")
        ]
    );
    // The start gate waits for the SAs that copy the customers from registration directly.
    assert_eq!(config.consumers.len(), 1);
    assert_eq!(config.consumers["customers"], ["login", "shop"]);
    let login = topology
        .unit_config("login-1", &secrets(), &areas())
        .unwrap();
    assert!(login.consumers.is_empty(), "login owns nothing: no gate");
}

#[test]
fn missing_secrets_and_units_are_refused() {
    let topology = Topology::parse(GOOD, "t.toml").unwrap();
    let mut secrets = secrets();
    secrets.tokens.remove("shop");
    let error = topology
        .unit_config("registration-1", &secrets, &areas())
        .unwrap_err();
    assert!(
        error.to_string().contains("no token for \"shop\""),
        "{error}"
    );
    let error = topology
        .unit_config("shop-1", &secrets, &areas())
        .unwrap_err();
    assert!(
        error.to_string().contains("no token for \"shop\""),
        "{error}"
    );
    // Login signs, so it needs the id its tokens name the signing key by.
    let mut without_id = self::secrets();
    without_id.sessions.signing_key_id = None;
    let error = topology
        .unit_config("login-1", &without_id, &areas())
        .unwrap_err();
    assert!(
        error.to_string().contains("no sessions.signing_key_id"),
        "{error}"
    );
    assert!(
        topology
            .unit_config("registration-1", &without_id, &areas())
            .is_ok(),
        "only the signer needs it"
    );
    let error = topology
        .unit_config("nobody", &secrets, &areas())
        .unwrap_err();
    assert!(
        error.to_string().contains("names no unit \"nobody\""),
        "{error}"
    );
}

#[test]
fn unknown_keys_are_refused_with_their_position() {
    let text = GOOD.replacen("zone = \"a\"", "zome = \"a\"", 1);
    let error = Topology::parse(&text, "t.toml").unwrap_err();
    assert!(error.to_string().contains("zome"), "{error}");
}

#[test]
fn haproxy_gets_one_backend_per_sa_with_its_units() {
    let config = Topology::parse(GOOD, "t.toml").unwrap().haproxy_config();
    assert!(config.contains("    bind 127.0.0.1:8080\n"));
    assert!(config.contains("backend shop\n"));
    assert!(config.contains("    server shop-2 127.0.0.1:8086 check\n"));
    assert!(config.contains("http-request set-header X-Forwarded-Prefix /login\n"));
    assert!(config.contains("default-server inter 1s fall 2 rise 2"));
    assert!(config.contains("timeout server 75s"));
    assert!(config.contains("if !registration !login !shop wants_json"));
    assert!(config.contains("    bind 127.0.0.1:8404\n"));
}

/// Issue 25: slow requests end at HAProxy, and neither one client address nor all of them
/// together can take every connection of the gateway or of a unit.
#[test]
fn haproxy_bounds_slow_requests_and_connections_per_client() {
    let text = GOOD.replacen(
        "[gateway]\n",
        "[gateway]\nmax_connections_per_client = 25\n",
        1,
    );
    let config = Topology::parse(&text, "t.toml").unwrap().haproxy_config();
    for line in [
        "    timeout http-request 10s\n",
        "    option http-buffer-request\n",
        "    maxconn 4000\n",
        "    stick-table type ipv6 size 100k expire 60s store conn_cur\n",
        "    tcp-request connection track-sc0 src\n",
        "if { sc0_conn_cur gt 25 }\n",
        "\"code\":\"too-many-client-connections\"",
        "    default-server maxconn 1024\n",
    ] {
        assert!(config.contains(line), "{line:?} missing from\n{config}");
    }
    let default = Topology::parse(GOOD, "t.toml").unwrap().haproxy_config();
    assert!(
        default.contains("if { sc0_conn_cur gt 100 }\n"),
        "{default}"
    );
    let findings = errors_with("[gateway]\n", "[gateway]\nmax_connections_per_client = 0\n");
    let message = format!("{findings:?}");
    assert!(
        message.contains("max_connections_per_client 0 is outside 1..=4000"),
        "{message}"
    );
}

/// Writing methods go to a second backend over the same units, checked on `/health/write`,
/// while it has a unit up; reads keep the SA's backend checked on `/health`.
#[test]
fn haproxy_routes_writes_to_units_that_take_them() {
    let config = Topology::parse(GOOD, "t.toml").unwrap().haproxy_config();
    assert!(
        config.contains("    acl writing method POST PUT PATCH DELETE\n"),
        "{config}"
    );
    let write_rule = "    use_backend shop-write if shop writing { nbsrv(shop-write) gt 0 }\n";
    let read_rule = "    use_backend shop if shop\n";
    let (Some(write_at), Some(read_at)) = (config.find(write_rule), config.find(read_rule)) else {
        panic!("{config}")
    };
    assert!(write_at < read_at, "the first matching rule wins: {config}");
    let backend = |name: &str| {
        let start = config.find(&format!("\nbackend {name}\n")).unwrap() + 1;
        let end = config[start + 1..]
            .find("\nbackend ")
            .map_or(config.len(), |end| start + 1 + end);
        config[start..end].to_owned()
    };
    let reads = backend("shop");
    assert!(reads.contains("option httpchk GET /health\n"), "{reads}");
    let writes = backend("shop-write");
    assert!(
        writes.contains("option httpchk GET /health/write\n"),
        "{writes}"
    );
    assert!(writes.contains("http-check expect string PASS\n"));
    assert!(writes.contains("http-request disable-l7-retry\n"));
    assert!(writes.contains("http-request set-header X-Forwarded-Prefix /shop\n"));
    assert!(writes.contains("http-request replace-path ^/shop/?(.*)$ /\\1\n"));
    for server in [
        "    server shop-1 127.0.0.1:8085 check",
        "    server shop-2 127.0.0.1:8086 check",
    ] {
        assert!(reads.contains(&format!("{server}\n")), "{reads}");
        assert!(
            writes.contains(&format!(
                "{server} observe layer7 error-limit 1 on-error mark-down\n"
            )),
            "{writes}"
        );
    }
}

#[test]
fn haproxy_routes_the_gui_shell_to_its_unit_when_the_topology_names_one() {
    let without = Topology::parse(GOOD, "t.toml").unwrap().haproxy_config();
    assert!(!without.contains("gui_shell"), "{without}");
    let text = GOOD.replacen("[gateway]\n", "[gateway]\nshell = \"127.0.0.1:8090\"\n", 1);
    let config = Topology::parse(&text, "t.toml").unwrap().haproxy_config();
    assert!(
        config.contains("    acl gui_shell path / /index.html\n"),
        "{config}"
    );
    assert!(
        config.contains("    acl gui_shell path_beg /shell/\n"),
        "{config}"
    );
    assert!(
        config.contains("if !registration !login !shop !gui_shell wants_json"),
        "{config}"
    );
    assert!(
        config.contains("    use_backend gui_shell if gui_shell\n"),
        "{config}"
    );
    assert!(config.contains("backend gui_shell\n"), "{config}");
    assert!(
        config.contains("    server shell 127.0.0.1:8090 check\n"),
        "{config}"
    );
}

#[test]
fn a_copy_without_aspects_takes_what_its_sa_declares() {
    let text = GOOD.replacen("aspects = \"~person~address.home\"\n", "", 1);
    let topology = Topology::parse(&text, "t.toml").unwrap();
    assert_eq!(topology.check(&areas()).unwrap(), Vec::<Finding>::new());
    let config = topology
        .unit_config("shop-1", &secrets(), &areas())
        .unwrap();
    assert_eq!(config.sources[0].aspects, "~person~address.home");
    // Narrowing the grant is still caught without the aspects written out.
    let narrowed = text.replacen(
        "shop = \"~person~address.home\"\n",
        "shop = \"~person\"\n",
        1,
    );
    let Err(TopologyError::Refused { findings }) = Topology::parse(&narrowed, "t.toml")
        .unwrap()
        .check(&areas())
    else {
        panic!("a copy beyond its grant was accepted");
    };
    assert!(
        findings[0].message.contains("~address.home lie outside"),
        "{}",
        findings[0]
    );
}

#[test]
fn an_owner_is_refilled_from_the_copies_that_grant_it_and_warned_of_the_others() {
    let topology = Topology::parse(GOOD, "t.toml").unwrap();
    let config = topology
        .unit_config("registration-2", &secrets(), &areas())
        .unwrap();
    let peers: Vec<_> = config
        .restore_from
        .iter()
        .map(|peer| (peer.sa.as_str(), peer.url.as_str(), peer.aspects.as_str()))
        .collect();
    assert_eq!(
        peers,
        [
            ("login", "http://127.0.0.1:8080/login", "~account"),
            ("shop", "http://127.0.0.1:8080/shop", "~person~address.home"),
        ]
    );
    assert!(
        config
            .restore_from
            .iter()
            .all(|peer| peer.token == "registration-token-0123456789")
    );
    let text = GOOD.replacen("registration = \"~account\"\n", "", 1);
    let warnings = Topology::parse(&text, "t.toml")
        .unwrap()
        .check(&areas())
        .unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .message
            .contains("registration cannot be refilled from login's copy")
    );
}

#[test]
fn tombstones_must_outlive_the_backups() {
    let seven_days = GOOD.replacen("[gateway]", "[backups]\nretention_days = 7\n\n[gateway]", 1);
    let topology = Topology::parse(&seven_days, "t.toml").unwrap();
    assert_eq!(topology.check(&areas()).unwrap(), Vec::<Finding>::new());
    let thirty_days = GOOD.replacen(
        "[gateway]",
        "[backups]\nretention_days = 30\n\n[gateway]",
        1,
    );
    let Err(TopologyError::Refused { findings }) = Topology::parse(&thirty_days, "t.toml")
        .unwrap()
        .check(&areas())
    else {
        panic!("tombstones kept 7 days with backups of 30 were accepted");
    };
    assert_eq!(findings.len(), 3, "one per SA: {findings:?}");
    assert!(
        findings[0]
            .message
            .contains("keeps tombstones 7 days, but backups are kept 30 days")
    );
    assert_eq!(
        findings[0].line,
        Some(line_of(&thirty_days, "name = \"registration\""))
    );
}

/// A line of three datacenters: registration owns the customers in dc1, login copies them in
/// every datacenter, dc2's login from dc1's owner and dc3's login from dc2's copy (a relay).
pub(super) const LINE: &str = r#"
[[datacenter]]
name = "dc1"
listen = "10.0.1.2:8080"
url = "http://10.0.1.1:9001"
[[datacenter]]
name = "dc2"
listen = "10.0.2.2:8080"
url = "http://10.0.2.1:9001"
[[datacenter]]
name = "dc3"
listen = "10.0.3.2:8080"

[[sa]]
name = "registration"
datacenter = "dc1"
database = "sqlite:///var/lib/hiscale/registration.db"
[sa.grants]
login = "~account"
"login@dc2" = "~account"
[[sa.units]]
name = "registration-1"
listen = "10.0.1.2:8081"
zone = "a"
[[sa.units]]
name = "registration-2"
listen = "10.0.1.2:8082"
zone = "b"

[[sa]]
name = "login"
datacenter = "dc1"
database = "sqlite:///var/lib/hiscale/login.db"
[sa.grants]
registration = "~account"
[[sa.copies]]
collection = "customers"
from = "registration"
[[sa.units]]
name = "login-1"
listen = "10.0.1.2:8083"
zone = "a"
reader = "primary"
[[sa.units]]
name = "login-2"
listen = "10.0.1.2:8084"
zone = "b"
reader = "backup"

[[sa]]
name = "login"
datacenter = "dc2"
database = "sqlite:///var/lib/hiscale/login.db"
[sa.grants]
registration = "~account"
"login@dc3" = "~account"
[[sa.copies]]
collection = "customers"
from = "registration"
datacenter = "dc1"
[[sa.units]]
name = "login-dc2-1"
listen = "10.0.2.2:8083"
zone = "a"
reader = "primary"
[[sa.units]]
name = "login-dc2-2"
listen = "10.0.2.2:8084"
zone = "b"
reader = "backup"

[[sa]]
name = "login"
datacenter = "dc3"
database = "sqlite:///var/lib/hiscale/login.db"
[sa.grants]
registration = "~account"
[[sa.copies]]
collection = "customers"
from = "login"
datacenter = "dc2"
[[sa.units]]
name = "login-dc3-1"
listen = "10.0.3.2:8083"
zone = "a"
reader = "primary"
[[sa.units]]
name = "login-dc3-2"
listen = "10.0.3.2:8084"
zone = "b"
reader = "backup"
"#;

pub(super) fn line_secrets() -> Secrets {
    let mut secrets = secrets();
    for name in ["login@dc2", "login@dc3"] {
        secrets
            .tokens
            .insert(name.to_owned(), format!("{name}-token-0123456789"));
    }
    secrets
}

/// The messages of the errors of `LINE` with its part `from` replaced by `to`.
pub(super) fn line_errors_with(from: &str, to: &str) -> Vec<String> {
    assert!(LINE.contains(from), "the line has no {from:?}");
    let text = LINE.replacen(from, to, 1);
    match Topology::parse(&text, "t.toml").unwrap().check(&areas()) {
        Ok(warnings) => panic!("accepted, with warnings {warnings:?}"),
        Err(TopologyError::Refused { findings }) => findings
            .into_iter()
            .map(|finding| finding.message)
            .collect(),
        Err(other) => panic!("not a refusal: {other}"),
    }
}

/// Checks that some error of `LINE` changed from `from` to `to` contains `expected`.
fn check_line_refusal(from: &str, to: &str, expected: &str) {
    let errors = line_errors_with(from, to);
    assert!(
        errors.iter().any(|message| message.contains(expected)),
        "{expected:?} not among {errors:?}"
    );
}

#[test]
fn a_line_of_datacenters_passes_without_warnings() {
    let topology = Topology::parse(LINE, "t.toml").unwrap();
    assert_eq!(topology.check(&areas()).unwrap(), Vec::<Finding>::new());
    let names: Vec<String> = topology
        .datacenters()
        .into_iter()
        .map(|dc| dc.name)
        .collect();
    assert_eq!(names, ["dc1", "dc2", "dc3"]);
}

#[test]
fn readers_poll_the_gateway_of_their_sources_datacenter_under_their_datacenters_name() {
    let topology = Topology::parse(LINE, "t.toml").unwrap();
    let secrets = line_secrets();
    let check = |unit: &str, url: &str, caller: &str| {
        let config = topology.unit_config(unit, &secrets, &areas()).unwrap();
        assert_eq!(config.sources[0].url, url, "{unit}");
        assert_eq!(config.sources[0].token, secrets.tokens[caller], "{unit}");
    };
    // Within a datacenter: its own gateway's listen address, under the SA's own name.
    check("login-1", "http://10.0.1.2:8080/registration", "login");
    // Across datacenters: the source datacenter's url, as {sa}@{own datacenter}.
    check(
        "login-dc2-1",
        "http://10.0.1.1:9001/registration",
        "login@dc2",
    );
    // A relay: dc3 polls dc2's copy through dc2's url.
    check("login-dc3-2", "http://10.0.2.1:9001/login", "login@dc3");
    // The owner's start gate waits for both readers that poll it, by their caller names.
    let owner = topology
        .unit_config("registration-1", &secrets, &areas())
        .unwrap();
    assert_eq!(owner.consumers["customers"], ["login", "login@dc2"]);
    // Every copy refills the owner, the far ones through their datacenter's url (dc3 names
    // none: its listen address).
    let peers: Vec<(String, String)> = owner
        .restore_from
        .iter()
        .map(|peer| (peer.sa.clone(), peer.url.clone()))
        .collect();
    assert_eq!(
        peers,
        [
            ("login".into(), "http://10.0.1.2:8080/login".into()),
            ("login@dc2".into(), "http://10.0.2.1:9001/login".into()),
            ("login@dc3".into(), "http://10.0.3.2:8080/login".into()),
        ]
    );
}

#[test]
fn a_ring_across_datacenters_is_refused_naming_it() {
    check_line_refusal(
        "from = \"registration\"\ndatacenter = \"dc1\"",
        "from = \"login\"\ndatacenter = \"dc3\"",
        "form a ring (login@dc2 -> login@dc3 -> login@dc2)",
    );
}

#[test]
fn a_source_in_an_unknown_datacenter_or_missing_there_is_refused() {
    check_line_refusal(
        "from = \"login\"\ndatacenter = \"dc2\"",
        "from = \"login\"\ndatacenter = \"dc9\"",
        "login copies customers from datacenter \"dc9\", which the topology does not name",
    );
    check_line_refusal(
        "from = \"login\"\ndatacenter = \"dc2\"",
        "from = \"registration\"\ndatacenter = \"dc2\"",
        "login copies customers from \"registration\" in datacenter dc2, which the topology \
         does not name",
    );
}

#[test]
fn a_source_that_does_not_hold_the_collection_is_refused() {
    let text = LINE.replacen(
        "from = \"login\"\ndatacenter = \"dc2\"",
        "from = \"login\"\ndatacenter = \"dc2\"\n",
        1,
    );
    // login of dc2 holds customers; an SA the binary declares without it does not.
    let mut areas = areas();
    areas[1] = ServiceArea::new("login").copies(
        "registration",
        Collection::new("customers", "customer").document("account", &[]),
    );
    areas.push(ServiceArea::new("audit").owns(Collection::new("events", "event")));
    let text = text.replacen(
        "from = \"login\"\ndatacenter = \"dc2\"",
        "from = \"audit\"\ndatacenter = \"dc1\"",
        1,
    ) + "\n[[sa]]\nname = \"audit\"\ndatacenter = \"dc1\"\ndatabase = \"sqlite:///a.db\"\n\
         [sa.grants]\n\"login@dc3\" = \"operator\"\n[[sa.units]]\nname = \"audit-1\"\n\
         listen = \"10.0.1.2:8090\"\n[[sa.units]]\nname = \"audit-2\"\nlisten = \"10.0.1.2:8091\"\n";
    let Err(TopologyError::Refused { findings }) =
        Topology::parse(&text, "t.toml").unwrap().check(&areas)
    else {
        panic!("a source without the collection was accepted");
    };
    assert!(
        findings
            .iter()
            .any(|f| f.message == "audit holds no collection customers"),
        "{findings:?}"
    );
}

#[test]
fn an_owner_in_two_datacenters_must_name_them_as_owner_datacenters() {
    let text = LINE.replacen(
        "name = \"registration-2\"\nlisten = \"10.0.1.2:8082\"\nzone = \"b\"",
        "name = \"registration-2\"\nlisten = \"10.0.1.2:8082\"\nzone = \"b\"\n\n[[sa]]\n\
         name = \"registration\"\ndatacenter = \"dc2\"\n\
         database = \"sqlite:///var/lib/hiscale/registration.db\"\n[[sa.units]]\n\
         name = \"registration-dc2-1\"\nlisten = \"10.0.2.2:8081\"",
        1,
    );
    let Err(TopologyError::Refused { findings }) =
        Topology::parse(&text, "t.toml").unwrap().check(&areas())
    else {
        panic!("an owner in two datacenters was accepted");
    };
    assert!(
        findings.iter().any(|f| f.message.contains(
            "registration owns collections and runs in datacenters dc1 and dc2: an owner runs \
             in one datacenter unless every deployment names them all in owner_datacenters"
        )),
        "{findings:?}"
    );
}

#[test]
fn names_and_datacenters_must_be_unique_and_known() {
    check_line_refusal(
        "name = \"login-dc3-2\"",
        "name = \"login-dc2-2\"",
        "unit login-dc2-2 is named twice",
    );
    check_line_refusal(
        "datacenter = \"dc3\"\ndatabase",
        "datacenter = \"dc2\"\ndatabase",
        "service area login is named twice in datacenter dc2",
    );
    check_line_refusal(
        "name = \"dc3\"",
        "name = \"dc2\"",
        "datacenter dc2 is named twice",
    );
    check_line_refusal(
        "datacenter = \"dc3\"\ndatabase",
        "datacenter = \"dc4\"\ndatabase",
        "login runs in datacenter dc4, which the topology does not name",
    );
    check_line_refusal(
        "datacenter = \"dc3\"\ndatabase",
        "database",
        "login names no datacenter",
    );
    check_line_refusal(
        "[[datacenter]]\nname = \"dc1\"",
        "[gateway]\nlisten = \"10.0.0.1:80\"\n[[datacenter]]\nname = \"dc1\"",
        "names both [gateway] and [[datacenter]]",
    );
}

#[test]
fn a_reader_across_datacenters_needs_a_grant_under_its_datacenters_name() {
    check_line_refusal(
        "\"login@dc2\" = \"~account\"\n",
        "",
        "registration grants login@dc2 nothing",
    );
}

#[test]
fn haproxy_configures_one_datacenter_with_its_health() {
    let topology = Topology::parse(LINE, "t.toml").unwrap();
    let dc2 = topology.datacenter(Some("dc2")).unwrap();
    let config = topology.haproxy_config_for(&dc2);
    assert!(config.contains("    bind 10.0.2.2:8080\n"), "{config}");
    assert!(config.contains("server login-dc2-1 10.0.2.2:8083 check"));
    assert!(!config.contains("registration-1"), "{config}");
    assert!(config.contains("--topology t.toml --datacenter dc2"));
    assert!(config.contains(
        "http-request return status 503 content-type text/plain string \
         \"FAIL\\nlogin has no passing unit\\n\" if dc_health { nbsrv(login) eq 0 }"
    ));
    assert!(config.contains("string \"PASS\\n\" if dc_health\n"));
    assert!(
        topology.datacenter(None).is_err(),
        "three datacenters, none named"
    );
    assert!(topology.datacenter(Some("dc9")).is_err());
}
