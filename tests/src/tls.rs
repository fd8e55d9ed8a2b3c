//! Throwaway certificates, made at run time by `rcgen` and never committed: a private CA and a
//! server certificate it signed for `127.0.0.1` and `localhost`, written as PEM files into a
//! directory that is removed when the [`TestPki`] is dropped.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A CA and one server certificate signed by it, as files.
#[derive(Debug)]
pub struct TestPki {
    dir: tempfile::TempDir,
    /// The CA's certificate (what clients trust).
    pub ca: PathBuf,
    /// The server's certificate alone, and its private key alone (PostgreSQL's files).
    pub server_certificate: PathBuf,
    pub server_key: PathBuf,
    /// The server's certificate followed by its key in one file (HAProxy's `crt`).
    pub server_pem: PathBuf,
    /// Another CA, which signed nothing here: trusting it alone trusts none of the above.
    pub other_ca: PathBuf,
}

impl TestPki {
    /// Makes a fresh CA and a server certificate for `127.0.0.1` and `localhost`.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hiscale-tls.")
            .tempdir()
            .expect("a directory for the test's certificates");
        let ca = certificate_authority("HiScale test CA");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server certificate parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let key = KeyPair::generate().expect("a server key");
        let certificate = params.signed_by(&key, &ca).expect("the CA signs");
        let other = certificate_authority("HiScale other test CA");

        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write a PEM file");
            path
        };
        Self {
            ca: write("ca.pem", &ca.pem()),
            server_certificate: write("server.crt", &certificate.pem()),
            server_key: write("server.key", &key.serialize_pem()),
            server_pem: write(
                "server.pem",
                &format!("{}{}", certificate.pem(), key.serialize_pem()),
            ),
            other_ca: write("other-ca.pem", &other.pem()),
            dir,
        }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("a CA key");
    CertifiedIssuer::self_signed(params, key).expect("a self-signed CA")
}

/// A client that trusts `ca` only, as a unit configured with it does.
pub fn client_trusting(ca: &Path) -> reqwest::Client {
    hiscale::tls::Trust::load(&[ca.to_owned()])
        .expect("the test CA loads")
        .client_builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("a client")
}
