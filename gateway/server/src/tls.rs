//! Certificates and the rustls server configuration.
//!
//! Each served domain has a certificate: the one configured under `[tls]`, or a self-signed
//! development certificate generated once and kept in `<data_dir>/certs/`. The certificate
//! is chosen by SNI, falling back to the first domain's for clients that send none.
//! [`Tls::reload`] reads them again (on SIGHUP) for the connections that follow.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use jabberwock_sasl::{ChannelBinding, ChannelBindingType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::Digest;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("certificate for {domain}: {source}")]
    Rustls { domain: String, source: rustls::Error },
    #[error("generating a certificate for {domain}: {source}")]
    Generate { domain: String, source: rcgen::Error },
}

/// TLS acceptors for the c2s listeners.
#[derive(Clone)]
pub struct Tls {
    /// For STARTTLS on 5222.
    pub starttls: TlsAcceptor,
    /// For direct TLS (XEP-0368), which advertises the `xmpp-client` ALPN protocol.
    pub direct: TlsAcceptor,
    /// For HTTPS (WebSocket, BOSH, the web client).
    pub https: TlsAcceptor,
    /// For STARTTLS on server streams (5269): asks the peer for its certificate, which
    /// SASL EXTERNAL checks against the domain the peer claims.
    pub s2s: TlsAcceptor,
    /// For direct TLS on server streams (XEP-0368 `xmpp-server`).
    pub s2s_direct: TlsAcceptor,
    certs: Arc<SniResolver>,
}

impl Tls {
    pub fn load(config: &Config) -> Result<Tls, TlsError> {
        let resolver = Arc::new(SniResolver { certs: RwLock::new(Certs::load(config)?) });
        let server_config = |alpn: &[&[u8]], peer_certificates: bool| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .expect("ring supports TLS 1.2 and 1.3");
            let builder = if peer_certificates {
                builder.with_client_cert_verifier(Arc::new(crate::s2s::tls::JudgedLater::new(&provider)))
            } else {
                builder.with_no_client_auth()
            };
            let mut c = builder.with_cert_resolver(resolver.clone());
            c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Arc::new(c)
        };
        Ok(Tls {
            starttls: TlsAcceptor::from(server_config(&[], false)),
            direct: TlsAcceptor::from(server_config(&[b"xmpp-client"], false)),
            https: TlsAcceptor::from(server_config(&[b"http/1.1"], false)),
            s2s: TlsAcceptor::from(server_config(&[], true)),
            s2s_direct: TlsAcceptor::from(server_config(&[b"xmpp-server"], true)),
            certs: resolver,
        })
    }

    /// Reads every certificate and key again; handshakes from now on use them. On any
    /// error the certificates in use stay.
    pub fn reload(&self, config: &Config) -> Result<(), TlsError> {
        let certs = Certs::load(config)?;
        *self.certs.certs.write().unwrap_or_else(|e| e.into_inner()) = certs;
        Ok(())
    }
}

/// The certificate of each served domain, and the first domain's for clients without SNI.
#[derive(Debug)]
struct Certs {
    by_domain: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl Certs {
    fn load(config: &Config) -> Result<Certs, TlsError> {
        let mut by_domain = HashMap::new();
        for domain in &config.domains {
            let key = match config.tls.get(domain) {
                Some(paths) => load_pair(domain, &paths.cert, &paths.key)?,
                None => dev_certificate(domain, &config.data_dir.join("certs"))?,
            };
            by_domain.insert(domain.clone(), Arc::new(key));
        }
        let default = by_domain[&config.domains[0]].clone();
        Ok(Certs { by_domain, default })
    }
}

#[derive(Debug)]
struct SniResolver {
    /// Read at each handshake, replaced by a reload.
    certs: RwLock<Certs>,
}

impl SniResolver {
    fn for_name(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let certs = self.certs.read().unwrap_or_else(|e| e.into_inner());
        name.and_then(|n| certs.by_domain.get(&n.to_ascii_lowercase())).unwrap_or(&certs.default).clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.for_name(hello.server_name()))
    }
}

