//! Datacenters in a topology: each has its own gateway; every SA runs in one of them; a copy
//! polls its source through the gateway of the source's datacenter.
//!
//! A file without `[[datacenter]]` is one implicit datacenter whose gateway is `[gateway]`, so
//! every topology written before datacenters existed means what it meant.

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use super::{CopyDeployment, Gateway, SaDeployment, Topology, TopologyError, check::Finding};

/// The name of the one datacenter of a topology that names none.
const IMPLICIT_DATACENTER: &str = "default";

/// One `[[datacenter]]` as written: its name and its gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatacenterDeployment {
    /// Unique in the landscape, e.g. `dc1`; readers calling across datacenters are named
    /// `{sa}@{name}`.
    pub name: Spanned<String>,
    /// Where this datacenter's gateway listens; units of this datacenter poll it at
    /// `http://{listen}` (`https://` with a `tls_certificate`).
    pub listen: SocketAddr,
    /// How the *other* datacenters reach this gateway (a WAN address, a link proxy);
    /// the local URL (`http(s)://{listen}`) when absent.
    #[serde(default)]
    pub url: Option<String>,
    /// How this datacenter's own units reach its gateway; `http(s)://{listen}` when absent.
    /// On Kubernetes, the gateway's Service.
    #[serde(default)]
    pub local_url: Option<String>,
    /// HAProxy's status page of this datacenter.
    #[serde(default)]
    pub stats: Option<SocketAddr>,
    /// The unit serving the GUI shell in this datacenter (see [`Gateway::shell`]).
    #[serde(default)]
    pub shell: Option<SocketAddr>,
    /// Milliseconds between HAProxy's health checks of each unit.
    #[serde(default = "super::default_check_interval_ms")]
    pub check_interval_ms: u64,
    /// Connections one client address may hold at this gateway (see
    /// [`Gateway::max_connections_per_client`]).
    #[serde(default = "super::default_max_connections_per_client")]
    pub max_connections_per_client: u32,
    /// HAProxy's certificate of this datacenter's gateway (see [`Gateway::tls_certificate`]).
    #[serde(default)]
    pub tls_certificate: Option<Spanned<String>>,
    /// The CA that issued it, as units find it (see [`Gateway::ca_certificate`]).
    #[serde(default)]
    pub ca_certificate: Option<Spanned<String>>,
}

/// One datacenter, resolved: its name, its gateway, and the URLs by which its own units and
/// the other datacenters' units reach that gateway.
#[derive(Debug, Clone)]
pub struct Datacenter {
    pub name: String,
    pub gateway: Gateway,
    /// How this datacenter's own units reach its gateway.
    pub local_url: String,
    /// How other datacenters' units reach its gateway.
    pub remote_url: String,
}

impl Topology {
    /// Every datacenter, in file order: the `[[datacenter]]`s, or the one implicit datacenter
    /// of `[gateway]` (none when the file has neither; the check refuses that).
    pub fn datacenters(&self) -> Vec<Datacenter> {
        if self.datacenters.is_empty() {
            return self
                .gateway
                .iter()
                .map(|gateway| {
                    let url = gateway.url.clone().unwrap_or_else(|| gateway.default_url());
                    Datacenter {
                        name: IMPLICIT_DATACENTER.to_owned(),
                        gateway: gateway.clone(),
                        local_url: url.clone(),
                        remote_url: url,
                    }
                })
                .collect();
        }
        self.datacenters
            .iter()
            .map(Spanned::get_ref)
            .map(|dc| {
                let gateway = Gateway {
                    listen: dc.listen,
                    url: dc.url.clone(),
                    stats: dc.stats,
                    shell: dc.shell,
                    check_interval_ms: dc.check_interval_ms,
                    max_connections_per_client: dc.max_connections_per_client,
                    tls_certificate: dc.tls_certificate.clone(),
                    ca_certificate: dc.ca_certificate.clone(),
                };
                let local_url = dc
                    .local_url
                    .clone()
                    .unwrap_or_else(|| gateway.default_url());
                Datacenter {
                    name: dc.name.get_ref().clone(),
                    remote_url: dc.url.clone().unwrap_or_else(|| gateway.default_url()),
                    gateway,
                    local_url,
                }
            })
            .collect()
    }

