//! TLS for nodes, with rustls (the `ring` provider: nothing to build in C).
//!
//! - Dialing `wss://`: the bundled web PKI roots (webpki-roots, so nothing is read from the
//!   system or fetched at run time) plus any root given with `--tls-ca FILE`, for private
//!   networks and tests. A certificate the roots do not vouch for fails the dial, and the
//!   reason shows where the link is listed (`/api/peers`).
//! - Serving: `--tls-cert FILE --tls-key FILE` (PEM) make the node's port speak HTTPS and
//!   WSS; see `server`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {why}")]
    Read { path: String, why: String },
    #[error("{path} holds no certificate (PEM, `-----BEGIN CERTIFICATE-----`)")]
    NoCertificate { path: String },
    #[error("{path}: {why}")]
    Rejected { path: String, why: String },
    #[error("TLS settings refused: {0}")]
    Config(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display().to_string();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Read {
            path: shown.clone(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: shown });
    }
    Ok(certs)
}

/// How this node checks the nodes it dials over `wss://`: the web PKI's roots and `extra`.
pub fn client_config(extra: &[impl AsRef<Path>]) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for path in extra {
        let path = path.as_ref();
        for cert in certificates(path)? {
            roots.add(cert).map_err(|e| TlsError::Rejected {
                path: path.display().to_string(),
                why: e.to_string(),
            })?;
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// What this node serves with: its certificate chain and key (PEM files).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Read {
        path: key.display().to_string(),
        why: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // HTTP/1.1 only: WebSockets upgrade over it, and it is what the node's server speaks.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
