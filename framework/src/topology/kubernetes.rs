//! [`Topology::kubernetes_manifests`]: the landscape on Kubernetes, generated from the same
//! topology file as HAProxy's configuration (`hiscale kubernetes --topology FILE`), so the
//! cluster can never disagree with the units' own view of the landscape.
//!
//! How the file maps onto Kubernetes objects:
//!
//! * **A Deployment per unit**, one replica, replaced by `Recreate`. A unit is an identity (a
//!   name its peers record, a zone, a reader role), which a Deployment's interchangeable
//!   replicas cannot carry; two pods under one unit name would both claim its reader lease.
//!   Readiness is `/health` (503 while the unit fails), liveness `/heartbeat`; the grace period
//!   on termination outlasts the longest long poll, so a draining unit finishes it. The unit's
//!   zone becomes a preferred node affinity on `topology.kubernetes.io/zone`.
//! * **A headless Service per SA**: every unit of the SA gets a stable DNS name,
//!   `{unit}.{sa}`, by which HAProxy checks and routes to it and a backup watches its primary.
//!   It publishes units that are not ready, as HAProxy and the reader lease decide themselves.
//! * **The gateway**: HAProxy as a Deployment of two with the configuration generated for this
//!   topology (units found by name through the cluster's DNS) and a Service,
//!   `hiscale-gateway`, which is the landscape's entry (add an Ingress or a load balancer).
//! * **The GUI shell**, when the topology names one: a Deployment and a Service,
//!   `hiscale-shell`.
//! * **Configuration and secrets**: the ConfigMap `hiscale-topology` holds the topology as the
//!   units see it in the cluster (every unit listens on all of its pod's addresses and is
//!   reached by its DNS name); the tokens and session keys come from the Secret
//!   `hiscale-secrets` (key `secrets.toml`), which is never generated: create it from the
//!   secrets file. A database password may come from the optional Secret `hiscale-{sa}-db`
//!   (`PGPASSWORD`), as systemd's units read `/etc/hiscale/{unit}.env`.
//!
//! The databases stay where the topology names them: PostgreSQL servers outside the cluster.
//!
//! A topology of several datacenters is one set of manifests per datacenter
//! (`--datacenter NAME`), each for that datacenter's own cluster: its SAs, its gateway, and the
//! whole topology in the ConfigMap, rewritten so that its units reach its gateway through the
//! gateway's Service (`local_url`) and every other datacenter by the `url` that datacenter
//! names (a load balancer or WAN address in front of its gateway).

use serde_json::{Value, json};

use super::haproxy::{Addressing, LONG_POLL_MARGIN_SECS, SHELL_SERVICE};
use toml::Spanned;

use super::{Gateway, Topology, TopologyError, UnitDeployment, yaml};
use crate::config::{FEED_MAX_WAIT_SECS, UnitKind};

/// The Kubernetes release the manifests are written and validated for.
pub const KUBERNETES_VERSION: &str = "1.30";
/// The image every unit runs: the `hiscale` binary (build it and push it under this name).
const UNIT_IMAGE: &str = "hiscale:0.1.0";
/// HAProxy's official image, the release the configuration is written for.
const GATEWAY_IMAGE: &str = "haproxy:2.6";
const GATEWAY_SERVICE: &str = "hiscale-gateway";
const TOPOLOGY_CONFIG_MAP: &str = "hiscale-topology";
const HAPROXY_CONFIG_MAP: &str = "hiscale-haproxy";
const SECRETS: &str = "hiscale-secrets";
/// Where the files are mounted in a unit's container.
const TOPOLOGY_DIR: &str = "/etc/hiscale/topology";
const SECRETS_DIR: &str = "/etc/hiscale/secrets";
/// The unprivileged user every container runs as (`nobody`).
const RUN_AS: u32 = 65534;

