//! [`Topology::check`]: everything in a topology that disagrees with the SAs' declarations or
//! with itself, found before anything starts, each with the line it is on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;

use toml::Spanned;

use super::{CopyDeployment, SaDeployment, Topology, TopologyError};
use crate::aspect::AspectSelector;
use crate::config::{ReaderRole, SourceConfig, UnitKind};
use crate::model::{Collection, ServiceArea};
use crate::unit::{MAX_GRANT_CHARS, check_source};

/// One problem (or warning) in a topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file's name.
    pub file: String,
    /// The 1-based line, when the problem has one.
    pub line: Option<usize>,
    pub message: String,
}

impl Finding {
    pub(super) fn new(file: &str, line: Option<usize>, message: String) -> Self {
        Self {
            file: file.to_owned(),
            line,
            message,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// The health-check interval HAProxy accepts from a topology, in milliseconds.
const CHECK_INTERVAL_MS: std::ops::RangeInclusive<u64> = 100..=60_000;
/// Connections one client address may hold at a gateway: at least a browser's few, at most
/// below the frontend's `maxconn` (4000).
const MAX_CONNECTIONS_PER_CLIENT: std::ops::RangeInclusive<u32> = 1..=4_000;

impl Topology {
    /// Checks the topology against the SAs this binary runs (`areas`): answers the warnings
    /// (a primary and its backup in one zone, an SA with one unit) when nothing is wrong, and
    /// every error found otherwise.
    pub fn check(&self, areas: &[ServiceArea]) -> Result<Vec<Finding>, TopologyError> {
        let mut checker = Checker {
            topology: self,
            areas,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        checker.gateway();
        checker.datacenters();
        checker.names_and_addresses();
        checker.owners_in_one_datacenter();
        checker.copies_of_every_origin();
        checker.tombstones_outlive_backups();
        for sa in &self.service_areas {
            checker.service_area(sa);
        }
        if checker.errors.is_empty() {
            Ok(checker.warnings)
        } else {
            Err(TopologyError::Refused {
                findings: checker.errors,
            })
        }
    }
}

/// Collects findings while walking the topology once.
struct Checker<'a> {
    topology: &'a Topology,
    areas: &'a [ServiceArea],
    errors: Vec<Finding>,
    warnings: Vec<Finding>,
}

impl<'a> Checker<'a> {
    fn error<T>(&mut self, at: &Spanned<T>, message: String) {
        let line = self.topology.line_of(at.span());
        self.errors
            .push(Finding::new(self.topology.name(), Some(line), message));
    }

    fn warning<T>(&mut self, at: &Spanned<T>, message: String) {
        let line = self.topology.line_of(at.span());
        self.warnings
            .push(Finding::new(self.topology.name(), Some(line), message));
    }

    fn declaration(&self, name: &str) -> Option<&'a ServiceArea> {
        self.areas.iter().find(|area| area.name() == name)
    }

    /// Either one `[gateway]` (one implicit datacenter) or `[[datacenter]]`s, each with a
    /// health-check interval HAProxy accepts.
    fn gateway(&mut self) {
        match (&self.topology.gateway, self.topology.datacenters.is_empty()) {
            (None, true) => self.file_error("names no [gateway] and no [[datacenter]]".to_owned()),
            (Some(_), false) => self.file_error(
                "names both [gateway] and [[datacenter]]: with datacenters, each \
                 [[datacenter]] is its own gateway (move [gateway]'s settings there)"
                    .to_owned(),
            ),
            _ => {}
        }
        for datacenter in self.topology.datacenters() {
            let interval = datacenter.gateway.check_interval_ms;
            if !CHECK_INTERVAL_MS.contains(&interval) {
                let prefix = prefix_of(self.topology, &datacenter.name);
                self.file_error(format!(
                    "{prefix}.check_interval_ms {interval} is outside {}..={}",
                    CHECK_INTERVAL_MS.start(),
                    CHECK_INTERVAL_MS.end()
                ));
            }
            let per_client = datacenter.gateway.max_connections_per_client;
            if !MAX_CONNECTIONS_PER_CLIENT.contains(&per_client) {
                let prefix = prefix_of(self.topology, &datacenter.name);
                self.file_error(format!(
                    "{prefix}.max_connections_per_client {per_client} is outside {}..={}",
                    MAX_CONNECTIONS_PER_CLIENT.start(),
                    MAX_CONNECTIONS_PER_CLIENT.end()
                ));
            }
            self.tls(
                &prefix_of(self.topology, &datacenter.name),
                &datacenter.gateway,
            );
        }
    }

    /// A gateway's certificate files are absolute paths (HAProxy and the units each run in a
    /// working directory of their own, so a relative path would name different files), and a
    /// gateway that terminates TLS is not reached by a plain `http://` URL.
    fn tls(&mut self, prefix: &str, gateway: &super::Gateway) {
        for (key, file) in [
            ("tls_certificate", &gateway.tls_certificate),
            ("ca_certificate", &gateway.ca_certificate),
        ] {
            if let Some(file) = file
                && !std::path::Path::new(file.get_ref()).is_absolute()
            {
                self.error(
                    file,
                    format!(
                        "{prefix}.{key} {:?} is not an absolute path: write the file's full \
                         path on its host",
                        file.get_ref()
                    ),
                );
            }
        }
        if let (Some(certificate), Some(url)) = (&gateway.tls_certificate, &gateway.url)
            && !url.starts_with("https://")
        {
            self.error(
                certificate,
                format!(
                    "{prefix}.url {url:?} is not https://, but the gateway terminates TLS \
                     ({prefix}.tls_certificate): units could not reach it"
                ),
            );
        }
    }

    fn file_error(&mut self, message: String) {
        self.errors
            .push(Finding::new(self.topology.name(), None, message));
    }

    /// Datacenter names are unique, and every SA runs in one the file names (it must say which
    /// when there are several).
    fn datacenters(&mut self) {
        let mut names = BTreeSet::new();
        for datacenter in &self.topology.datacenters {
            let name = &datacenter.get_ref().name;
            if !names.insert(name.get_ref().clone()) {
                self.error(name, format!("datacenter {name} is named twice"));
            }
        }
        for sa in &self.topology.service_areas {
            let sa = sa.get_ref();
            match &sa.datacenter {
                Some(datacenter) if self.topology.datacenters.is_empty() => self.error(
                    datacenter,
                    format!(
                        "{} runs in datacenter {datacenter}, but the topology names no \
                         [[datacenter]]",
                        sa.name
                    ),
                ),
                Some(datacenter) if !names.contains(datacenter.get_ref()) => self.error(
                    datacenter,
                    format!(
                        "{} runs in datacenter {datacenter}, which the topology does not name",
                        sa.name
                    ),
                ),
                None if self.topology.datacenters.len() > 1 => self.error(
                    &sa.name,
                    format!(
                        "{} names no datacenter: add datacenter = \"…\" (the topology has {})",
                        sa.name,
                        self.topology.datacenters.len()
                    ),
                ),
                _ => {}
            }
        }
    }

    /// An SA that owns collections runs in one datacenter (versions and ids come from one
    /// store), or in exactly the `owner_datacenters` every deployment of it names alike, one
    /// deployment each (active/active: each draws from its own interleaved counter).
    fn owners_in_one_datacenter(&mut self) {
        let mut seen: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
        let known: Vec<String> = self
            .topology
            .datacenters()
            .into_iter()
            .map(|dc| dc.name)
            .collect();
        for sa in &self.topology.service_areas {
            let sa = sa.get_ref();
            let name = sa.name.get_ref();
            let owns = self
                .declaration(name)
                .is_some_and(|declared| !declared.owned().is_empty());
            let list = &sa.owner_datacenters;
            if !owns {
                if !list.is_empty() {
                    let message = format!(
                        "{name} owns no collection: owner_datacenters means nothing for it"
                    );
                    self.error(&sa.name, message);
                }
                continue;
            }
            let datacenter = self.topology.datacenter_of(sa);
            if let Some(unknown) = list.iter().find(|dc| !known.contains(dc)) {
                let message = format!(
                    "{name}'s owner_datacenters name {unknown:?}, which is no datacenter here"
                );
                self.error(&sa.name, message);
            }
            let mut sorted = list.clone();
            sorted.sort();
            sorted.dedup();
            if sorted.len() != list.len() {
                self.error(
                    &sa.name,
                    format!("{name}'s owner_datacenters name a datacenter twice"),
                );
            }
            if !list.is_empty() && !list.contains(&datacenter) {
                let message = format!(
                    "{name} runs in {datacenter}, which is none of its owner_datacenters ({})",
                    list.join(", ")
                );
                self.error(&sa.name, message);
            }
            match seen.get(name) {
                Some((first, _)) if *first == datacenter => {
                    let message =
                        format!("{name} owns collections and is deployed twice in {datacenter}");
                    self.error(&sa.name, message);
                }
                Some((_, first_list)) if first_list != list => {
                    let message = format!(
                        "{name}'s deployments name different owner_datacenters ({} and {}): \
                         every owner datacenter must count versions alike",
                        first_list.join(", "),
                        list.join(", ")
                    );
                    self.error(&sa.name, message);
                }
                Some((first, _)) if list.is_empty() => {
                    let message = format!(
                        "{name} owns collections and runs in datacenters {first} and \
                         {datacenter}: an owner runs in one datacenter unless every deployment \
                         names them all in owner_datacenters (active/active)"
                    );
                    self.error(&sa.name, message);
                }
                Some(_) => {}
                None => {
                    seen.insert(name.clone(), (datacenter, list.clone()));
                }
            }
        }
        for (name, (_, list)) in &seen {
            for datacenter in list {
                if self.topology.deployment(name, datacenter).is_none() {
                    let at = self
                        .topology
                        .service_areas
                        .iter()
                        .find(|sa| sa.get_ref().name.get_ref() == name);
                    if let Some(at) = at {
                        let message = format!(
                            "{name} names {datacenter} among its owner_datacenters but is not \
                             deployed there"
                        );
                        self.error(&at.get_ref().name, message);
                    }
                }
            }
        }
    }

    /// A copy of a collection owned in several datacenters reads each origin's changes from
    /// one source; of a collection owned in one, it names no origin.
    fn copies_of_every_origin(&mut self) {
        for spanned in &self.topology.service_areas {
            let sa = spanned.get_ref();
            let name = sa.name.get_ref();
            let mut named: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for copy in &sa.copies {
                let origins = self
                    .topology
                    .owner_datacenters_of(&copy.get_ref().collection, self.areas);
                let collection = copy.get_ref().collection.as_str();
                match (&copy.get_ref().origin, origins.is_empty()) {
                    (None, true) => {}
                    (Some(origin), true) => self.error(
                        copy,
                        format!(
                            "{name} copies {collection} of origin {origin:?}, but its owner \
                             owns it in one datacenter: name no origin"
                        ),
                    ),
                    (None, false) => self.error(
                        copy,
                        format!(
                            "{collection} is owned in {}: {name} names the origin each source \
                             of it serves (origin = \"…\")",
                            origins.join(", ")
                        ),
                    ),
                    (Some(origin), false) if !origins.contains(origin) => self.error(
                        copy,
                        format!(
                            "{name} copies {collection} of origin {origin:?}, none of its \
                             owner's datacenters ({})",
                            origins.join(", ")
                        ),
                    ),
                    (Some(origin), false) => {
                        let seen = named.entry(collection).or_default();
                        if seen.contains(&origin.as_str()) {
                            self.error(
                                copy,
                                format!("{name} copies {collection} of origin {origin} twice"),
                            );
                        }
                        seen.push(origin.as_str());
                    }
                }
            }
            for (collection, seen) in named {
                let origins = self.topology.owner_datacenters_of(collection, self.areas);
                let missing: Vec<&String> = origins
                    .iter()
                    .filter(|origin| !seen.contains(&origin.as_str()))
                    .collect();
                if !missing.is_empty() {
                    let message = format!(
                        "{name} copies {collection} without the changes of origin(s) {}: a \
                         copy holds the union of every owner datacenter's",
                        missing
                            .iter()
                            .map(|m| m.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    self.error(&sa.name, message);
                }
            }
        }
    }

    /// A deletion can be refilled after a restore only while some copy still holds its
    /// tombstone: every SA keeps tombstones at least as long as backups are kept.
    fn tombstones_outlive_backups(&mut self) {
        let Some(backups) = &self.topology.backups else {
            return;
        };
        let retention_secs = i64::from(backups.get_ref().retention_days) * 24 * 3600;
        for sa in &self.topology.service_areas {
            let sa = sa.get_ref();
            let kept = sa.feed.tombstone_max_age_secs;
            if kept < retention_secs {
                self.error(
                    &sa.name,
                    format!(
                        "{} keeps tombstones {} days, but backups are kept {} days: a restore \
                         from an older backup would bring deleted resources back (raise \
                         [sa.feed] tombstone_max_age_secs to at least {retention_secs})",
                        sa.name,
                        kept / (24 * 3600),
                        backups.get_ref().retention_days
                    ),
                );
            }
        }
    }

    /// SA names, unit names and listen addresses are each used once in the landscape.
    fn names_and_addresses(&mut self) {
        let mut sa_names = BTreeSet::new();
        let mut unit_names = BTreeSet::new();
        let mut addresses: BTreeMap<SocketAddr, String> = BTreeMap::new();
        let several = self.topology.datacenters.len() > 1;
        for datacenter in self.topology.datacenters() {
            let (gateway, stats) = if several {
                (
                    format!("the gateway of {}", datacenter.name),
                    format!("the status page of {}", datacenter.name),
                )
            } else {
                (
                    "the gateway".to_owned(),
                    "the gateway's status page".to_owned(),
                )
            };
            if let Some(other) = addresses.insert(datacenter.gateway.listen, gateway.clone()) {
                self.file_error(format!(
                    "{gateway} listens on {}, as {other} does",
                    datacenter.gateway.listen
                ));
            }
            if let Some(address) = datacenter.gateway.stats
                && let Some(other) = addresses.insert(address, stats.clone())
            {
                self.file_error(format!("{stats} listens on {address}, as {other} does"));
            }
            if let Some(address) = datacenter.gateway.shell {
                let shell = if several {
                    format!("the GUI shell of {}", datacenter.name)
                } else {
                    "the GUI shell".to_owned()
                };
                if let Some(other) = addresses.insert(address, shell.clone()) {
                    self.file_error(format!("{shell} listens on {address}, as {other} does"));
                }
            }
        }
        for sa in &self.topology.service_areas {
            let datacenter = self.topology.datacenter_of(sa.get_ref());
            if !sa_names.insert((sa.get_ref().name.get_ref().clone(), datacenter.clone())) {
                let message = if self.topology.datacenters.is_empty() {
                    format!("service area {} is named twice", sa.get_ref().name)
                } else {
                    format!(
                        "service area {} is named twice in datacenter {datacenter} (once per \
                         datacenter at most)",
                        sa.get_ref().name
                    )
                };
                self.error(&sa.get_ref().name, message);
            }
            for unit in &sa.get_ref().units {
                let own = unit.get_ref();
                if !unit_names.insert(own.name.clone()) {
                    self.error(unit, format!("unit {} is named twice", own.name));
                }
                if let Some(url) = &own.url
                    && !is_base_url(url)
                {
                    self.error(
                        unit,
                        format!(
                            "unit {} has url {url:?}: write http://HOST:PORT, how the gateway \
                             and its peers reach it",
                            own.name
                        ),
                    );
                }
                if let Some(other) = addresses.insert(own.listen, own.name.clone()) {
                    self.error(
                        unit,
                        format!(
                            "unit {} listens on {}, as {other} does",
                            own.name, own.listen
                        ),
                    );
                }
            }
        }
    }

    fn service_area(&mut self, spanned: &'a Spanned<SaDeployment>) {
        let sa = spanned.get_ref();
        let name = sa.name.get_ref();
        let Some(declared) = self.declaration(name) else {
            let known: Vec<_> = self.areas.iter().map(ServiceArea::name).collect();
            self.error(
                &sa.name,
                format!(
                    "this binary runs no service area {name:?} (it knows {})",
                    known.join(", ")
                ),
            );
            return;
        };
        if sa.units.is_empty() {
            self.error(spanned, format!("{name} has no units"));
        }
        self.database(sa);
        self.grants(sa);
        self.readers(spanned, declared);
        let mut copied = BTreeSet::new();
        for copy in &sa.copies {
            // One source per collection, or per origin of a collection owned in several
            // datacenters (`copies_of_every_origin` checks those).
            let key = (
                copy.get_ref().collection.clone(),
                copy.get_ref().origin.clone(),
            );
            if !copied.insert(key) {
                let message = format!("{name} names two sources of {}", copy.get_ref().collection);
                self.error(copy, message);
            }
            self.copy(sa, declared, copy);
        }
        for collection in declared.copied() {
            if !copied.iter().any(|(copied, _)| copied == collection.name()) {
                self.error(
                    spanned,
                    format!(
                        "{name} keeps a copy of {}'s {}, but names no source for it: add a \
                         [[sa.copies]] with collection = {:?}",
                        collection.owner(),
                        collection.name(),
                        collection.name()
                    ),
                );
            }
        }
    }

    /// One store per SA: SQLite only with every unit on one host.
    fn database(&mut self, sa: &SaDeployment) {
        let url = sa.database.get_ref();
        let name = sa.name.get_ref();
        if url.starts_with("sqlite:") {
            let hosts: BTreeSet<_> = sa.units.iter().map(|u| u.get_ref().listen.ip()).collect();
            if hosts.len() > 1 {
                self.error(
                    &sa.database,
                    format!(
                        "{name}'s units run on {} hosts but share a SQLite file, which only one \
                         host can open: use PostgreSQL",
                        hosts.len()
                    ),
                );
            }
        } else if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            self.error(
                &sa.database,
                format!("{name}'s database {url:?} is neither sqlite:// nor postgres://"),
            );
        }
    }

    fn grants(&mut self, sa: &SaDeployment) {
        for (caller, grant) in &sa.grants {
            let text = grant.get_ref();
            if text != "operator"
                && let Err(error) = AspectSelector::parse(text, MAX_GRANT_CHARS)
            {
                self.error(
                    grant,
                    format!("the grant of {caller} at {} is not valid: {error}", sa.name),
                );
            }
        }
        if let Some(grant) = &sa.session_grant
            && let Err(error) = AspectSelector::parse(grant.get_ref(), MAX_GRANT_CHARS)
        {
            self.error(grant, format!("session_grant is not valid: {error}"));
        }
    }

    /// Batch units run the jobs an SA declares, and only that: no reader role, no SA without
    /// jobs; an SA with jobs but no batch unit never runs them.
    fn batch_units(&mut self, spanned: &Spanned<SaDeployment>, declared: &ServiceArea) {
        let sa = spanned.get_ref();
        let name = sa.name.get_ref();
        let batch: Vec<_> = sa
            .units
            .iter()
            .filter(|unit| unit.get_ref().kind == UnitKind::Batch)
            .collect();
        for unit in &batch {
            if unit.get_ref().reader.is_some() {
                let message = format!(
                    "{} is a batch unit: it polls nothing, so it has no reader role",
                    unit.get_ref().name
                );
                self.error(unit, message);
            }
            if !declared.has_batch_work() {
                let message = format!(
                    "{} is a batch unit, but {name} declares no batch job",
                    unit.get_ref().name
                );
                self.error(unit, message);
            }
        }
        if declared.has_batch_work() && batch.is_empty() {
            self.warning(
                spanned,
                format!("{name} declares batch jobs but has no batch unit: they never run"),
            );
        }
        if sa.service_units().next().is_none() {
            self.error(
                spanned,
                format!("{name} has no service unit to serve requests"),
            );
        }
    }

    /// An SA that copies has exactly one primary reader, the others back it up, preferably in
    /// another zone; an owner's units have no reader role.
    fn readers(&mut self, spanned: &Spanned<SaDeployment>, declared: &ServiceArea) {
        let sa = spanned.get_ref();
        let name = sa.name.get_ref();
        self.batch_units(spanned, declared);
        if declared.copied().is_empty() {
            for unit in sa.service_units() {
                if unit.get_ref().reader.is_some() {
                    let message = format!(
                        "{} has a reader role, but {name} copies nothing",
                        unit.get_ref().name
                    );
                    self.error(unit, message);
                }
            }
            if sa.service_units().count() == 1 {
                self.warning(
                    spanned,
                    format!("{name} has one unit: nothing takes over when it stops"),
                );
            }
            return;
        }
        let primaries: Vec<_> = sa
            .service_units()
            .filter(|unit| unit.get_ref().reader == Some(ReaderRole::Primary))
            .collect();
        for unit in sa.service_units() {
            if unit.get_ref().reader.is_none() {
                let message = format!(
                    "{} needs reader = \"primary\" or \"backup\": {name} keeps copies",
                    unit.get_ref().name
                );
                self.error(unit, message);
            }
        }
        let [primary] = primaries.as_slice() else {
            self.error(
                spanned,
                format!(
                    "{name} needs exactly one unit with reader = \"primary\", has {}",
                    primaries.len()
                ),
            );
            return;
        };
        let backups: Vec<_> = sa
            .service_units()
            .filter(|unit| unit.get_ref().reader == Some(ReaderRole::Backup))
            .collect();
        if backups.is_empty() {
            self.warning(
                spanned,
                format!("{name} has no backup reader: its copies stop when the primary does"),
            );
        }
        for backup in backups {
            if backup.get_ref().zone == primary.get_ref().zone {
                let message = format!(
                    "backup {} is in the same zone as its primary {} ({}): one outage stops both",
                    backup.get_ref().name,
                    primary.get_ref().name,
                    backup.get_ref().zone.as_deref().unwrap_or("no zone given")
                );
                self.warning(backup, message);
            }
        }
    }

    /// A copy the SA declares, polled from an SA that holds the collection and grants at least
    /// the copied aspects, within the feed's bounds, along a chain that ends at the owner.
    fn copy(
        &mut self,
        sa: &SaDeployment,
        declared: &ServiceArea,
        spanned: &Spanned<CopyDeployment>,
    ) {
        let copy = spanned.get_ref();
        let name = sa.name.get_ref();
        let aspects = copy.aspects_of(name, self.areas);
        let source = SourceConfig {
            collection: copy.collection.clone(),
            url: String::new(),
            token: String::new(),
            aspects: aspects.clone(),
            interval_secs: copy.interval_secs,
            wait_secs: copy.wait_secs,
            limit: copy.limit,
            interface_version: copy.interface_version,
            pipeline: true,
            compress: copy.compress,
            origin: crate::origin::Origin::single(),
        };
        if let Err(reason) = check_source(&source, declared) {
            self.error(
                spanned,
                format!("{name} copies {}: {reason}", copy.collection),
            );
            return;
        }
        let from_datacenter = self.topology.source_datacenter(sa, copy);
        let known = self
            .topology
            .datacenters()
            .iter()
            .any(|datacenter| datacenter.name == from_datacenter);
        if !known {
            self.error(
                spanned,
                format!(
                    "{name} copies {} from datacenter {from_datacenter:?}, which the topology \
                     does not name",
                    copy.collection
                ),
            );
            return;
        }
        let Some(from) = self.topology.deployment(&copy.from, &from_datacenter) else {
            let place = if self.topology.datacenters.is_empty() {
                String::new()
            } else {
                format!(" in datacenter {from_datacenter}")
            };
            self.error(
                spanned,
                format!(
                    "{name} copies {} from {:?}{place}, which the topology does not name",
                    copy.collection, copy.from
                ),
            );
            return;
        };
        let Some(held) = self
            .declaration(&copy.from)
            .and_then(|source| source.collection(&copy.collection))
        else {
            self.error(
                spanned,
                format!("{} holds no collection {}", copy.from, copy.collection),
            );
            return;
        };
        let owner = declared
            .collection(&copy.collection)
            .map(Collection::owner)
            .unwrap_or_default();
        if held.owner() != owner {
            self.error(
                spanned,
                format!(
                    "{name} copies {owner}'s {}, but {}'s {} belongs to {}",
                    copy.collection,
                    copy.from,
                    copy.collection,
                    held.owner()
                ),
            );
            return;
        }
        let owner_versions = self
            .declaration(owner)
            .map(|area| area.interface_versions().to_vec())
            .unwrap_or_default();
        if !owner_versions.is_empty() && !owner_versions.contains(&copy.interface_version) {
            self.error(
                spanned,
                format!(
                    "{name} polls {} through interface v{}, which {owner} does not declare",
                    copy.collection, copy.interface_version
                ),
            );
            return;
        }
        let caller = self.topology.caller_name(sa, copy);
        self.granted(&caller, copy, &aspects, from, held, spanned);
        self.refillable(sa, copy, &aspects, owner, held, spanned);
        if let Some(cycle) = self.cycle(sa, &copy.collection) {
            self.error(
                spanned,
                format!(
                    "the sources of {} form a ring ({}): every copy needs a path to its owner",
                    copy.collection,
                    cycle.join(" -> ")
                ),
            );
        }
    }

    /// The copied aspects lie within what `from` grants this SA.
    fn granted(
        &mut self,
        name: &str,
        copy: &CopyDeployment,
        aspects: &str,
        from: &SaDeployment,
        held: &Collection,
        spanned: &Spanned<CopyDeployment>,
    ) {
        let Some(grant) = from.grants.get(name) else {
            self.error(
                spanned,
                format!(
                    "{} grants {name} nothing: add {name} = \"{aspects}\" to its grants",
                    copy.from
                ),
            );
            return;
        };
        let outside = beyond_grant(grant.get_ref(), aspects, held);
        if !outside.is_empty() {
            self.error(
                spanned,
                format!(
                    "{name} copies {aspects} from {}, which grants {name} only {}: {} lie outside",
                    copy.from,
                    grant.get_ref(),
                    outside.join("")
                ),
            );
        }
    }

    /// The owner can read this copy back after a rollback: the copying SA grants the owner at
    /// least the copied aspects (a warning otherwise: the copy still works).
    fn refillable(
        &mut self,
        sa: &SaDeployment,
        copy: &CopyDeployment,
        aspects: &str,
        owner: &str,
        held: &Collection,
        spanned: &Spanned<CopyDeployment>,
    ) {
        let name = sa.name.get_ref();
        let covered = sa
            .grants
            .get(owner)
            .is_some_and(|grant| beyond_grant(grant.get_ref(), aspects, held).is_empty());
        if !covered {
            self.warning(
                spanned,
                format!(
                    "{name} does not grant {owner} {aspects}: {owner} cannot be refilled from \
                     {name}'s copy of {} after a rollback (add {owner} = \"{aspects}\" to {name}'s \
                     grants)",
                    copy.collection
                ),
            );
        }
    }

    /// Follows the sources of `collection` from `start`; the SAs on the way when they come
    /// back to one already passed (as `{sa}@{datacenter}` when the file names datacenters).
    fn cycle(&self, start: &SaDeployment, collection: &str) -> Option<Vec<String>> {
        let topology = self.topology;
        let label = |name: &str, datacenter: &str| {
            if topology.datacenters.is_empty() {
                name.to_owned()
            } else {
                format!("{name}@{datacenter}")
            }
        };
        let mut current = start;
        let mut path = vec![label(start.name.get_ref(), &topology.datacenter_of(start))];
        for _ in 0..=topology.service_areas.len() {
            let next = current
                .copies
                .iter()
                .map(Spanned::get_ref)
                .find(|copy| copy.collection == collection)?;
            let datacenter = topology.source_datacenter(current, next);
            let step = label(&next.from, &datacenter);
            let seen = path.contains(&step);
            path.push(step);
            if seen {
                return Some(path);
            }
            current = topology.deployment(&next.from, &datacenter)?;
        }
        Some(path)
    }
}

/// The aspects of `wanted` (a selector over `held`'s aspects) that `grant` does not cover, as
/// `~name`s; none for the operator grant, or when a selector does not parse (that is reported
/// where the selectors are checked).
fn beyond_grant(grant: &str, wanted: &str, held: &Collection) -> Vec<String> {
    if grant == "operator" {
        return Vec::new();
    }
    let resolve = |text: &str| {
        AspectSelector::parse(text, MAX_GRANT_CHARS)
            .ok()
            .map(|selector| selector.select_known(held.aspect_names()))
    };
    let (Some(wanted), Some(allowed)) = (resolve(wanted), resolve(grant)) else {
        return Vec::new();
    };
    wanted
        .outside(&allowed)
        .iter()
        .map(|aspect| format!("~{aspect}"))
        .collect()
}

/// `http://host:port` and nothing more: HAProxy's server line and a backup's heartbeat are
/// derived from it.
/// How findings name a datacenter's gateway settings: `gateway` in a topology of one
/// `[gateway]`, `datacenter NAME` with `[[datacenter]]`s.
fn prefix_of(topology: &Topology, datacenter: &str) -> String {
    if topology.datacenters.is_empty() {
        "gateway".to_owned()
    } else {
        format!("datacenter {datacenter}")
    }
}

fn is_base_url(url: &str) -> bool {
    let Some(authority) = url.strip_prefix("http://") else {
        return false;
    };
    let Some((host, port)) = authority.rsplit_once(':') else {
        return false;
    };
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        && port.parse::<u16>().is_ok_and(|port| port > 0)
}
