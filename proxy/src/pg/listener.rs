//! The accept loop of one PostgreSQL cluster's listener, and what its sessions share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hapool_config::Cluster;
use hapool_topology::{NodeId, Topology};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::auth::passthrough::KeyRing;
use super::auth::UserAuth;
use super::buffers::BufferPool;
use super::cancel::CancelRegistry;
use super::error::PgError;
use super::parking::{OnTick, Parking, Resume};
use super::pool::{Pool, PoolSettings};
use super::server::ServerTarget;
use super::session::startup::refuse_after_startup;
use super::session::{statements::StatementRegistry, Session};
use super::settings::{check_live_change, Settings, SettingsError};
use crate::balance::{Loads, Readers};
use crate::route::{Route, Usable};
use crate::stats::{PoolSnapshot, RouteStats};

/// A listener's route in one topology generation, with the schedule its reads follow.
#[derive(Debug, Default)]
pub struct RouteState {
    pub route: Route,
    pub readers: Readers,
}

/// Pools by (node, user, database).
type PoolKey = (NodeId, String, String);

/// Connections of the pool `auth_query` runs on.
const LOOKUP_CONNECTIONS: usize = 2;

/// What a PostgreSQL listener serves.
#[derive(Debug, Clone)]
pub struct PgProxyConfig {
    pub cluster: Cluster,
    /// How long sessions may take to reach a transaction boundary at shutdown.
    pub shutdown_grace: Duration,
}

/// Everything the sessions of one listener share. No globals: each listener owns its own.
#[derive(Debug)]
pub struct Shared {
    /// Replaced whole by a reload; sessions take a copy of the `Arc` when they start.
    settings: RwLock<Arc<Settings>>,
    /// Which nodes may be used, from the latest topology; `generation` mirrors its generation so that a
    /// session notices a change with one atomic load.
    route: RwLock<Arc<RouteState>>,
    generation: AtomicU64,
    /// Connections in use per node, shared by all of the node's pools.
    loads: Loads,
    pub route_stats: RouteStats,
    /// Buffers lent to sessions while they move data.
    pub buffers: BufferPool,
    route_changed: Notify,
    pub pools: Mutex<HashMap<PoolKey, Arc<Pool>>>,
    /// Pools a reload replaced, still used by the sessions that started before it: retired like the others
    /// when their node goes.
    replaced: Mutex<Vec<std::sync::Weak<Pool>>>,
    pub cancels: CancelRegistry,
    pub statements: StatementRegistry,
    pub per_user: Mutex<HashMap<String, u32>>,
    /// The SCRAM keys clients proved, for users whose configured password is the server's SCRAM secret.
    pub keys: Arc<KeyRing>,
    /// Users the configuration does not name, as `auth_query` last found them in the server.
    looked_up: Mutex<HashMap<String, Arc<UserAuth>>>,
    /// The pool `auth_query` runs on (`lookup_pool`).
    lookup: Mutex<Option<Arc<Pool>>>,
    /// What unknown users' decoy SCRAM salts are derived from (`ScramVerifier::decoy`): the same for the
    /// listener's life, so a name shows the same salt across reloads, as a known user's does.
    pub decoy_nonce: [u8; 32],
    /// Sessions admitted and not yet ended (against `max_client_connections`).
    clients: AtomicUsize,
    /// Idle clients without a task of their own, and the clock of idleness.
    pub parking: Parking<Box<Session>>,
    pub shutdown: CancellationToken,
    /// Set once the listener has stopped accepting at shutdown, before it wakes the sessions: what they check
    /// between transactions (a load, where the token's check takes its lock).
    stopping: AtomicBool,
}

