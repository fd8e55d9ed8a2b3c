//! `hiscale check` and `hiscale haproxy-config`: what an operator does with a topology file
//! before anything runs, against the service areas this binary knows.

use std::path::Path;

use anyhow::Context;
use hiscale::topology::Topology;

pub use crate::registry::service_areas;

/// Loads `path` and checks it: logs each warning, fails with every error, each on its line.
pub fn load_checked(path: &Path) -> anyhow::Result<Topology> {
    let topology = Topology::load(path)?;
    for warning in topology.check(&service_areas())? {
        tracing::warn!("{warning}");
    }
    Ok(topology)
}

/// `hiscale check --topology FILE`.
pub fn check(path: &Path) -> anyhow::Result<()> {
    let topology = Topology::load(path)?;
    let warnings = topology
        .check(&service_areas())
        .with_context(|| format!("{} does not hold", path.display()))?;
    for warning in &warnings {
        println!("warning: {warning}");
    }
    let units = topology.units().count();
    let datacenters = match topology.datacenters.len() {
        0 => String::new(),
        count => format!("{count} datacenters, "),
    };
    println!(
        "{}: {datacenters}{} service areas, {units} units, {} warnings",
        path.display(),
        topology.service_areas.len(),
        warnings.len()
    );
    Ok(())
}

/// `hiscale haproxy-config --topology FILE [--datacenter NAME]`: the configuration of one
/// datacenter's gateway (the only one when not named) on stdout.
pub fn haproxy_config(path: &Path, datacenter: Option<&str>) -> anyhow::Result<()> {
    let topology = load_checked(path)?;
    let datacenter = topology.datacenter(datacenter)?;
    print!("{}", topology.haproxy_config_for(&datacenter));
    Ok(())
}