impl Topology {
    /// Every Kubernetes object of datacenter `datacenter` (the only one when `None`), as one
    /// multi-document YAML stream (`kubectl apply -f`): a topology of several datacenters is
    /// one set per datacenter, each applied to that datacenter's cluster.
    pub fn kubernetes_manifests(&self, datacenter: Option<&str>) -> Result<String, TopologyError> {
        let objects = self.kubernetes_objects(datacenter)?;
        let option = match datacenter {
            Some(name) => format!(" --datacenter {name}"),
            None => String::new(),
        };
        let mut out = format!(
            "# The HiScale landscape on Kubernetes {KUBERNETES_VERSION}, generated from {name} \
             by\n#\n#     hiscale kubernetes --topology {name}{option}\n#\n# Do not edit: change \
             the topology and generate again (a test fails when the two differ).\n# Before \
             `kubectl apply -f`, build and push the image {UNIT_IMAGE}, and create the\n# \
             secrets: kubectl create secret generic {SECRETS} --from-file=secrets.toml=FILE\n",
            name = self.name()
        );
        for object in objects {
            out.push_str("---\n");
            out.push_str(&yaml::document(&object));
        }
        Ok(out)
    }

    /// The objects [`Topology::kubernetes_manifests`] writes for `datacenter`, in order.
    pub fn kubernetes_objects(
        &self,
        datacenter: Option<&str>,
    ) -> Result<Vec<Value>, TopologyError> {
        self.check_kubernetes_names()?;
        let in_cluster = self.in_kubernetes(datacenter)?;
        let datacenter = in_cluster.datacenter(datacenter)?;
        let gateway = self.datacenter(Some(&datacenter.name))?.gateway;
        let mut objects = vec![
            config_map(
                TOPOLOGY_CONFIG_MAP,
                "topology.toml",
                &in_cluster.origin.text,
            ),
            config_map(
                HAPROXY_CONFIG_MAP,
                "haproxy.cfg",
                &in_cluster.haproxy_config_with(&datacenter, Addressing::Kubernetes),
            ),
        ];
        for sa in in_cluster.in_datacenter(&datacenter.name) {
            let sa_name = sa.name.get_ref();
            objects.push(sa_service(sa_name));
            for unit in sa.units.iter().map(|unit| unit.get_ref()) {
                objects.push(unit_deployment(sa_name, unit));
            }
        }
        objects.push(gateway_deployment(gateway.listen.port()));
        objects.push(service(
            GATEWAY_SERVICE,
            json!({"app.kubernetes.io/component": "gateway"}),
            gateway.listen.port(),
        ));
        if let Some(shell) = gateway.shell {
            objects.push(shell_deployment(shell.port()));
            objects.push(service(
                SHELL_SERVICE,
                json!({"app.kubernetes.io/component": "gui-shell"}),
                shell.port(),
            ));
        }
        Ok(objects)
    }