impl Shared {
    /// Whether the listener is shutting down: sessions end at their next transaction boundary.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Counts one more client unless `limit` are already in; `client_ended` counts it out.
    pub fn admit_client(&self, limit: usize) -> bool {
        self.clients.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1)).is_ok()
    }

    pub fn client_ended(&self) {
        self.clients.fetch_sub(1, Ordering::AcqRel);
    }

    /// The settings in force now.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The route in force now.
    pub fn route(&self) -> Arc<RouteState> {
        self.route.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The topology generation the route was built from (changes whenever the route may have).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The primary's pool for (user, database) and the generation it was chosen in. Without a usable primary
    /// (a failover in progress, the primary down) waits up to `query_wait_timeout` for one.
    pub async fn primary_pool(
        &self,
        settings: &Settings,
        user: &UserAuth,
        database: &str,
    ) -> Result<(Arc<Pool>, Arc<RouteState>), PgError> {
        let (primary, state) = self.primary(settings).await?;
        Ok((self.pool(settings, user, database, &primary), state))
    }

    /// The usable primary, waiting up to `query_wait_timeout` for one.
    async fn primary(&self, settings: &Settings) -> Result<(Usable, Arc<RouteState>), PgError> {
        let wait = settings.cluster.query_wait_timeout;
        let deadline = Instant::now() + wait;
        loop {
            let changed = self.route_changed.notified();
            let state = self.route();
            let route = &state.route;
            if let Some(primary) = &route.primary {
                return Ok((primary.clone(), state.clone()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, changed).await.is_err() {
                let why = route.no_primary.clone().unwrap_or_default();
                return Err(PgError::NoPrimary {
                    cluster: settings.cluster.name.clone(),
                    why,
                    seconds: wait.as_secs(),
                });
            }
        }
    }

    /// The pool `auth_query` runs on: the primary's, as `auth_user`, in `auth_dbname`. One of its own, of two
    /// connections: no client's session state is ever on them, and no client can make more of them (the lookup
    /// comes before the password).
    pub async fn lookup_pool(&self, settings: &Settings, auth_user: &UserAuth) -> Result<Arc<Pool>, PgError> {
        let (primary, _) = self.primary(settings).await?;
        let database = &settings.cluster.auth_dbname;
        let mut slot = self.lookup.lock().unwrap_or_else(|e| e.into_inner());
        let current = slot.as_ref().filter(|p| {
            !p.is_retired()
                && p.node == primary.node
                && p.target.addr == primary.addr
                && p.target.user == auth_user.name
                && p.target.database == *database
        });
        if let Some(pool) = current {
            return Ok(pool.clone());
        }
        let pool = self.new_pool(settings, auth_user, database, &primary, LOOKUP_CONNECTIONS, false);
        if let Some(old) = slot.replace(pool.clone()) {
            old.retire();
        }
        Ok(pool)
    }

    /// A user as the configuration names it, or as `auth_query` last found it in the server (while the cluster
    /// has an `auth_user`).
    pub fn user_auth(&self, settings: &Settings, name: &str) -> Option<Arc<UserAuth>> {
        if let Some(auth) = settings.users.get(name) {
            return Some(auth.clone());
        }
        settings.cluster.auth_user.as_ref()?;
        self.looked_up.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// What `auth_query` found for a user. When the server's secret for it changed, the user's pools start over
    /// (their connections log in with the old one; sessions keep the pools they have until they end).
    pub fn remember_user(&self, auth: Arc<UserAuth>) {
        let before = self.looked_up.lock().unwrap_or_else(|e| e.into_inner()).insert(auth.name.clone(), auth.clone());
        if before.is_some_and(|b| b.password != auth.password) {
            self.start_pools_over(&auth.name);
        }
    }

    /// The server no longer has a user `auth_query` found before (or no password for it): its pools start over
    /// too, should it come back with another secret.
    pub fn forget_user(&self, name: &str) {
        if self.looked_up.lock().unwrap_or_else(|e| e.into_inner()).remove(name).is_some() {
            self.start_pools_over(name);
        }
    }

    /// The pools of `user` are made again at their next use; sessions keep the ones they have until they end.
    fn start_pools_over(&self, user: &str) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let stale: Vec<PoolKey> = pools.keys().filter(|(_, name, _)| name == user).cloned().collect();
        let mut replaced = self.replaced.lock().unwrap_or_else(|e| e.into_inner());
        for key in stale {
            if let Some(pool) = pools.remove(&key) {
                replaced.push(Arc::downgrade(&pool));
            }
        }
    }

    /// The pool for (node, user, database), created on first use.
    pub fn pool(&self, settings: &Settings, user: &UserAuth, database: &str, node: &Usable) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let key = (node.node.clone(), user.name.clone(), database.to_string());
        let size = user.pool_size.unwrap_or(settings.cluster.pool_size) as usize;
        pools.entry(key).or_insert_with(|| self.new_pool(settings, user, database, node, size, true)).clone()
    }

    /// A pool of `size` connections to `node` as `user` in `database`; `min_idle`: whether the cluster's
    /// `min_idle` applies.
    fn new_pool(
        &self,
        settings: &Settings,
        user: &UserAuth,
        database: &str,
        node: &Usable,
        size: usize,
        min_idle: bool,
    ) -> Arc<Pool> {
        let c = &settings.cluster;
        let target = ServerTarget {
            addr: node.addr,
            user: user.name.clone(),
            database: database.to_string(),
            credentials: user.credentials(&self.keys),
            connect_timeout: c.connect_timeout,
            // Keepalive only: see `Tcp::user_timeout`.
            tcp: hapool_config::Tcp { user_timeout: None, ..c.tcp.clone() },
            // From the settings in force now, not the session's (a reload may have rotated the CA since).
            tls: RwLock::new(self.settings().server_tls_of(&node.node)),
        };
        let min_idle = if min_idle { c.min_idle as usize } else { 0 };
        let pool_settings = PoolSettings {
            size,
            query_wait_timeout: c.query_wait_timeout,
            idle_timeout: c.idle_timeout,
            max_lifetime: c.max_lifetime,
            max_prepared: c.max_prepared_statements.max(1) as usize,
            min_idle,
        };
        let name = format!("{}@{database}/{}", user.name, node.node);
        let load = self.loads.of(&node.node);
        let pool = Arc::new(Pool::new(name, node.node.clone(), target, pool_settings, load));
        tokio::spawn(Pool::maintain(Arc::downgrade(&pool), self.shutdown.clone()));
        pool
    }

    /// Takes a new topology: nodes no longer usable (down, fenced, gone, moved) have their pools retired,
    /// and sessions waiting for a primary look again.
    fn apply(&self, topology: &Topology) {
        let settings = self.settings();
        let name = settings.cluster.name.clone();
        let route = Route::with_reads(topology, &name, settings.cluster.routing.primary_reads);
        let generation = route.generation;
        let readers = Readers::new(&route.readers, &self.loads);
        let state = Arc::new(RouteState { route, readers });
        let route = &state.route;
        *self.route.write().unwrap_or_else(|e| e.into_inner()) = state.clone();
        self.generation.store(generation, Ordering::Release);
        // Retired after the new route is out, so a session that finds its pool retired finds the new route too.
        let mut retired = false;
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|(node, _, _), pool| {
            let keep = route.allows(node, pool.target.addr);
            if !keep {
                info!(cluster = %name, pool = %pool.name, "node no longer usable: closing its pool");
                pool.retire();
                retired = true;
            }
            keep
        });
        drop(pools);
        let mut replaced = self.replaced.lock().unwrap_or_else(|e| e.into_inner());
        replaced.retain(|weak| match weak.upgrade() {
            Some(pool) if !route.allows(&pool.node, pool.target.addr) => {
                pool.retire();
                retired = true;
                false
            }
            Some(_) => true,
            None => false,
        });
        drop(replaced);
        // Sessions holding a connection of a retired pool find out when they look.
        if retired {
            self.cancels.wake_all();
        }
        self.route_changed.notify_waiters();
    }
}

