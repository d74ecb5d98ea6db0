//! Certificates and the rustls server configuration.
//!
//! Each served domain has a certificate: the one configured under `[tls]`, or a self-signed
//! development certificate generated once and kept in `<data_dir>/certs/`. The certificate
//! is chosen by SNI, falling back to the first domain's for clients that send none.
//!
//! `reload` reads them all again (SIGHUP, `jabberwock reload`): new connections get the new
//! ones, established connections keep theirs, so an ACME client's deploy hook can renew
//! without dropping anyone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        let resolver = Arc::new(SniResolver { current: RwLock::new(Arc::new(CertSet::load(config)?)) });
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
}

/// The certificates of the served domains, replaced as a whole by a reload.
#[derive(Debug)]
struct CertSet {
    by_domain: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl CertSet {
    fn load(config: &Config) -> Result<CertSet, TlsError> {
        let mut by_domain = HashMap::new();
        for domain in &config.domains {
            let key = match config.tls.get(domain) {
                Some(paths) => load_pair(domain, &paths.cert, &paths.key)?,
                None => dev_certificate(domain, &config.data_dir.join("certs"))?,
            };
            by_domain.insert(domain.clone(), Arc::new(key));
        }
        let default = by_domain[&config.domains[0]].clone();
        Ok(CertSet { by_domain, default })
    }
}

#[derive(Debug)]
struct SniResolver {
    current: RwLock<Arc<CertSet>>,
}

impl SniResolver {
    fn set(&self) -> Arc<CertSet> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// A served domain's certificate; a service's name (`conference.example.org`) gets its
    /// parent domain's, and any other name the first domain's.
    fn for_name(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let set = self.set();
        let name = name.map(str::to_ascii_lowercase);
        let parent = name.as_deref().and_then(|n| n.split_once('.')).map(|(_, parent)| parent);
        name.as_deref().into_iter().chain(parent).find_map(|n| set.by_domain.get(n)).unwrap_or(&set.default).clone()
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
    /// Reads every certificate and key again; on any error the ones in use stay.
    pub fn reload(&self, config: &Config) -> Result<(), TlsError> {
        let fresh = Arc::new(CertSet::load(config)?);
        *self.certs.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        Ok(())
    }

    /// When each served domain's certificate expires.
    pub fn expiries(&self) -> Vec<(String, SystemTime)> {
        expiries(&self.certs.set().by_domain)
    }

    /// The names a certificate in use does not cover (see [`uncovered_names`]).
    pub fn uncovered_names<'a>(&self, names: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>) -> Vec<String> {
        uncovered_names(&self.certs.set().by_domain, names)
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

/// `jabberwock cert import DIR`: for each served domain without files of its own under
/// `[tls]`, copies the certificate chain and key an ACME client keeps for it to
/// `<data_dir>/certs/<domain>.crt|.key`, where the server reads them (at start and at each
/// reload). DIR is certbot's directory (`/etc/letsencrypt`) or its `live/`: a domain's pair
/// is `live/<domain>/fullchain.pem` and `privkey.pem`, or any pair there whose certificate
/// covers the domain. A pair is checked (the key matches) before it replaces anything.
/// Returns what happened, a line per domain.
pub fn import(config: &Config, dir: &Path) -> Result<Vec<String>, TlsError> {
    let lineages: Vec<PathBuf> = [dir.to_path_buf(), dir.join("live")]
        .iter()
        .filter_map(|base| std::fs::read_dir(base).ok())
        .flatten()
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| path.join("fullchain.pem").is_file() && path.join("privkey.pem").is_file())
        .collect();
    let covers = |lineage: &PathBuf, domain: &str| {
        let Ok(mut chain) = CertificateDer::pem_file_iter(lineage.join("fullchain.pem")) else { return false };
        let Some(Ok(leaf)) = chain.next() else { return false };
        dns_names(&leaf).iter().any(|pattern| name_matches(pattern, domain))
    };
    let certs_dir = config.data_dir.join("certs");
    let mut report = Vec::new();
    for domain in &config.domains {
        if config.tls.contains_key(domain) {
            report.push(format!("{domain}: skipped, the configuration names its own files under [tls.\"{domain}\"]"));
            continue;
        }
        let named = lineages.iter().find(|l| l.file_name().is_some_and(|n| n.eq_ignore_ascii_case(domain.as_str())));
        let Some(lineage) = named.filter(|l| covers(l, domain)).or_else(|| lineages.iter().find(|l| covers(l, domain))) else {
            report.push(format!("{domain}: no certificate for it in {}", dir.display()));
            continue;
        };
        let (cert, key) = (lineage.join("fullchain.pem"), lineage.join("privkey.pem"));
        load_pair(domain, &cert, &key)?;
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::Io { path, source }
        };
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&certs_dir)
            .map_err(io_err(&certs_dir))?;
        for (from, to, private) in [(&key, format!("{domain}.key"), true), (&cert, format!("{domain}.crt"), false)] {
            let data = std::fs::read(from).map_err(io_err(from))?;
            // Written beside, then renamed: a reload never reads half a file.
            let (staged, target) = (certs_dir.join(format!(".{to}.new")), certs_dir.join(&to));
            if private { write_private(&staged, &data) } else { std::fs::write(&staged, &data) }.map_err(io_err(&staged))?;
            std::fs::rename(&staged, &target).map_err(io_err(&target))?;
        }
        report.push(format!("{domain}: imported {}", lineage.display()));
    }
    Ok(report)
}