    /// The topology as the units of `datacenter` (the only one when `None`) see it in their
    /// cluster: each listens on every address of its pod and is reached as `{unit}.{sa}`; the
    /// datacenter's gateway and shell likewise, and its units reach the gateway through its
    /// Service. The other datacenters are reached by their `url`s, which every one of them
    /// must then name. The rest of the file, comments included, is unchanged.
    pub fn in_kubernetes(&self, datacenter: Option<&str>) -> Result<Topology, TopologyError> {
        let refuse = |message: String| TopologyError::Refused {
            findings: vec![super::Finding::new(self.name(), None, message)],
        };
        let target = self.datacenter(datacenter)?;
        // In a cluster TLS ends at the Ingress or load balancer in front of HAProxy's Service,
        // which holds the certificate; HAProxy's pods have no file to point at.
        if target.gateway.tls_certificate.is_some() {
            return Err(refuse(format!(
                "names a tls_certificate for the gateway of {}: in Kubernetes TLS ends at the \
                 Ingress or load balancer in front of the gateway; remove it",
                target.name
            )));
        }
        let mut document: toml_edit::DocumentMut = self
            .origin
            .text
            .parse()
            .map_err(|error| refuse(format!("cannot be rewritten for Kubernetes: {error}")))?;
        if self.datacenters.is_empty() {
            let gateway = document
                .get_mut("gateway")
                .and_then(toml_edit::Item::as_table_like_mut)
                .ok_or_else(|| refuse("has no [gateway] table to rewrite".to_owned()))?;
            in_cluster_gateway(gateway, &target.gateway, "url");
        } else {
            let unreachable: Vec<&str> = self
                .datacenters
                .iter()
                .map(Spanned::get_ref)
                .filter(|dc| dc.url.is_none())
                .map(|dc| dc.name.get_ref().as_str())
                .collect();
            if !unreachable.is_empty() {
                return Err(refuse(format!(
                    "datacenters {} name no url: on Kubernetes each datacenter is a cluster of \
                     its own, which the others reach only by its url",
                    unreachable.join(", ")
                )));
            }
            let tables = tables_mut(document.get_mut("datacenter"));
            for (table, dc) in tables.zip(&self.datacenters) {
                if dc.get_ref().name.get_ref() == &target.name {
                    in_cluster_gateway(table, &target.gateway, "local_url");
                }
            }
        }
        for (area, sa) in tables_mut(document.get_mut("sa")).zip(&self.service_areas) {
            let sa = sa.get_ref();
            if self.datacenter_of(sa) != target.name {
                continue;
            }
            let sa_name = sa.name.get_ref();
            for (table, unit) in tables_mut(area.get_mut("units")).zip(&sa.units) {
                let unit = unit.get_ref();
                let port = unit.listen.port();
                table.insert("listen", toml_edit::value(format!("0.0.0.0:{port}")));
                table.insert(
                    "url",
                    toml_edit::value(format!("http://{}.{sa_name}:{port}", unit.name)),
                );
            }
        }
        let header = if self.datacenters.is_empty() {
            format!(
                "# Generated for Kubernetes by `hiscale kubernetes` from {}: every unit listens on \
                 all of its\n# pod's addresses and is reached by its name in the SA's headless \
                 Service ({{unit}}.{{sa}}).\n",
                self.name()
            )
        } else {
            format!(
                "# Generated for Kubernetes by `hiscale kubernetes` from {} for datacenter {}: \
                 its units listen\n# on all of their pod's addresses and are reached by their \
                 name in the SA's headless Service\n# ({{unit}}.{{sa}}); the other datacenters \
                 by their url.\n",
                self.name(),
                target.name
            )
        };
        let in_cluster = Topology::parse(&(header + &document.to_string()), self.name())?;
        let unnamed: Vec<String> = in_cluster
            .in_datacenter(&target.name)
            .flat_map(|sa| sa.units.iter().map(Spanned::get_ref))
            .filter(|unit| unit.url.is_none())
            .map(|unit| unit.name.clone())
            .collect();
        if !unnamed.is_empty() {
            return Err(refuse(format!(
                "cannot give units {} a name in the cluster: write them as [[sa.units]] tables",
                unnamed.join(", ")
            )));
        }
        Ok(in_cluster)
    }

    /// Every SA and unit name as a DNS label: Kubernetes names objects, pods and DNS entries
    /// by them.
    fn check_kubernetes_names(&self) -> Result<(), TopologyError> {
        let invalid: Vec<String> = self
            .service_areas
            .iter()
            .map(|sa| sa.get_ref().name.get_ref().clone())
            .chain(self.units().map(|(_, unit)| unit.name.clone()))
            .filter(|name| !is_dns_label(name))
            .collect();
        if invalid.is_empty() {
            return Ok(());
        }
        Err(TopologyError::Refused {
            findings: vec![super::Finding::new(
                self.name(),
                None,
                format!(
                    "{} cannot name Kubernetes objects: use at most 63 lower-case letters, \
                     digits and '-', starting with a letter",
                    invalid.join(", ")
                ),
            )],
        })
    }
}

