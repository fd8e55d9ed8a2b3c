//! TLS at the gateway: HAProxy's `bind … ssl crt`, the units' `https://` URLs and trusted CAs,
//! and the check's refusals of relative paths and plain URLs.

#![allow(clippy::unwrap_used, clippy::panic)]

use super::tests::{GOOD, LINE, areas, errors_with, line_errors_with, secrets};
use super::*;

const PLAIN_GATEWAY: &str = "[gateway]\nlisten = \"127.0.0.1:8080\"\n";

/// `GOOD` with its gateway given `settings` (TOML lines).
fn good_with(settings: &str) -> String {
    GOOD.replacen(PLAIN_GATEWAY, &format!("{PLAIN_GATEWAY}{settings}"), 1)
}

#[test]
fn haproxy_terminates_tls_with_the_gateways_certificate() {
    let text = good_with(
        "tls_certificate = \"/etc/hiscale/tls/gateway.pem\"\n\
         ca_certificate = \"/etc/hiscale/tls/ca.pem\"\n",
    );
    let topology = Topology::parse(&text, "t.toml").unwrap();
    assert_eq!(topology.check(&areas()).unwrap(), Vec::<Finding>::new());
    let config = topology.haproxy_config();
    assert!(
        config.contains("    bind 127.0.0.1:8080 ssl crt /etc/hiscale/tls/gateway.pem\n"),
        "{config}"
    );
    assert!(
        !config.contains("    bind 127.0.0.1:8080\n"),
        "no plain listener"
    );
    assert!(
        !config.contains("http-request redirect"),
        "no redirect to HTTPS"
    );
    // The status page stays where it was, plain.
    assert!(config.contains("    bind 127.0.0.1:8404\n"));

    // Units poll the gateway over HTTPS and trust its CA.
    let login = topology
        .unit_config("login-1", &secrets(), &areas())
        .unwrap();
    assert_eq!(login.sources[0].url, "https://127.0.0.1:8080/registration");
    assert_eq!(
        login.ca_certificates,
        [std::path::PathBuf::from("/etc/hiscale/tls/ca.pem")]
    );
}

#[test]
fn a_plain_gateway_is_unchanged() {
    let topology = Topology::parse(GOOD, "t.toml").unwrap();
    assert!(
        topology
            .haproxy_config()
            .contains("    bind 127.0.0.1:8080\n")
    );
    let login = topology
        .unit_config("login-1", &secrets(), &areas())
        .unwrap();
    assert_eq!(login.sources[0].url, "http://127.0.0.1:8080/registration");
    assert!(login.ca_certificates.is_empty());
}

#[test]
fn certificate_paths_must_be_absolute() {
    for key in ["tls_certificate", "ca_certificate"] {
        let findings = errors_with(
            PLAIN_GATEWAY,
            &format!("{PLAIN_GATEWAY}{key} = \"tls/gateway.pem\"\n"),
        );
        let messages: Vec<String> = findings.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [format!(
                "t.toml:4: gateway.{key} \"tls/gateway.pem\" is not an absolute path: write the \
                 file's full path on its host"
            )]
        );
    }
}

#[test]
fn a_gateway_that_terminates_tls_is_not_reached_over_plain_http() {
    let findings = errors_with(
        PLAIN_GATEWAY,
        &format!(
            "{PLAIN_GATEWAY}url = \"http://gateway.internal:8080\"\n\
             tls_certificate = \"/etc/hiscale/tls/gateway.pem\"\n"
        ),
    );
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(
        findings[0].message,
        "gateway.url \"http://gateway.internal:8080\" is not https://, but the gateway \
         terminates TLS (gateway.tls_certificate): units could not reach it"
    );
}

#[test]
fn datacenters_each_terminate_tls_with_their_own_certificate() {
    let dc2 = "name = \"dc2\"\nlisten = \"10.0.2.2:8080\"\nurl = \"http://10.0.2.1:9001\"\n";
    let text = LINE.replacen(
        dc2,
        "name = \"dc2\"\nlisten = \"10.0.2.2:8080\"\nurl = \"https://10.0.2.1:9001\"\n\
         tls_certificate = \"/etc/hiscale/tls/dc2.pem\"\nca_certificate = \"/etc/hiscale/tls/ca.pem\"\n",
        1,
    );
    assert_ne!(text, LINE);
    let topology = Topology::parse(&text, "t.toml").unwrap();
    assert_eq!(topology.check(&areas()).unwrap(), Vec::<Finding>::new());
    let dc2 = topology.datacenter(Some("dc2")).unwrap();
    assert_eq!(dc2.local_url, "https://10.0.2.2:8080");
    assert!(
        topology
            .haproxy_config_for(&dc2)
            .contains("    bind 10.0.2.2:8080 ssl crt /etc/hiscale/tls/dc2.pem\n")
    );
    let dc1 = topology.datacenter(Some("dc1")).unwrap();
    assert!(
        topology
            .haproxy_config_for(&dc1)
            .contains("    bind 10.0.1.2:8080\n")
    );
    // dc3's readers poll dc2's gateway by its https URL and trust the CA it names.
    let config = topology
        .unit_config("login-dc3-1", &super::tests::line_secrets(), &areas())
        .unwrap();
    assert_eq!(config.sources[0].url, "https://10.0.2.1:9001/login");
    assert_eq!(
        config.ca_certificates,
        [std::path::PathBuf::from("/etc/hiscale/tls/ca.pem")]
    );

    let errors = line_errors_with(
        "name = \"dc3\"\nlisten = \"10.0.3.2:8080\"\n",
        "name = \"dc3\"\nlisten = \"10.0.3.2:8080\"\ntls_certificate = \"dc3.pem\"\n",
    );
    assert_eq!(
        errors,
        [
            "datacenter dc3.tls_certificate \"dc3.pem\" is not an absolute path: write the file's \
          full path on its host"
        ]
    );
}

#[test]
fn kubernetes_manifests_refuse_a_gateway_certificate() {
    let text = good_with("tls_certificate = \"/etc/hiscale/tls/gateway.pem\"\n");
    let error = Topology::parse(&text, "t.toml")
        .unwrap()
        .in_kubernetes(None)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("in Kubernetes TLS ends at the Ingress or load balancer"),
        "{error}"
    );
}
