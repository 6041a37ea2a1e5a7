//! One connection from the proxy to a PostgreSQL server: its socket, read buffer, reported parameters,
//! cancel key, the prepared statements it holds, and what a client left on it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::auth::backend::{login, next};
use super::auth::Credentials;
use super::clock::coarse_now;
use super::error::PgError;
use super::session::leftovers::Owned;
use super::session::unreported::Values;
use super::tls::ServerStream;
use hapool_tls::ServerTls;

/// The room a server connection reads into.
pub const SERVER_READ: usize = 16 * 1024;

/// Where and as whom to open server connections.
#[derive(Debug)]
pub struct ServerTarget {
    pub addr: SocketAddr,
    pub user: String,
    pub database: String,
    pub credentials: Credentials,
    pub connect_timeout: Duration,
    /// Keepalive of the connections (`[cluster.tcp]`; the user timeout is the clients' only).
    pub tcp: hapool_config::Tcp,
    /// TLS to the server (`server_mode`), `None` for plain text. Replaced when a reload reads rotated
    /// certificate files (`server_ca`): connections opened after it use the new one.
    pub tls: RwLock<Option<ServerTls>>,
}

impl ServerTarget {
    /// The TLS that connections opened from now on use.
    pub fn set_tls(&self, tls: Option<ServerTls>) {
        *self.tls.write().unwrap_or_else(|e| e.into_inner()) = tls;
    }

