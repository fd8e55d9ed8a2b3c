//! The deployment in one file (`deploy/topology.toml`): which service areas run, their units
//! (address, zone, reader role), each SA's database, which source every copy polls, and who
//! may call whom with which grant.
//!
//! What an SA *is* — its collections and the shape of its copies — stays in its code
//! ([`ServiceArea`]); the topology only says where and how it runs. Everything else derives
//! from this file: each unit's configuration ([`Topology::unit_config`], what
//! `hiscale serve --topology FILE --unit NAME` runs), HAProxy's configuration
//! ([`Topology::haproxy_config`]) and the demo. [`Topology::check`] finds every disagreement
//! with the SAs' declarations before anything starts, each with the line it is on, so a unit
//! never starts with a source its poller could only fail on.
//!
//! Secrets are not in the topology: bearer tokens and session keys come from a separate file
//! ([`Secrets`]) that only the units' account can read.

mod check;
mod datacenter;
mod haproxy;
mod kubernetes;
mod yaml;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::aspect::Selection;
use crate::config::{
    CallerConfig, FeedConfig, Limits, PeerConfig, PublicKeyConfig, ReaderConfig, ReaderRole,
    SessionConfig, SourceConfig, UnitConfig, UnitKind,
};
use crate::model::ServiceArea;

pub use check::Finding;
pub use datacenter::{Datacenter, DatacenterDeployment};

/// The whole deployment, as read from its file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// The gateway (HAProxy, or the demo's) every client and every reading unit goes through,
    /// when the whole landscape is one datacenter (the file then names no `[[datacenter]]`).
    #[serde(default)]
    pub gateway: Option<Gateway>,
    /// The datacenters, each with its own gateway, when there are several (or one named):
    /// every SA then says which one it runs in.
    #[serde(rename = "datacenter", default)]
    pub datacenters: Vec<Spanned<DatacenterDeployment>>,
    /// Settings of the session tokens login issues.
    #[serde(default)]
    pub sessions: SessionSettings,
    /// How old a backup may be when it is restored.
    #[serde(default)]
    pub backups: Option<Spanned<BackupSettings>>,
    /// The service areas, in the order HAProxy's configuration lists them.
    #[serde(rename = "sa", default)]
    pub service_areas: Vec<Spanned<SaDeployment>>,
    /// The file's text and name, for line numbers in findings.
    #[serde(skip)]
    origin: Origin,
}

/// Where a topology came from.
#[derive(Debug, Clone, Default)]
struct Origin {
    name: String,
    text: String,
}

/// The gateway in front of every SA: `/{sa}/…` goes to that SA's units.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// Where the gateway listens.
    pub listen: SocketAddr,
    /// How units reach the gateway (their sources poll through it); `http://{listen}` when
    /// absent, which fits one machine.
    #[serde(default)]
    pub url: Option<String>,
    /// HAProxy's status page.
    #[serde(default)]
    pub stats: Option<SocketAddr>,
    /// The unit serving the GUI shell (`hiscale shell`): HAProxy, which serves no files,
    /// routes `/`, `/index.html` and `/shell/…` to it. The demo's gateway serves the shell
    /// itself and ignores this.
    #[serde(default)]
    pub shell: Option<SocketAddr>,
    /// Milliseconds between HAProxy's health checks of each unit.
    #[serde(default = "default_check_interval_ms")]
    pub check_interval_ms: u64,
    /// Connections one client address may hold at the gateway at once; beyond, a request is
    /// answered `429 too-many-client-connections`. So one client cannot take every connection
    /// the gateway and the units have (issue 25: drip-fed bodies). Behind something that hides
    /// client addresses (a cloud load balancer that rewrites the source), raise it.
    #[serde(default = "default_max_connections_per_client")]
    pub max_connections_per_client: u32,
    /// HAProxy's certificate: one PEM file with the certificate chain and its private key
    /// (HAProxy's `crt`), by its absolute path on the gateway's host. The gateway then speaks
    /// HTTPS only (no plain listener, no redirect: a client that sent its token in the clear has
    /// already lost it), and units reach it at `https://{listen}` unless `url` says otherwise.
    #[serde(default)]
    pub tls_certificate: Option<Spanned<String>>,
    /// The PEM file of the CA that issued the gateway's certificate, by its absolute path on the
    /// units' hosts: units that call this gateway trust it (and no other CA: see
    /// [`crate::tls::Trust`]). Absent: the hosts' own roots.
    #[serde(default)]
    pub ca_certificate: Option<Spanned<String>>,
}