/// Rewrites a gateway's table for the cluster: it listens on every address of its pod (as do
/// its status page and the shell), and the datacenter's own units reach it through its
/// Service, by `url_key` (`url` of `[gateway]`, `local_url` of a `[[datacenter]]`).
fn in_cluster_gateway(table: &mut dyn toml_edit::TableLike, gateway: &Gateway, url_key: &str) {
    let port = gateway.listen.port();
    table.insert("listen", toml_edit::value(format!("0.0.0.0:{port}")));
    table.insert(
        url_key,
        toml_edit::value(format!("http://{GATEWAY_SERVICE}:{port}")),
    );
    if let Some(stats) = gateway.stats {
        table.insert(
            "stats",
            toml_edit::value(format!("0.0.0.0:{}", stats.port())),
        );
    }
    if let Some(shell) = gateway.shell {
        table.insert(
            "shell",
            toml_edit::value(format!("0.0.0.0:{}", shell.port())),
        );
    }
}

/// RFC 1035 label as Kubernetes requires it of Service and pod host names.
fn is_dns_label(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The tables of an array of tables (`[[sa]]`) or of an array of inline tables (`sa = [{…}]`).
fn tables_mut(
    item: Option<&mut toml_edit::Item>,
) -> impl Iterator<Item = &mut dyn toml_edit::TableLike> {
    let tables: Vec<&mut dyn toml_edit::TableLike> = match item {
        Some(toml_edit::Item::ArrayOfTables(tables)) => tables
            .iter_mut()
            .map(|table| table as &mut dyn toml_edit::TableLike)
            .collect(),
        Some(toml_edit::Item::Value(toml_edit::Value::Array(array))) => array
            .iter_mut()
            .filter_map(toml_edit::Value::as_inline_table_mut)
            .map(|table| table as &mut dyn toml_edit::TableLike)
            .collect(),
        _ => Vec::new(),
    };
    tables.into_iter()
}

fn labels(component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "hiscale",
        "app.kubernetes.io/component": component,
    })
}

fn config_map(name: &str, file: &str, text: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels("configuration")},
        "data": {file: text},
    })
}

/// The SA's headless Service: DNS names `{unit}.{sa}` for its units.
fn sa_service(sa: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": sa, "labels": labels(sa)},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": true,
            "selector": {"app.kubernetes.io/name": "hiscale", "hiscale.io/sa": sa},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    })
}

fn service(name: &str, selector: Value, port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": port, "targetPort": "http"}],
        },
    })
}

/// The restrictions every container runs under: not root, nothing to escalate to, a
/// read-only file system.
fn locked_down() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
    })
}

fn pod_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        // The secrets' files belong to this group, so the unit may read them (mode 0440).
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

