//! Decides the whole landscape before anything starts: which units there are, where each one
//! listens and its complete configuration.
//!
//! Every address is chosen here, up front, because configurations name each other: a backup
//! watches its primary's URL, and the reading service areas poll the owner through the
//! gateway. The supervisor then only writes each configuration and runs it.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;

use anyhow::{Context, bail};
use hiscale::config::{ReaderConfig, ReaderRole, SessionConfig, SourceConfig, UnitConfig};

use super::session_keys::SessionKeys;
use super::tokens::Tokens;
use super::units_file::Role;

/// One service area of the demo landscape.
#[derive(Debug)]
pub struct ServiceArea {
    pub name: &'static str,
    pub units: usize,
    /// The aspects of the owner's customers this service area copies; `None` for the owner.
    pub copies: Option<&'static str>,
    /// Whether this service area issues session tokens (and so needs the signing key).
    pub signs_sessions: bool,
}

/// The demo landscape: the owner of the customers, and three service areas that copy the
/// aspects they are granted there.
pub const SERVICE_AREAS: &[ServiceArea] = &[
    ServiceArea {
        name: registration::NAME,
        units: 2,
        copies: None,
        signs_sessions: false,
    },
    ServiceArea {
        name: login::NAME,
        units: 2,
        copies: Some(login::COPIED_ASPECTS),
        signs_sessions: true,
    },
    ServiceArea {
        name: shop::NAME,
        units: 2,
        copies: Some(shop::COPIED_ASPECTS),
        signs_sessions: false,
    },
    ServiceArea {
        name: billing::NAME,
        units: 2,
        copies: Some(billing::COPIED_ASPECTS),
        signs_sessions: false,
    },
];

/// The service area that owns the customers the others copy.
pub const OWNER: &str = registration::NAME;
/// The collection the reading service areas copy from [`OWNER`].
pub const COPIED_COLLECTION: &str = "customers";

/// How a reading unit polls the owner's feed: long polls of 20 s, chunks of 100, and 10 s
/// between plain polls (the contract's default).
const POLL_INTERVAL_SECS: u64 = 10;
const POLL_WAIT_SECS: u64 = 20;
const POLL_LIMIT: u32 = 100;

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

/// Prepares each service area's database, picks a free loopback port for every unit and plans
/// all of them, one service area after the other.
pub async fn plan_units(
    data_dir: &Path,
    postgres: Option<&str>,
    shared: &Shared<'_>,
) -> anyhow::Result<Vec<UnitPlan>> {
    let mut databases = Vec::with_capacity(SERVICE_AREAS.len());
    for area in SERVICE_AREAS {
        databases.push(database_url(data_dir, postgres, area.name).await?);
    }
    let count = SERVICE_AREAS.iter().map(|area| area.units).sum();
    let addresses = free_loopback_addresses(count)?;
    plan(SERVICE_AREAS, &databases, &addresses, shared)
}

/// The units of `areas`, the `i`-th area sharing `databases[i]`, listening on `addresses` in
/// order. The first unit of a reading service area is its primary, the others back it up.
fn plan(
    areas: &[ServiceArea],
    databases: &[String],
    addresses: &[SocketAddr],
    shared: &Shared<'_>,
) -> anyhow::Result<Vec<UnitPlan>> {
    let needed: usize = areas.iter().map(|area| area.units).sum();
    if databases.len() != areas.len() || addresses.len() != needed {
        bail!(
            "planning {} service areas with {needed} units needs as many databases and addresses, \
             got {} and {}",
            areas.len(),
            databases.len(),
            addresses.len()
        );
    }
    let mut plans = Vec::with_capacity(needed);
    let mut addresses = addresses.iter();
    for (area, database) in areas.iter().zip(databases) {
        let own: Vec<SocketAddr> = addresses.by_ref().take(area.units).copied().collect();
        let Some(primary) = own.first() else {
            continue;
        };
        let primary_url = format!("http://{primary}");
        let sources = match area.copies {
            Some(aspects) => vec![source(area.name, aspects, shared)?],
            None => Vec::new(),
        };
        let sessions = SessionConfig {
            public_key: Some(shared.keys.public_key.clone()),
            signing_key: area.signs_sessions.then(|| shared.keys.signing_key.clone()),
            // At the owner a session sees its own data, but not its password hash.
            grant: (area.copies.is_none()).then(|| "~person~address~bankaccount".to_owned()),
            ..SessionConfig::default()
        };
        for (index, &address) in own.iter().enumerate() {
            let unit = format!("{}-{}", area.name, index + 1);
            let (role, reader) = match (area.copies, index) {
                (None, _) => (Role::Owner, ReaderConfig::default()),
                (Some(_), 0) => (Role::Primary, ReaderConfig::default()),
                (Some(_), _) => (
                    Role::Backup,
                    ReaderConfig {
                        role: ReaderRole::Backup,
                        primary_url: Some(primary_url.clone()),
                        ..ReaderConfig::default()
                    },
                ),
            };
            let config = UnitConfig {
                callers: shared.tokens.callers(),
                sources: sources.clone(),
                reader,
                sessions: sessions.clone(),
                ..UnitConfig::new(area.name, &unit, address, database)
            };
            plans.push(UnitPlan { role, config });
        }
    }
    Ok(plans)
}

