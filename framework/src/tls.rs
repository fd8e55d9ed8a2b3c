//! TLS for the HTTP calls a unit makes: to a source it polls, to a peer it refills from.
//! Those calls go through a gateway, which may be in another datacenter: where HAProxy
//! terminates TLS (`[gateway] tls_certificate`), the unit speaks HTTPS to it.
//!
//! rustls does the TLS, with ring as its crypto provider: pure Rust and C built by `cc`, so
//! nothing needs cmake (aws-lc-rs) or the host's OpenSSL (native-tls). rustls wants its
//! provider chosen once per process before the first client is built, and reqwest panics
//! without one, so every client of the workspace starts from [`client_builder`], which
//! installs it (clippy's `disallowed-methods` in `clippy.toml` refuses the others).
//!
//! What a unit trusts is its [`Trust`]: the CA files its configuration names
//! (`ca_certificates`, from each gateway's `ca_certificate` in the topology) and nothing else,
//! or, when it names none, the host's own roots. A private CA is the usual case for a gateway
//! only units and operators reach; trusting it alone keeps a certificate some public CA issued
//! for the same name from being accepted.

use std::path::{Path, PathBuf};

/// Why a unit's trust anchors cannot be used: it refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("ca_certificates: cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("ca_certificates: {path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("ca_certificates: {path} is not usable as a trust anchor: {reason}")]
    Unusable { path: String, reason: String },
}

/// Installs ring as the process's rustls crypto provider, unless one is installed already.
pub fn install_crypto_provider() {
    // Err only when some provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `crate::tls::client_builder()`, after [`install_crypto_provider`]: the one way to start an
/// HTTP client in this workspace.
#[allow(clippy::disallowed_methods)]
pub fn client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

/// A client with reqwest's defaults, as `reqwest::Client::new()` would build it.
pub fn client() -> reqwest::Client {
    client_builder()
        .build()
        .expect("an HTTP client with reqwest's defaults builds (rustls with ring)")
}

/// The certificate authorities a unit trusts for HTTPS, loaded and checked at start.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    certificates: Vec<reqwest::Certificate>,
}

impl Trust {
    /// Reads every CA file (PEM, one or more certificates each). Empty `files`: the host's
    /// roots. Fails, naming the file, when one cannot be read or holds no usable certificate,
    /// so a wrong path stops the unit at start instead of every poll failing later.
    pub fn load(files: &[PathBuf]) -> Result<Self, TlsError> {
        let mut certificates = Vec::new();
        for file in files {
            let loaded = load_file(file)?;
            // reqwest checks the DER only when it builds a client: build one now.
            let alone = Self {
                certificates: loaded.clone(),
            };
            alone
                .client_builder()
                .build()
                .map_err(|error| TlsError::Unusable {
                    path: file.display().to_string(),
                    reason: error_chain(&error),
                })?;
            certificates.extend(loaded);
            tracing::info!(file = %file.display(), "trusting the CA certificates of this file for HTTPS");
        }
        Ok(Self { certificates })
    }

    /// Whether a CA file was named (else the host's roots are trusted).
    pub fn is_private(&self) -> bool {
        !self.certificates.is_empty()
    }

    /// A client builder that trusts these CAs only, or the host's roots when there are none.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let builder = client_builder();
        if self.certificates.is_empty() {
            builder
        } else {
            builder.tls_certs_only(self.certificates.iter().cloned())
        }
    }
}

fn load_file(path: &Path) -> Result<Vec<reqwest::Certificate>, TlsError> {
    let name = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: name.clone(),
        source,
    })?;
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| TlsError::Unusable {
            path: name.clone(),
            reason: error_chain(&error),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate { path: name });
    }
    Ok(certificates)
}

/// An error with its sources, `a: b: c` (reqwest's own message names only the outermost).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_is_named() {
        let error = Trust::load(&[PathBuf::from("/nonexistent/ca.pem")]).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("ca_certificates: cannot read /nonexistent/ca.pem: "),
            "{error}"
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let error = Trust::load(std::slice::from_ref(&path)).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "ca_certificates: {} holds no PEM certificate",
                path.display()
            )
        );
    }

    #[test]
    fn a_broken_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("ca.pem");
        std::fs::write(
            &path,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let error = Trust::load(std::slice::from_ref(&path)).unwrap_err();
        assert!(
            error.to_string().starts_with(&format!(
                "ca_certificates: {} is not usable",
                path.display()
            )),
            "{error}"
        );
    }

    #[test]
    fn no_files_trust_the_hosts_roots() {
        let trust = Trust::load(&[]).expect("no files load");
        assert!(!trust.is_private());
        trust.client_builder().build().expect("a client builds");
    }
}
