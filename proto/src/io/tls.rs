//! TLS set-up: the certificate chain and key from PEM files, TLS 1.2 and 1.3 only, with
//! rustls on the `ring` provider.

use std::path::Path;
use std::sync::Arc;

use futures_rustls::{TlsAcceptor, TlsConnector};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ConfigError;

/// Builds the acceptor from `GSMTP_PUB_KEY` (chain) and `GSMTP_PRV_KEY` (key). Errors name
/// the key whose file is at fault.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ConfigError> {
    let bad = |k: &str, what: String| ConfigError {
        key: k.into(),
        message: what,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect)
        .map_err(|e| {
            bad(
                "GSMTP_PUB_KEY",
                format!("cannot read certificates from {}: {e}", cert.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(bad(
            "GSMTP_PUB_KEY",
            format!("no certificate in {}", cert.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        bad(
            "GSMTP_PRV_KEY",
            format!("cannot read a private key from {}: {e}", key.display()),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad("GSMTP_PUB_KEY", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            bad(
                "GSMTP_PRV_KEY",
                format!("the key does not fit the certificate: {e}"),
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A TLS client for the destinations that talk to a server over `https` (TLS 1.2 and 1.3,
/// `ring`): trusting the system's certificate authorities and, when `ca` is set, the ones
/// in that PEM file (a private CA). Errors name `key`.
pub(crate) fn connector(ca: Option<&Path>, key: &str) -> Result<TlsConnector, ConfigError> {
    let bad = |message: String| ConfigError {
        key: key.into(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    // The system's store may be missing (a minimal container): then only `ca` is trusted.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(ca) = ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
            .and_then(Iterator::collect)
            .map_err(|e| {
                bad(format!(
                    "cannot read certificates from {}: {e}",
                    ca.display()
                ))
            })?;
        if certs.is_empty() {
            return Err(bad(format!("no certificate in {}", ca.display())));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| bad(format!("cannot use a certificate of {}: {e}", ca.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
