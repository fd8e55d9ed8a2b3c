//! The configuration of one service unit, parsed once in `main` and passed down.
//!
//! Configuration is data, never code: who holds which grant, where the database lives and the
//! limits all come from the file an operator (or the demo) writes. It is never replicated
//! between service areas.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One unit's configuration file (`hiscale serve --config FILE`, TOML).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitConfig {
    /// The service area this unit belongs to, e.g. `registration`.
    pub sa: String,
    /// This unit's name, unique in the landscape, e.g. `registration-1`.
    pub unit: String,
    /// Loopback or host address to listen on.
    pub listen: SocketAddr,
    /// `sqlite:///abs/path/file.db` (embedded) or `postgres://user@host:port/db`.
    pub database: String,
    /// Zone (rack, room, datacenter) this unit runs in; reported by `/heartbeat`.
    #[serde(default)]
    pub zone: Option<String>,
    /// A service unit (serves requests) or a batch unit (runs the SA's jobs, serves only
    /// health, metrics and admin).
    #[serde(default)]
    pub kind: UnitKind,
    #[serde(default)]
    pub limits: Limits,
    /// Who may call this unit, with which grant.
    #[serde(default)]
    pub callers: Vec<CallerConfig>,
    /// How the feed of owned collections behaves.
    #[serde(default)]
    pub feed: FeedConfig,
    /// Where this SA's copies come from: one source per copied collection.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Whether this unit polls its sources itself or stands by for the primary.
    #[serde(default)]
    pub reader: ReaderConfig,
    /// Session tokens issued by login and verified everywhere.
    #[serde(default)]
    pub sessions: SessionConfig,
    /// The peers that keep copies of what this SA owns: after a rollback, `POST /admin/restore`
    /// refills the owner from them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restore_from: Vec<PeerConfig>,
    /// Serve interface versions up to this one only, as a unit of the previous release does:
    /// a staged rollout's first step, and the stand-in for the old binary in rolling-upgrade
    /// tests. Documents are stored in the form of the oldest newest version among the units
    /// running (see `http/stored_form.rs`). All the SA declares when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_interface: Option<u32>,
    /// The datacenters this SA owns its collections in (active/active), in the topology's
    /// order, and this unit's among them: it draws versions from that datacenter's
    /// interleaved counter and writes only resources whose home it is (see
    /// [`crate::origin`]). Empty: one owner datacenter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_datacenters: Vec<String>,
    /// This unit's datacenter, when the topology names datacenters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    /// The other units of this SA, as the topology names them. A unit that finds none of them
    /// recorded in its store says so in `/health` and the log: its peers may be writing to
    /// another database, handing out the same versions and ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// The consumers (caller names) the topology names for each owned collection: the SAs
    /// that copy it from this SA directly. After every start a unit takes no write to such a
    /// collection until each of them has polled, because only they can prove the store was
    /// not rolled back (a mark in the store would be rolled back with it). Empty: no gate.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub consumers: std::collections::BTreeMap<String, Vec<String>>,
    /// PEM files of the certificate authorities this unit trusts when it calls an HTTPS URL (a
    /// source, a restore peer: gateways that terminate TLS). Only these when any is named;
    /// the host's roots otherwise ([`crate::tls::Trust`]). A file that cannot be read or holds
    /// no certificate stops the unit at start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_certificates: Vec<std::path::PathBuf>,
}

