//! The accept loop of one PostgreSQL cluster's listener, and what its sessions share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hapool_config::Cluster;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::auth::UserAuth;
use super::cancel::CancelRegistry;
use super::error::PgError;
use super::pool::{Pool, PoolSettings};
use super::server::ServerTarget;
use super::session::startup::refuse_after_startup;
use super::session::{statements::StatementRegistry, Session};
use super::settings::{check_live_change, Settings, SettingsError};
use crate::stats::PoolSnapshot;

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
    pub pools: Mutex<HashMap<(String, String), Arc<Pool>>>,
    pub cancels: CancelRegistry,
    pub statements: StatementRegistry,
    pub per_user: Mutex<HashMap<String, u32>>,
    pub shutdown: CancellationToken,
}

impl Shared {
    /// The settings in force now.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The pool for (user, database), created on first use.
    pub fn pool(&self, settings: &Settings, user: &UserAuth, database: &str) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let key = (user.name.clone(), database.to_string());
        pools
            .entry(key)
            .or_insert_with(|| {
                let c = &settings.cluster;
                let target = ServerTarget {
                    addr: settings.primary,
                    user: user.name.clone(),
                    database: database.to_string(),
                    password: user.password.as_ref().map(|p| p.expose().to_string()),
                    connect_timeout: c.connect_timeout,
                    tls: settings.server_tls.clone(),
                };
                let pool_settings = PoolSettings {
                    size: user.pool_size.unwrap_or(c.pool_size) as usize,
                    query_wait_timeout: c.query_wait_timeout,
                    idle_timeout: c.idle_timeout,
                    max_lifetime: c.max_lifetime,
                    max_prepared: c.max_prepared_statements.max(1) as usize,
                    min_idle: c.min_idle as usize,
                };
                let pool = Arc::new(Pool::new(format!("{}@{database}", user.name), target, pool_settings));
                if c.min_idle > 0 {
                    tokio::spawn(Pool::keep_min_idle(Arc::downgrade(&pool), self.shutdown.clone()));
                }
                pool
            })
            .clone()
    }
}

/// A PostgreSQL proxy listener for one cluster.
#[derive(Debug, Clone)]
pub struct PgListener {
    shared: Arc<Shared>,
    grace: Duration,
}

impl PgListener {
    /// Prepares the listener: resolves the primary (today the first node) and derives SCRAM verifiers.
    pub fn new(config: PgProxyConfig, shutdown: CancellationToken) -> Result<PgListener, SettingsError> {
        let settings = Settings::build(config.cluster)?;
        let shared = Shared {
            settings: RwLock::new(Arc::new(settings)),
            pools: Mutex::new(HashMap::new()),
            cancels: CancelRegistry::default(),
            statements: StatementRegistry::default(),
            per_user: Mutex::new(HashMap::new()),
            shutdown,
        };
        Ok(PgListener { shared: Arc::new(shared), grace: config.shutdown_grace })
    }

    /// Swaps in a new configuration of this cluster for new connections. What cannot change live (listen,
    /// engine, pool_mode, max_client_connections) is refused and nothing changes. Pools start over when the
    /// configuration changed: running sessions finish on the pools they have, whose connections then close.
    pub fn reload(&self, cluster: Cluster) -> Result<(), SettingsError> {
        let old = self.shared.settings();
        check_live_change(&old.cluster, &cluster)?;
        if old.cluster == cluster {
            return Ok(());
        }
        let settings = Arc::new(Settings::build(cluster)?);
        *self.shared.settings.write().unwrap_or_else(|e| e.into_inner()) = settings;
        self.shared.pools.lock().unwrap_or_else(|e| e.into_inner()).clear();
        info!(cluster = %old.cluster.name, "configuration reloaded");
        Ok(())
    }

    /// Accepts clients until shutdown, then waits up to the grace period for sessions to finish.
    pub async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        let shared = &self.shared;
        let settings = shared.settings();
        let slots = Arc::new(Semaphore::new(settings.cluster.max_client_connections as usize));
        let tracker = TaskTracker::new();
        info!(cluster = %settings.cluster.name, listen = %listener.local_addr()?, primary = %settings.primary, "PostgreSQL listener ready");
        loop {
            let (mut socket, peer) = tokio::select! {
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
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                let limit = settings.cluster.max_client_connections;
                tracker.spawn(async move {
                    let error = PgError::TooManyClients { limit, scope: "" };
                    refuse_after_startup(&mut socket, &error).await;
                });
                continue;
            };
            let shared = shared.clone();
            // One span per session, given to its events as their parent rather than entered on every poll:
            // entering and leaving a span at each wake-up cost more than the session's own work (measured).
            let span = tracing::info_span!("session", client = %peer, cluster = %settings.cluster.name);
            tracker.spawn(async move {
                Session::run(shared, socket, span).await;
                drop(slot);
            });
        }
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

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}
