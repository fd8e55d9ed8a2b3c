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

/// `hiscale kubernetes --topology FILE`: the manifests on stdout.
pub fn kubernetes(path: &Path) -> anyhow::Result<()> {
    let topology = load_checked(path)?;
    let manifests = topology.kubernetes_manifests()?;
    // The topology as the units will read it in the cluster must hold as well.
    topology
        .in_kubernetes()?
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
        let generated = committed().kubernetes_manifests()?;
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
        let in_cluster = committed().in_kubernetes()?;
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
}
