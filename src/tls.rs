//! TLS client settings shared by every provider that speaks TLS (the RouterOS `api-ssl`
//! service, UISP's HTTPS API). Verification is always on: against the system's roots, a CA
//! file (the certificate's names must match the address), or a pinned SHA-256 fingerprint of
//! the peer's certificate (for the self-signed certificates routers usually carry).
//! `insecure: true` turns verification off and is warned about at load.
//!
//! A router with no certificate on `api-ssl` offers only anonymous Diffie-Hellman suites,
//! which rustls (rightly) refuses: give the router a certificate.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// A TLS client configuration: `None` verifies against the system's roots.
pub fn client_config(verify: Option<&TlsVerify>) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let Some(verify) = verify else {
        use rustls_platform_verifier::BuilderVerifierExt;
        return Ok(builder
            .with_platform_verifier()
            .map_err(|e| e.to_string())?
            .with_no_client_auth());
    };
    let config = match verify {
        TlsVerify::Ca(path) => {
            let mut roots = RootCertStore::empty();
            // A regular file of bounded size, read without following it into a FIFO or a
            // device; no error quotes its content.
            let pem = crate::untrusted::file::read(
                path,
                crate::untrusted::file::MAX_NAMED_FILE_BYTES,
                None,
            )
            .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("CA file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("CA file {} holds no certificate", path.display()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsVerify::Fingerprint(fp) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                fingerprint: Some(*fp),
                provider,
            }))
            .with_no_client_auth(),
        TlsVerify::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                fingerprint: None,
                provider,
            }))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// A TLS client configuration trusting the CA certificates of a PEM string (the lab's).
pub fn client_config_with_ca_pem(pem: &str) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The name to verify: the router's address as an IP address or a DNS name.
pub fn server_name(address: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(address.to_string()).map_err(|e| format!("{address:?}: {e}"))
}

/// Accepts exactly the certificate whose SHA-256 is pinned (or, with `None`, any); the
/// handshake's signatures are still checked, so the peer must hold the certificate's key.
#[derive(Debug)]
struct Pinned {
    fingerprint: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(want) = self.fingerprint else {
            return Ok(ServerCertVerified::assertion());
        };
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if got == want {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::General(format!(
                "the router's certificate has fingerprint {}, not the pinned {}",
                hex::encode(got),
                hex::encode(want)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// How a router's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsVerify {
    /// Against this CA (PEM file).
    Ca(PathBuf),
    /// The certificate's SHA-256 must be this.
    Fingerprint([u8; 32]),
    /// Not at all (lab only).
    Insecure,
}

/// Parses a SHA-256 fingerprint written as hex, with or without colons.
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let hexs: String = s
        .trim_start_matches("sha256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    hex::decode(hexs).ok()?.try_into().ok()
}
