//! The Kubernetes manifests (`deploy/kubernetes/hiscale.yaml`, generated from the committed
//! topology; a launcher test keeps the two equal) pass the API's schemas of the release they
//! are written for, offline (`kubernetes-validate` from PyPI, which scripts/test installs), and
//! the HAProxy configuration inside them passes HAProxy's own check.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hiscale::topology::Topology;

const RELEASE: &str = "1.30.0";

fn committed(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(file)
}

/// Runs `kubernetes-validate --strict` for the stated release on `path`.
fn validate(path: &Path) -> Output {
    let binary = std::env::var("HISCALE_KUBERNETES_VALIDATE").unwrap_or_else(|_| {
        panic!(
            "HISCALE_KUBERNETES_VALIDATE is not set: scripts/test installs kubernetes-validate \
             and sets it; this test is never skipped"
        )
    });
    Command::new(&binary)
        .args(["--strict", "--kubernetes-version", RELEASE])
        .arg(path)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {binary}: {error}"))
}

#[test]
fn the_committed_manifests_pass_the_kubernetes_schemas() {
    let path = committed("deploy/kubernetes/hiscale.yaml");
    let output = validate(&path);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{report}");
    // Every unit of the committed topology is a Deployment that was checked.
    let topology = Topology::load(&committed("deploy/topology.toml")).unwrap();
    for (_, unit) in topology.units() {
        let line = format!("passed for resource deployment/{} ", unit.name);
        assert!(report.contains(&line), "{line:?} missing from:\n{report}");
    }
    assert!(
        report.contains("passed for resource service/hiscale-gateway"),
        "{report}"
    );
}

/// A topology of three datacenters (the line `hiscale dc-demo` runs, with WAN urls) gets one
/// set per datacenter, each passing the schemas with exactly that datacenter's units.
#[test]
fn each_datacenters_manifests_pass_the_kubernetes_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let addresses = [1, 2, 3].map(|site| std::net::Ipv4Addr::new(10, 231, site, 2));
    let urls = [1, 2, 3].map(|site| format!("https://dc{site}.example.net"));
    let (text, units) = hiscale::emulation::LineTopology {
        addresses: &addresses,
        urls: &urls,
        gateway_port: 8080,
        first_unit_port: 8101,
        databases: Path::new("/var/lib/hiscale"),
        quick_failover: false,
        owners: 1,
    }
    .write();
    let topology = Topology::parse(&text, "line.toml").unwrap();
    for (index, datacenter) in ["dc1", "dc2", "dc3"].into_iter().enumerate() {
        let path = dir.path().join(format!("{datacenter}.yaml"));
        std::fs::write(
            &path,
            topology.kubernetes_manifests(Some(datacenter)).unwrap(),
        )
        .unwrap();
        let output = validate(&path);
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{datacenter}: {report}");
        for unit in &units {
            let line = format!("passed for resource deployment/{} ", unit.name);
            assert_eq!(
                report.contains(&line),
                unit.datacenter == index,
                "{datacenter}: {line:?} in:\n{report}"
            );
        }
    }
}

/// The check above could pass by reading nothing: the same file with one wrong type fails it.
#[test]
fn a_manifest_with_a_wrong_type_fails_the_validation() {
    let text = std::fs::read_to_string(committed("deploy/kubernetes/hiscale.yaml")).unwrap();
    let spoiled = text.replacen("replicas: 1\n", "replicas: \"one\"\n", 1);
    assert_ne!(spoiled, text);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spoiled.yaml");
    std::fs::write(&path, spoiled).unwrap();
    let output = validate(&path);
    assert!(!output.status.success());
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(report.contains("spec.replicas"), "{report}");
}

#[test]
fn the_gateways_configuration_in_the_manifests_passes_haproxys_check() {
    let topology = Topology::load(&committed("deploy/topology.toml")).unwrap();
    let objects = topology.kubernetes_objects(None).unwrap();
    let config = objects
        .iter()
        .find(|object| object["metadata"]["name"] == "hiscale-haproxy")
        .and_then(|object| object["data"]["haproxy.cfg"].as_str())
        .expect("the manifests hold HAProxy's configuration");
    assert!(config.contains("resolvers cluster"), "{config}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let binary = std::env::var("HISCALE_HAPROXY").unwrap_or_else(|_| "haproxy".into());
    let output = Command::new(&binary)
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {binary} ({error}): scripts/test installs it"));
    assert!(
        output.status.success(),
        "haproxy -c refused the Kubernetes configuration: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
