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

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

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

/// ring, the crypto provider of every TLS connection of the process.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process's rustls crypto provider, unless one is installed already.
pub fn install_crypto_provider() {
    // Err only when some provider is installed already, which is as good.
    let _ = provider().as_ref().clone().install_default();
}

/// reqwest's builder, after [`install_crypto_provider`], with no TLS configuration chosen.
///
/// It asks for no compression: only the poller does (`SourceConfig::compress`), where chunks
/// cross links; everything else (health checks, the bench's load clients, the tests) sees
/// bodies as the unit renders them unless it turns `gzip` on itself.
#[allow(clippy::disallowed_methods)]
fn plain_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder().gzip(false)
}

/// The one way to start an HTTP client in this workspace: reqwest's builder, trusting the
/// host's roots for HTTPS.
///
/// The host's roots are read once per process: reading them (every file of `/etc/ssl/certs`)
/// took about 70 ms per client in a debug build, and the tests build clients in loops.
pub fn client_builder() -> reqwest::ClientBuilder {
    static HOST_ROOTS: OnceLock<Option<ClientConfig>> = OnceLock::new();
    let config = HOST_ROOTS.get_or_init(|| match host_roots() {
        Ok(config) => Some(config),
        Err(error) => {
            tracing::warn!(%error, "cannot read the host's root certificates; HTTPS to public CAs fails");
            None
        }
    });
    match config {
        Some(config) => plain_builder().tls_backend_preconfigured(config.clone()),
        None => plain_builder(),
    }
}

/// A TLS configuration that trusts the host's roots (`rustls-platform-verifier`: on Linux the
/// system's certificate files, read now; no network).
fn host_roots() -> Result<ClientConfig, rustls::Error> {
    let provider = provider();
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())?;
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
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
    /// Trusting only the named CAs; `None`: the host's roots.
    private: Option<ClientConfig>,
}

impl Trust {
    /// Reads every CA file (PEM, one or more certificates each). Empty `files`: the host's
    /// roots. Fails, naming the file, when one cannot be read or holds no usable certificate,
    /// so a wrong path stops the unit at start instead of every poll failing later.
    pub fn load(files: &[PathBuf]) -> Result<Self, TlsError> {
        if files.is_empty() {
            return Ok(Self::default());
        }
        let mut roots = RootCertStore::empty();
        for file in files {
            let name = file.display().to_string();
            let unusable = |reason: String| TlsError::Unusable {
                path: name.clone(),
                reason,
            };
            let pem = std::fs::read(file).map_err(|source| TlsError::Read {
                path: name.clone(),
                source,
            })?;
            let certificates = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| unusable(error.to_string()))?;
            if certificates.is_empty() {
                return Err(TlsError::NoCertificate { path: name });
            }
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|error| unusable(error.to_string()))?;
            }
            tracing::info!(file = %name, "trusting the CA certificates of this file for HTTPS");
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Unusable {
                path: files
                    .iter()
                    .map(|file| file.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                reason: error.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            private: Some(config),
        })
    }

    /// Whether a CA file was named (else the host's roots are trusted).
    pub fn is_private(&self) -> bool {
        self.private.is_some()
    }

    /// A client builder that trusts these CAs only, or the host's roots when there are none.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        match &self.private {
            Some(config) => plain_builder().tls_backend_preconfigured(config.clone()),
            None => client_builder(),
        }
    }
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
    #[test]
    fn clients_share_the_hosts_roots_read_once() {
        let _ = super::client();
        let started = std::time::Instant::now();
        for _ in 0..20 {
            let _ = super::client();
        }
        let each = started.elapsed() / 20;
        // Reading the roots took about 70 ms in a debug build; a client alone takes far less.
        assert!(
            each < std::time::Duration::from_millis(20),
            "{each:?} per client"
        );
    }

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