    fn current_tls(&self) -> Option<ServerTls> {
        self.tls.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A logged-in server connection, idle at ReadyForQuery.
#[derive(Debug)]
pub struct ServerConn {
    pub stream: ServerStream,
    pub rbuf: BytesMut,
    pub addr: SocketAddr,
    /// The server's current values of reported parameters (ParameterStatus).
    pub params: HashMap<String, String>,
    /// The server's BackendKeyData, for cancel requests.
    pub key: (i32, i32),
    pub prepared: PreparedSet,
    /// When it was opened (`coarse_now`).
    pub created: Duration,
    /// Set when the connection must not be reused (protocol state unknown).
    pub broken: bool,
    /// The fingerprint of the client parameters this connection was last brought to (see `params`); `None`
    /// after anything may have reset them.
    pub synced: Option<u64>,
    /// The values of unreported parameters (search_path, statement_timeout…) a client set on this connection:
    /// empty for the server's defaults, `None` unknown (a statement that may have set one failed, one was set
    /// inside a transaction, or in a way the proxy does not read: `set_config`, a DO block…).
    pub unreported: Option<Values>,
    /// Which prepared statements the server has is not known for sure (a Close sent because a drop of every
    /// statement may have run first was skipped after an error): every Parse is preceded by a Close until the
    /// connection, marked broken too, is closed.
    pub statements_uncertain: bool,
    /// Session state of one client's that the proxy does not follow (see `session::leftovers`): another
    /// client gets the connection cleared of it first. `None`: nothing beyond what the proxy follows.
    pub leftovers: Option<Owned>,
    /// The client (its key) whose Parse made the server's unnamed statement last (transaction pooling): another
    /// client's Bind or Describe of the unnamed statement is sent as one of a name no statement has.
    pub unnamed_owner: Option<(i32, i32)>,
}

impl ServerConn {
    pub async fn connect(target: &ServerTarget, max_prepared: usize) -> Result<ServerConn, PgError> {
        let addr = target.addr;
        let connect = TcpStream::connect(addr);
        let tcp = tokio::time::timeout(target.connect_timeout, connect)
            .await
            .map_err(|_| PgError::ServerConnect { addr, source: std::io::ErrorKind::TimedOut.into() })?
            .map_err(|source| PgError::ServerConnect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        if let Err(e) = super::tcp::apply(&tcp, &target.tcp) {
            tracing::debug!(error = %e, %addr, "TCP options not set on a server connection");
        }
        let mut stream = ServerStream::Plain(tcp);
        let mut rbuf = BytesMut::with_capacity(SERVER_READ);
        let params =
            [("user", target.user.as_str()), ("database", target.database.as_str()), ("application_name", "hapool")];
        let tls = target.current_tls();
        let greet = async {
            if let Some(tls) = &tls {
                negotiate_tls(&mut stream, tls, addr).await?;
            }
            login(&mut stream, &mut rbuf, addr, &params, &target.user, &target.credentials).await?;
            let mut reported = HashMap::new();
            let mut key = (0, 0);
            loop {
                match next(&mut stream, &mut rbuf).await? {
                    Message::ParameterStatus(p) => {
                        let name = p.name().map_err(|e| PgError::ServerProtocol(e.to_string()))?;
                        let value = p.value().map_err(|e| PgError::ServerProtocol(e.to_string()))?;
                        reported.insert(name.to_string(), value.to_string());
                    }
                    Message::BackendKeyData(k) => key = (k.process_id(), k.secret_key()),
                    Message::ReadyForQuery(_) => return Ok((reported, key)),
                    Message::NoticeResponse(_) => {}
                    Message::ErrorResponse(_) => {
                        return Err(PgError::ServerLogin { addr, message: "error after authentication".into() })
                    }
                    _ => return Err(PgError::ServerProtocol("unexpected message after authentication".into())),
                }
            }
        };
        let (params, key) = tokio::time::timeout(target.connect_timeout, greet)
            .await
            .map_err(|_| PgError::ServerConnect { addr, source: std::io::ErrorKind::TimedOut.into() })??;
        Ok(ServerConn {
            stream,
            rbuf,
            addr,
            params,
            key,
            prepared: PreparedSet::new(max_prepared),
            created: coarse_now(),
            broken: false,
            synced: None,
            unreported: Some(Values::new()),
            leftovers: None,
            statements_uncertain: false,
            unnamed_owner: None,
        })
    }
}

impl ServerConn {
    /// Whether an idle connection is still usable: the server has neither closed it nor sent anything unasked
    /// (a FATAL after pg_terminate_backend, a shutdown notice). Costs one non-blocking peek (one syscall per
    /// checkout of an idle connection).
    pub fn is_usable(&mut self) -> bool {
        if !self.rbuf.is_empty() || self.broken {
            return false;
        }
        match &self.stream {
            super::tls::Stream::Plain(tcp) => {
                use nix::sys::socket::{recv, MsgFlags};
                use std::os::fd::AsRawFd;
                let mut probe = [0u8; 1];
                let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
                matches!(recv(tcp.as_raw_fd(), &mut probe, flags), Err(nix::errno::Errno::EAGAIN))
            }
            // A TLS record may carry nothing for us (session tickets); such connections are not probed.
            _ => true,
        }
    }
}

/// Sends SSLRequest and, when the server agrees, runs the TLS handshake.
async fn negotiate_tls(stream: &mut ServerStream, tls: &ServerTls, addr: SocketAddr) -> Result<(), PgError> {
    let mut request = [0u8; 8];
    request[..4].copy_from_slice(&8i32.to_be_bytes());
    request[4..].copy_from_slice(&super::codec::SSL_REQUEST.to_be_bytes());
    stream.write_all(&request).await.map_err(PgError::ServerIo)?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await.map_err(PgError::ServerIo)?;
    match answer[0] {
        b'S' => stream
            .upgrade(tls)
            .await
            .map_err(|e| PgError::ServerLogin { addr, message: format!("TLS handshake failed: {e}") }),
        b'N' if tls.plain_allowed() => Ok(()),
        b'N' => Err(PgError::ServerLogin { addr, message: "the server does not accept TLS".into() }),
        other => Err(PgError::ServerProtocol(format!("unexpected answer {other:#04x} to SSLRequest"))),
    }
}

/// The prepared statements a server connection holds, least recently used evicted first.
#[derive(Debug)]
pub struct PreparedSet {
    capacity: usize,
    tick: u64,
    names: HashMap<Arc<str>, u64>,
}

impl PreparedSet {
    pub fn new(capacity: usize) -> PreparedSet {
        PreparedSet { capacity: capacity.max(1), tick: 0, names: HashMap::new() }
    }

    /// Whether the server holds `name`; marks it used.
    pub fn touch(&mut self, name: &str) -> bool {
        self.tick += 1;
        match self.names.get_mut(name) {
            Some(t) => {
                *t = self.tick;
                true
            }
            None => false,
        }
    }

    /// Records `name` as prepared; returns the statement to close first when the set is full.
    pub fn insert(&mut self, name: Arc<str>) -> Option<Arc<str>> {
        self.tick += 1;
        let evicted = if self.names.len() >= self.capacity && !self.names.contains_key(&name) {
            let oldest = self.names.iter().min_by_key(|(_, t)| **t).map(|(n, _)| n.clone());
            oldest.inspect(|n| {
                self.names.remove(n);
            })
        } else {
            None
        };
        self.names.insert(name, self.tick);
        evicted
    }

    /// Records `name` as prepared once the server said so, without evicting: the set may hold one more than
    /// its capacity until the next `insert` (which closes the oldest).
    pub fn confirm(&mut self, name: &Arc<str>) {
        if !self.names.contains_key(name) {
            self.tick += 1;
            self.names.insert(name.clone(), self.tick);
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.names.remove(name);
    }

    pub fn clear(&mut self) {
        self.names.clear();
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_statement_is_evicted() {
        let mut set = PreparedSet::new(2);
        assert_eq!(set.insert("a".into()), None);
        assert_eq!(set.insert("b".into()), None);
        assert!(set.touch("a"));
        assert_eq!(set.insert("c".into()).as_deref(), Some("b"));
        assert!(set.touch("a") && set.touch("c") && !set.touch("b"));
        assert_eq!(set.len(), 2);
        assert_eq!(set.insert("c".into()), None, "re-inserting does not evict");
    }
}
