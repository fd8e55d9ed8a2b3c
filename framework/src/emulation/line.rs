//! The topology of a line of emulated datacenters, written once for `hiscale dc-demo` and the
//! datacenter tests, so what anyone tries by hand is what the tests prove:
//!
//! ```text
//!  dc1: registration (owner), login (copy)     <- dc2
//!  dc2: login (copy of dc1's registration)     <- dc3
//!  dc3: login (copy of dc2's login: a relay)   <- …
//! ```
//!
//! With `owners = 2`, registration owns its customers in dc1 and dc2 alike (active/active,
//! see [`crate::origin`]): each draws its own interleaved versions, login in each of the two
//! reads both origins straight from their owners, and dc3's login relays both from dc2's.
//!
//! login is the reader because it only copies (shop and billing own collections too). Each SA
//! has two units in two zones; a copy's first unit is its primary reader, the second its
//! backup.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

/// What a line is made of; [`LineTopology::write`] writes its topology file.
#[derive(Debug, Clone)]
pub struct LineTopology<'a> {
    /// Each datacenter's own address, in line order (at least two).
    pub addresses: &'a [Ipv4Addr],
    /// How the other datacenters reach each datacenter's gateway (a link proxy).
    pub urls: &'a [String],
    /// The port every gateway listens on, at its datacenter's address.
    pub gateway_port: u16,
    /// The first unit's port; the others count up from it, one per unit.
    pub first_unit_port: u16,
    /// Where the SQLite databases go.
    pub databases: &'a Path,
    /// Health checks every 500 ms and a backup that takes over after 750 ms without a
    /// heartbeat (a 2 s lease), for tests that wait on them; the defaults otherwise.
    pub quick_failover: bool,
    /// How many datacenters, from the first, own registration's customers: 1 is the plain
    /// line; more makes them active/active owners.
    pub owners: usize,
}

/// One unit of the line: its name (`{sa}-dc{n}-{1|2}`), datacenter (0-based) and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineUnit {
    pub name: String,
    pub datacenter: usize,
    pub listen: SocketAddr,
}

/// The one aspect every copy of the line holds.
const ASPECTS: &str = "~account";

/// One source of a copy: the SA polled, its datacenter (0-based), and the origin (0-based
/// owner datacenter) whose changes it serves when there are several.
#[derive(Debug, Clone, Copy)]
struct Source {
    from: &'static str,
    datacenter: usize,
    origin: Option<usize>,
}