impl Gateway {
    /// `https` when the gateway terminates TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls_certificate.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// How this datacenter's own units reach the gateway when `url` does not say.
    pub fn default_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.listen)
    }
}

fn default_check_interval_ms() -> u64 {
    1000
}

fn default_max_connections_per_client() -> u32 {
    100
}

/// How long backups are kept: a restore may bring back a state this old, and a deletion is
/// refilled only while some copy still holds its tombstone, so every SA keeps tombstones at
/// least this long (checked).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSettings {
    pub retention_days: u32,
}

/// Landscape-wide settings of session tokens.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// Lifetime of a session token login issues.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// One service area as deployed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaDeployment {
    /// The SA's name, which the binary must know (`registration`, `login`, …).
    pub name: Spanned<String>,
    /// The datacenter it runs in (a `[[datacenter]]`'s name); absent in a topology of one
    /// datacenter. A reading SA may be deployed once per datacenter, each with its own store;
    /// an owner in one datacenter, or in each of its `owner_datacenters`.
    #[serde(default)]
    pub datacenter: Option<Spanned<String>>,
    /// Active/active: the datacenters this SA owns its collections in, one deployment each,
    /// every deployment naming the same list in the same order. Datacenter `k` of the list's
    /// `n` draws versions (and ids) `k`, `k+n`, `k+2n`…, and writes a resource only where its
    /// id was drawn, its home (see [`crate::origin`]). The list is fixed once data exists.
    #[serde(default)]
    pub owner_datacenters: Vec<String>,
    /// The one store every unit of the SA shares: `postgres://…`, or `sqlite:///…` when every
    /// unit runs on one host.
    pub database: Spanned<String>,
    /// Whether this SA issues session tokens (it then needs the signing key).
    #[serde(default)]
    pub signs_sessions: bool,
    /// What a user's session may read of its own resource here (nothing when absent).
    #[serde(default)]
    pub session_grant: Option<Spanned<String>>,
    /// Who may call this SA, by caller name: `operator` or an aspect selector. A reading SA
    /// is a caller under its own name.
    #[serde(default)]
    pub grants: BTreeMap<String, Spanned<String>>,
    /// Where each of the SA's copies comes from.
    #[serde(default)]
    pub copies: Vec<Spanned<CopyDeployment>>,
    /// How a backup watches its primary.
    #[serde(default)]
    pub reader: ReaderSettings,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub feed: FeedConfig,
    /// The SA's units: identical processes behind the gateway.
    #[serde(default)]
    pub units: Vec<Spanned<UnitDeployment>>,
}

/// One unit of an SA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitDeployment {
    /// Unique in the landscape, e.g. `registration-1`.
    pub name: String,
    pub listen: SocketAddr,
    /// How the gateway and the unit's peers reach it, when not `http://{listen}`: behind
    /// Kubernetes, for instance, a unit listens on `0.0.0.0` and is reached by its DNS name.
    #[serde(default)]
    pub url: Option<String>,
    /// Rack, room or datacenter; a primary and its backup belong in different ones.
    #[serde(default)]
    pub zone: Option<String>,
    /// `primary` or `backup`, for the service units of an SA that copies; absent for an
    /// owner's and for batch units.
    #[serde(default)]
    pub reader: Option<ReaderRole>,
    /// `service` (the default: serves requests, HAProxy routes to it) or `batch` (runs the
    /// SA's jobs, gets no traffic).
    #[serde(default)]
    pub kind: UnitKind,
    /// Serve interface versions up to this one only (a unit left on the previous release's
    /// versions during a staged rollout); all the SA declares when absent.
    #[serde(default)]
    pub newest_interface: Option<u32>,
}