/// The owner's side of the delta feed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// Tombstones older than this are purged even if a known consumer has not passed them
    /// (that consumer then re-reads everything after a `410`).
    pub tombstone_max_age_secs: i64,
    /// How often a unit purges tombstones every known consumer has passed.
    pub purge_interval_secs: u64,
    /// A chunk stops at a version boundary once its documents add up to about this.
    pub max_chunk_bytes: usize,
    /// Memory for cached full chunks (they are states the owner really had).
    pub cache_bytes: u64,
    /// Memory for rendered single-resource reads (`GET /{collection}/{id}`), each found again
    /// only by the exact versions of the resource's aspects (0: no such cache).
    pub read_cache_bytes: u64,
    /// After a start, a consumer the topology names that has not polled within this many
    /// seconds is named in `/health` and the log (the start gate still holds writes).
    pub start_gate_warn_secs: u64,
    /// After a start, the gate opens by itself after this many seconds even without every
    /// consumer (logged as an error, naming them); 0 waits for an operator's
    /// `POST /admin/restore/release`. Bounded by default so that a consumer SA that is gone
    /// for good cannot keep an owner from taking writes forever.
    pub start_gate_max_secs: u64,
    /// Whether an owner refills itself from `restore_from` as soon as a consumer proves it was
    /// rolled back (otherwise it waits in `restoring` for `POST /admin/restore`, `DELETE` or
    /// `hiscale restore`, for an operator who wants to choose).
    pub refill_on_rollback: bool,
    /// How often a unit checks PostgreSQL's assumptions of the feed (standby, sequence cache,
    /// durability, transactions holding it back); 0: never. Findings are `/health` warnings.
    pub assumption_check_secs: u64,
    /// A transaction holding a transaction id for longer than this is named as holding back
    /// the feed (every feed on the server waits for it to end).
    pub held_back_warn_secs: u64,
    /// After a rollback, how many versions the counter skips beyond everything the peers gave
    /// back and the units exposed: room for changes acknowledged to clients that no copy had
    /// fetched yet, so their versions and ids are not handed out again unless more than this
    /// many were lost (the restore report names them by range).
    pub rollback_margin: i64,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            tombstone_max_age_secs: 7 * 24 * 3600,
            purge_interval_secs: 300,
            max_chunk_bytes: 1024 * 1024,
            cache_bytes: 64 * 1024 * 1024,
            read_cache_bytes: 32 * 1024 * 1024,
            start_gate_warn_secs: 30,
            start_gate_max_secs: 600,
            refill_on_rollback: true,
            assumption_check_secs: 60,
            held_back_warn_secs: 30,
            rollback_margin: DEFAULT_ROLLBACK_MARGIN,
        }
    }
}

/// The default [`FeedConfig::rollback_margin`]: ten seconds of a busy owner's writes at
/// 1,000/s, far more than a copy that polls continuously lags behind; a rollback burns it once
/// out of 2^53 versions.
pub const DEFAULT_ROLLBACK_MARGIN: i64 = 10_000;

/// The most resources a feed chunk may be asked for (`limit`), by protocol.
pub const FEED_MAX_LIMIT: u32 = 1000;
/// The longest long poll a feed request may ask for (`wait`), in seconds, by protocol.
pub const FEED_MAX_WAIT_SECS: u64 = 60;

/// One source of a copy: the owner (through HAProxy) or a nearer copy of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The copied collection, e.g. `customers`.
    pub collection: String,
    /// Base URL of the source SA, e.g. `http://127.0.0.1:8080/registration`.
    pub url: String,
    /// This SA's bearer token at the source.
    pub token: String,
    /// The aspects to copy, e.g. `~person~address.home` (must lie within our grant there).
    pub aspects: String,
    /// Seconds between polls when nothing more is waiting (with jitter).
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Long-poll seconds the source may hold a request (0 = plain polling).
    #[serde(default = "default_wait")]
    pub wait_secs: u64,
    /// Resources per chunk (at most 1000).
    #[serde(default = "default_limit")]
    pub limit: u32,
    /// The source's interface version this copy polls (its media type's `v{N}`): the copy
    /// holds that version's representations and serves only that version.
    #[serde(default = "default_interface_version")]
    pub interface_version: u32,
    /// Asks for the next chunk while the current one is applied (the default). Off only to
    /// measure what it gains (`hiscale bench`).
    #[serde(default = "default_pipeline")]
    pub pipeline: bool,
    /// Asks the source for gzip-compressed chunks (`Accept-Encoding: gzip`, the default):
    /// fewer bytes on the wire (a tenth for the bench's near-identical customers; real documents
    /// likely compress less) for some CPU on both ends. Off where the link is cheaper than the
    /// CPU (one machine, a fast LAN).
    #[serde(default = "default_compress")]
    pub compress: bool,
    /// Whose changes this source serves, of a collection owned in several datacenters (one
    /// source per origin, each with its own cursor); the single origin otherwise.
    #[serde(default)]
    pub origin: crate::origin::Origin,
}

