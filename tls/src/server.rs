//! TLS to PostgreSQL servers (the proxy's pooled connections and the manager's probes), with libpq's
//! `sslmode` meanings: `prefer` and `require` encrypt without checking the certificate, `verify-ca` checks it
//! against `server_ca`, `verify-full` also checks that it names the host.

use std::sync::Arc;

use hapool_config::{ServerTlsMode, Tls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;

use crate::{file_error, TlsError};

/// How the proxy reaches one server over TLS.
#[derive(Clone)]
pub struct ServerTls {
    pub mode: ServerTlsMode,
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerTls({:?}, {:?})", self.mode, self.server_name)
    }
}

impl ServerTls {
    /// `None` for `server_mode = "disable"`.
    pub fn new(tls: &Tls, host: &str) -> Result<Option<ServerTls>, TlsError> {
        if tls.server_mode == ServerTlsMode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder =
            rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
        let chain = match (&tls.server_ca, tls.server_mode) {
            (Some(ca), ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca).map_err(|e| file_error(ca, e))? {
                    roots.add(cert.map_err(|e| file_error(ca, e))?)?;
                }
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsError::File { file: ca.display().to_string(), reason: e.to_string() })?;
                Some(webpki)
            }
            _ => None,
        };
        let check_name = tls.server_mode == ServerTlsMode::VerifyFull;
        let verifier = Arc::new(Verifier { provider, chain, check_name });
        let config = builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|e| TlsError::File { file: host.to_string(), reason: format!("not a host name: {e}") })?;
        Ok(Some(ServerTls { mode: tls.server_mode, connector: TlsConnector::from(Arc::new(config)), server_name }))
    }

    /// Whether a server that refuses TLS may be used in plain text.
    pub fn plain_allowed(&self) -> bool {
        self.mode == ServerTlsMode::Prefer
    }
}

/// Checks a server's certificate as the mode says: not at all (`prefer`, `require`: encryption without
/// authentication, as libpq does), its chain (`verify-ca`), or its chain and name (`verify-full`).
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    /// The CA check; `None` when the certificate is not checked.
    chain: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