fn unit_deployment(sa: &str, unit: &UnitDeployment) -> Value {
    let kind = match unit.kind {
        UnitKind::Service => "service",
        UnitKind::Batch => "batch",
    };
    let mut pod_labels = labels(sa);
    pod_labels["hiscale.io/sa"] = json!(sa);
    pod_labels["hiscale.io/unit"] = json!(unit.name);
    pod_labels["hiscale.io/kind"] = json!(kind);
    let mut pod = json!({
        "hostname": unit.name,
        "subdomain": sa,
        // Longer than the longest long poll: a draining unit answers it before it stops.
        "terminationGracePeriodSeconds": FEED_MAX_WAIT_SECS + LONG_POLL_MARGIN_SECS,
        "securityContext": pod_security(),
        "containers": [{
            "name": "unit",
            "image": UNIT_IMAGE,
            "args": [
                "serve",
                "--topology", format!("{TOPOLOGY_DIR}/topology.toml"),
                "--secrets", format!("{SECRETS_DIR}/secrets.toml"),
                "--unit", unit.name,
            ],
            "ports": [{"name": "http", "containerPort": unit.listen.port()}],
            "env": [{"name": "RUST_LOG", "value": "info"}],
            "envFrom": [{"secretRef": {"name": format!("hiscale-{sa}-db"), "optional": true}}],
            // Migrations run before the unit listens: up to 5 minutes to come up.
            "startupProbe": probe("/heartbeat", 2, 150),
            "livenessProbe": probe("/heartbeat", 5, 3),
            // /health, not /health/write: an unready pod leaves its Service's DNS, and HAProxy
            // with it, for reads and the feed too, so a closed start gate could never open.
            // HAProxy's write backends check /health/write themselves.
            "readinessProbe": probe("/health", 2, 2),
            "securityContext": locked_down(),
            "volumeMounts": [
                {"name": "topology", "mountPath": TOPOLOGY_DIR, "readOnly": true},
                {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": true},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        }],
        "volumes": [
            {"name": "topology", "configMap": {"name": TOPOLOGY_CONFIG_MAP}},
            {"name": "secrets", "secret": {"secretName": SECRETS, "defaultMode": 0o440}},
            {"name": "tmp", "emptyDir": {}},
        ],
    });
    if let Some(zone) = &unit.zone {
        // Preferred, not required: a cluster in one zone still runs the landscape; the reader
        // lease, not the placement, keeps two readers from polling at once.
        pod["affinity"] = json!({"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100,
                "preference": {"matchExpressions": [{
                    "key": "topology.kubernetes.io/zone",
                    "operator": "In",
                    "values": [zone],
                }]},
            }],
        }});
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": unit.name, "labels": pod_labels.clone()},
        "spec": {
            "replicas": 1,
            // Never two pods under one unit name, not even during a rollout.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"hiscale.io/unit": unit.name}},
            "template": {"metadata": {"labels": pod_labels}, "spec": pod},
        },
    })
}

fn probe(path: &str, period_secs: u32, failures: u32) -> Value {
    json!({
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period_secs,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    })
}

/// A Deployment of two interchangeable pods (no singletons) labelled as `component`.
fn replicated_deployment(name: &str, component: &str, pod: Value) -> Value {
    let labels = labels(component);
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels.clone()},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels.clone()},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    })
}

/// HAProxy, two of them, each routing to every unit.
fn gateway_deployment(port: u16) -> Value {
    replicated_deployment(
        GATEWAY_SERVICE,
        "gateway",
        json!({
            "terminationGracePeriodSeconds": FEED_MAX_WAIT_SECS + LONG_POLL_MARGIN_SECS,
            "securityContext": pod_security(),
            "containers": [{
                "name": "haproxy",
                "image": GATEWAY_IMAGE,
                "args": ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"],
                "ports": [{"name": "http", "containerPort": port}],
                "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 2},
                "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5},
                "securityContext": locked_down(),
                "volumeMounts": [{
                    "name": "haproxy",
                    "mountPath": "/usr/local/etc/haproxy",
                    "readOnly": true,
                }],
            }],
            "volumes": [{"name": "haproxy", "configMap": {"name": HAPROXY_CONFIG_MAP}}],
        }),
    )
}