impl UnitDeployment {
    /// The base URL the gateway and the unit's peers reach it by.
    pub fn url(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }
}

impl SaDeployment {
    /// The units HAProxy routes to and that poll: every unit but the batch units.
    pub fn service_units(&self) -> impl Iterator<Item = &Spanned<UnitDeployment>> {
        self.units
            .iter()
            .filter(|unit| unit.get_ref().kind == UnitKind::Service)
    }
}

/// Where one copy comes from and what of it is copied.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyDeployment {
    /// The copied collection, e.g. `customers`.
    pub collection: String,
    /// The SA polled: the owner, or another SA's copy of it.
    pub from: String,
    /// The datacenter of `from` (a `[[datacenter]]`'s name); the copying SA's own when absent.
    /// A source in another datacenter is polled through that datacenter's gateway, and the
    /// reader calls it as `{sa}@{its datacenter}` so the readers of two datacenters never
    /// share one consumer position.
    #[serde(default)]
    pub datacenter: Option<String>,
    /// Of a collection owned in several datacenters: whose changes this source serves (one of
    /// the owner's `owner_datacenters`). A copy names one source per origin, each read with
    /// its own cursor, and holds their union. A source that is the owner itself defaults to
    /// the origin's own datacenter.
    #[serde(default)]
    pub origin: Option<String>,
    /// The aspects copied, within the copy the SA declares and what `from` grants this SA;
    /// every aspect the SA's copy declares when absent (the usual case: the SA's code is the
    /// one declaration of a copy's shape).
    #[serde(default)]
    pub aspects: Option<String>,
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    #[serde(default = "default_wait_secs")]
    pub wait_secs: u64,
    #[serde(default = "default_limit")]
    pub limit: u32,
    /// The interface version of the source this copy polls (1 unless the SA's code was
    /// written against a newer one).
    #[serde(default = "default_interface_version")]
    pub interface_version: u32,
    /// Whether the chunks come gzip-compressed (the default; off where the link is cheaper
    /// than the CPU).
    #[serde(default = "default_compress")]
    pub compress: bool,
}

fn default_interface_version() -> u32 {
    1
}

fn default_compress() -> bool {
    true
}

impl CopyDeployment {
    /// The aspects this copy names, or else every aspect SA `sa` (one of `areas`) declares for
    /// it; empty when neither says (the check refuses that).
    pub fn aspects_of(&self, sa: &str, areas: &[ServiceArea]) -> String {
        if let Some(aspects) = &self.aspects {
            return aspects.clone();
        }
        areas
            .iter()
            .find(|area| area.name() == sa)
            .and_then(|area| area.collection(&self.collection))
            .map(|copy| Selection::all(copy.aspect_names()).to_string())
            .unwrap_or_default()
    }
}

fn default_interval_secs() -> u64 {
    10
}
fn default_wait_secs() -> u64 {
    20
}
fn default_limit() -> u32 {
    100
}

/// Heartbeat and lease settings of an SA's readers ([`ReaderConfig`] without the role).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReaderSettings {
    pub heartbeat_interval_ms: u64,
    pub misses: u32,
    pub lease_ms: u64,
}

impl Default for ReaderSettings {
    fn default() -> Self {
        let defaults = ReaderConfig::default();
        Self {
            heartbeat_interval_ms: defaults.heartbeat_interval_ms,
            misses: defaults.misses,
            lease_ms: defaults.lease_ms,
        }
    }
}

/// Bearer tokens by caller name, and the session keys: kept apart from the topology, readable
/// only by the units' account.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// The token each caller presents, by the caller names the grants use.
    #[serde(default)]
    pub tokens: BTreeMap<String, String>,
    #[serde(default)]
    pub sessions: SessionKeys,
}

