//! Session tokens: login signs them with Ed25519; any SA in any datacenter verifies them with
//! the public keys from its configuration, without shared state and without calling login.
//!
//! Format: `v2.<kid>.<payload>.<signature>`. `kid` names the key that signed (1 to 32 letters,
//! digits, `-` or `_`), so a verifier may hold several public keys and login may switch its
//! signing key without signing anyone out. Payload and signature are base64url; the payload is
//! JSON `{"sub": resource id, "login", "sid": session id, "iat", "exp", "cv"?}` (unix seconds;
//! `cv` is the version of the credentials the session signed in against). The signature covers
//! `v2.<kid>.<payload>`, so the key id cannot be swapped without breaking it.
//!
//! `v1.<payload>.<signature>` tokens (no key id, no session id) are no longer accepted: they
//! cannot be revoked one by one ([`crate::revocation`]), so honouring them would let a
//! logged-out session live on until its `exp`.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::config::PublicKeyConfig;
use crate::store::unix_now;
use crate::version::ResourceId;

/// The token format this code issues and accepts.
pub const TOKEN_PREFIX: &str = "v2.";

/// How long session tokens live unless the configuration says otherwise (8 hours).
pub const DEFAULT_TTL_SECS: u64 = 8 * 3600;

/// The longest key id.
const MAX_KEY_ID_CHARS: usize = 32;

/// What a session token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The customer's resource id: the token reaches only this resource.
    pub sub: String,
    pub login: String,
    /// The session's id (random): what a logout revokes.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    /// The version of the customer's credentials (login's copy of `account`) at sign-in: a
    /// change of them revokes every session signed in against an older version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv: Option<i64>,
}

/// Why a session token was refused (all `401 invalid-token` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("not a session token")]
    Malformed,
    #[error("signed with a key this unit does not know (key id {0:?})")]
    UnknownKey(String),
    #[error("the signature does not match")]
    BadSignature,
    #[error("the session has expired")]
    Expired,
}

/// A session key in the configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key id {0:?} must be 1 to 32 letters, digits, '-' or '_'")]
    BadKeyId(String),
    #[error("key {0:?} must be 64 hex digits (32 bytes)")]
    BadHex(String),
    #[error("key {0:?} is not a valid Ed25519 public key")]
    NotAPublicKey(String),
    #[error("key id {0:?} is listed twice")]
    DuplicateKeyId(String),
}

/// Checks session tokens; every SA has one (from the public keys, by key id).
#[derive(Debug, Clone)]
pub struct SessionVerifier {
    keys: Arc<BTreeMap<String, VerifyingKey>>,
}

/// Issues session tokens; only login has one (from the current signing key and its id).
#[derive(Debug, Clone)]
pub struct SessionIssuer {
    key_id: String,
    key: SigningKey,
    ttl_secs: i64,
}

impl SessionVerifier {
    /// A verifier of tokens signed by any of `keys`; refuses bad ids, bad hex and an id given
    /// twice (whatever the keys), so a rotation typo stops a unit at start.
    pub fn from_keys(keys: &[PublicKeyConfig]) -> Result<Self, KeyError> {
        let mut by_id = BTreeMap::new();
        for entry in keys {
            check_key_id(&entry.id)?;
            let bytes = key_bytes(&entry.key).ok_or_else(|| KeyError::BadHex(entry.id.clone()))?;
            let key = VerifyingKey::from_bytes(&bytes)
                .map_err(|_| KeyError::NotAPublicKey(entry.id.clone()))?;
            if by_id.insert(entry.id.clone(), key).is_some() {
                return Err(KeyError::DuplicateKeyId(entry.id.clone()));
            }
        }
        Ok(Self {
            keys: Arc::new(by_id),
        })
    }

    /// A verifier of one key (tests, tools).
    pub fn from_hex(key_id: &str, public_key: &str) -> Result<Self, KeyError> {
        Self::from_keys(&[PublicKeyConfig::new(key_id, public_key)])
    }

    /// The key ids this verifier accepts.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Whether `key_id` names the public key of `issuer` here.
    pub fn holds(&self, issuer: &SessionIssuer) -> bool {
        self.keys
            .get(&issuer.key_id)
            .is_some_and(|key| *key == issuer.key.verifying_key())
    }

