//! One client connection: startup and authentication, then forwarding between the client and a server
//! connection checked out for a transaction (transaction pooling) or for the whole session.

mod causal;
mod checkout;
mod client;
mod defaults;
pub mod expect;
mod flush;
mod follow;
mod idle;
pub mod leftovers;
mod lookup;
mod params;
mod park;
mod renaming;
pub mod routing;
mod server;
mod settled;
pub mod startup;
pub mod startup_params;
#[doc(hidden)] // public for the fuzzer
pub mod statement_words;
pub mod statements;
mod unit;
pub mod unreported;
mod wait;

pub use follow::text_drops_all;

use std::future::{poll_fn, Future};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hapool_config::ReadYourWrites;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::cancel::CancelSlot;
use super::error::PgError;
use super::listener::{RouteState, Shared};
use super::msg::{self, Severity};
use super::parking::Epoch;
use super::pool::{Pool, Pooled};
use super::settings::Settings;
use super::tls::ClientStream;
use crate::stats::PoolStats;
use expect::Outstanding;
use routing::{Place, Why};
use startup::{handshake, Handshake};
use statements::Statements;
use wait::Event;

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
    /// The primary's pool in the route the session last looked at (its target names the client's user and
    /// database: see `user()`).
    pool: Arc<Pool>,
    route: Arc<RouteState>,
    /// The pool of the server held (or last held): the primary's or a reader's.
    serving: Arc<Pool>,
    /// Readers' pools used so far in this route, by node. Boxed: only clients of a cluster with replicas
    /// have any, and 16 bytes more put the session's state in the next allocation size (`tests/session_size.rs`).
    #[allow(clippy::box_collection)]
    readers: Option<Box<Vec<Arc<Pool>>>>,
    /// Where the current (or last) unit of work went.
    last_place: Place,
    /// The client has written (for read_your_writes = "session").
    wrote: bool,
    /// The unit of work now held wrote on the primary (read_your_writes = "causal": read its position after).
    unit_writes: bool,
    /// read_your_writes = "causal" state (boxed: most sessions do not use it).
    causal: Option<Box<causal::Causal>>,
    /// A message held back: until the reader serving the unit before it is done (it needs the primary), until
    /// an earlier batch says what a statement name it uses stands for, or, as the first of a batch of reads,
    /// until the batch's end comes. Boxed: rare, and every idle session would carry its room.
    pending: Option<Box<unit::Held>>,
    server: Option<Pooled>,
    outstanding: Outstanding,
    /// The client's prepared statement names → proxy-wide statements (transaction pooling).
    statements: Statements,
    /// Session parameters the client expects every server to have, and their fingerprint.
    /// Shared with the other clients of the pool that want the same values, copied on a client's first SET.
    desired: Arc<Vec<(String, String)>>,
    desired_hash: u64,
    /// What routing reads of `desired` (see `unit::routing_context`), kept with it rather than looked up in it
    /// for every unit.
    desired_flags: unit::DesiredFlags,
    /// The client's values of unreported parameters once it set one (boxed: few clients do).
    unreported: Option<Box<unreported::Unreported>>,
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
    /// The server answered an extended-protocol message with an error before the client sent the batch's Sync:
    /// the server ignores everything up to that Sync, and the proxy drops it (no answer is owed for it, none
    /// is given here, and nothing it would change is taken as changed).
    server_skipping: bool,
    /// A server connection given up at a boundary while a cancel of the client's was being forwarded to it
    /// (`CancelSlot::release`): kept out of the pool, unused, until the wait reports that the cancel is through
    /// (`Event::Forwarded`). Boxed: rare.
    held_for_cancel: Option<Box<Pooled>>,
    /// Extended-protocol messages went to the server since the last Sync (an implicit transaction is open).
    unsynced: bool,
    /// Which socket the next wait looks at first (alternates, so neither side can starve the other).
    server_first: bool,
    peer: std::net::IpAddr,
    /// The session's span when debug logging is on.
    span: Option<Box<tracing::Span>>,
    /// The parking epoch at which the client's present idle wait began (`None` while it has work in flight).
    idle_since: Option<Epoch>,
    /// The last parking epoch the wait looked at (a new one means: check idleness).
    seen_epoch: Epoch,
    /// Park at the next idle wait without waiting for the clock (see `idle::verdict`).
    park_soon: bool,
    /// Came back from a long park: `park_soon` once the client's message is in.
    back_from_park: bool,
    /// The parking epoch at which it last parked.
    parked_at: Epoch,
    /// Cleared when parking refused this session once (it then keeps its task).
    may_park: bool,
    /// The cancel slot holds this task's waker (see `wait`).
    watching: bool,
    /// The unnamed statement is `DISCARD ALL` or `DEALLOCATE ALL` (the last unnamed Parse said so).
    unnamed_drops_all: bool,
    /// Portals bound to `DISCARD ALL` or `DEALLOCATE ALL`: their Execute drops every prepared statement
    /// (`Expect::ExecuteDropAll`). Boxed: almost no client has one.
    #[allow(clippy::box_collection)]
    drop_portals: Option<Box<Vec<Box<str>>>>,
    /// SETs the session follows that come through the extended protocol (boxed: few clients send one).
    extended_sets: Option<Box<unreported::ExtendedSets>>,
    /// Followed SETs that succeeded inside a transaction block, held until it ends (`settled`; boxed: rare).
    in_transaction: Option<Box<unreported::InTransaction>>,
}