    /// The datacenter called `name`, or the only one when `name` is `None`.
    pub fn datacenter(&self, name: Option<&str>) -> Result<Datacenter, TopologyError> {
        let all = self.datacenters();
        let refuse = |message: String| TopologyError::Refused {
            findings: vec![Finding::new(self.name(), None, message)],
        };
        let names = || {
            all.iter()
                .map(|dc| dc.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match name {
            Some(name) => all
                .iter()
                .find(|dc| dc.name == name)
                .cloned()
                .ok_or_else(|| {
                    refuse(format!("names no datacenter {name:?} (it has {})", names()))
                }),
            None => match all.as_slice() {
                [only] => Ok(only.clone()),
                [] => Err(refuse(
                    "names no [gateway] and no [[datacenter]]".to_owned(),
                )),
                _ => Err(refuse(format!(
                    "has {} datacenters ({}): name one with --datacenter",
                    all.len(),
                    names()
                ))),
            },
        }
    }

    /// The datacenter SA deployment `sa` runs in: its own `datacenter`, else the only one.
    pub fn datacenter_of(&self, sa: &SaDeployment) -> String {
        match &sa.datacenter {
            Some(name) => name.get_ref().clone(),
            None => self
                .datacenters
                .first()
                .map_or(IMPLICIT_DATACENTER.to_owned(), |dc| {
                    dc.get_ref().name.get_ref().clone()
                }),
        }
    }

    /// The datacenter a copy of `sa` polls: the copy's `datacenter`; else, for one origin's
    /// changes read from an owner that owns in several datacenters, that origin's own; else
    /// `sa`'s own.
    pub fn source_datacenter(&self, sa: &SaDeployment, copy: &CopyDeployment) -> String {
        if let Some(datacenter) = &copy.datacenter {
            return datacenter.clone();
        }
        let from_active_owner = self.service_areas.iter().any(|candidate| {
            let candidate = candidate.get_ref();
            candidate.name.get_ref() == &copy.from && !candidate.owner_datacenters.is_empty()
        });
        match &copy.origin {
            Some(origin) if from_active_owner => origin.clone(),
            _ => self.datacenter_of(sa),
        }
    }

    /// The name `sa`'s reader calls the source of `copy` by: the SA's name within its own
    /// datacenter, `{sa}@{datacenter}` across datacenters, so the readers of two datacenters
    /// never share one consumer position (nor one token) at a source.
    pub fn caller_name(&self, sa: &SaDeployment, copy: &CopyDeployment) -> String {
        let own = self.datacenter_of(sa);
        if self.source_datacenter(sa, copy) == own {
            sa.name.get_ref().clone()
        } else {
            format!("{}@{own}", sa.name.get_ref())
        }
    }

    /// The deployment of SA `name` in datacenter `datacenter`.
    pub fn deployment(&self, name: &str, datacenter: &str) -> Option<&SaDeployment> {
        self.service_areas
            .iter()
            .map(Spanned::get_ref)
            .find(|sa| sa.name.get_ref() == name && self.datacenter_of(sa) == datacenter)
    }

    /// The SA deployments of datacenter `datacenter`, in file order.
    pub fn in_datacenter<'a>(
        &'a self,
        datacenter: &'a str,
    ) -> impl Iterator<Item = &'a SaDeployment> + 'a {
        self.service_areas
            .iter()
            .map(Spanned::get_ref)
            .filter(move |sa| self.datacenter_of(sa) == datacenter)
    }

    /// The URL units of datacenter `from` reach datacenter `to`'s gateway by.
    pub(super) fn url_between(&self, from: &str, to: &str) -> Option<String> {
        let target = self.datacenters().into_iter().find(|dc| dc.name == to)?;
        Some(if from == to {
            target.local_url
        } else {
            target.remote_url
        })
    }
}