/// The Ed25519 session keys, in hex: the public keys by id (every unit), and the current
/// signing key with its id (the units of the SA that signs sessions).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionKeys {
    /// Every key a token may be signed with: during a rotation the old and the new one.
    #[serde(default)]
    pub public_keys: Vec<PublicKeyConfig>,
    /// The id of the key login signs with now; it must be among `public_keys`.
    #[serde(default)]
    pub signing_key_id: Option<String>,
    /// Only units of an SA with `signs_sessions` need it.
    #[serde(default)]
    pub signing_key: Option<String>,
}

/// Why a topology (or its secrets) cannot be used: every problem found, each with its line.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("{}", findings.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Refused { findings: Vec<Finding> },
}

impl Topology {
    /// Reads and parses a topology file (no checks against the SAs yet: [`Topology::check`]).
    pub fn load(path: &Path) -> Result<Self, TopologyError> {
        let (name, text) = read(path)?;
        Self::parse(&text, &name)
    }

    /// Parses a topology from `text`; `name` names it in messages.
    pub fn parse(text: &str, name: &str) -> Result<Self, TopologyError> {
        let mut topology: Self = toml::from_str(text).map_err(|source| TopologyError::Parse {
            path: name.to_owned(),
            source: Box::new(source),
        })?;
        topology.origin = Origin {
            name: name.to_owned(),
            text: text.to_owned(),
        };
        Ok(topology)
    }

    /// The file's name, as given to [`Topology::load`] or [`Topology::parse`].
    pub fn name(&self) -> &str {
        &self.origin.name
    }

    /// The 1-based line a span of the file starts on.
    fn line_of(&self, span: std::ops::Range<usize>) -> usize {
        let end = span.start.min(self.origin.text.len());
        self.origin.text.as_bytes()[..end]
            .iter()
            .filter(|&&byte| byte == b'\n')
            .count()
            + 1
    }

    /// The (first) deployment of SA `name`: its only one but in a topology of several
    /// datacenters ([`Topology::deployment`] names the datacenter).
    pub fn service_area(&self, name: &str) -> Option<&SaDeployment> {
        self.service_areas
            .iter()
            .map(Spanned::get_ref)
            .find(|sa| sa.name.get_ref() == name)
    }

    /// Every unit of the landscape with the SA it belongs to, in file order.
    pub fn units(&self) -> impl Iterator<Item = (&SaDeployment, &UnitDeployment)> {
        self.service_areas.iter().flat_map(|sa| {
            sa.get_ref()
                .units
                .iter()
                .map(move |unit| (sa.get_ref(), unit.get_ref()))
        })
    }