fn default_interface_version() -> u32 {
    1
}

fn default_pipeline() -> bool {
    true
}

fn default_compress() -> bool {
    true
}

fn default_interval() -> u64 {
    10
}
fn default_wait() -> u64 {
    20
}
fn default_limit() -> u32 {
    100
}

/// A peer SA's copy of an owned collection, read to refill the owner after a rollback.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer SA, e.g. `billing`.
    pub sa: String,
    /// The owned collection it copies.
    pub collection: String,
    /// Base URL of the peer SA, e.g. `http://127.0.0.1:8080/billing`.
    pub url: String,
    /// This SA's bearer token at the peer.
    pub token: String,
    /// The aspects the peer holds (within what it grants this SA).
    pub aspects: String,
    /// The interface version the peer's copy polls, and so holds and serves. A refill from an
    /// older version than the owner's newest merges it field by field: what only newer
    /// versions know is kept from the restored backup (and reported).
    #[serde(default = "default_interface_version")]
    pub interface_version: u32,
    /// Of a collection owned in several datacenters: the owner's own origin, whose changes
    /// the refill asks the peer for (`origin=`); empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin: String,
}

/// Which unit of a reading SA polls: the primary, or a backup watching it by heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReaderConfig {
    pub role: ReaderRole,
    /// The primary's base URL, watched by a backup (`/heartbeat`).
    pub primary_url: Option<String>,
    /// Milliseconds between heartbeats a backup sends.
    pub heartbeat_interval_ms: u64,
    /// Missed heartbeats in a row (and a last direct check) before a backup takes over.
    pub misses: u32,
    /// How long the reader lease lasts without renewal. A backup takes over only once the
    /// primary's lease has expired, so this bounds how soon it can after the primary dies; the
    /// polling loop renews it about three times per lease, long polls included.
    pub lease_ms: u64,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        Self {
            role: ReaderRole::Primary,
            primary_url: None,
            heartbeat_interval_ms: 1000,
            misses: 3,
            lease_ms: 6000,
        }
    }
}

/// What a unit does: the design's service units and batch units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitKind {
    /// Serves the SA's REST interface (and, for a reading SA, polls its sources).
    #[default]
    Service,
    /// Runs the SA's batch jobs; serves no user traffic (HAProxy sends it none) and polls no
    /// source.
    Batch,
}

/// A reading unit's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReaderRole {
    Primary,
    Backup,
}

/// Ed25519 keys of session tokens: login signs, every SA verifies without calling login.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// The public keys sessions are verified with, by key id; sessions are refused without
    /// any. Several during a rotation: tokens name the key that signed them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<PublicKeyConfig>,
    /// The id of the signing key (login only); its public key must be among `public_keys`.
    pub signing_key_id: Option<String>,
    /// Hex of the 32-byte signing key (login only).
    pub signing_key: Option<String>,
    /// Lifetime of an issued session token.
    pub ttl_secs: Option<u64>,
    /// What a user's session may read of its own resource here, e.g. `~person~address`
    /// (nothing when absent: sessions are denied by default).
    pub grant: Option<String>,
    /// The SA whose revocations this unit copies (the one that signs sessions); the source
    /// itself is the entry for collection `revocations` in `sources`. The topology fills both
    /// in for every SA that does not sign sessions.
    pub revocations_from: Option<String>,
}

