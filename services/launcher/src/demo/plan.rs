//! Decides the whole landscape before anything starts: which units there are, where each one
//! listens and its complete configuration.
//!
//! Everything comes from the committed topology, `deploy/topology.toml`, the same file HAProxy's
//! configuration is generated from; the demo only adapts it to one machine: each SA's database
//! becomes a SQLite file in the data directory (or a database on `--postgres`), the gateway
//! moves to `--port` and the units with it (a port already taken is replaced by a free one),
//! and the tokens and session keys are the demo's own.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;

use anyhow::{Context, bail};
use hiscale::config::{ReaderRole, UnitConfig, UnitKind};
use hiscale::topology::{Secrets, Topology};

use super::session_keys::SessionKeys;
use super::tokens::Tokens;
use super::units_file::Role;

/// The topology the demo runs.
const TOPOLOGY: &str = include_str!("../../../../deploy/topology.toml");
const TOPOLOGY_NAME: &str = "deploy/topology.toml";

/// The service area that owns the customers the others copy.
pub const OWNER: &str = registration::NAME;
/// The collection the reading service areas copy from [`OWNER`].
pub const COPIED_COLLECTION: &str = "customers";

/// One unit to run: its role in `units.json` and the configuration it runs with.
#[derive(Debug, Clone)]
pub struct UnitPlan {
    pub role: Role,
    pub config: UnitConfig,
}

/// What every unit's configuration is made of besides its own address and database.
pub struct Shared<'a> {
    pub tokens: &'a Tokens,
    pub keys: &'a SessionKeys,
    /// The gateway's address: the reading service areas poll the owner through it, as they
    /// would through HAProxy.
    pub gateway: SocketAddr,
}

/// The committed topology, checked against the service areas this binary runs.
pub fn topology() -> anyhow::Result<Topology> {
    let topology = Topology::parse(TOPOLOGY, TOPOLOGY_NAME)?;
    topology.check(&crate::topology::service_areas())?;
    Ok(topology)
}

/// Prepares each service area's database, picks every unit's loopback port and plans all of
/// them, in the topology's order.
pub async fn plan_units(
    data_dir: &Path,
    postgres: Option<&str>,
    shared: &Shared<'_>,
) -> anyhow::Result<Vec<UnitPlan>> {
    let mut topology = topology()?;
    for sa in &mut topology.service_areas {
        let sa = sa.get_mut();
        *sa.database.get_mut() = database_url(data_dir, postgres, sa.name.get_ref()).await?;
    }
    let wanted: Vec<SocketAddr> = topology.units().map(|(_, unit)| unit.listen).collect();
    let committed_port = topology
        .gateway
        .as_ref()
        .map(|gateway| gateway.listen.port())
        .context("the demo's topology names no [gateway]")?;
    let offset = i32::from(shared.gateway.port()) - i32::from(committed_port);
    let addresses = shifted_loopback_addresses(&wanted, offset)?;
    place(&mut topology, shared.gateway, &addresses);
    plan(&topology, shared)
}

/// Moves the gateway to `gateway` and the units to `addresses`, in the topology's order.
fn place(topology: &mut Topology, gateway: SocketAddr, addresses: &[SocketAddr]) {
    if let Some(own) = topology.gateway.as_mut() {
        own.listen = gateway;
        own.url = None;
        // The demo's gateway speaks plain HTTP on loopback (HAProxy terminates TLS).
        own.tls_certificate = None;
        own.ca_certificate = None;
    }
    let mut addresses = addresses.iter();
    for sa in &mut topology.service_areas {
        for unit in &mut sa.get_mut().units {
            if let Some(address) = addresses.next() {
                unit.get_mut().listen = *address;
            }
        }
    }
}

