//! TLS between clients and the proxy (rustls): the acceptor built from the cluster's certificate and key, and
//! the client stream that is either plain TCP or TLS.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use hapool_config::{ClientTlsMode, Tls};
use hapool_tls::file_error;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::io::poll_read_buf;

use super::auth::end_point::tls_server_end_point;
use super::buffers::BufferPool;

pub use hapool_tls::TlsError;

/// The TLS acceptor of a listener, with the SCRAM channel binding data of its certificate (`None`: its
/// signature names no hash, so SCRAM is offered without binding).
#[derive(Clone)]
pub struct ClientTls {
    pub acceptor: TlsAcceptor,
    pub end_point: Option<Vec<u8>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

/// The acceptor for `tls.client_mode = allow | require`; `None` when TLS is off.
pub fn acceptor(tls: &Tls) -> Result<Option<ClientTls>, TlsError> {
    if tls.client_mode == ClientTlsMode::Disable {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
        // Validation requires both; keep the proxy safe rather than panic if that ever changes.
        return Err(TlsError::File { file: "tls".into(), reason: "cert and key are required".into() });
    };
    let certs = read_certs(cert)?;
    let end_point = tls_server_end_point(&certs[0]);
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Some(ClientTls { acceptor: TlsAcceptor::from(Arc::new(config)), end_point }))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::File { file: path.display().to_string(), reason: "no certificate in the file".into() });
    }
    Ok(certs)
}

/// A connection in plain text or TLS (`T` is rustls's server or client stream).
#[derive(Debug)]
pub enum Stream<T> {
    Plain(TcpStream),
    Tls(Box<T>),
    /// Only while the TLS handshake owns the socket; any I/O on it fails.
    Detached,
}

/// A connection from a client.
pub type ClientStream = Stream<TlsStream<TcpStream>>;

/// A connection to a server.
pub type ServerStream = Stream<tokio_rustls::client::TlsStream<TcpStream>>;

impl<T> Stream<T> {
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Takes the plain socket out for a TLS handshake.
    fn take_plain(&mut self) -> io::Result<TcpStream> {
        match std::mem::replace(self, Stream::Detached) {
            Stream::Plain(tcp) => Ok(tcp),
            _ => Err(io::Error::other("TLS requested twice")),
        }
    }
}

impl ClientStream {
    /// Runs the TLS handshake on a plain connection and becomes the TLS stream.
    pub async fn upgrade(&mut self, tls: &ClientTls) -> io::Result<()> {
        let tcp = self.take_plain()?;
        *self = Stream::Tls(Box::new(tls.acceptor.accept(tcp).await?));
        Ok(())
    }
}

impl ServerStream {
    /// Runs the client side of the TLS handshake towards a server.
    pub async fn upgrade(&mut self, tls: &hapool_tls::ServerTls) -> io::Result<()> {
        let tcp = self.take_plain()?;
        *self = Stream::Tls(Box::new(tls.connector.connect(tls.server_name.clone(), tcp).await?));
        Ok(())
    }
}

/// Spare room reserved in a read buffer right before reading into it: small for an empty buffer (most client
/// messages are small, and such a buffer is kept between transactions), larger once messages are big.
const FIRST_READ: usize = 1024;
const READ_CHUNK: usize = 8 * 1024;

fn reserve_for_read(buf: &mut BytesMut, pool: &BufferPool) {
    pool.lend(buf);
    super::buffers::rewind(buf);
    if buf.capacity() - buf.len() < FIRST_READ / 4 {
        buf.reserve(if buf.is_empty() { FIRST_READ } else { READ_CHUNK });
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Stream<T> {
    /// Reads what the client sent into `buf`. On plain TCP it first waits for data without taking buffer space,
    /// so an idle client costs no buffer at all; TLS keeps its own buffers anyway.
    /// The buffer, when it has no memory, is lent by `pool` once data is there. A poll function, not a future:
    /// the session waits on it with no state of its own (an idle client's whole wait is a registered waker).
    pub fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        pool: &BufferPool,
    ) -> Poll<io::Result<usize>> {
        if let Stream::Plain(tcp) = self {
            if let Err(e) = ready!(tcp.poll_read_ready(cx)) {
                return Poll::Ready(Err(e));
            }
        }
        // A buffer with room already (a busy client keeps its own between transactions, and the session rewinds
        // it once its messages are read) needs nothing more; preparing it at every wait showed in callgrind.
        if buf.capacity() - buf.len() < FIRST_READ / 4 {
            reserve_for_read(buf, pool);
        }
        // A short read also clears the readiness, which saves the extra read that would only return EAGAIN
        // (one syscall per transaction, measured).
        poll_read_buf(Pin::new(self), cx, buf)
    }
}

fn detached() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection lost during the TLS handshake")
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }
}
