//! One client connection: startup and authentication, then forwarding between the client and a server
//! connection checked out for a transaction (transaction pooling) or for the whole session.

mod causal;
mod client;
pub mod expect;
mod flush;
mod params;
pub mod routing;
mod server;
pub mod startup;
pub mod statements;
mod unit;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hapool_config::ReadYourWrites;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::cancel::CancelSlot;
use super::codec::Frame;
use super::error::PgError;
use super::listener::{RouteState, Shared};
use super::msg::{self, Severity};
use super::pool::{Pool, Pooled};
use super::settings::Settings;
use super::tls::ClientStream;
use crate::stats::PoolStats;
use expect::Outstanding;
use routing::{Place, Why};
use startup::{handshake, Handshake};
use statements::Statement;

/// How long cleaning a server connection after its client left may take before it is closed instead.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Session {
    shared: Arc<Shared>,
    /// The settings in force when the client connected.
    settings: Arc<Settings>,
    /// From the settings in force when the client connected (a reload affects new clients).
    transaction_pooling: bool,
    client: ClientStream,
    cbuf: BytesMut,
    to_client: BytesMut,
    to_server: BytesMut,
    user: String,
    database: String,
    /// The primary's pool in the route the session last looked at.
    pool: Arc<Pool>,
    route: Arc<RouteState>,
    /// The pool of the server held (or last held): the primary's or a reader's.
    serving: Arc<Pool>,
    /// Readers' pools used so far in this route, by node.
    readers: Vec<Arc<Pool>>,
    /// Where the current (or last) unit of work went.
    last_place: Place,
    /// The client has written (for read_your_writes = "session").
    wrote: bool,
    /// The unit of work now held wrote on the primary (read_your_writes = "causal": read its position after).
    unit_writes: bool,
    /// read_your_writes = "causal" state (boxed: most sessions do not use it).
    causal: Option<Box<causal::Causal>>,
    /// A message held back until the reader serving the unit before it is done (it needs the primary).
    pending: Option<Frame>,
    server: Option<Pooled>,
    outstanding: Outstanding,
    /// The client's prepared statement names → proxy-wide statements (transaction pooling).
    statements: HashMap<String, Arc<Statement>>,
    /// Session parameters the client expects every server to have, and their fingerprint.
    /// Shared with the other clients of the pool that want the same values, copied on a client's first SET.
    desired: Arc<Vec<(String, String)>>,
    desired_hash: u64,
    /// The client's search_path (`None`: the server's default), and one being set by a running statement.
    search_path: Option<String>,
    pending_search_path: Option<String>,
    /// Whether the statement now running has failed (its ReadyForQuery follows).
    statement_failed: bool,
    key: (i32, i32),
    /// Where a cancel request for this client goes right now.
    cancel: Arc<CancelSlot>,
    /// Transaction status from the last ReadyForQuery: `I`dle, in `T`ransaction, or `E`rror.
    tx_status: u8,
    copy_in: bool,
    /// A unit was refused (no replica for a read): the client's messages up to its Sync are dropped.
    skip_to_sync: bool,
    /// Extended-protocol messages went to the server since the last Sync (an implicit transaction is open).
    unsynced: bool,
    max_message: usize,
}

/// What the client asked for with its last message.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Terminate,
}

enum Event {
    Client(std::io::Result<usize>),
    Server(std::io::Result<usize>),
    Shutdown,
    /// The topology no longer allows the node of the server connection held.
    Retired,
}

impl Session {
    /// Serves one client from its first byte to its last. Not an `async fn`: its arguments would be kept twice
    /// in the future (as given and as moved in: 80 bytes measured), and every idle client holds that future.
    #[allow(clippy::manual_async_fn)]
    pub fn run(shared: Arc<Shared>, socket: TcpStream, span: tracing::Span) -> impl Future<Output = ()> + Send {
        async move {
            let peer = socket.peer_addr().map(|a| a.ip()).unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
            // Boxed: startup runs once, and its state should not stay in every long-lived session future.
            let Some((mut session, greeted, _user_slot)) = Box::pin(Self::open(shared, socket, peer, &span)).await
            else {
                return;
            };
            let result = match greeted {
                Ok(()) => session.serve().await,
                Err(e) => Err(e),
            };
            if let Err(e) = &result {
                Box::pin(session.end_with(e, peer, &span)).await;
            }
            PoolStats::sub(&session.pool.stats.clients_active, 1);
            session.shared.cancels.unregister(session.key.0);
            Box::pin(session.return_server()).await;
        }
    }