/// `hiscale kubernetes --topology FILE [--datacenter NAME]`: one datacenter's manifests (the
/// only one's when not named) on stdout.
pub fn kubernetes(path: &Path, datacenter: Option<&str>) -> anyhow::Result<()> {
    let topology = load_checked(path)?;
    let manifests = topology.kubernetes_manifests(datacenter)?;
    // The topology as the units will read it in the cluster must hold as well.
    topology
        .in_kubernetes(datacenter)?
        .check(&service_areas())
        .context("the topology rewritten for Kubernetes does not hold")?;
    print!("{manifests}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use hiscale::topology::{Secrets, Topology};

    use super::*;

    const TOPOLOGY: &str = include_str!("../../../deploy/topology.toml");
    const HAPROXY: &str = include_str!("../../../deploy/haproxy/haproxy.cfg");
    const SECRETS: &str = include_str!("../../../deploy/secrets.example.toml");
    const KUBERNETES: &str = include_str!("../../../deploy/kubernetes/hiscale.yaml");

    fn committed() -> Topology {
        Topology::parse(TOPOLOGY, "deploy/topology.toml").expect("deploy/topology.toml parses")
    }

    #[test]
    fn the_committed_topology_holds_without_warnings() -> anyhow::Result<()> {
        let warnings = committed().check(&service_areas())?;
        assert!(warnings.is_empty(), "{warnings:?}");
        Ok(())
    }

    #[test]
    fn the_committed_haproxy_config_is_generated_from_the_committed_topology() {
        let generated = committed().haproxy_config();
        assert!(
            generated == HAPROXY,
            "deploy/haproxy/haproxy.cfg differs from the topology's; regenerate it with\n  \
             cargo run -- haproxy-config --topology deploy/topology.toml > \
             deploy/haproxy/haproxy.cfg"
        );
    }

    #[test]
    fn every_committed_unit_derives_a_configuration_from_the_example_secrets() -> anyhow::Result<()>
    {
        let topology = committed();
        let secrets: Secrets = toml::from_str(SECRETS)?;
        let mut names = Vec::new();
        for (sa, unit) in topology.units() {
            let config = topology.unit_config(&unit.name, &secrets, &service_areas())?;
            assert_eq!(&config.sa, sa.name.get_ref());
            assert_eq!(config.peers.len(), sa.units.len() - 1, "{}", unit.name);
            names.push(config.unit);
        }
        assert_eq!(names.len(), 10);
        Ok(())
    }

    #[test]
    fn the_committed_kubernetes_manifests_are_generated_from_the_committed_topology()
    -> anyhow::Result<()> {
        let generated = committed().kubernetes_manifests(None)?;
        assert!(
            generated == KUBERNETES,
            "deploy/kubernetes/hiscale.yaml differs from the topology's; regenerate it with\n  \
             cargo run -- kubernetes --topology deploy/topology.toml > \
             deploy/kubernetes/hiscale.yaml"
        );
        Ok(())
    }

    /// In the cluster a backup watches its primary by the primary's DNS name, and every unit
    /// of the committed landscape derives its configuration from the rewritten file.
    #[test]
    fn the_topology_rewritten_for_kubernetes_holds_and_names_units_by_dns() -> anyhow::Result<()> {
        let in_cluster = committed().in_kubernetes(None)?;
        let warnings = in_cluster.check(&service_areas())?;
        assert!(warnings.is_empty(), "{warnings:?}");
        let secrets: Secrets = toml::from_str(SECRETS)?;
        let backup = in_cluster.unit_config("login-2", &secrets, &service_areas())?;
        assert_eq!(
            backup.reader.primary_url.as_deref(),
            Some("http://login-1.login:8083")
        );
        assert_eq!(backup.listen.to_string(), "0.0.0.0:8084");
        assert_eq!(
            backup.sources[0].url,
            "http://hiscale-gateway:8080/registration"
        );
        let haproxy = in_cluster.haproxy_config();
        assert!(
            haproxy.contains("server login-1 login-1.login:8083 check"),
            "{haproxy}"
        );
        Ok(())
    }

    /// The text of the line of three datacenters `hiscale dc-demo` runs, with WAN urls, and
    /// secrets for it.
    fn line() -> (String, Secrets) {
        let addresses = [1, 2, 3].map(|s| std::net::Ipv4Addr::new(10, 231, s, 2));
        let urls = [1, 2, 3].map(|s| format!("https://dc{s}.example.net"));
        let line = hiscale::emulation::LineTopology {
            addresses: &addresses,
            urls: &urls,
            gateway_port: 8080,
            first_unit_port: 8101,
            databases: Path::new("/var/lib/hiscale"),
            quick_failover: false,
            owners: 1,
        };
        let mut secrets = Secrets::default();
        for caller in line.callers().into_iter().chain(["admin".to_owned()]) {
            secrets
                .tokens
                .insert(caller.clone(), format!("token-of-{caller}"));
        }
        let (signing, public) = hiscale::session::generate_key_pair().expect("a session key pair");
        secrets.sessions.public_keys = vec![hiscale::config::PublicKeyConfig::new("k1", &public)];
        secrets.sessions.signing_key_id = Some("k1".to_owned());
        secrets.sessions.signing_key = Some(signing);
        (line.write().0, secrets)
    }

    /// On Kubernetes each datacenter is a cluster of its own: dc2's set holds dc2's units
    /// only; they reach their own gateway through its Service and dc1's by its url, and dc2's
    /// backup watches its primary by DNS name.
    #[test]
    fn each_datacenter_gets_manifests_of_its_own_units() -> anyhow::Result<()> {
        let (text, secrets) = line();
        let topology = Topology::parse(&text, "line.toml")?;
        let Err(refused) = topology.kubernetes_manifests(None) else {
            anyhow::bail!("a topology of three datacenters needs --datacenter");
        };
        let refused = refused.to_string();
        assert!(refused.contains("name one with --datacenter"), "{refused}");

        let in_cluster = topology.in_kubernetes(Some("dc2"))?;
        let warnings = in_cluster.check(&service_areas())?;
        assert!(warnings.is_empty(), "{warnings:?}");
        let backup = in_cluster.unit_config("login-dc2-2", &secrets, &service_areas())?;
        assert_eq!(backup.listen.to_string(), "0.0.0.0:8106");
        assert_eq!(
            backup.reader.primary_url.as_deref(),
            Some("http://login-dc2-1.login:8105")
        );
        assert_eq!(
            backup.sources[0].url,
            "https://dc1.example.net/registration"
        );
        // dc3 reads dc2's copy through dc2's url, which the rewrite leaves as it was.
        let relay = in_cluster.unit_config("login-dc3-1", &secrets, &service_areas())?;
        assert_eq!(relay.sources[0].url, "https://dc2.example.net/login");
        assert_eq!(relay.listen.to_string(), "10.231.3.2:8107");

        let manifests = topology.kubernetes_manifests(Some("dc2"))?;
        assert!(manifests.contains("--datacenter dc2"), "{manifests}");
        assert!(manifests.contains("name: \"login-dc2-1\"\n"), "{manifests}");
        assert!(
            !manifests.contains("name: \"login-dc1-1\"\n"),
            "{manifests}"
        );
        assert!(
            !manifests.contains("name: \"registration-dc1-1\"\n"),
            "{manifests}"
        );
        assert!(
            manifests.contains("server login-dc2-1 login-dc2-1.login:8105 check"),
            "{manifests}"
        );
        let dc2 = in_cluster.datacenter(Some("dc2"))?;
        assert_eq!(dc2.local_url, "http://hiscale-gateway:8080");
        assert_eq!(dc2.remote_url, "https://dc2.example.net");
        Ok(())
    }

    #[test]
    fn a_datacenter_without_a_url_is_refused_for_kubernetes() -> anyhow::Result<()> {
        let text = line()
            .0
            .replacen("url = \"https://dc3.example.net\"\n", "", 1);
        let topology = Topology::parse(&text, "line.toml")?;
        let Err(refused) = topology.kubernetes_manifests(Some("dc1")) else {
            anyhow::bail!("dc3 cannot be reached from dc1's cluster without its url");
        };
        let refused = refused.to_string();
        assert!(refused.contains("datacenters dc3 name no url"), "{refused}");
        Ok(())
    }
}