/// How serving a client stopped (short of an error).
enum Served {
    /// The client said goodbye or closed.
    Left,
    /// The client is idle and may park.
    Park,
}

/// What the client asked for with its last message.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Terminate,
}

impl Session {
    /// Serves one client from its first byte to its last, counted against the listener's client limit (the
    /// listener admitted it) until it ends. Not an `async fn`: its arguments would be kept in the future for
    /// the whole session, and every idle client holds that future.
    pub fn run(shared: Arc<Shared>, socket: TcpStream) -> impl Future<Output = ()> + Send {
        // Boxed: startup runs once, and its state should not stay in every long-lived session future.
        let opening = Box::pin(Self::open(shared, socket));
        async move {
            if let Some(session) = opening.await {
                Self::drive(session).await;
            }
        }
    }

    /// Serves the client until it leaves or something fails, or until it parks: then the task ends, and the
    /// parking gives the client a new one when it sends something (`resume`).
    async fn drive(mut self: Box<Self>) {
        let result = loop {
            match self.serve().await {
                Ok(Served::Park) => match self.park() {
                    park::Parked::Yes => return,
                    park::Parked::No(back) => self = back,
                    park::Parked::Lost(back, e) => {
                        self = back;
                        break Err(PgError::ClientIo(e));
                    }
                },
                Ok(Served::Left) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        Box::pin(self.finish(result)).await;
    }

    /// After the last message: tells the client why its session ends (when it can hear it and it did not end
    /// by its own choice), logs it, and gives the server connection back.
    async fn finish(&mut self, result: Result<(), PgError>) {
        if let Err(e) = &result {
            if e.reaches_client() {
                self.to_client.clear();
                msg::error(&mut self.to_client, Severity::Fatal, e.sqlstate(), &e.to_string(), None);
                let _ = self.client.write_all(&self.to_client).await;
            }
            let (cluster, peer) = (&self.settings.cluster.name, self.peer);
            let parent = self.span.as_ref().and_then(|s| s.id());
            info!(parent: parent, client = %peer, %cluster, user = %self.user(), error = %e, side = ?e.side(), "session ended");
        }
        PoolStats::sub(&self.pool.stats.clients_active, 1);
        self.shared.cancels.unregister(self.key.0);
        self.return_server().await;
    }

    /// Startup, authentication, a pool, and the greeting: a session ready to serve, or `None` when the client
    /// was refused, only cancelled a query, or could not be greeted.
    /// Boxed: the task's own future then holds a pointer, and parking hands the box over as it is.
    async fn open(shared: Arc<Shared>, socket: TcpStream) -> Option<Box<Session>> {
        let admission = Admission(Some(shared.clone()));
        let peer = socket.peer_addr().map(|a| a.ip()).unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        let mut socket = ClientStream::Plain(socket);
        let settings = shared.settings();
        // One span per session, given to its events as their parent rather than entered on every poll:
        // entering and leaving a span at each wake-up cost more than the session's own work (measured).
        // At debug level: an enabled span keeps about 1 kB per client in the subscriber (measured with
        // 2,000 idle clients), so at the default level the session's info events carry its fields instead.
        let span = tracing::debug_span!("session", client = %peer, cluster = %settings.cluster.name);
        let timeout = settings.cluster.startup_timeout;
        let outcome = match tokio::time::timeout(timeout, handshake(&shared, &settings, &mut socket, peer)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(PgError::StartupTimeout { seconds: timeout.as_secs() }),
        };
        let (user, database, params, startup_settings, leftover) = match outcome {
            Ok(Handshake::Cancelled) => return None,
            Ok(Handshake::Ready { user, database, params, startup_settings, leftover }) => {
                (user, database, params, startup_settings, leftover)
            }
            Err(e) => {
                refuse(&mut socket, &e, &span).await;
                return None;
            }
        };
        let auth = shared.user_auth(&settings, &user)?;
        let limit = auth.max_clients.or(settings.cluster.max_client_connections_per_user);
        let (pool, route) = match shared.primary_pool(&settings, &auth, &database).await {
            Ok(found) => found,
            Err(e) => {
                refuse(&mut socket, &e, &span).await;
                return None;
            }
        };
        // Counted from here until the session is dropped (nothing can fail in between).
        if !count_user(&shared, &user, limit) {
            let limit = limit.unwrap_or_default();
            refuse(&mut socket, &PgError::TooManyClients { limit, scope: " for this user" }, &span).await;
            return None;
        }
        let (key, cancel) = shared.cancels.register();
        let mut session = Box::new(Session {
            transaction_pooling: settings.transaction_pooling(),
            client: socket,
            cbuf: leftover,
            to_client: BytesMut::new(),
            to_server: BytesMut::new(),
            serving: pool.clone(),
            pool,
            route,
            readers: None,
            last_place: Place::Primary(Why::NoSplit),
            wrote: false,
            unit_writes: false,
            causal: (settings.splits_reads() && settings.cluster.routing.read_your_writes == ReadYourWrites::Causal)
                .then(Box::default),
            pending: None,
            server: None,
            outstanding: Outstanding::default(),
            statements: Statements::default(),
            desired: Arc::default(),
            desired_hash: 0,
            desired_flags: unit::DesiredFlags::default(),
            unreported: (!startup_settings.is_empty())
                .then(|| Box::new(unreported::Unreported::from_startup(&startup_settings))),
            statement_failed: false,
            key,
            cancel,
            tx_status: b'I',
            copy_in: false,
            skip_to_sync: false,
            server_skipping: false,
            held_for_cancel: None,
            unsynced: false,
            server_first: false,
            peer,
            // An idle client should not keep a disabled span's room (the session span is at debug level).
            span: (!span.is_disabled()).then(|| Box::new(span)),
            idle_since: None,
            seen_epoch: shared.parking.epoch(),
            park_soon: true,
            back_from_park: false,
            parked_at: 0,
            may_park: true,
            watching: false,
            unnamed_drops_all: false,
            drop_portals: None,
            extended_sets: None,
            in_transaction: None,
            shared,
            settings,
        });
        admission.hand_over();
        session.shared.cancels.set_ticks(session.key.0, session.needs_clock());
        PoolStats::add(&session.pool.stats.clients_active, 1);
        let parent = session.span.as_ref().and_then(|s| s.id());
        debug!(parent: parent, user = %session.user(), database = %session.database(), "client authenticated");
        if let Err(e) = session.greet(&params).await {
            session.finish(Err(e)).await;
            return None;
        }
        Some(session)
    }

    /// AuthenticationOk, the server's parameters (with the client's own where it set them), our cancel key.
    async fn greet(&mut self, startup_params: &[(String, String)]) -> Result<(), PgError> {
        self.try_startup_settings().await?;
        let server_params = match self.pool.server_params() {
            Some(p) if self.transaction_pooling => p,
            _ => {
                self.checkout(Place::Primary(Why::NoSplit), true).await?;
                self.pool.server_params().unwrap_or_default()
            }
        };
        let desired = params::desired(&server_params, startup_params);
        let hash = params::fingerprint(&desired);
        self.desired = self.pool.shared_params(desired, hash);
        self.desired_changed();
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

    /// The forwarding loop, until the client leaves or parks, or something fails.
    async fn serve(&mut self) -> Result<Served, PgError> {
        loop {
            if self.process_client().await? == Flow::Terminate {
                // What the client sent before its Terminate still reaches the server, which runs it as it would
                // for the client alone (a fire-and-forget INSERT, say); the connection then closes under it.
                if !self.to_server.is_empty() {
                    // Boxed: its timer would otherwise enlarge every session's future.
                    let _ = Box::pin(tokio::time::timeout(RESET_TIMEOUT, self.flush())).await;
                }
                return Ok(Served::Left);
            }
            self.flush().await?;
            if self.unit_writes {
                self.note_write_position().await?;
            }
            self.maybe_release();
            if self.at_boundary() && self.shared.stopping() {
                return Err(PgError::Shutdown);
            }
            // The answers a held-back message waited for are in (read by the wait, or by `flush` while it wrote),
            // or the unit is over: it goes now, as nothing else may wake this session for it. (One that waits
            // for the rest of its batch waits for the client.)
            if self.pending.as_deref().is_some_and(|held| self.held_may_go(held)) {
                continue;
            }
            self.release_idle_buffers();
            if self.idle_since.is_none() && (self.at_boundary() || self.idle_in_transaction()) {
                self.idle_since = Some(self.shared.parking.epoch());
            }
            if let Some(served) = self.idle_next()? {
                return Ok(served);
            }
            let event = poll_fn(|cx| self.poll_event(cx)).await;
            match event {
                Event::Client(Ok(0)) => return Ok(Served::Left),
                Event::Client(Ok(n)) => {
                    PoolStats::add(&self.serving.stats.bytes_from_clients, n as u64);
                    self.idle_since = None;
                    self.park_soon |= std::mem::take(&mut self.back_from_park);
                }
                Event::Client(Err(e)) => return Err(PgError::ClientIo(e)),
                Event::Server(Ok(0)) => return Err(PgError::ServerIo(std::io::ErrorKind::UnexpectedEof.into())),
                Event::Server(Ok(n)) => {
                    PoolStats::add(&self.serving.stats.bytes_from_servers, n as u64);
                    self.process_server()?;
                }
                Event::Server(Err(e)) => return Err(PgError::ServerIo(e)),
                Event::Shutdown => return Err(PgError::Shutdown),
                Event::Retired => return Err(PgError::NodeGone { node: self.serving.node.0.clone() }),
                Event::Tick => {} // idleness is looked at before the next wait
                Event::Forwarded => self.give_up_held(),
            }
        }
    }

    /// The client's user (every pool the session uses is this user's).
    fn user(&self) -> &str {
        &self.pool.target.user
    }

    fn database(&self) -> &str {
        &self.pool.target.database
    }

    fn server_conn(&mut self) -> &mut super::server::ServerConn {
        self.server.as_mut().expect("a server is checked out").conn()
    }

    /// Between transactions with no server held, a client's buffers and response queue go back to the listener's
    /// pool: thousands of idle clients then hold no such memory, and ordinary transactions still allocate none.
    /// A session the clock wakes keeps them until it has been idle across a tick (or parks): a busy client
    /// then works in its own warm buffers instead of giving back and taking four per transaction, each under
    /// the pool's lock (bench/RESULTS.md, "User-space work per transaction"). One the clock does not wake gives
    /// them back at once, as it could not later.
    fn release_idle_buffers(&mut self) {
        let idle_across_tick = self.idle_since.is_some_and(|since| self.shared.parking.epoch() > since);
        if idle_across_tick || !self.needs_clock() {
            self.reclaim_buffers();
        }
    }

    /// Gives the buffers and the response queue back, when nothing in them is still needed.
    fn reclaim_buffers(&mut self) {
        if self.server.is_none() && self.cbuf.is_empty() && self.pending.is_none() {
            let pool = &self.shared.buffers;
            for buf in [&mut self.cbuf, &mut self.to_client, &mut self.to_server] {
                pool.reclaim(buf);
            }
            self.outstanding.reclaim(pool);
        }
    }

    /// No transaction open and nothing in flight: a pooled connection could change hands here. Extended-protocol
    /// messages sent since the last Sync keep an implicit transaction open even when every answer is in (a
    /// client that Executes then Flushes, as cursor libraries do): not a boundary until the Sync.
    fn at_boundary(&self) -> bool {
        self.outstanding.is_empty() && self.tx_status == b'I' && !self.copy_in && !self.unsynced
    }

    /// Inside a transaction (or an extended-protocol batch not yet synced), holding its server connection, with
    /// every answer in: what happens next is up to the client.
    fn idle_in_transaction(&self) -> bool {
        self.server.is_some() && self.outstanding.is_empty() && !self.copy_in
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

/// Counts one more client of `user`, unless that would pass its limit. The session's `Drop` counts it out.
fn count_user(shared: &Shared, user: &str, limit: Option<u32>) -> bool {
    let mut counts = shared.per_user.lock().unwrap_or_else(|e| e.into_inner());
    let count = counts.entry(user.to_string()).or_insert(0);
    if limit.is_some_and(|l| *count >= l) {
        return false;
    }
    *count += 1;
    true
}

/// A client counted against the listener's limit while it starts; its session counts it out once it exists.
struct Admission(Option<Arc<Shared>>);

impl Admission {
    fn hand_over(mut self) {
        self.0 = None;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(shared) = &self.0 {
            shared.client_ended();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.client_ended();
        let mut counts = self.shared.per_user.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = counts.get_mut(self.user()) {
            *c = c.saturating_sub(1);
        }
    }
}
