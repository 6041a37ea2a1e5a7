//! Sending what is buffered: to the server while still reading its answers (a client's large pipeline must not
//! deadlock the proxy against a server that stops reading while nobody reads what it sends), then to the
//! client.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::io::poll_read_buf;

use super::Session;
use crate::pg::error::PgError;
use crate::pg::server::SERVER_READ;
use crate::stats::PoolStats;

enum Progress {
    Wrote(usize),
    Read(usize),
}

impl Session {
    pub(super) async fn flush(&mut self) -> Result<(), PgError> {
        let mut written = 0;
        while written < self.to_server.len() {
            let Some(pooled) = self.server.as_mut() else { break };
            let conn = pooled.conn();
            let pending = &self.to_server[written..];
            let progress = poll_fn(|cx| {
                match Pin::new(&mut conn.stream).poll_write(cx, pending) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => return Poll::Ready(Ok(Progress::Wrote(n))),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
                // The server is not taking more: take what it sends meanwhile.
                if conn.rbuf.capacity() - conn.rbuf.len() < 4096 {
                    conn.rbuf.reserve(SERVER_READ);
                }
                match poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.rbuf) {
                    Poll::Ready(Ok(0)) => Poll::Ready(Err(std::io::ErrorKind::UnexpectedEof.into())),
                    Poll::Ready(Ok(n)) => Poll::Ready(Ok(Progress::Read(n))),
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await
            .map_err(PgError::ServerIo)?;
            match progress {
                Progress::Wrote(n) => written += n,
                Progress::Read(n) => {
                    PoolStats::add(&self.serving.stats.bytes_from_servers, n as u64);
                    self.process_server()?;
                    self.write_to_client().await?;
                }
            }
        }
        if let Some(pooled) = self.server.as_mut().filter(|_| !self.to_server.is_empty()) {
            let stream = &mut pooled.conn().stream;
            if stream.is_tls() {
                stream.flush().await.map_err(PgError::ServerIo)?;
            }
        }
        self.to_server.clear();
        self.write_to_client().await
    }

    async fn write_to_client(&mut self) -> Result<(), PgError> {
        if !self.to_client.is_empty() {
            self.client.write_all(&self.to_client).await.map_err(PgError::ClientIo)?;
            if self.client.is_tls() {
                self.client.flush().await.map_err(PgError::ClientIo)?;
            }
            self.to_client.clear();
        }
        Ok(())
    }
}