    /// The claims of a valid, unexpired token (revocation is checked apart, against the
    /// unit's copy of the revocations).
    pub fn verify(&self, token: &str) -> Result<Claims, SessionError> {
        let rest = token
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(SessionError::Malformed)?;
        let mut parts = rest.split('.');
        let (Some(key_id), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SessionError::Malformed);
        };
        if check_key_id(key_id).is_err() {
            return Err(SessionError::Malformed);
        }
        let key = self
            .keys
            .get(key_id)
            .ok_or_else(|| SessionError::UnknownKey(key_id.to_owned()))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or(SessionError::Malformed)?;
        key.verify_strict(signed_part(key_id, payload).as_bytes(), &signature)
            .map_err(|_| SessionError::BadSignature)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(SessionError::Malformed)?;
        if claims.exp <= unix_now() {
            return Err(SessionError::Expired);
        }
        Ok(claims)
    }
}

impl SessionIssuer {
    /// An issuer signing with `signing_key` (64 hex digits) under `key_id`.
    pub fn new(key_id: &str, signing_key: &str, ttl_secs: u64) -> Result<Self, KeyError> {
        check_key_id(key_id)?;
        let bytes = key_bytes(signing_key).ok_or_else(|| KeyError::BadHex(key_id.to_owned()))?;
        Ok(Self {
            key_id: key_id.to_owned(),
            key: SigningKey::from_bytes(&bytes),
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX),
        })
    }

    /// The id of the key it signs with.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// How long its tokens live, in seconds.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// A token for `login`, holder of resource `id`, valid for the configured lifetime, with a
    /// fresh session id and no credentials version.
    pub fn issue(&self, id: &ResourceId, login: &str) -> String {
        self.issue_session(id, login, None).0
    }

    /// A token and its claims for `login`, holder of resource `id`, signed in against
    /// credentials of version `cv`.
    pub fn issue_session(&self, id: &ResourceId, login: &str, cv: Option<i64>) -> (String, Claims) {
        let now = unix_now();
        let claims = Claims {
            sub: id.to_string(),
            login: login.to_owned(),
            sid: new_session_id(),
            iat: now,
            exp: now.saturating_add(self.ttl_secs),
            cv,
        };
        (self.issue_claims(&claims), claims)
    }

    /// Signs arbitrary claims (tests use it for expired tokens).
    pub fn issue_claims(&self, claims: &Claims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signature = self
            .key
            .sign(signed_part(&self.key_id, &payload).as_bytes());
        format!(
            "{}.{}",
            signed_part(&self.key_id, &payload),
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    /// The public key (hex) that verifies this issuer's tokens.
    pub fn public_key_hex(&self) -> String {
        hex(self.key.verifying_key().as_bytes())
    }
}

/// A fresh signing key and its public key, both as hex (for the demo's configuration).
pub fn generate_key_pair() -> Result<(String, String), getrandom::Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)?;
    let key = SigningKey::from_bytes(&seed);
    Ok((hex(&seed), hex(key.verifying_key().as_bytes())))
}

/// 16 random bytes, base64url: unguessable, and unique without asking anyone.
fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness at all: still unique per process and time, never a shared constant.
        let fallback = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        return URL_SAFE_NO_PAD.encode(fallback.as_bytes());
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `text` is a key id: 1 to 32 of `[A-Za-z0-9_-]` (no dot: it separates the token).
pub fn check_key_id(text: &str) -> Result<(), KeyError> {
    let fits = !text.is_empty()
        && text.len() <= MAX_KEY_ID_CHARS
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if fits {
        Ok(())
    } else {
        Err(KeyError::BadKeyId(text.chars().take(40).collect()))
    }
}

fn signed_part(key_id: &str, payload: &str) -> String {
    format!("{TOKEN_PREFIX}{key_id}.{payload}")
}

