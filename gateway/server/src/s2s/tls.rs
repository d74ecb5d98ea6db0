//! Certificates on server streams.
//!
//! TLS between servers is set up first and judged afterwards: the handshake checks that
//! each side holds the key of the certificate it shows, and then [`PeerTrust::verifies`]
//! decides whether that certificate is valid for the domain the peer claims (RFC 6120
//! §13.7.2, PKIX with the domain as reference identity). A valid certificate lets the peer
//! use SASL EXTERNAL; without one it has to use dialback, and an outbound connection to a
//! peer whose certificate does not verify goes on only if the operator marked the peer
//! `insecure`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

use crate::config::S2sConfig;
use crate::tls::Tls;

/// The certificate authorities peers' certificates must chain to.
pub struct PeerTrust {
    /// `None` when the trust store is empty: no certificate verifies.
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

impl PeerTrust {
    pub fn load(config: &S2sConfig) -> Result<PeerTrust, String> {
        let mut roots = RootCertStore::empty();
        match &config.trust_store {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("s2s.trust_store {}: {e}", path.display()))?;
                roots.add_parsable_certificates(certs);
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = if roots.is_empty() {
            tracing::warn!("no trusted certificate authorities: peers can only use dialback");
            None
        } else {
            Some(WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().map_err(|e| e.to_string())?)
        };
        Ok(PeerTrust { verifier })
    }

    /// Whether `chain` (leaf first) is a valid certificate for `domain`.
    pub fn verifies(&self, chain: &[CertificateDer<'_>], domain: &str) -> bool {
        self.check(chain, domain).is_ok()
    }

    /// Why `chain` is not a valid certificate for `domain`, if it is not.
    pub fn check(&self, chain: &[CertificateDer<'_>], domain: &str) -> Result<(), String> {
        let verifier = self.verifier.as_ref().ok_or("no trusted certificate authorities")?;
        let (leaf, intermediates) = chain.split_first().ok_or("no certificate")?;
        let name = ServerName::try_from(domain.to_owned()).map_err(|e| e.to_string())?;
        verifier.verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now()).map(|_| ()).map_err(|e| e.to_string())
    }
}

/// A TLS client for outbound server streams from `local`: it presents `local`'s
/// certificate (for the peer's SASL EXTERNAL) and leaves judging the peer's to
/// [`PeerTrust`].
pub fn connector(tls: &Tls, local: &str, direct_tls: bool) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = tls.certified_key(local);
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(JudgedLater::new(&provider)))
        .with_client_cert_resolver(Arc::new(OwnCertificate(key)));
    if direct_tls {
        config.alpn_protocols = vec![b"xmpp-server".to_vec()];
    }
    TlsConnector::from(Arc::new(config))
}

#[derive(Debug)]
struct OwnCertificate(Arc<CertifiedKey>);

impl ResolvesClientCert for OwnCertificate {
    fn resolve(&self, _root_hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Checks only the handshake signatures; the certificate is judged after the handshake.
/// As a client it accepts any server certificate; as a server it asks an inbound peer for
/// its certificate without requiring one.
#[derive(Debug)]
pub struct JudgedLater {
    algorithms: WebPkiSupportedAlgorithms,
}

impl JudgedLater {
    pub fn new(provider: &CryptoProvider) -> Self {
        JudgedLater { algorithms: provider.signature_verification_algorithms }
    }
}

impl ServerCertVerifier for JudgedLater {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for JudgedLater {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

