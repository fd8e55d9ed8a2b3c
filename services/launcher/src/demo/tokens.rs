//! The demo's bearer tokens, kept in `DIR/tokens.json` so that scripts written against one run
//! keep working on the next: the file is created once and reused while it exists.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::files;

/// A token for the operator and one for each consuming service area (the contract's demo
/// grants); this is exactly the JSON object in `tokens.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    pub admin: String,
    pub login: String,
    pub shop: String,
    pub billing: String,
    /// The owner's token at its peers, which it reads to refill itself after a rollback.
    /// Added after the others: a `tokens.json` from before gets one at its next start.
    #[serde(default)]
    pub registration: String,
}

impl Tokens {
    /// Reads the tokens from `path`, or creates fresh random ones there (mode 0600) when the
    /// file does not exist yet; a token missing from an older file is added to it.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        let mut tokens = files::load_or_create_private_json(path, "bearer tokens", Self::random)?;
        if tokens.registration.is_empty() {
            tokens.registration = random_token()?;
            let mut text = serde_json::to_vec_pretty(&tokens)?;
            text.push(b'\n');
            files::write_atomically(path, &text, files::PRIVATE)?;
        }
        Ok(tokens)
    }

    /// Every caller's token by the caller name the topology's grants use (a reading SA is a
    /// caller under its own name).
    pub fn by_caller(&self) -> [(&'static str, &str); 5] {
        [
            ("admin", &self.admin),
            (login::NAME, &self.login),
            (shop::NAME, &self.shop),
            (billing::NAME, &self.billing),
            (registration::NAME, &self.registration),
        ]
    }

    fn random() -> anyhow::Result<Self> {
        Ok(Self {
            admin: random_token()?,
            login: random_token()?,
            shop: random_token()?,
            billing: random_token()?,
            registration: random_token()?,
        })
    }
}

/// 32 bytes from the operating system's generator, as 64 lowercase hex digits.
fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|error| anyhow::anyhow!("cannot get random bytes for a token: {error}"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::files::testing::ScratchDir;
    use super::*;

    #[test]
    fn creates_private_random_tokens_once_and_reuses_them() -> anyhow::Result<()> {
        let scratch = ScratchDir::new()?;
        let path = scratch.path().join("tokens.json");
        let created = Tokens::load_or_create(&path)?;
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        for token in [
            &created.admin,
            &created.login,
            &created.shop,
            &created.billing,
        ] {
            assert_eq!(token.len(), 64);
            assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        }
        assert_ne!(created.admin, created.login);

        let reused = Tokens::load_or_create(&path)?;
        assert_eq!(reused, created);
        Ok(())
    }

    #[test]
    fn a_broken_file_is_an_error_not_silently_replaced() -> anyhow::Result<()> {
        let scratch = ScratchDir::new()?;
        let path = scratch.path().join("tokens.json");
        std::fs::write(&path, "{\"admin\": 1}")?;
        assert!(Tokens::load_or_create(&path).is_err());
        assert_eq!(std::fs::read_to_string(&path)?, "{\"admin\": 1}");
        Ok(())
    }

    #[test]
    fn every_token_goes_by_its_callers_name() {
        let tokens = Tokens {
            admin: "a".into(),
            login: "l".into(),
            shop: "s".into(),
            billing: "b".into(),
            registration: "r".into(),
        };
        assert_eq!(
            tokens.by_caller(),
            [
                ("admin", "a"),
                ("login", "l"),
                ("shop", "s"),
                ("billing", "b"),
                ("registration", "r"),
            ]
        );
    }
}