/// A PostgreSQL proxy listener for one cluster.
#[derive(Debug, Clone)]
pub struct PgListener {
    shared: Arc<Shared>,
    grace: Duration,
    topology: watch::Receiver<Arc<Topology>>,
}

impl PgListener {
    /// Prepares the listener: derives SCRAM verifiers, loads TLS material, and takes the current topology.
    /// `serve` then follows the topology's changes.
    pub fn new(
        config: PgProxyConfig,
        shutdown: CancellationToken,
        topology: watch::Receiver<Arc<Topology>>,
    ) -> Result<PgListener, SettingsError> {
        let settings = Settings::build(config.cluster)?;
        let route =
            Route::with_reads(&topology.borrow(), &settings.cluster.name, settings.cluster.routing.primary_reads);
        let loads = Loads::default();
        let readers = Readers::new(&route.readers, &loads);
        let shared = Shared {
            settings: RwLock::new(Arc::new(settings)),
            generation: AtomicU64::new(route.generation),
            route: RwLock::new(Arc::new(RouteState { route, readers })),
            loads,
            route_stats: RouteStats::default(),
            buffers: BufferPool::default(),
            route_changed: Notify::new(),
            replaced: Mutex::new(Vec::new()),
            pools: Mutex::new(HashMap::new()),
            cancels: CancelRegistry::default(),
            statements: StatementRegistry::default(),
            per_user: Mutex::new(HashMap::new()),
            keys: Arc::default(),
            looked_up: Mutex::default(),
            lookup: Mutex::default(),
            decoy_nonce: rand::random(),
            clients: AtomicUsize::new(0),
            parking: Parking::default(),
            shutdown,
            stopping: AtomicBool::new(false),
        };
        Ok(PgListener { shared: Arc::new(shared), grace: config.shutdown_grace, topology })
    }