/// One public key of session tokens and the id tokens name it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyConfig {
    /// 1 to 32 letters, digits, `-` or `_`, e.g. `2026-11`.
    pub id: String,
    /// Hex of the 32-byte Ed25519 public key.
    pub key: String,
}

impl PublicKeyConfig {
    pub fn new(id: &str, key: &str) -> Self {
        Self {
            id: id.to_owned(),
            key: key.to_owned(),
        }
    }
}

/// Bounds on what one request may ask of a unit; every one of them is enforced with a `4xx`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted request body; larger is `413`.
    pub max_body_bytes: usize,
    /// Longest accepted `aspects` selector; longer is `400`.
    pub max_selector_chars: usize,
    /// Client connections held at once. Beyond, a few more are kept for `/health` and
    /// `/heartbeat` (any other request there is `503 too-many-connections`), and beyond those
    /// new connections are closed at once.
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers, or to start its next request on
    /// a kept-alive connection; then the connection is closed.
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may stall (no byte arriving); then the request is refused.
    pub body_read_timeout_secs: u64,
    /// Seconds a whole request body may take from the end of its head, however steadily it
    /// trickles in; then the request is `408 body-too-slow` and its connection closed. The
    /// stall timeout alone lets a client that sends a byte every few seconds hold a connection
    /// for as long as it likes.
    pub body_deadline_secs: u64,
    /// Networks of the proxies in front of the unit (HAProxy, the demo gateway), whose
    /// `X-Forwarded-For` names the client ([`crate::http::ClientAddress`]). Anyone else could
    /// write any address there, so from other peers the header is ignored. Loopback by default:
    /// HAProxy or the demo's gateway on the unit's own machine.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_selector_chars: 256,
            max_connections: 1_024,
            // Above HAProxy's (5 s) and the demo gateway's (20 s) idle pools, so a unit never
            // closes a connection they are about to reuse.
            header_read_timeout_secs: 30,
            body_read_timeout_secs: 10,
            // 64 KiB (the default largest body) in 20 s is 3.2 KB/s: any real client is faster.
            body_deadline_secs: 20,
            trusted_proxies: vec![
                ipnet::IpNet::new_assert(std::net::Ipv4Addr::new(127, 0, 0, 0).into(), 8),
                ipnet::IpNet::new_assert(std::net::Ipv6Addr::LOCALHOST.into(), 128),
            ],
        }
    }
}

/// One day, in seconds: the longest interval or wait any setting may name.
const DAY_SECS: u64 = 24 * 3600;

/// `Err` naming `name` unless `value` lies in `range`.
fn within<T: PartialOrd + std::fmt::Display>(
    name: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), String> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{name} {value} is outside {}..={}",
            range.start(),
            range.end()
        ))
    }
}

impl UnitConfig {
    /// Refuses settings a unit cannot run with, each named with its allowed range, so that a
    /// mistyped value is an error at start and never an overflow (a panic) or a hang later:
    /// every duration the unit adds to or multiplies is bounded here.
    pub fn check(&self) -> Result<(), String> {
        self.limits
            .check()
            .map_err(|error| format!("limits.{error}"))?;
        self.feed.check().map_err(|error| format!("feed.{error}"))?;
        self.reader
            .check()
            .map_err(|error| format!("reader.{error}"))?;
        for source in &self.sources {
            source
                .check()
                .map_err(|error| format!("sources ({}): {error}", source.collection))?;
        }
        Ok(())
    }
}

impl Limits {
    /// Refuses limits that would make a unit unusable (or overflow a clock).
    pub fn check(&self) -> Result<(), String> {
        within("max_connections", self.max_connections, 1..=100_000)?;
        within("max_body_bytes", self.max_body_bytes, 1..=64 * 1024 * 1024)?;
        within("max_selector_chars", self.max_selector_chars, 1..=64 * 1024)?;
        within(
            "header_read_timeout_secs",
            self.header_read_timeout_secs,
            1..=3_600,
        )?;
        within(
            "body_read_timeout_secs",
            self.body_read_timeout_secs,
            1..=3_600,
        )?;
        within("body_deadline_secs", self.body_deadline_secs, 1..=3_600)?;
        within("trusted_proxies", self.trusted_proxies.len(), 0..=1_024)
    }
}

