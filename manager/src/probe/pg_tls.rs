//! TLS for the PostgreSQL probes: tokio-postgres's connector traits over the same rustls client settings the
//! proxy's pooled connections use (`hapool_tls::ServerTls`, built from `[cluster.tls] server_mode` and
//! `server_ca`), so a server that accepts only TLS, or a node whose certificate must be verified, is probed the
//! way it is served.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hapool_tls::ServerTls;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// libpq's sslmode for tokio-postgres, which knows only disable, prefer and require: plain text is allowed
/// (`prefer`) or not (`require`, and the verify modes, whose certificate check is `ServerTls`'s own). There is
/// no `ServerTls` for `disable`.
pub fn ssl_mode(tls: &ServerTls) -> SslMode {
    if tls.plain_allowed() {
        SslMode::Prefer
    } else {
        SslMode::Require
    }
}

/// A connector for one node (its server name is the node's host, as for the proxy's connections).
#[derive(Clone)]
pub struct Rustls(pub ServerTls);

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> MakeTlsConnect<S> for Rustls {
    type Stream = RustlsStream<S>;
    type TlsConnect = Rustls;
    type Error = io::Error;

    fn make_tls_connect(&mut self, _domain: &str) -> io::Result<Rustls> {
        Ok(self.clone())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> TlsConnect<S> for Rustls {
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = self.0.connector.connect(self.0.server_name.clone(), stream).await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// The TLS stream tokio-postgres reads and writes (no channel binding: SCRAM without `-PLUS`).
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