    /// Swaps in a new configuration of this cluster for new connections. What cannot change live (listen,
    /// engine, pool_mode, max_client_connections) is refused and nothing changes. The files it names
    /// (certificates, keys) are read again even when the configuration did not change: that is how certificates
    /// are rotated (replaced in place, then a reload); the pools then stay, and open their next server connections
    /// with the server CA just read. Pools start over when the configuration changed: running sessions finish on
    /// the pools they have, whose connections then close.
    pub fn reload(&self, cluster: Cluster) -> Result<(), SettingsError> {
        let old = self.shared.settings();
        check_live_change(&old.cluster, &cluster)?;
        let unchanged = old.cluster == cluster;
        let settings = Arc::new(Settings::build(cluster)?);
        {
            // Swapped under the pools' lock: a pool made from now on (`pool`) takes the TLS of these settings, one
            // made before is given it below.
            let pools = self.shared.pools.lock().unwrap_or_else(|e| e.into_inner());
            *self.shared.settings.write().unwrap_or_else(|e| e.into_inner()) = settings.clone();
            if unchanged {
                // The pools stay; the connections they open from now on use the server CA read just now. So do
                // those of pools an earlier reload replaced, which sessions begun before it still use.
                let replaced = self.shared.replaced.lock().unwrap_or_else(|e| e.into_inner());
                let older = replaced.iter().filter_map(std::sync::Weak::upgrade);
                let lookup = self.shared.lookup.lock().unwrap_or_else(|e| e.into_inner()).clone();
                for pool in pools.values().cloned().chain(older).chain(lookup) {
                    if let Some(tls) = settings.server_tls.get(&pool.node.0) {
                        pool.target.set_tls(tls.clone());
                    }
                }
            }
        }
        if unchanged {
            info!(cluster = %old.cluster.name, "configuration unchanged; certificate files read again");
            return Ok(());
        }
        // auth_user's password may have changed: the lookup pool starts over too.
        if let Some(pool) = self.shared.lookup.lock().unwrap_or_else(|e| e.into_inner()).take() {
            pool.retire();
        }
        let old_pools: Vec<_> = self.shared.pools.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
        {
            let mut replaced = self.shared.replaced.lock().unwrap_or_else(|e| e.into_inner());
            replaced.retain(|weak| weak.strong_count() > 0);
            replaced.extend(old_pools.iter().map(|(_, pool)| Arc::downgrade(pool)));
        }
        // Routing settings may have changed: rebuild the route from the current topology.
        let topology = self.topology.borrow().clone();
        self.shared.apply(&topology);
        info!(cluster = %old.cluster.name, "configuration reloaded");
        Ok(())
    }