/// Every unit's configuration, with the demo's tokens and keys as the secrets.
fn plan(topology: &Topology, shared: &Shared<'_>) -> anyhow::Result<Vec<UnitPlan>> {
    let secrets = secrets(shared);
    topology
        .units()
        .map(|(_, unit)| {
            let role = match unit.reader {
                None if unit.kind == UnitKind::Batch => Role::Batch,
                None => Role::Owner,
                Some(ReaderRole::Primary) => Role::Primary,
                Some(ReaderRole::Backup) => Role::Backup,
            };
            let config = topology
                .unit_config(&unit.name, &secrets, &crate::topology::service_areas())
                .with_context(|| format!("cannot configure {}", unit.name))?;
            Ok(UnitPlan { role, config })
        })
        .collect()
}

/// The demo's tokens and session keys in the form a topology's units take them.
fn secrets(shared: &Shared<'_>) -> Secrets {
    let mut secrets = Secrets::default();
    for (caller, token) in shared.tokens.by_caller() {
        secrets.tokens.insert(caller.to_owned(), token.to_owned());
    }
    secrets.sessions.public_keys = vec![hiscale::config::PublicKeyConfig::new(
        &shared.keys.key_id,
        &shared.keys.public_key,
    )];
    secrets.sessions.signing_key_id = Some(shared.keys.key_id.clone());
    secrets.sessions.signing_key = Some(shared.keys.signing_key.clone());
    secrets
}

/// The database a service area's units share: `DIR/{sa}.db`, or `hiscale_{sa}` on the
/// PostgreSQL server given with `--postgres` (created there when missing).
async fn database_url(data_dir: &Path, postgres: Option<&str>, sa: &str) -> anyhow::Result<String> {
    if let Some(server) = postgres {
        let name = format!("hiscale_{sa}");
        return hiscale::store::ensure_postgres_database(server, &name)
            .await
            // The server URL may hold a password, so it stays out of the message.
            .with_context(|| {
                format!("cannot prepare the database {name} on the --postgres server")
            });
    }
    let file = data_dir.join(format!("{sa}.db"));
    let Some(path) = file.to_str() else {
        bail!(
            "the data directory path {} is not UTF-8",
            data_dir.display()
        );
    };
    if path.contains(['?', '#']) {
        bail!("the data directory path {path} cannot be written as a database URL");
    }
    // The store creates a missing SQLite file itself (`Store::connect` adds `mode=rwc`).
    Ok(format!("sqlite://{path}"))
}

