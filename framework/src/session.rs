//! Session tokens: login signs them with Ed25519; any SA in any datacenter verifies them with
//! the public key from its configuration, without shared state and without calling login.
//!
//! Format: `v1.<payload>.<signature>`, both base64url; the payload is JSON
//! `{"sub": resource id, "login": …, "iat": …, "exp": …}` (unix seconds).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::store::unix_now;
use crate::version::ResourceId;

/// What a session token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The customer's resource id: the token reaches only this resource.
    pub sub: String,
    pub login: String,
    pub iat: i64,
    pub exp: i64,
}

/// Why a session token was refused (all `401 invalid-token` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("not a session token")]
    Malformed,
    #[error("the signature does not match")]
    BadSignature,
    #[error("the session has expired")]
    Expired,
}

/// Checks session tokens; every SA has one (from the public key).
#[derive(Debug, Clone)]
pub struct SessionVerifier {
    key: VerifyingKey,
}

/// Issues session tokens; only login has one (from the signing key).
#[derive(Debug, Clone)]
pub struct SessionIssuer {
    key: SigningKey,
    ttl_secs: i64,
}

/// A key in the configuration that is not 32 bytes of hex.
#[derive(Debug, thiserror::Error)]
#[error("session key must be 64 hex digits (32 bytes)")]
pub struct BadKey;

impl SessionVerifier {
    pub fn from_hex(public_key: &str) -> Result<Self, BadKey> {
        let key = VerifyingKey::from_bytes(&key_bytes(public_key)?).map_err(|_| BadKey)?;
        Ok(Self { key })
    }

    /// The claims of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> Result<Claims, SessionError> {
        let rest = token.strip_prefix("v1.").ok_or(SessionError::Malformed)?;
        let (payload, signature) = rest.split_once('.').ok_or(SessionError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or(SessionError::Malformed)?;
        self.key
            .verify_strict(signed_part(payload).as_bytes(), &signature)
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
    pub fn from_hex(signing_key: &str, ttl_secs: u64) -> Result<Self, BadKey> {
        Ok(Self {
            key: SigningKey::from_bytes(&key_bytes(signing_key)?),
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX),
        })
    }

    /// A token for `login`, holder of resource `id`, valid for the configured lifetime.
    pub fn issue(&self, id: &ResourceId, login: &str) -> String {
        let now = unix_now();
        self.issue_claims(&Claims {
            sub: id.to_string(),
            login: login.to_owned(),
            iat: now,
            exp: now.saturating_add(self.ttl_secs),
        })
    }

    /// Signs arbitrary claims (tests use it for expired tokens).
    pub fn issue_claims(&self, claims: &Claims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signature = self.key.sign(signed_part(&payload).as_bytes());
        format!(
            "v1.{payload}.{}",
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

fn signed_part(payload: &str) -> String {
    format!("v1.{payload}")
}

fn key_bytes(text: &str) -> Result<[u8; 32], BadKey> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return Err(BadKey);
    }
    let mut bytes = [0u8; 32];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).map_err(|_| BadKey)?;
    }
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_verify_tamper_expire() {
        let (secret, public) = generate_key_pair().expect("randomness");
        let issuer = SessionIssuer::from_hex(&secret, 60).expect("key");
        assert_eq!(issuer.public_key_hex(), public);
        let verifier = SessionVerifier::from_hex(&public).expect("key");
        let id = ResourceId::parse("42").expect("id");
        let token = issuer.issue(&id, "owronka");
        let claims = verifier.verify(&token).expect("valid");
        assert_eq!(
            (claims.sub.as_str(), claims.login.as_str()),
            ("42", "owronka")
        );

        let (payload, signature) = token["v1.".len()..].split_once('.').expect("shape");
        let mut forged: Claims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
        forged.sub = "43".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
        assert_eq!(
            verifier.verify(&format!("v1.{forged_payload}.{signature}")),
            Err(SessionError::BadSignature)
        );
        let expired = issuer.issue_claims(&Claims {
            exp: unix_now() - 1,
            ..claims
        });
        assert_eq!(verifier.verify(&expired), Err(SessionError::Expired));
        assert_eq!(verifier.verify("v1.abc"), Err(SessionError::Malformed));
        let (_, other_public) = generate_key_pair().expect("randomness");
        let stranger = SessionVerifier::from_hex(&other_public).expect("key");
        assert_eq!(stranger.verify(&token), Err(SessionError::BadSignature));
        assert!(SessionVerifier::from_hex("abcd").is_err());
    }
}