impl FeedConfig {
    /// Refuses feed settings outside what the owner can run with.
    pub fn check(&self) -> Result<(), String> {
        within(
            "tombstone_max_age_secs",
            self.tombstone_max_age_secs,
            0..=10 * 365 * 24 * 3600,
        )?;
        within(
            "purge_interval_secs",
            self.purge_interval_secs,
            1..=DAY_SECS,
        )?;
        within(
            "max_chunk_bytes",
            self.max_chunk_bytes,
            1024..=64 * 1024 * 1024,
        )?;
        within("cache_bytes", self.cache_bytes, 0..=16 * 1024 * 1024 * 1024)?;
        within(
            "read_cache_bytes",
            self.read_cache_bytes,
            0..=16 * 1024 * 1024 * 1024,
        )?;
        within(
            "start_gate_warn_secs",
            self.start_gate_warn_secs,
            1..=DAY_SECS,
        )?;
        within(
            "start_gate_max_secs",
            self.start_gate_max_secs,
            0..=7 * DAY_SECS,
        )?;
        within(
            "assumption_check_secs",
            self.assumption_check_secs,
            0..=DAY_SECS,
        )?;
        within(
            "held_back_warn_secs",
            self.held_back_warn_secs,
            1..=DAY_SECS,
        )
    }
}

impl ReaderConfig {
    /// Refuses reader settings outside what the heartbeat and lease can run with.
    pub fn check(&self) -> Result<(), String> {
        within(
            "heartbeat_interval_ms",
            self.heartbeat_interval_ms,
            50..=60_000,
        )?;
        within("misses", self.misses, 1..=1_000)?;
        within("lease_ms", self.lease_ms, 100..=3_600_000)
    }
}

impl SourceConfig {
    /// Refuses polling settings the feed would refuse, or that would overflow a timeout.
    pub fn check(&self) -> Result<(), String> {
        within("interval_secs", self.interval_secs, 0..=DAY_SECS)?;
        within("wait_secs", self.wait_secs, 0..=FEED_MAX_WAIT_SECS)?;
        within("limit", self.limit, 1..=FEED_MAX_LIMIT)?;
        within("interface_version", self.interface_version, 1..=1_000)
    }
}

/// A caller (a peer SA, an operator) known by its bearer token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerConfig {
    /// Who this is, for logs and the consumer registry: `admin`, `shop`, …
    pub name: String,
    /// The bearer token it presents.
    pub token: String,
    /// `operator` (every aspect, writes, `/admin/…`) or an aspect selector such as
    /// `~person~address.home` (read only, just those aspects).
    pub grant: String,
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid unit configuration: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
}

impl UnitConfig {
    /// A unit with default limits, no callers, no sources: fill in the rest with struct update
    /// syntax, so new settings do not break existing code.
    pub fn new(sa: &str, unit: &str, listen: SocketAddr, database: &str) -> Self {
        Self {
            sa: sa.to_owned(),
            unit: unit.to_owned(),
            listen,
            database: database.to_owned(),
            zone: None,
            kind: UnitKind::Service,
            limits: Limits::default(),
            callers: Vec::new(),
            feed: FeedConfig::default(),
            sources: Vec::new(),
            reader: ReaderConfig::default(),
            sessions: SessionConfig::default(),
            peers: Vec::new(),
            restore_from: Vec::new(),
            newest_interface: None,
            owner_datacenters: Vec::new(),
            datacenter: None,
            consumers: std::collections::BTreeMap::new(),
            ca_certificates: Vec::new(),
        }
    }

    /// Reads and parses a unit configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
    }
}