    /// The complete configuration of unit `unit`, with its tokens and keys from `secrets`;
    /// `areas` are the SAs the binary runs (a copy's aspects default to what its SA declares).
    ///
    /// Fails when the topology does not name the unit or `secrets` lacks a token a grant or a
    /// source needs; run [`Topology::check`] first for everything else.
    pub fn unit_config(
        &self,
        unit: &str,
        secrets: &Secrets,
        areas: &[ServiceArea],
    ) -> Result<UnitConfig, TopologyError> {
        let refuse = |message: String| TopologyError::Refused {
            findings: vec![Finding::new(&self.origin.name, None, message)],
        };
        let Some((sa, own)) = self.units().find(|(_, candidate)| candidate.name == unit) else {
            return Err(refuse(format!("names no unit {unit:?}")));
        };
        let sa_name = sa.name.get_ref();
        let token_of = |caller: &str| {
            secrets.tokens.get(caller).cloned().ok_or_else(|| {
                refuse(format!(
                    "the secrets hold no token for {caller:?}, which {sa_name} needs"
                ))
            })
        };
        let own_datacenter = self.datacenter_of(sa);
        let signer = self.session_signer(&own_datacenter);
        let mut grants: BTreeMap<String, String> = sa
            .grants
            .iter()
            .map(|(name, grant)| (name.clone(), grant.get_ref().clone()))
            .collect();
        if sa.signs_sessions {
            // Every other SA of the datacenter copies the revocations of sessions from here.
            for reader in self.service_areas.iter().map(Spanned::get_ref) {
                let reader_name = reader.name.get_ref();
                if reader_name == sa_name || self.datacenter_of(reader) != own_datacenter {
                    continue;
                }
                let grant = grants.entry(reader_name.clone()).or_default();
                if grant != "operator" && !grant.contains(crate::revocation::SELECTOR) {
                    grant.push_str(crate::revocation::SELECTOR);
                }
            }
        }
        let callers = grants
            .iter()
            .map(|(name, grant)| {
                Ok(CallerConfig {
                    name: name.clone(),
                    token: token_of(name)?,
                    grant: grant.clone(),
                })
            })
            .collect::<Result<Vec<_>, TopologyError>>()?;
        let batch = own.kind == UnitKind::Batch;
        let mut sources = sa
            .copies
            .iter()
            .filter(|_| !batch)
            .map(|copy| {
                let copy = copy.get_ref();
                let source_datacenter = self.source_datacenter(sa, copy);
                let gateway = self
                    .url_between(&own_datacenter, &source_datacenter)
                    .ok_or_else(|| {
                        refuse(format!(
                            "{sa_name} copies {} from datacenter {source_datacenter:?}, which \
                             the topology does not name",
                            copy.collection
                        ))
                    })?;
                let origin = match &copy.origin {
                    None => crate::origin::Origin::single(),
                    Some(name) => {
                        let names = self.owner_datacenters_of(&copy.collection, areas);
                        crate::origin::Origin::among(&names, name).ok_or_else(|| {
                            refuse(format!(
                                "{sa_name} copies {} of origin {name:?}, which is none of its \
                                 owner's datacenters ({})",
                                copy.collection,
                                names.join(", ")
                            ))
                        })?
                    }
                };
                Ok(SourceConfig {
                    origin,
                    collection: copy.collection.clone(),
                    url: format!("{gateway}/{}", copy.from),
                    token: token_of(&self.caller_name(sa, copy))?,
                    aspects: copy.aspects_of(sa_name, areas),
                    interval_secs: copy.interval_secs,
                    wait_secs: copy.wait_secs,
                    limit: copy.limit,
                    interface_version: copy.interface_version,
                    pipeline: true,
                    compress: copy.compress,
                })
            })
            .collect::<Result<Vec<_>, TopologyError>>()?;
        // The revocations of sessions, from the signer of this datacenter, like any copy.
        let revocations_from = signer
            .filter(|signer| !batch && !sa.signs_sessions && signer.as_str() != sa_name.as_str());
        if let Some(signer) = &revocations_from {
            let gateway = self
                .url_between(&own_datacenter, &own_datacenter)
                .ok_or_else(|| refuse(format!("{sa_name} has no gateway to reach {signer}")))?;
            sources.push(SourceConfig {
                collection: crate::revocation::COLLECTION.to_owned(),
                url: format!("{gateway}/{signer}"),
                token: token_of(sa_name)?,
                aspects: crate::revocation::SELECTOR.to_owned(),
                interval_secs: 1,
                wait_secs: 20,
                limit: 1000,
                interface_version: 1,
                pipeline: true,
                compress: true,
                origin: crate::origin::Origin::single(),
            });
        }
        let primary_url = sa
            .units
            .iter()
            .map(Spanned::get_ref)
            .find(|candidate| candidate.reader == Some(ReaderRole::Primary))
            .map(UnitDeployment::url);
        let reader = ReaderConfig {
            role: own.reader.unwrap_or(ReaderRole::Primary),
            primary_url: (own.reader == Some(ReaderRole::Backup))
                .then_some(primary_url)
                .flatten(),
            heartbeat_interval_ms: sa.reader.heartbeat_interval_ms,
            misses: sa.reader.misses,
            lease_ms: sa.reader.lease_ms,
        };
        let (signing_key, signing_key_id) = if sa.signs_sessions {
            let missing = |what: &str| {
                refuse(format!(
                    "{sa_name} signs sessions, but the secrets hold no sessions.{what}"
                ))
            };
            (
                Some(
                    secrets
                        .sessions
                        .signing_key
                        .clone()
                        .ok_or_else(|| missing("signing_key"))?,
                ),
                Some(
                    secrets
                        .sessions
                        .signing_key_id
                        .clone()
                        .ok_or_else(|| missing("signing_key_id"))?,
                ),
            )
        } else {
            (None, None)
        };
        let restore_from = self.restore_peers(sa, areas, secrets);
        let consumers = self.consumers_of(sa, areas);
        Ok(UnitConfig {
            restore_from,
            consumers,
            zone: own.zone.clone(),
            kind: own.kind,
            limits: sa.limits.clone(),
            callers,
            feed: sa.feed.clone(),
            sources,
            reader,
            sessions: SessionConfig {
                public_keys: secrets.sessions.public_keys.clone(),
                signing_key_id,
                signing_key,
                revocations_from,
                ttl_secs: self.sessions.ttl_secs,
                grant: sa
                    .session_grant
                    .as_ref()
                    .map(|grant| grant.get_ref().clone()),
            },
            ca_certificates: self.ca_certificates(),
            newest_interface: own.newest_interface,
            owner_datacenters: sa.owner_datacenters.clone(),
            datacenter: (!self.datacenters.is_empty()).then(|| own_datacenter.clone()),
            peers: sa
                .units
                .iter()
                .map(|peer| peer.get_ref().name.clone())
                .filter(|peer| peer != unit)
                .collect(),
            ..UnitConfig::new(sa_name, unit, own.listen, sa.database.get_ref())
        })
    }
}