/// The loopback addresses of `wanted`'s ports moved by `offset`, each replaced by a port the
/// system picks when it is taken (or out of range); every listener is held until all are
/// chosen, so no two units get the same port. A unit keeps its port for the whole demo: a
/// restarted unit comes back where the gateway and its backup expect it.
fn shifted_loopback_addresses(
    wanted: &[SocketAddr],
    offset: i32,
) -> anyhow::Result<Vec<SocketAddr>> {
    let mut listeners = Vec::with_capacity(wanted.len());
    for address in wanted {
        let shifted = u16::try_from(i32::from(address.port()) + offset)
            .ok()
            .filter(|&port| port != 0)
            .and_then(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).ok());
        let listener = match shifted {
            Some(listener) => listener,
            None => TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .context("cannot find a free port on 127.0.0.1")?,
        };
        listeners.push(listener);
    }
    listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<_, _>>()
        .context("cannot read the address of a free port")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens {
            admin: "a".into(),
            login: "l".into(),
            shop: "s".into(),
            billing: "b".into(),
            registration: "r".into(),
        }
    }

    fn keys() -> SessionKeys {
        SessionKeys {
            key_id: "k1".into(),
            signing_key: "secret".into(),
            public_key: "public".into(),
        }
    }

    /// The demo's landscape on ports 9001, 9002, … with the gateway on 8080.
    fn demo_plan() -> anyhow::Result<Vec<UnitPlan>> {
        let mut topology = topology()?;
        for sa in &mut topology.service_areas {
            let sa = sa.get_mut();
            *sa.database.get_mut() = format!("sqlite:///data/{}.db", sa.name.get_ref());
        }
        let addresses: Vec<SocketAddr> = (9001..)
            .take(topology.units().count())
            .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .collect();
        let (tokens, keys) = (tokens(), keys());
        let gateway = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
        let shared = Shared {
            tokens: &tokens,
            keys: &keys,
            gateway,
        };
        place(&mut topology, gateway, &addresses);
        plan(&topology, &shared)
    }

    fn unit<'a>(plans: &'a [UnitPlan], name: &str) -> anyhow::Result<&'a UnitPlan> {
        plans
            .iter()
            .find(|plan| plan.config.unit == name)
            .with_context(|| format!("no unit {name}"))
    }

    #[test]
    fn every_service_area_gets_two_units_with_their_own_port_and_shared_database()
    -> anyhow::Result<()> {
        let plans = demo_plan()?;
        let names: Vec<_> = plans
            .iter()
            .map(|plan| (plan.config.unit.as_str(), plan.role))
            .collect();
        assert_eq!(
            names,
            [
                ("registration-1", Role::Owner),
                ("registration-2", Role::Owner),
                ("login-1", Role::Primary),
                ("login-2", Role::Backup),
                ("shop-1", Role::Primary),
                ("shop-2", Role::Backup),
                ("billing-1", Role::Primary),
                ("billing-2", Role::Backup),
                ("billing-batch-1", Role::Batch),
                ("billing-batch-2", Role::Batch),
            ]
        );
        let mut ports: Vec<u16> = plans.iter().map(|plan| plan.config.listen.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), plans.len());
        for plan in &plans {
            let config = &plan.config;
            assert!(config.unit.starts_with(&format!("{}-", config.sa)));
            assert_eq!(config.database, format!("sqlite:///data/{}.db", config.sa));
            // The owner grants the operator and every reading SA its aspects; a copy grants the
            // operator and the owner (which reads it back after a rollback); shop and billing
            // also grant each other (billing copies shop's orders; shop reads them back); login,
            // which signs sessions, grants every other SA its revocations.
            let expected = match config.sa.as_str() {
                OWNER => 4,
                login::NAME => 4,
                "shop" | "billing" => 3,
                _ => 2,
            };
            assert_eq!(config.callers.len(), expected, "{}", config.unit);
        }
        Ok(())
    }

    #[test]
    fn only_login_gets_the_signing_key_and_everyone_the_public_key() -> anyhow::Result<()> {
        for plan in demo_plan()? {
            let sessions = &plan.config.sessions;
            assert_eq!(
                sessions.public_keys,
                [hiscale::config::PublicKeyConfig::new("k1", "public")],
                "{}",
                plan.config.unit
            );
            let signs = plan.config.sa == login::NAME;
            assert_eq!(
                sessions.signing_key_id.as_deref(),
                signs.then_some("k1"),
                "{}",
                plan.config.unit
            );
            // Every SA but login copies login's revocations (batch units poll nothing).
            let copies_revocations = plan
                .config
                .sources
                .iter()
                .any(|source| source.collection == hiscale::revocation::COLLECTION);
            assert_eq!(
                copies_revocations,
                !signs && plan.role != Role::Batch,
                "{}",
                plan.config.unit
            );
            assert_eq!(
                sessions.revocations_from.as_deref(),
                (!signs && plan.role != Role::Batch).then_some(login::NAME),
                "{}",
                plan.config.unit
            );
            let expected = signs.then_some("secret");
            assert_eq!(
                sessions.signing_key.as_deref(),
                expected,
                "{}",
                plan.config.unit
            );
        }
        Ok(())
    }

    #[test]
    fn readers_poll_the_owner_through_the_gateway_with_their_own_token_and_aspects()
    -> anyhow::Result<()> {
        let plans = demo_plan()?;
        for (sa, token, aspects) in [
            ("login", "l", login::COPIED_ASPECTS),
            ("shop", "s", shop::COPIED_ASPECTS),
            ("billing", "b", billing::COPIED_ASPECTS),
        ] {
            for number in [1, 2] {
                let name = format!("{sa}-{number}");
                let sources = &unit(&plans, &name)?.config.sources;
                // Billing also copies orders; every SA but login copies login's revocations.
                let expected = match sa {
                    "billing" => 3,
                    "shop" => 2,
                    _ => 1,
                };
                assert_eq!(sources.len(), expected, "{name}");
                let source = &sources[0];
                assert_eq!(source.collection, "customers");
                assert_eq!(source.url, "http://127.0.0.1:8080/registration");
                assert_eq!(source.token, token, "{name}");
                assert_eq!(source.aspects, aspects, "{name}");
                assert_eq!(
                    (source.interval_secs, source.wait_secs, source.limit),
                    (10, 20, 100)
                );
            }
        }
        assert!(unit(&plans, "billing-batch-1")?.config.sources.is_empty());
        for name in ["registration-1", "registration-2", "shop-1", "billing-2"] {
            let sources = &unit(&plans, name)?.config.sources;
            let revocations = sources.last().map(|source| {
                (
                    source.collection.as_str(),
                    source.url.as_str(),
                    source.aspects.as_str(),
                    source.wait_secs,
                )
            });
            assert_eq!(
                revocations,
                Some((
                    "revocations",
                    "http://127.0.0.1:8080/login",
                    "~revocation",
                    20
                )),
                "{name}"
            );
        }
        // Billing also copies shop's orders, through the gateway like any source.
        let orders = &unit(&plans, "billing-1")?.config.sources[1];
        assert_eq!(
            (orders.collection.as_str(), orders.url.as_str()),
            ("orders", "http://127.0.0.1:8080/shop")
        );
        assert_eq!(orders.aspects, billing::COPIED_ORDER_ASPECTS);
        Ok(())
    }

    #[test]
    fn backups_watch_their_own_primary() -> anyhow::Result<()> {
        let plans = demo_plan()?;
        for sa in ["login", "shop", "billing"] {
            let primary = unit(&plans, &format!("{sa}-1"))?;
            let backup = unit(&plans, &format!("{sa}-2"))?;
            assert_eq!(primary.config.reader.role, ReaderRole::Primary);
            assert_eq!(primary.config.reader.primary_url, None);
            assert_eq!(backup.config.reader.role, ReaderRole::Backup);
            assert_eq!(
                backup.config.reader.primary_url,
                Some(format!("http://{}", primary.config.listen))
            );
        }
        Ok(())
    }

    #[test]
    fn a_planned_configuration_survives_its_file() -> anyhow::Result<()> {
        let plans = demo_plan()?;
        let backup = unit(&plans, "shop-2")?;
        let text = toml::to_string(&backup.config)?;
        let read: UnitConfig = toml::from_str(&text)?;
        assert_eq!(read.listen, backup.config.listen);
        // The customers, and login's revocations of sessions.
        assert_eq!(read.sources.len(), 2);
        assert_eq!(read.reader.primary_url, backup.config.reader.primary_url);
        assert_eq!(
            read.sessions.public_keys,
            backup.config.sessions.public_keys
        );
        assert_eq!(read.sessions.revocations_from.as_deref(), Some(login::NAME));
        Ok(())
    }

    #[test]
    fn units_move_with_the_gateway_and_a_taken_port_is_replaced() -> anyhow::Result<()> {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let taken_port = taken.local_addr()?.port();
        let wanted = [
            SocketAddr::from((Ipv4Addr::LOCALHOST, taken_port - 5)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, 65_535)),
        ];
        let addresses = shifted_loopback_addresses(&wanted, 5)?;
        assert_ne!(
            addresses[0].port(),
            taken_port,
            "a taken port was handed out"
        );
        // 65,535 + 5 is no port: a free one stands in, distinct from the other unit's.
        assert_ne!(addresses[1].port(), addresses[0].port());
        assert!(addresses.iter().all(|address| address.ip().is_loopback()));
        let free = a_free_port()?;
        let shifted =
            shifted_loopback_addresses(&[SocketAddr::from((Ipv4Addr::LOCALHOST, free - 1))], 1)?;
        assert_eq!(shifted[0].port(), free, "a free shifted port is kept");
        Ok(())
    }

    /// A port that was free a moment ago.
    fn a_free_port() -> anyhow::Result<u16> {
        Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port())
    }
}
