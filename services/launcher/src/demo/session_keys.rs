//! The demo's session-token keys, kept in `DIR/session-keys.json` (mode 0600) like the bearer
//! tokens: created once, reused while the file exists, so session tokens issued by one run
//! still verify after a restart.

use std::path::Path;

use anyhow::{Context, bail};
use hiscale::session::SessionIssuer;
use serde::{Deserialize, Serialize};

use super::files;

/// The file's name inside the data directory.
pub const FILE_NAME: &str = "session-keys.json";

/// Login signs with `signing_key`; every unit verifies with `public_key` (both 64 hex digits),
/// which tokens name by `key_id`. This is exactly the JSON object in the file (files written
/// before key ids existed have none: theirs is [`FIRST_KEY_ID`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionKeys {
    #[serde(default = "first_key_id")]
    pub key_id: String,
    pub signing_key: String,
    pub public_key: String,
}

/// The id of the demo's first key.
pub const FIRST_KEY_ID: &str = "demo-1";

fn first_key_id() -> String {
    FIRST_KEY_ID.to_owned()
}

impl SessionKeys {
    /// Reads the keys from `path`, or generates a fresh pair there when the file does not exist
    /// yet. A pair whose halves do not belong together is refused: every unit would start, but
    /// no session token login issues would ever verify.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        let keys = files::load_or_create_private_json(path, "session keys", Self::generate)?;
        keys.check()
            .with_context(|| format!("{}: remove it to get new keys", path.display()))?;
        Ok(keys)
    }

    fn generate() -> anyhow::Result<Self> {
        let (signing_key, public_key) = hiscale::session::generate_key_pair().map_err(|error| {
            anyhow::anyhow!("cannot get random bytes for session keys: {error}")
        })?;
        Ok(Self {
            key_id: first_key_id(),
            signing_key,
            public_key,
        })
    }

    fn check(&self) -> anyhow::Result<()> {
        let issuer = SessionIssuer::new(&self.key_id, &self.signing_key, 1)
            .context("key_id or signing_key is not a session key")?;
        if !issuer
            .public_key_hex()
            .eq_ignore_ascii_case(self.public_key.trim())
        {
            bail!("public_key does not belong to signing_key");
        }
        Ok(())
    }
}

/// Never prints the signing key, should the keys end up in a log.
impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SessionKeys")
            .field("signing_key", &"…")
            .field("public_key", &self.public_key)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::files::testing::ScratchDir;
    use super::*;

    #[test]
    fn creates_a_private_matching_pair_once_and_reuses_it() -> anyhow::Result<()> {
        let scratch = ScratchDir::new()?;
        let path = scratch.path().join(FILE_NAME);
        let created = SessionKeys::load_or_create(&path)?;
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(created.public_key.len(), 64);
        assert_ne!(created.signing_key, created.public_key);
        let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        assert_eq!(written["signing_key"], created.signing_key.as_str());
        assert_eq!(written["public_key"], created.public_key.as_str());
        assert_eq!(written["key_id"], FIRST_KEY_ID);

        assert_eq!(SessionKeys::load_or_create(&path)?, created);
        assert!(!format!("{created:?}").contains(&created.signing_key));
        Ok(())
    }

    #[test]
    fn a_mismatched_pair_is_refused_and_kept() -> anyhow::Result<()> {
        let scratch = ScratchDir::new()?;
        let first = SessionKeys::generate()?;
        let second = SessionKeys::generate()?;
        let path = scratch.path().join(FILE_NAME);
        let mixed = serde_json::json!({
            "signing_key": first.signing_key,
            "public_key": second.public_key,
        })
        .to_string();
        std::fs::write(&path, &mixed)?;
        assert!(SessionKeys::load_or_create(&path).is_err());
        assert_eq!(std::fs::read_to_string(&path)?, mixed);
        Ok(())
    }

    #[test]
    fn a_file_from_before_key_ids_gets_the_first_id() -> anyhow::Result<()> {
        let scratch = ScratchDir::new()?;
        let keys = SessionKeys::generate()?;
        let path = scratch.path().join(FILE_NAME);
        let old = serde_json::json!({
            "signing_key": keys.signing_key,
            "public_key": keys.public_key,
        });
        std::fs::write(&path, old.to_string())?;
        assert_eq!(SessionKeys::load_or_create(&path)?.key_id, FIRST_KEY_ID);
        Ok(())
    }
}