    /// Tells the client why its session ends (when it can hear it) and logs it.
    async fn end_with(&mut self, e: &PgError, peer: std::net::IpAddr, span: &tracing::Span) {
        if e.reaches_client() {
            self.to_client.clear();
            msg::error(&mut self.to_client, Severity::Fatal, e.sqlstate(), &e.to_string(), None);
            let _ = self.client.write_all(&self.to_client).await;
        }
        let cluster = &self.settings.cluster.name;
        info!(parent: span, client = %peer, %cluster, user = %self.user, error = %e, side = ?e.side(), "session ended");
    }

    /// Startup, authentication, a pool, and the greeting: a session ready to serve (with how the greeting
    /// went), or `None` when the client was refused or only cancelled a query.
    async fn open(
        shared: Arc<Shared>,
        socket: TcpStream,
        peer: std::net::IpAddr,
        span: &tracing::Span,
    ) -> Option<(Session, Result<(), PgError>, UserSlot)> {
        let mut socket = ClientStream::Plain(socket);
        let settings = shared.settings();
        let timeout = settings.cluster.startup_timeout;
        let outcome = match tokio::time::timeout(timeout, handshake(&shared, &settings, &mut socket, peer)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(PgError::StartupTimeout { seconds: timeout.as_secs() }),
        };
        let (user, database, params, leftover) = match outcome {
            Ok(Handshake::Cancelled) => return None,
            Ok(Handshake::Ready { user, database, params, leftover }) => (user, database, params, leftover),
            Err(e) => {
                refuse(&mut socket, &e, span).await;
                return None;
            }
        };
        let auth = settings.users.get(&user)?;
        let limit = auth.max_clients.or(settings.cluster.max_client_connections_per_user);
        let Some(user_slot) = UserSlot::take(&shared, &user, limit) else {
            let limit = limit.unwrap_or_default();
            refuse(&mut socket, &PgError::TooManyClients { limit, scope: " for this user" }, span).await;
            return None;
        };
        let (pool, route) = match shared.primary_pool(&settings, auth, &database).await {
            Ok(found) => found,
            Err(e) => {
                refuse(&mut socket, &e, span).await;
                return None;
            }
        };
        let (key, cancel) = shared.cancels.register();
        let mut session = Session {
            max_message: settings.cluster.max_message_size.0 as usize,
            transaction_pooling: settings.transaction_pooling(),
            client: socket,
            cbuf: leftover,
            to_client: BytesMut::new(),
            to_server: BytesMut::new(),
            user,
            database,
            serving: pool.clone(),
            pool,
            route,
            readers: Vec::new(),
            last_place: Place::Primary(Why::NoSplit),
            wrote: false,
            unit_writes: false,
            causal: (settings.splits_reads() && settings.cluster.routing.read_your_writes == ReadYourWrites::Causal)
                .then(Box::default),
            pending: None,
            server: None,
            outstanding: Outstanding::default(),
            statements: HashMap::new(),
            desired: Arc::default(),
            desired_hash: 0,
            search_path: None,
            pending_search_path: None,
            statement_failed: false,
            key,
            cancel,
            tx_status: b'I',
            copy_in: false,
            skip_to_sync: false,
            unsynced: false,
            shared,
            settings,
        };
        PoolStats::add(&session.pool.stats.clients_active, 1);
        debug!(parent: span, user = %session.user, database = %session.database, "client authenticated");
        let greeted = session.greet(&params).await;
        Some((session, greeted, user_slot))
    }

    /// AuthenticationOk, the server's parameters (with the client's own where it set them), our cancel key.
    async fn greet(&mut self, startup_params: &[(String, String)]) -> Result<(), PgError> {
        let server_params = match self.pool.server_params() {
            Some(p) if self.transaction_pooling => p,
            _ => {
                self.checkout(Place::Primary(Why::NoSplit), true).await?;
                self.pool.server_params().unwrap_or_default()
            }
        };
        let desired = params::desired(&server_params, startup_params);
        self.desired_hash = params::fingerprint(&desired);
        self.desired = self.pool.shared_params(desired, self.desired_hash);
        if let Some(s) = self.server.as_mut() {
            // Checked out before the client's parameters were known: sync at the next checkout instead.
            s.conn().synced = None;
        }
        msg::auth_ok(&mut self.to_client);
        for (name, value) in server_params.iter() {
            let value = self.desired.iter().find(|(k, _)| k == name).map_or(value, |(_, v)| v);
            msg::parameter_status(&mut self.to_client, name, value);
        }
        msg::backend_key_data(&mut self.to_client, self.key.0, self.key.1);
        msg::ready_for_query(&mut self.to_client, b'I');
        self.flush().await?;
        self.maybe_release();
        Ok(())
    }