/// Where the reading service area `sa` polls the owner's customers, with its own token there.
fn source(sa: &str, aspects: &str, shared: &Shared<'_>) -> anyhow::Result<SourceConfig> {
    let token = shared
        .tokens
        .of_consumer(sa)
        .with_context(|| format!("the demo has no token for {sa} to read {OWNER}"))?;
    Ok(SourceConfig {
        collection: COPIED_COLLECTION.to_owned(),
        url: format!("http://{}/{OWNER}", shared.gateway),
        token: token.to_owned(),
        aspects: aspects.to_owned(),
        interval_secs: POLL_INTERVAL_SECS,
        wait_secs: POLL_WAIT_SECS,
        limit: POLL_LIMIT,
    })
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

/// Picks `count` distinct free ports on 127.0.0.1 by letting the system choose, holding every
/// listener until all are chosen so no two units get the same one. A unit keeps its port for
/// the whole demo: a restarted unit comes back where the gateway and its backup expect it.
fn free_loopback_addresses(count: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find a free port on 127.0.0.1")?;
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
        }
    }

    fn keys() -> SessionKeys {
        SessionKeys {
            signing_key: "secret".into(),
            public_key: "public".into(),
        }
    }

    /// The demo's landscape on ports 9001, 9002, … with the gateway on 8080.
    fn demo_plan() -> anyhow::Result<Vec<UnitPlan>> {
        let databases: Vec<String> = SERVICE_AREAS
            .iter()
            .map(|area| format!("sqlite:///data/{}.db", area.name))
            .collect();
        let count = SERVICE_AREAS.iter().map(|area| area.units).sum::<usize>();
        let addresses: Vec<SocketAddr> = (9001..)
            .take(count)
            .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .collect();
        let (tokens, keys) = (tokens(), keys());
        let shared = Shared {
            tokens: &tokens,
            keys: &keys,
            gateway: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
        };
        plan(SERVICE_AREAS, &databases, &addresses, &shared)
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
            assert_eq!(config.callers.len(), tokens().callers().len());
        }
        Ok(())
    }

    #[test]
    fn only_login_gets_the_signing_key_and_everyone_the_public_key() -> anyhow::Result<()> {
        for plan in demo_plan()? {
            let sessions = &plan.config.sessions;
            assert_eq!(
                sessions.public_key.as_deref(),
                Some("public"),
                "{}",
                plan.config.unit
            );
            let expected = (plan.config.sa == login::NAME).then_some("secret");
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
                assert_eq!(sources.len(), 1, "{name}");
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
        for name in ["registration-1", "registration-2"] {
            assert!(unit(&plans, name)?.config.sources.is_empty(), "{name}");
        }
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
        assert_eq!(read.sources.len(), 1);
        assert_eq!(read.reader.primary_url, backup.config.reader.primary_url);
        assert_eq!(read.sessions.public_key.as_deref(), Some("public"));
        Ok(())
    }

    #[test]
    fn mismatched_inputs_are_an_error_not_a_short_plan() {
        let (tokens, keys) = (tokens(), keys());
        let shared = Shared {
            tokens: &tokens,
            keys: &keys,
            gateway: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
        };
        let one = [SocketAddr::from((Ipv4Addr::LOCALHOST, 9001))];
        assert!(plan(SERVICE_AREAS, &[], &one, &shared).is_err());
    }

    #[test]
    fn free_addresses_are_distinct_loopback_ports() -> anyhow::Result<()> {
        let addresses = free_loopback_addresses(8)?;
        let mut ports: Vec<_> = addresses.iter().map(SocketAddr::port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 8);
        assert!(addresses.iter().all(|address| address.ip().is_loopback()));
        Ok(())
    }
}