impl LineTopology<'_> {
    /// The owner datacenters, at least one and at most all.
    fn owner_count(&self) -> usize {
        self.owners.clamp(1, self.addresses.len())
    }

    /// Whether login in datacenter `index` reads from the owners themselves; the others relay
    /// from the login before them.
    fn reads_owners(&self, index: usize) -> bool {
        index < self.owner_count().max(2)
    }

    /// The callers whose tokens the secrets must hold, besides the operator `admin`: each SA
    /// under its own name, and each datacenter's login that reads across datacenters as
    /// `login@dc{n}`.
    pub fn callers(&self) -> Vec<String> {
        let mut callers = vec!["registration".to_owned(), "login".to_owned()];
        let first = if self.owner_count() > 1 { 1 } else { 2 };
        callers.extend((first..=self.addresses.len()).map(|dc| format!("login@dc{dc}")));
        callers
    }

    /// The name login in datacenter `reader` calls a source in datacenter `source` by.
    fn caller(reader: usize, source: usize) -> String {
        if reader == source {
            "login".to_owned()
        } else {
            format!("login@dc{}", reader + 1)
        }
    }

    /// The topology file's text, and every unit in it.
    pub fn write(&self) -> (String, Vec<LineUnit>) {
        let mut text = String::new();
        for (index, (address, url)) in self.addresses.iter().zip(self.urls).enumerate() {
            text.push_str(&format!(
                "[[datacenter]]\nname = \"dc{}\"\nlisten = \"{address}:{}\"\nurl = \"{url}\"\n",
                index + 1,
                self.gateway_port
            ));
            if self.quick_failover {
                text.push_str("check_interval_ms = 500\n");
            }
            text.push('\n');
        }
        let owners = self.owner_count();
        let several = owners > 1;
        let mut units = Vec::new();
        for index in 0..self.addresses.len() {
            if index < owners {
                let readers: Vec<String> = (0..self.addresses.len())
                    .filter(|reader| self.reads_owners(*reader))
                    .map(|reader| Self::caller(reader, index))
                    .collect();
                self.sa(&mut text, &mut units, "registration", index, &readers, &[]);
            }
            let sources: Vec<Source> = if self.reads_owners(index) {
                (0..owners)
                    .map(|origin| Source {
                        from: "registration",
                        datacenter: origin,
                        origin: several.then_some(origin),
                    })
                    .collect()
            } else {
                (0..owners)
                    .map(|origin| Source {
                        from: "login",
                        datacenter: index - 1,
                        origin: several.then_some(origin),
                    })
                    .collect()
            };
            let next = index + 1;
            let readers: Vec<String> = (next < self.addresses.len() && !self.reads_owners(next))
                .then(|| Self::caller(next, index))
                .into_iter()
                .collect();
            self.sa(&mut text, &mut units, "login", index, &readers, &sources);
        }
        (text, units)
    }

    /// One `[[sa]]` of datacenter `index`, granting `readers` the copied aspect, copying from
    /// `sources` when it is a copy.
    fn sa(
        &self,
        text: &mut String,
        units: &mut Vec<LineUnit>,
        name: &str,
        index: usize,
        readers: &[String],
        sources: &[Source],
    ) {
        let dc = index + 1;
        text.push_str(&format!(
            "[[sa]]\nname = \"{name}\"\ndatacenter = \"dc{dc}\"\n\
             database = \"sqlite://{}/{name}-dc{dc}.db\"\nsigns_sessions = {}\n",
            self.databases.display(),
            name == "login"
        ));
        if name == "registration" && self.owner_count() > 1 {
            let list: Vec<String> = (1..=self.owner_count())
                .map(|owner| format!("\"dc{owner}\""))
                .collect();
            text.push_str(&format!("owner_datacenters = [{}]\n", list.join(", ")));
        }
        if self.quick_failover {
            text.push_str(
                "[sa.reader]\nheartbeat_interval_ms = 250\nmisses = 3\nlease_ms = 2000\n",
            );
        }
        text.push_str("[sa.grants]\nadmin = \"operator\"\n");
        if name == "login" {
            // The owner reads its copies back to refill itself after a rollback.
            text.push_str(&format!("registration = \"{ASPECTS}\"\n"));
        }
        for reader in readers {
            text.push_str(&format!("\"{reader}\" = \"{ASPECTS}\"\n"));
        }
        for source in sources {
            text.push_str(&format!(
                "[[sa.copies]]\ncollection = \"customers\"\nfrom = \"{}\"\n\
                 datacenter = \"dc{}\"\n",
                source.from,
                source.datacenter + 1
            ));
            if let Some(origin) = source.origin {
                text.push_str(&format!("origin = \"dc{}\"\n", origin + 1));
            }
        }
        for (number, zone) in [(1, "a"), (2, "b")] {
            let unit = format!("{name}-dc{dc}-{number}");
            let offset = u16::try_from(units.len()).unwrap_or(u16::MAX);
            let listen = SocketAddr::from((
                self.addresses[index],
                self.first_unit_port.saturating_add(offset),
            ));
            text.push_str(&format!(
                "[[sa.units]]\nname = \"{unit}\"\nlisten = \"{listen}\"\nzone = \"{zone}\"\n"
            ));
            if !sources.is_empty() {
                let role = if number == 1 { "primary" } else { "backup" };
                text.push_str(&format!("reader = \"{role}\"\n"));
            }
            units.push(LineUnit {
                name: unit,
                datacenter: index,
                listen,
            });
        }
        text.push('\n');
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::topology::Topology;

    fn line(quick_failover: bool) -> (String, Vec<LineUnit>) {
        line_of(quick_failover, 1)
    }

    /// The line on the test's addresses, with `owners` owner datacenters.
    fn line_of(quick_failover: bool, owners: usize) -> (String, Vec<LineUnit>) {
        let addresses = [1, 2, 3].map(|host| Ipv4Addr::new(10, 231, host, 2));
        let urls = [9001, 9002, 9003].map(|port| format!("http://10.231.0.1:{port}"));
        LineTopology {
            addresses: &addresses,
            urls: &urls,
            gateway_port: 8080,
            first_unit_port: 8100,
            databases: Path::new("/var/lib/hiscale"),
            quick_failover,
            owners,
        }
        .write()
    }

    #[test]
    fn a_line_of_three_relays_dc2s_copy_to_dc3_with_a_primary_and_a_backup_each() {
        let (text, units) = line(false);
        let topology = Topology::parse(&text, "line.toml").unwrap();
        let names: Vec<&str> = units.iter().map(|unit| unit.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "registration-dc1-1",
                "registration-dc1-2",
                "login-dc1-1",
                "login-dc1-2",
                "login-dc2-1",
                "login-dc2-2",
                "login-dc3-1",
                "login-dc3-2"
            ]
        );
        assert_eq!(units[7].listen, "10.231.3.2:8107".parse().unwrap());
        let dc3 = topology.deployment("login", "dc3").unwrap();
        let copy = dc3.copies[0].get_ref();
        assert_eq!(
            (copy.from.as_str(), copy.datacenter.as_deref()),
            ("login", Some("dc2"))
        );
        assert_eq!(topology.caller_name(dc3, copy), "login@dc3");
        assert!(!text.contains("check_interval_ms"), "{text}");
    }

    #[test]
    fn quick_failover_shortens_the_checks_and_the_lease() {
        let (text, _) = line(true);
        let topology = Topology::parse(&text, "line.toml").unwrap();
        let login = topology.deployment("login", "dc2").unwrap();
        assert_eq!(login.reader.lease_ms, 2000);
        assert!(
            topology
                .datacenters()
                .iter()
                .all(|dc| dc.gateway.check_interval_ms == 500)
        );
    }

    fn two_owners() -> (String, Vec<LineUnit>) {
        line_of(false, 2)
    }

    fn areas() -> Vec<crate::ServiceArea> {
        use crate::{Collection, ServiceArea};
        vec![
            ServiceArea::new("registration")
                .owns(Collection::new("customers", "customer").document("account", &[])),
            ServiceArea::new("login").copies(
                "registration",
                Collection::new("customers", "customer").document("account", &[]),
            ),
        ]
    }

    fn secrets(callers: &[String]) -> crate::topology::Secrets {
        let mut secrets = crate::topology::Secrets::default();
        for caller in callers.iter().map(String::as_str).chain(["admin"]) {
            secrets
                .tokens
                .insert(caller.to_owned(), format!("{caller}-token-0123456789"));
        }
        secrets.sessions.signing_key_id = Some("k".into());
        secrets.sessions.signing_key = Some("signing".into());
        secrets
    }

    #[test]
    fn two_owner_datacenters_count_apart_and_every_copy_reads_both_origins() {
        let (text, units) = two_owners();
        let topology = Topology::parse(&text, "line.toml").unwrap();
        topology.check(&areas()).unwrap();
        assert_eq!(units.len(), 10, "{units:?}");
        let callers = LineTopology {
            addresses: &[Ipv4Addr::LOCALHOST; 3],
            urls: &[],
            gateway_port: 0,
            first_unit_port: 0,
            databases: Path::new("/"),
            quick_failover: false,
            owners: 2,
        }
        .callers();
        let secrets = secrets(&callers);
        let config = |unit: &str| topology.unit_config(unit, &secrets, &areas()).unwrap();

        let owner = config("registration-dc2-1");
        assert_eq!(owner.owner_datacenters, ["dc1", "dc2"]);
        assert_eq!(owner.datacenter.as_deref(), Some("dc2"));
        assert_eq!(
            owner.consumers["customers"],
            ["login@dc1", "login"],
            "the readers of origin dc2 straight from its owner"
        );
        // A refill asks its peers for this owner's own origin only, once per peer.
        let peers: Vec<(&str, &str)> = owner
            .restore_from
            .iter()
            .map(|peer| (peer.sa.as_str(), peer.origin.as_str()))
            .collect();
        assert_eq!(
            peers,
            [("login@dc1", "dc2"), ("login", "dc2"), ("login@dc3", "dc2")]
        );

        let reader = config("login-dc1-1");
        let sources: Vec<(&str, &str, u32)> = reader
            .sources
            .iter()
            .filter(|source| source.collection == "customers")
            .map(|source| {
                (
                    source.url.as_str(),
                    source.origin.name.as_str(),
                    source.origin.index,
                )
            })
            .collect();
        assert_eq!(
            sources,
            [
                ("http://10.231.1.2:8080/registration", "dc1", 1),
                ("http://10.231.0.1:9002/registration", "dc2", 2)
            ]
        );
        let relay = config("login-dc3-1");
        let relayed: Vec<(&str, &str)> = relay
            .sources
            .iter()
            .filter(|source| source.collection == "customers")
            .map(|source| (source.url.as_str(), source.origin.name.as_str()))
            .collect();
        assert_eq!(
            relayed,
            [
                ("http://10.231.0.1:9002/login", "dc1"),
                ("http://10.231.0.1:9002/login", "dc2")
            ]
        );
        assert!(config("login-dc1-1").owner_datacenters.is_empty());
    }

    #[test]
    fn a_copy_without_every_origin_or_owners_that_disagree_are_refused() {
        let (text, _) = two_owners();
        let refused = |text: &str| -> String {
            let Err(error) = Topology::parse(text, "line.toml").unwrap().check(&areas()) else {
                panic!("accepted:\n{text}");
            };
            error.to_string()
        };
        // dc3's relay reads origin dc1 only.
        let one_origin = text.replacen(
            "[[sa.copies]]\ncollection = \"customers\"\nfrom = \"login\"\n\
             datacenter = \"dc2\"\norigin = \"dc2\"\n",
            "",
            1,
        );
        assert!(
            refused(&one_origin).contains("without the changes of origin(s) dc2"),
            "{}",
            refused(&one_origin)
        );
        let unnamed = text.replacen("origin = \"dc1\"\n", "", 1);
        assert!(refused(&unnamed).contains("names the origin each source"));
        let disagree = text.replacen(
            "owner_datacenters = [\"dc1\", \"dc2\"]",
            "owner_datacenters = [\"dc2\", \"dc1\"]",
            1,
        );
        assert!(refused(&disagree).contains("different owner_datacenters"));
        let undeclared = text.replace("owner_datacenters = [\"dc1\", \"dc2\"]\n", "");
        assert!(
            refused(&undeclared).contains("an owner runs in one datacenter unless"),
            "{}",
            refused(&undeclared)
        );
    }
}
