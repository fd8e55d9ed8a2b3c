//! The topology of a line of emulated datacenters, written once for `hiscale dc-demo` and the
//! datacenter tests, so what anyone tries by hand is what the tests prove:
//!
//! ```text
//!  dc1: registration (owner), login (copy)     <- dc2
//!  dc2: login (copy of dc1's registration)     <- dc3
//!  dc3: login (copy of dc2's login: a relay)   <- …
//! ```
//!
//! login is the reader because it only copies (shop and billing own collections too, and an
//! owner runs in one datacenter). Each SA has two units in two zones; a copy's first unit is
//! its primary reader, the second its backup.

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

impl LineTopology<'_> {
    /// The callers whose tokens the secrets must hold, besides the operator `admin`: each SA
    /// under its own name, and each datacenter's login beyond the first as `login@dc{n}`.
    pub fn callers(&self) -> Vec<String> {
        let mut callers = vec!["registration".to_owned(), "login".to_owned()];
        callers.extend((2..=self.addresses.len()).map(|dc| format!("login@dc{dc}")));
        callers
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
        let mut units = Vec::new();
        let next_reader = |index: usize| {
            (index + 1 < self.addresses.len()).then(|| format!("login@dc{}", index + 2))
        };
        self.sa(
            &mut text,
            &mut units,
            "registration",
            0,
            &["login".to_owned(), "login@dc2".to_owned()],
            None,
        );
        self.sa(
            &mut text,
            &mut units,
            "login",
            0,
            &[],
            Some(("registration", 0)),
        );
        for index in 1..self.addresses.len() {
            let source = if index == 1 {
                ("registration", 0)
            } else {
                ("login", index - 1)
            };
            let readers: Vec<String> = next_reader(index).into_iter().collect();
            self.sa(
                &mut text,
                &mut units,
                "login",
                index,
                &readers,
                Some(source),
            );
        }
        (text, units)
    }

    /// One `[[sa]]` of datacenter `index`, granting `readers` the copied aspect, copying from
    /// `source` (an SA and its datacenter) when it is a copy.
    fn sa(
        &self,
        text: &mut String,
        units: &mut Vec<LineUnit>,
        name: &str,
        index: usize,
        readers: &[String],
        source: Option<(&str, usize)>,
    ) {
        let dc = index + 1;
        text.push_str(&format!(
            "[[sa]]\nname = \"{name}\"\ndatacenter = \"dc{dc}\"\n\
             database = \"sqlite://{}/{name}-dc{dc}.db\"\nsigns_sessions = {}\n",
            self.databases.display(),
            name == "login"
        ));
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
        if let Some((from, from_index)) = source {
            text.push_str(&format!(
                "[[sa.copies]]\ncollection = \"customers\"\nfrom = \"{from}\"\n\
                 datacenter = \"dc{}\"\n",
                from_index + 1
            ));
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
            if source.is_some() {
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
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::topology::Topology;

    fn line(quick_failover: bool) -> (String, Vec<LineUnit>) {
        let addresses = [1, 2, 3].map(|host| Ipv4Addr::new(10, 231, host, 2));
        let urls = [9001, 9002, 9003].map(|port| format!("http://10.231.0.1:{port}"));
        LineTopology {
            addresses: &addresses,
            urls: &urls,
            gateway_port: 8080,
            first_unit_port: 8100,
            databases: Path::new("/var/lib/hiscale"),
            quick_failover,
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
}