fn load_pair(domain: &str, cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let pem_err = |path: &Path, reason: String| TlsError::Pem { path: path.into(), reason };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_err(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err(cert, "no certificate found".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(certs, key_der, &provider).map_err(|source| TlsError::Rustls { domain: domain.into(), source })
}

/// Loads `<dir>/<domain>.crt|.key`, generating a self-signed pair on first use.
fn dev_certificate(domain: &str, dir: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_path = dir.join(format!("{domain}.crt"));
    let key_path = dir.join(format!("{domain}.key"));
    if !cert_path.exists() || !key_path.exists() {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::Io { path, source }
        };
        // The data directory too, when this creates it: both hold private keys.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        let names = vec![domain.to_owned(), format!("*.{domain}")];
        let generated = rcgen::generate_simple_self_signed(names)
            .map_err(|source| TlsError::Generate { domain: domain.into(), source })?;
        write_private(&key_path, generated.signing_key.serialize_pem().as_bytes()).map_err(io_err(&key_path))?;
        std::fs::write(&cert_path, generated.cert.pem()).map_err(io_err(&cert_path))?;
        tracing::warn!(%domain, path = %cert_path.display(), "generated a self-signed development certificate");
    }
    load_pair(domain, &cert_path, &key_path)
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(data)
}

impl Tls {
    /// When each domain's certificate (its leaf) expires, in Unix time.
    pub fn expiries(&self) -> Vec<(String, i64)> {
        use x509_parser::prelude::*;
        let certs = self.certs.certs.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, i64)> = certs
            .by_domain
            .iter()
            .filter_map(|(domain, key)| {
                let (_, cert) = X509Certificate::from_der(key.cert.first()?.as_ref()).ok()?;
                Some((domain.clone(), cert.validity().not_after.timestamp()))
            })
            .collect();
        out.sort();
        out
    }

    /// The certificate and key of a served domain (the first domain's for any other).
    pub fn certified_key(&self, domain: &str) -> Arc<CertifiedKey> {
        self.certs.for_name(Some(domain))
    }

    /// The channel bindings a TLS connection offers SCRAM-*-PLUS.
    ///
    /// `tls-exporter` (RFC 9266) only over TLS 1.3, where the exporter is always safe;
    /// `tls-server-end-point` (RFC 5929) from the certificate SNI selected.
    pub fn channel_bindings<IO>(&self, stream: &TlsStream<IO>) -> Vec<ChannelBinding> {
        let (_, conn) = stream.get_ref();
        let mut out = Vec::new();
        if conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
            if let Ok(data) = conn.export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None) {
                out.push(ChannelBinding { kind: ChannelBindingType::TlsExporter, data });
            }
        }
        if let Some(leaf) = self.certs.for_name(conn.server_name()).cert.first() {
            out.push(ChannelBinding { kind: ChannelBindingType::TlsServerEndPoint, data: end_point_hash(leaf) });
        }
        out
    }
}

/// RFC 5929 §4.1: hash the certificate with its signature's hash, using SHA-256 for MD5
/// and SHA-1.
fn end_point_hash(cert: &CertificateDer<'_>) -> Vec<u8> {
    use x509_parser::prelude::*;
    let oid = X509Certificate::from_der(cert.as_ref())
        .map(|(_, c)| c.signature_algorithm.algorithm.to_id_string())
        .unwrap_or_default();
    match oid.as_str() {
        // ecdsa-with-SHA384, sha384WithRSAEncryption
        "1.2.840.10045.4.3.3" | "1.2.840.113549.1.1.12" => sha2::Sha384::digest(cert.as_ref()).to_vec(),
        // ecdsa-with-SHA512, sha512WithRSAEncryption
        "1.2.840.10045.4.3.4" | "1.2.840.113549.1.1.13" => sha2::Sha512::digest(cert.as_ref()).to_vec(),
        _ => sha2::Sha256::digest(cert.as_ref()).to_vec(),
    }
}