impl Topology {
    /// The consumers of each collection SA deployment `owner` owns: every SA deployment whose
    /// copy of it polls `owner` directly (a relayed copy polls another copy, which is the
    /// consumer here), by the caller name it polls with (`{sa}`, or `{sa}@{datacenter}` from
    /// another datacenter). The start gate waits for them.
    fn consumers_of(
        &self,
        owner: &SaDeployment,
        areas: &[ServiceArea],
    ) -> BTreeMap<String, Vec<String>> {
        let owner_name = owner.name.get_ref();
        let owner_datacenter = self.datacenter_of(owner);
        let owned = owned_by(owner_name, areas);
        let mut consumers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for sa in self.service_areas.iter().map(Spanned::get_ref) {
            for copy in sa.copies.iter().map(Spanned::get_ref) {
                if &copy.from == owner_name
                    && self.source_datacenter(sa, copy) == owner_datacenter
                    && owned.contains(&copy.collection.as_str())
                {
                    let caller = self.caller_name(sa, copy);
                    let names = consumers.entry(copy.collection.clone()).or_default();
                    if !names.contains(&caller) {
                        names.push(caller);
                    }
                }
            }
        }
        consumers
    }

    /// The copies of what SA deployment `owner` owns, kept by other SA deployments (directly
    /// from it, or relayed, in any datacenter), which refill it after a rollback: read through
    /// the gateway of the copy's datacenter with `owner`'s own token. None when the secrets
    /// hold no token for `owner`. A copy in another datacenter is named `{sa}@{datacenter}`.
    fn restore_peers(
        &self,
        owner: &SaDeployment,
        areas: &[ServiceArea],
        secrets: &Secrets,
    ) -> Vec<PeerConfig> {
        let owner_name = owner.name.get_ref();
        let Some(token) = secrets.tokens.get(owner_name) else {
            return Vec::new();
        };
        let owner_datacenter = self.datacenter_of(owner);
        let owned = owned_by(owner_name, areas);
        let mut peers = Vec::new();
        for sa in self.service_areas.iter().map(Spanned::get_ref) {
            let name = sa.name.get_ref();
            let Some(declared) = areas.iter().find(|area| area.name() == name) else {
                continue;
            };
            let datacenter = self.datacenter_of(sa);
            let Some(gateway) = self.url_between(&owner_datacenter, &datacenter) else {
                continue;
            };
            // Of a collection owned in several datacenters, a copy's source of this owner's
            // origin holds what this owner wrote.
            let own_origin = if owner.owner_datacenters.is_empty() {
                ""
            } else {
                owner_datacenter.as_str()
            };
            for copy in sa.copies.iter().map(Spanned::get_ref) {
                let of_ours = declared
                    .collection(&copy.collection)
                    .is_some_and(|c| c.owner() == owner_name && owned.contains(&c.name()))
                    && copy.origin.as_deref().unwrap_or_default() == own_origin;
                if of_ours {
                    peers.push(PeerConfig {
                        sa: if datacenter == owner_datacenter {
                            name.clone()
                        } else {
                            format!("{name}@{datacenter}")
                        },
                        collection: copy.collection.clone(),
                        url: format!("{gateway}/{name}"),
                        token: token.clone(),
                        aspects: copy.aspects_of(name, areas),
                        interface_version: copy.interface_version,
                        origin: own_origin.to_owned(),
                    });
                }
            }
        }
        peers
    }
}

