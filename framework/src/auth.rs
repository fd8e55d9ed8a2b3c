//! Who is calling, and what they may read and write: bearer tokens from configuration mapped
//! to grants; and the password hashing every SA that handles accounts shares.

use std::collections::HashMap;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, generate_salt, phc::PasswordHash};

use crate::aspect::{AspectName, AspectSelector, Selection, SelectorError};
use crate::config::CallerConfig;
use crate::model::{Collection, Ownership};
use crate::store::StoredResource;
use crate::version::ResourceId;

/// The customer who owns `resource`, as `collection` declares it; `None` when nobody does.
pub(crate) fn owner_of(collection: &Collection, resource: &StoredResource) -> Option<ResourceId> {
    match collection.ownership() {
        Ownership::Nobody | Ownership::Everyone => None,
        Ownership::Itself => Some(resource.id.clone()),
        Ownership::Field(lookup) => {
            let aspect = lookup.aspect.to_string();
            let body = resource
                .aspects
                .iter()
                .find(|stored| stored.name == aspect && !stored.deleted)?
                .body
                .as_deref()?;
            let document: serde_json::Value = serde_json::from_str(body).ok()?;
            ResourceId::parse(document.get(&lookup.field)?.as_str()?)
        }
    }
}

/// What a caller may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Reads every aspect, writes, and calls `/admin/…`.
    Operator,
    /// Reads just these aspects (by name or family), nothing else.
    Aspects(AspectSelector),
    /// A signed-in customer (session token from login): reaches only the resources it owns,
    /// as each collection declares ownership ([`crate::Ownership`]), and of them only the
    /// aspects the unit's configuration grants sessions: none when it names none (deny by
    /// default, so an SA that forgets the grant never shows a password hash).
    Session {
        customer: ResourceId,
        aspects: Option<AspectSelector>,
    },
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub grant: Grant,
}

impl Caller {
    pub fn is_operator(&self) -> bool {
        self.grant == Grant::Operator
    }

    /// The customer a session acts for; `None` for peers and operators.
    pub fn customer(&self) -> Option<&ResourceId> {
        match &self.grant {
            Grant::Session { customer, .. } => Some(customer),
            _ => None,
        }
    }

    /// Whether this caller may see `resource` of `collection` at all: a session only what its
    /// customer owns (anything else looks missing, so a session learns nothing of others).
    pub fn reaches(&self, collection: &Collection, resource: &StoredResource) -> bool {
        match (self.customer(), collection.ownership()) {
            (None, _) | (Some(_), Ownership::Everyone) => true,
            (Some(customer), _) => owner_of(collection, resource).as_ref() == Some(customer),
        }
    }

    /// A peer SA or operator: may read feeds (a user session may not).
    pub fn is_service(&self) -> bool {
        !matches!(self.grant, Grant::Session { .. })
    }

    /// The declared aspects this caller may read.
    pub fn readable(&self, declared: &[AspectName]) -> Selection {
        match &self.grant {
            Grant::Operator => Selection::all(declared),
            Grant::Session { aspects: None, .. } => Selection::default(),
            Grant::Aspects(selector)
            | Grant::Session {
                aspects: Some(selector),
                ..
            } => selector.select_known(declared),
        }
    }
}

/// The callers a unit knows, by token.
#[derive(Debug, Clone, Default)]
pub struct Callers {
    by_token: Arc<HashMap<String, Caller>>,
}

/// A caller entry in the configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CallerConfigError {
    #[error("caller {name}: grant must be \"operator\" or an aspect selector: {source}")]
    Grant { name: String, source: SelectorError },
    #[error("caller {name}: the token is shorter than 16 characters")]
    WeakToken { name: String },
    #[error("caller {name}: the token is also given to another caller")]
    SharedToken { name: String },
}

/// Grants name at most this many characters; they come from our own configuration.
const MAX_GRANT_CHARS: usize = 1024;

impl Callers {
    pub fn from_config(callers: &[CallerConfig]) -> Result<Self, CallerConfigError> {
        let mut by_token = HashMap::new();
        for caller in callers {
            let grant = if caller.grant == "operator" {
                Grant::Operator
            } else {
                let selector =
                    AspectSelector::parse(&caller.grant, MAX_GRANT_CHARS).map_err(|source| {
                        CallerConfigError::Grant {
                            name: caller.name.clone(),
                            source,
                        }
                    })?;
                Grant::Aspects(selector)
            };
            if caller.token.len() < 16 {
                return Err(CallerConfigError::WeakToken {
                    name: caller.name.clone(),
                });
            }
            let entry = Caller {
                name: caller.name.clone(),
                grant,
            };
            if by_token.insert(caller.token.clone(), entry).is_some() {
                return Err(CallerConfigError::SharedToken {
                    name: caller.name.clone(),
                });
            }
        }
        Ok(Self {
            by_token: Arc::new(by_token),
        })
    }

    pub fn find(&self, token: &str) -> Option<&Caller> {
        self.by_token.get(token)
    }
}

/// Hashes a clear-text password with Argon2id and a fresh random salt. Returns the PHC string
/// (which names the parameters, so they can be raised later) and the salt on its own, as the
/// contract's `<pwdhash>` and `<salt>`. Slow on purpose: call from a blocking thread.
pub fn hash_password(password: &str) -> Result<(String, String), String> {
    let salt = generate_salt();
    let hash = Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|error| error.to_string())?;
    let salt_hex = salt.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok((hash.to_string(), salt_hex))
}

/// Checks a clear-text password against a PHC string from [`hash_password`].
pub fn verify_password(password: &str, pwdhash: &str) -> bool {
    PasswordHash::new(pwdhash).ok().is_some_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let (hash, salt) = hash_password("correct horse").expect("hashing works");
        assert!(hash.starts_with("$argon2id$"));
        assert_eq!(salt.len(), 32);
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
        let (again, other_salt) = hash_password("correct horse").expect("hashing works");
        assert_ne!(hash, again, "a fresh salt every time");
        assert_ne!(salt, other_salt);
    }

    #[test]
    fn callers_from_config() {
        let config = |name: &str, token: &str, grant: &str| CallerConfig {
            name: name.into(),
            token: token.into(),
            grant: grant.into(),
        };
        let callers = Callers::from_config(&[
            config("admin", "0123456789abcdef-admin", "operator"),
            config("shop", "0123456789abcdef-shop", "~person~address.home"),
        ])
        .expect("valid");
        assert!(
            callers
                .find("0123456789abcdef-admin")
                .is_some_and(Caller::is_operator)
        );
        assert!(
            callers
                .find("0123456789abcdef-shop")
                .is_some_and(|c| !c.is_operator())
        );
        assert!(callers.find("nope").is_none());
        assert!(Callers::from_config(&[config("x", "short", "operator")]).is_err());
        assert!(Callers::from_config(&[config("x", "0123456789abcdef", "person")]).is_err());
    }
}
