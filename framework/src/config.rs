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
    #[serde(default)]
    pub limits: Limits,
    /// Who may call this unit, with which grant.
    #[serde(default)]
    pub callers: Vec<CallerConfig>,
}

/// Bounds on what one request may ask of a unit; every one of them is enforced with a `4xx`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted request body; larger is `413`.
    pub max_body_bytes: usize,
    /// Longest accepted `aspects` selector; longer is `400`.
    pub max_selector_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_selector_chars: 256,
        }
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