/// Loads the certificates configured under `[tls]` (not the development ones, which the
/// server makes itself) and reports their problems, for `check-config`.
pub fn check_configured(config: &Config, warn_before: Duration) -> Result<Vec<String>, TlsError> {
    let mut by_domain = HashMap::new();
    for (domain, paths) in &config.tls {
        by_domain.insert(domain.clone(), Arc::new(load_pair(domain, &paths.cert, &paths.key)?));
    }
    let names = config.tls.keys().map(|d| (d.as_str(), vec![d.as_str()]));
    Ok(problems(&by_domain, names, warn_before))
}

fn expiries(by_domain: &HashMap<String, Arc<CertifiedKey>>) -> Vec<(String, SystemTime)> {
    let mut out: Vec<_> =
        by_domain.iter().filter_map(|(domain, key)| Some((domain.clone(), not_after(key.cert.first()?)?))).collect();
    out.sort();
    out
}

/// What an operator should fix: a certificate that expires within `warn_before` (or has
/// expired), or one that does not cover a name it is served for. `names` pairs each served
/// domain with the names served under its certificate (itself and its services).
fn problems<'a>(
    by_domain: &HashMap<String, Arc<CertifiedKey>>,
    names: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>,
    warn_before: Duration,
) -> Vec<String> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    for (domain, until) in expiries(by_domain) {
        match until.duration_since(now) {
            Err(_) => out.push(format!("the certificate for {domain} has expired")),
            Ok(left) if left < warn_before => {
                out.push(format!("the certificate for {domain} expires in {} days", left.as_secs() / 86_400))
            }
            Ok(_) => {}
        }
    }
    out.extend(uncovered_names(by_domain, names));
    out
}

/// For each served domain, the names served under its certificate (`names`: the domain
/// and its services) that the certificate does not cover.
fn uncovered_names<'a>(by_domain: &HashMap<String, Arc<CertifiedKey>>, names: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>) -> Vec<String> {
    let mut out = Vec::new();
    for (domain, served) in names {
        let Some(leaf) = by_domain.get(domain).and_then(|k| k.cert.first()) else { continue };
        let covered = dns_names(leaf);
        for name in served {
            if !covered.iter().any(|pattern| name_matches(pattern, name)) {
                out.push(format!("the certificate for {domain} does not cover {name} (it names {})", covered.join(", ")));
            }
        }
    }
    out
}

/// The end of a certificate's validity.
fn not_after(cert: &CertificateDer<'_>) -> Option<SystemTime> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let secs = u64::try_from(parsed.validity().not_after.timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The DNS names a certificate is valid for: its subjectAltName entries, or its subject's
/// common name when it has none.
fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else { return Vec::new() };
    let from_san: Vec<String> = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if !from_san.is_empty() {
        return from_san;
    }
    parsed.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_ascii_lowercase).collect()
}

/// RFC 6125 §6.4.3: a wildcard stands for exactly one leftmost label.
fn name_matches(pattern: &str, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(parent) => name.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_covers_one_label() {
        assert!(name_matches("example.org", "Example.ORG"));
        assert!(name_matches("*.example.org", "conference.example.org"));
        assert!(!name_matches("*.example.org", "example.org"));
        assert!(!name_matches("*.example.org", "a.b.example.org"));
        assert!(!name_matches("example.org", "conference.example.org"));
    }

    #[test]
    fn problems_name_the_missing_name_and_the_near_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["example.org".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("k.pem"), key.serialize_pem()).unwrap();
        let config = Config::parse(&format!(
            "domains = ['example.org']\ndata_dir = {:?}\n[tls.'example.org']\ncert = {:?}\nkey = {:?}",
            dir.path().display().to_string(),
            dir.path().join("c.pem").display().to_string(),
            dir.path().join("k.pem").display().to_string()
        ))
        .unwrap();
        let tls = Tls::load(&config).unwrap();
        let names = || [("example.org", vec!["example.org", "conference.example.org"])];
        let by_domain = &tls.certs.set().by_domain;
        assert_eq!(
            problems(by_domain, names(), Duration::from_secs(14 * 86_400)),
            ["the certificate for example.org does not cover conference.example.org (it names example.org)"]
        );
        let far = Duration::from_secs(200 * 365 * 86_400);
        let found = problems(by_domain, names(), far);
        assert!(found[0].starts_with("the certificate for example.org expires in "), "{found:?}");
    }
}