impl Topology {
    /// The CA files of every gateway that names one, once each, in file order: what a unit
    /// trusts when it calls a gateway over HTTPS (its own, or another datacenter's).
    fn ca_certificates(&self) -> Vec<std::path::PathBuf> {
        let mut files: Vec<std::path::PathBuf> = Vec::new();
        for datacenter in self.datacenters() {
            if let Some(file) = &datacenter.gateway.ca_certificate {
                let file = std::path::PathBuf::from(file.get_ref());
                if !files.contains(&file) {
                    files.push(file);
                }
            }
        }
        files
    }

    /// The SA that signs sessions in `datacenter` (the first, should there be several).
    fn session_signer(&self, datacenter: &str) -> Option<String> {
        self.service_areas
            .iter()
            .map(Spanned::get_ref)
            .find(|sa| sa.signs_sessions && self.datacenter_of(sa) == datacenter)
            .map(|sa| sa.name.get_ref().clone())
    }
}

/// The names of the collections SA `owner` (one of `areas`) owns.
impl Topology {
    /// The datacenters the owner of `collection` (as `areas` declare it) owns it in; empty
    /// for one.
    pub fn owner_datacenters_of(&self, collection: &str, areas: &[ServiceArea]) -> Vec<String> {
        let Some(owner) = areas
            .iter()
            .find(|area| area.owned().iter().any(|owned| owned.name() == collection))
        else {
            return Vec::new();
        };
        self.service_areas
            .iter()
            .map(Spanned::get_ref)
            .find(|sa| sa.name.get_ref() == owner.name())
            .map(|sa| sa.owner_datacenters.clone())
            .unwrap_or_default()
    }
}

fn owned_by<'a>(owner: &str, areas: &'a [ServiceArea]) -> Vec<&'a str> {
    areas
        .iter()
        .find(|area| area.name() == owner)
        .map(|area| area.owned().iter().map(|c| c.name()).collect())
        .unwrap_or_default()
}

impl Secrets {
    /// Reads a secrets file (TOML: `[tokens]` by caller name, `[sessions]` keys).
    pub fn load(path: &Path) -> Result<Self, TopologyError> {
        let (name, text) = read(path)?;
        toml::from_str(&text).map_err(|source| TopologyError::Parse {
            path: name,
            source: Box::new(source),
        })
    }
}

/// A file's name (for messages) and its text.
fn read(path: &Path) -> Result<(String, String), TopologyError> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((name, text)),
        Err(source) => Err(TopologyError::Read { path: name, source }),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