    /// Accepts clients until shutdown, then waits up to the grace period for sessions to finish.
    pub async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        let shared = &self.shared;
        let settings = shared.settings();
        let limit = settings.cluster.max_client_connections;
        let tracker = TaskTracker::new();
        // The parking also keeps the idleness clock (client_idle_timeout): no listener without it.
        start_parking(shared, &tracker)
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start the parking thread: {e}")))?;
        // However this future ends (dropped included), parked clients are given back and the thread ends.
        let _parking = CloseParking(shared);
        tokio::spawn(follow(shared.clone(), self.topology.clone()));
        let primary = shared.route().route.primary.as_ref().map_or("none yet".to_string(), |p| p.node.to_string());
        info!(cluster = %settings.cluster.name, listen = %listener.local_addr()?, %primary, "PostgreSQL listener ready");
        loop {
            let (mut socket, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shared.shutdown.cancelled() => break,
            };
            let _ = socket.set_nodelay(true);
            if let Err(e) = super::tcp::apply(&socket, &shared.settings().cluster.tcp) {
                debug!(error = %e, "TCP options not set on a client's socket");
            }
            if !shared.admit_client(limit as usize) {
                tracker.spawn(async move {
                    let error = PgError::TooManyClients { limit, scope: "" };
                    refuse_after_startup(&mut socket, &error).await;
                });
                continue;
            }
            // The session's task: counted out when the session ends (see `Session::run`). Its span (debug level)
            // is made inside, as is everything else it needs beyond the socket: whatever the task's block
            // captures keeps its room in every session's task, and whatever is allocated for it before the
            // task is spawned lands between the tasks (both measured: bench/RESULTS.md).
            let shared = shared.clone();
            tracker.spawn(async move { Session::run(shared, socket).await });
        }
        // Idle sessions end at once (parked ones are given back to end); busy ones at their next transaction
        // boundary.
        shared.stopping.store(true, Ordering::Release);
        shared.parking.close();
        shared.cancels.wake_all();
        tracker.close();
        if tokio::time::timeout(self.grace, tracker.wait()).await.is_err() {
            warn!(sessions = tracker.len(), "shutdown grace period over; closing the remaining sessions");
        }
        Ok(())
    }

    /// Counters of every pool, by `user@database`.
    pub fn stats(&self) -> Vec<(String, PoolSnapshot)> {
        let pools = self.shared.pools.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, PoolSnapshot)> = pools.values().map(|p| (p.name.clone(), p.snapshot())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Units of work sent to readers, and to the primary by reason.
    pub fn route_stats(&self) -> Vec<(&'static str, u64)> {
        self.shared.route_stats.snapshot()
    }

    /// Idle clients parked now (without a task of their own).
    pub fn parked(&self) -> usize {
        self.shared.parking.parked()
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// Closes a listener's parking when dropped.
struct CloseParking<'a>(&'a Shared);

impl Drop for CloseParking<'_> {
    fn drop(&mut self) {
        self.0.parking.close();
    }
}

/// Starts the listener's parking: a client given back gets a task of its own, tracked like the others; at each
/// tick the sessions that may park or time out are woken to look at their idleness.
fn start_parking(shared: &Arc<Shared>, tracker: &TaskTracker) -> std::io::Result<()> {
    let runtime = tokio::runtime::Handle::current();
    let tracker = tracker.clone();
    let resume: Resume<Box<Session>> = Box::new(move |session, socket, why| {
        runtime.spawn(tracker.track_future(Session::resume(session, socket, why)));
    });
    // Weak: the parking belongs to what it would keep alive.
    let weak = Arc::downgrade(shared);
    let on_tick: OnTick = Box::new(move |_| {
        if let Some(shared) = weak.upgrade() {
            shared.cancels.tick_all();
        }
    });
    shared.parking.start(resume, on_tick)
}

/// Applies every new topology until shutdown or until the manager is gone.
async fn follow(shared: Arc<Shared>, mut topology: watch::Receiver<Arc<Topology>>) {
    loop {
        let current = topology.borrow_and_update().clone();
        shared.apply(&current);
        tokio::select! {
            changed = topology.changed() => if changed.is_err() { return },
            _ = shared.shutdown.cancelled() => return,
        }
    }
}