fn shell_deployment(port: u16) -> Value {
    replicated_deployment(
        SHELL_SERVICE,
        "gui-shell",
        json!({
            "securityContext": pod_security(),
            "containers": [{
                "name": "shell",
                "image": UNIT_IMAGE,
                "args": ["shell", "--topology", format!("{TOPOLOGY_DIR}/topology.toml")],
                "ports": [{"name": "http", "containerPort": port}],
                "readinessProbe": probe("/health", 2, 2),
                "livenessProbe": probe("/health", 5, 3),
                "securityContext": locked_down(),
                "volumeMounts": [
                    {"name": "topology", "mountPath": TOPOLOGY_DIR, "readOnly": true},
                ],
            }],
            "volumes": [{"name": "topology", "configMap": {"name": TOPOLOGY_CONFIG_MAP}}],
        }),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    const INLINE: &str = r#"
gateway = { listen = "127.0.0.1:9080" }
[[sa]]
name = "registration"
database = "postgres://db/registration"
units = [
  { name = "registration-1", listen = "127.0.0.1:9081", zone = "a" },
  { name = "registration-2", listen = "127.0.0.1:9082", zone = "b" },
]
"#;

    /// Inline tables are rewritten like `[[…]]` tables: no unit keeps a loopback address.
    #[test]
    fn inline_tables_are_rewritten_for_the_cluster() {
        let in_cluster = Topology::parse(INLINE, "inline.toml")
            .unwrap()
            .in_kubernetes(None)
            .unwrap();
        let datacenter = in_cluster.datacenter(None).unwrap();
        assert_eq!(datacenter.gateway.listen.to_string(), "0.0.0.0:9080");
        assert_eq!(datacenter.local_url, "http://hiscale-gateway:9080");
        let urls: Vec<String> = in_cluster.units().map(|(_, unit)| unit.url()).collect();
        assert_eq!(
            urls,
            [
                "http://registration-1.registration:9081",
                "http://registration-2.registration:9082"
            ]
        );
        assert!(
            in_cluster
                .units()
                .all(|(_, unit)| unit.listen.ip().is_unspecified())
        );
    }

    #[test]
    fn every_unit_is_a_deployment_that_outlasts_the_longest_long_poll() {
        let objects = Topology::parse(INLINE, "inline.toml")
            .unwrap()
            .kubernetes_objects(None)
            .unwrap();
        let deployments: Vec<&Value> = objects
            .iter()
            .filter(|object| object["kind"] == "Deployment")
            .collect();
        let names: Vec<&str> = deployments
            .iter()
            .filter_map(|object| object["metadata"]["name"].as_str())
            .collect();
        assert_eq!(
            names,
            ["registration-1", "registration-2", "hiscale-gateway"]
        );
        let pod = &deployments[0]["spec"]["template"]["spec"];
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(grace > FEED_MAX_WAIT_SECS, "{grace}");
        let container = &pod["containers"][0];
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/health");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/heartbeat");
        assert_eq!(pod["subdomain"], "registration");
        assert_eq!(deployments[0]["spec"]["strategy"]["type"], "Recreate");
    }

    #[test]
    fn names_kubernetes_cannot_use_are_refused() {
        let text = INLINE.replace("registration-2", "Registration_2");
        let error = Topology::parse(&text, "inline.toml")
            .unwrap()
            .kubernetes_objects(None)
            .unwrap_err();
        assert!(error.to_string().contains("Registration_2"), "{error}");
    }

    /// A unit's `url` feeds HAProxy's server line and a backup's heartbeat: only a base URL
    /// passes the check.
    #[test]
    fn a_unit_url_other_than_a_base_url_is_refused() {
        let areas = [crate::model::ServiceArea::new("registration")
            .owns(crate::model::Collection::new("customers", "customer").document("person", &[]))];
        let with_url = |url: &str| {
            INLINE.replace(
                "listen = \"127.0.0.1:9081\",",
                &format!("listen = \"127.0.0.1:9081\", url = \"{url}\","),
            )
        };
        for good in [
            "http://registration-1.registration:9081",
            "http://10.0.0.1:80",
        ] {
            let topology = Topology::parse(&with_url(good), "t.toml").unwrap();
            assert!(topology.check(&areas).is_ok(), "{good}");
        }
        for bad in [
            "https://x:1",
            "http://x",
            "http://x:1/path",
            "x:1",
            "http://:1",
        ] {
            let topology = Topology::parse(&with_url(bad), "t.toml").unwrap();
            let error = topology.check(&areas).unwrap_err().to_string();
            assert!(error.contains("write http://HOST:PORT"), "{bad}: {error}");
        }
    }
}
