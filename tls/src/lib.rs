//! TLS settings shared by the proxy and the manager (rustls): why a certificate or key cannot be used, and the
//! client side towards database servers (`server`), so that probes and pooled connections reach a server the
//! same way.

mod server;

pub use server::ServerTls;

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error("certificate and key do not fit together: {0}")]
    Config(#[from] rustls::Error),
}

/// A file that cannot be read or parsed, named.
pub fn file_error(path: &std::path::Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File { file: path.display().to_string(), reason: e.to_string() }
}