    /// The forwarding loop, until the client leaves or something fails.
    async fn serve(&mut self) -> Result<(), PgError> {
        loop {
            if self.process_client().await? == Flow::Terminate {
                return Ok(());
            }
            self.flush().await?;
            if self.unit_writes {
                self.note_write_position().await?;
            }
            self.maybe_release();
            if self.at_boundary() && self.shared.shutdown.is_cancelled() {
                return Err(PgError::Shutdown);
            }
            if self.pending.is_some() && self.server.is_none() {
                continue; // the unit the held-back message waited for is over
            }
            self.release_idle_buffers();
            let event = {
                let boundary = self.at_boundary();
                let held = self.server.is_some();
                let shutdown = self.shared.shutdown.cancelled();
                let retired = self.serving.retired.cancelled();
                let server = &mut self.server;
                let server_read = async {
                    match server.as_mut() {
                        Some(s) => {
                            let conn = s.conn();
                            conn.stream.read_buf(&mut conn.rbuf).await
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    n = self.client.read_into(&mut self.cbuf, &self.shared.buffers) => Event::Client(n),
                    n = server_read => Event::Server(n),
                    _ = shutdown, if boundary => Event::Shutdown,
                    _ = retired, if held => Event::Retired,
                }
            };
            match event {
                Event::Client(Ok(0)) => return Ok(()),
                Event::Client(Ok(n)) => PoolStats::add(&self.serving.stats.bytes_from_clients, n as u64),
                Event::Client(Err(e)) => return Err(PgError::ClientIo(e)),
                Event::Server(Ok(0)) => return Err(PgError::ServerIo(std::io::ErrorKind::UnexpectedEof.into())),
                Event::Server(Ok(n)) => {
                    PoolStats::add(&self.serving.stats.bytes_from_servers, n as u64);
                    self.process_server()?;
                }
                Event::Server(Err(e)) => return Err(PgError::ServerIo(e)),
                Event::Shutdown => return Err(PgError::Shutdown),
                Event::Retired => return Err(PgError::NodeGone { node: self.serving.node.0.clone() }),
            }
        }
    }

    fn server_conn(&mut self) -> &mut super::server::ServerConn {
        self.server.as_mut().expect("a server is checked out").conn()
    }

    /// Between transactions with no server held, a client's buffers go back to the listener's pool: thousands of
    /// idle clients then hold no buffer memory, and ordinary short transactions still allocate nothing.
    fn release_idle_buffers(&mut self) {
        if self.server.is_none() && self.cbuf.is_empty() && self.pending.is_none() {
            let pool = &self.shared.buffers;
            for buf in [&mut self.cbuf, &mut self.to_client, &mut self.to_server] {
                pool.reclaim(buf);
            }
        }
    }

    /// No transaction open and nothing in flight: a pooled connection could change hands here. Extended-protocol
    /// messages sent since the last Sync keep an implicit transaction open even when every answer is in (a
    /// client that Executes then Flushes, as cursor libraries do): not a boundary until the Sync.
    fn at_boundary(&self) -> bool {
        self.outstanding.is_empty() && self.tx_status == b'I' && !self.copy_in && !self.unsynced
    }

    /// Checks a server connection out where `place` says (a reader is chosen here, or the primary when none
    /// may serve) and queues the SETs that give it the client's session parameters. A unit that `executes`
    /// nothing (a Describe before the Bind/Execute that follow) keeps the reader of the unit before it.
    async fn checkout(&mut self, place: Place, executes: bool) -> Result<(), PgError> {
        if self.shared.generation() != self.route.route.generation || self.pool.is_retired() {
            Box::pin(self.repoint()).await?;
        }
        let (mut pool, mut place) = match place {
            Place::Reader => self.reader(executes)?,
            primary => (self.pool.clone(), primary),
        };
        self.shared.buffers.lend(&mut self.to_server);
        self.shared.buffers.lend(&mut self.to_client);
        let mut pooled = loop {
            let mut pooled = pool.acquire().await?;
            match self.caught_up(&pool, place, &mut pooled).await {
                Some(true) => break pooled,
                Some(false) => pooled.release(),
                None => drop(pooled), // closed: its state is unknown
            }
            (pool, place) = (self.pool.clone(), Place::Primary(Why::Causal));
        };
        self.shared.route_stats.record(place);
        self.wrote |= routing::writes(place);
        self.unit_writes = self.causal.is_some() && routing::writes(place);
        self.last_place = place;
        self.serving = pool;
        let conn = pooled.conn();
        let mut sql = String::new();
        if conn.synced != Some(self.desired_hash) {
            sql.extend(params::sync_sql(&self.desired, &conn.params));
            conn.synced = Some(self.desired_hash);
        }
        if conn.search_path.as_ref() != Some(&self.search_path) {
            match &self.search_path {
                Some(path) => sql.push_str(&format!("SET search_path = {path};")),
                None => sql.push_str("RESET search_path;"),
            }
            conn.search_path = Some(self.search_path.clone());
        }
        if !sql.is_empty() {
            msg::query(&mut self.to_server, &sql);
            self.outstanding.push(expect::Expect::InjectedQuery);
        }
        self.cancel.set(Some((conn.addr, conn.key.0, conn.key.1)));
        self.server = Some(pooled);
        Ok(())
    }

    /// The topology changed since this session last looked: take the primary's pool in the new one (waiting for
    /// a primary if there is none right now). The client's counters move with it.
    async fn repoint(&mut self) -> Result<(), PgError> {
        let Some(auth) = self.settings.users.get(&self.user) else {
            return Err(PgError::AuthFailed { user: self.user.clone() });
        };
        let (pool, route) = self.shared.primary_pool(&self.settings, auth, &self.database).await?;
        if !Arc::ptr_eq(&pool, &self.pool) {
            PoolStats::sub(&self.pool.stats.clients_active, 1);
            PoolStats::add(&pool.stats.clients_active, 1);
            self.pool = pool;
        }
        self.route = route;
        self.readers.clear();
        Ok(())
    }

    /// Whether the server connection held is on a node the topology no longer allows.
    fn holds_retired(&self) -> bool {
        self.server.is_some() && self.serving.is_retired()
    }

    /// In transaction pooling, gives the server connection back at a transaction boundary.
    fn maybe_release(&mut self) {
        if self.transaction_pooling && self.at_boundary() && self.to_server.is_empty() {
            if let Some(pooled) = self.server.take() {
                PoolStats::add(&self.serving.stats.transactions, 1);
                self.cancel.set(None);
                pooled.release();
            }
        }
    }

    /// After the client left: a server with nothing in flight is cleaned (ROLLBACK in transaction pooling,
    /// DISCARD ALL in session pooling) and reused; one still busy is closed.
    async fn return_server(&mut self) {
        let Some(mut pooled) = self.server.take() else { return };
        if !self.outstanding.is_empty() || self.copy_in || self.unsynced {
            return; // dropped: closed; the server aborts what it was doing.
        }
        let reset = match (self.transaction_pooling, self.tx_status) {
            (true, b'I') => None,
            (true, _) => Some("ROLLBACK"),
            (false, _) => Some("DISCARD ALL"),
        };
        if let Some(sql) = reset {
            let conn = pooled.conn();
            if tokio::time::timeout(RESET_TIMEOUT, server::run_reset(conn, sql)).await.map_or(true, |r| r.is_err()) {
                return;
            }
            if sql == "DISCARD ALL" {
                conn.prepared.clear();
            }
        }
        PoolStats::add(&self.serving.stats.transactions, 1);
        pooled.release();
    }
}

/// Tells a client why it is refused, then closes.
async fn refuse(socket: &mut ClientStream, e: &PgError, span: &tracing::Span) {
    if e.reaches_client() {
        let mut buf = BytesMut::new();
        msg::error(&mut buf, Severity::Fatal, e.sqlstate(), &e.to_string(), None);
        let _ = socket.write_all(&buf).await;
        let _ = socket.flush().await;
    }
    debug!(parent: span, error = %e, "connection refused");
}

/// One client counted against its user's limit while it lives.
struct UserSlot {
    shared: Arc<Shared>,
    user: String,
}

impl UserSlot {
    fn take(shared: &Arc<Shared>, user: &str, limit: Option<u32>) -> Option<UserSlot> {
        let mut counts = shared.per_user.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(user.to_string()).or_insert(0);
        if limit.is_some_and(|l| *count >= l) {
            return None;
        }
        *count += 1;
        Some(UserSlot { shared: shared.clone(), user: user.to_string() })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut counts = self.shared.per_user.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = counts.get_mut(&self.user) {
            *c = c.saturating_sub(1);
        }
    }
}