fn key_bytes(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).ok()?;
    }
    Some(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(id: &str) -> (SessionIssuer, PublicKeyConfig) {
        let (secret, public) = generate_key_pair().expect("randomness");
        (
            SessionIssuer::new(id, &secret, 60).expect("key"),
            PublicKeyConfig::new(id, &public),
        )
    }

    #[test]
    fn issue_verify_tamper_expire() {
        let (secret, public) = generate_key_pair().expect("randomness");
        let issuer = SessionIssuer::new("k1", &secret, 60).expect("key");
        assert_eq!(issuer.public_key_hex(), public);
        let verifier = SessionVerifier::from_hex("k1", &public).expect("key");
        assert!(verifier.holds(&issuer));
        let id = ResourceId::parse("42").expect("id");
        let (token, claims) = issuer.issue_session(&id, "owronka", Some(7));
        assert!(token.starts_with("v2.k1."), "{token}");
        assert_eq!(verifier.verify(&token), Ok(claims.clone()));
        assert_eq!(
            (claims.sub.as_str(), claims.login.as_str(), claims.cv),
            ("42", "owronka", Some(7))
        );
        assert_eq!(claims.sid.len(), 22, "16 random bytes");
        assert_ne!(issuer.issue_session(&id, "owronka", None).1.sid, claims.sid);

        let parts: Vec<&str> = token.split('.').collect();
        let mut forged: Claims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).expect("b64")).expect("json");
        forged.sub = "43".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
        assert_eq!(
            verifier.verify(&format!("v2.k1.{forged_payload}.{}", parts[3])),
            Err(SessionError::BadSignature)
        );
        let expired = issuer.issue_claims(&Claims {
            exp: unix_now() - 1,
            ..claims
        });
        assert_eq!(verifier.verify(&expired), Err(SessionError::Expired));
        assert_eq!(verifier.verify("v2.k1.abc"), Err(SessionError::Malformed));
        assert_eq!(
            verifier.verify(&format!("{token}.more")),
            Err(SessionError::Malformed)
        );
        let (_, other_public) = generate_key_pair().expect("randomness");
        let stranger = SessionVerifier::from_hex("k1", &other_public).expect("key");
        assert_eq!(stranger.verify(&token), Err(SessionError::BadSignature));
        assert!(!stranger.holds(&issuer));
    }

    #[test]
    fn tokens_name_their_key_and_verifiers_hold_several() {
        let (old, old_public) = pair("2026-05");
        let (new, new_public) = pair("2026-11");
        let id = ResourceId::parse("42").expect("id");
        let both = SessionVerifier::from_keys(&[old_public.clone(), new_public.clone()])
            .expect("two keys");
        assert_eq!(both.key_ids().collect::<Vec<_>>(), ["2026-05", "2026-11"]);
        let old_token = old.issue(&id, "a");
        let new_token = new.issue(&id, "a");
        assert!(both.verify(&old_token).is_ok());
        assert!(both.verify(&new_token).is_ok());
        // The old key removed: its tokens name a key nobody knows any more.
        let only_new = SessionVerifier::from_keys(&[new_public]).expect("one key");
        assert_eq!(
            only_new.verify(&old_token),
            Err(SessionError::UnknownKey("2026-05".into()))
        );
        assert!(only_new.verify(&new_token).is_ok());
        // Swapping the key id breaks the signature (the id is signed).
        let swapped = old_token.replacen("v2.2026-05.", "v2.2026-11.", 1);
        assert_eq!(both.verify(&swapped), Err(SessionError::BadSignature));
        // A v1 token (no key id, no session id) is refused.
        assert_eq!(
            both.verify("v1.eyJzdWIiOiI0MiJ9.c2ln"),
            Err(SessionError::Malformed)
        );
    }

    #[test]
    fn key_configuration_is_checked() {
        let (_, public) = pair("k1");
        let duplicate = SessionVerifier::from_keys(&[public.clone(), public.clone()]);
        assert_eq!(
            duplicate.map(|_| ()),
            Err(KeyError::DuplicateKeyId("k1".into()))
        );
        let bad_hex = SessionVerifier::from_hex("k1", "abcd");
        assert_eq!(bad_hex.map(|_| ()), Err(KeyError::BadHex("k1".into())));
        let not_hex = SessionVerifier::from_hex("k1", &"zz".repeat(32));
        assert_eq!(not_hex.map(|_| ()), Err(KeyError::BadHex("k1".into())));
        for bad_id in ["", "a.b", "k 1", &"x".repeat(33), "ключ"] {
            assert!(
                matches!(
                    SessionVerifier::from_hex(bad_id, &public.key),
                    Err(KeyError::BadKeyId(_))
                ),
                "{bad_id:?}"
            );
            assert!(SessionIssuer::new(bad_id, &public.key, 1).is_err());
        }
        assert!(SessionIssuer::new("k1", "abcd", 1).is_err());
        assert_eq!(
            KeyError::DuplicateKeyId("k1".into()).to_string(),
            "key id \"k1\" is listed twice"
        );
    }
}
