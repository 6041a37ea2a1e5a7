//! The accept loop of one PostgreSQL cluster's listener, and what its sessions share.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hapool_config::{Cluster, PoolMode};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

use super::auth::scram::ScramVerifier;
use super::auth::UserAuth;
use super::cancel::CancelRegistry;
use super::error::PgError;
use super::pool::{Pool, PoolSettings};
use super::server::ServerTarget;
use super::server_tls::ServerTls;
use super::session::startup::refuse_after_startup;
use super::session::{statements::StatementRegistry, Session};
use super::tls::{acceptor, ClientTls};
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
    pub cluster: Cluster,
    pub primary: SocketAddr,
    pub users: HashMap<String, UserAuth>,
    /// Unknown users run a SCRAM exchange against this and fail like a wrong password.
    pub decoy: ScramVerifier,
    pub pools: Mutex<HashMap<(String, String), Arc<Pool>>>,
    pub cancels: CancelRegistry,
    pub statements: StatementRegistry,
    pub per_user: Mutex<HashMap<String, u32>>,
    pub shutdown: CancellationToken,
    /// Set when `tls.client_mode` is `allow` or `require`.
    pub tls: Option<ClientTls>,
    /// Set unless `tls.server_mode` is `disable`.
    pub server_tls: Option<ServerTls>,
}

impl Shared {
    pub fn transaction_pooling(&self) -> bool {
        self.cluster.pool_mode == PoolMode::Transaction
    }

    /// The pool for (user, database), created on first use.
    pub fn pool(&self, user: &UserAuth, database: &str) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let key = (user.name.clone(), database.to_string());
        pools
            .entry(key)
            .or_insert_with(|| {
                let c = &self.cluster;
                let target = ServerTarget {
                    addr: self.primary,
                    user: user.name.clone(),
                    database: database.to_string(),
                    password: user.password.as_ref().map(|p| p.expose().to_string()),
                    connect_timeout: c.connect_timeout,
                    tls: self.server_tls.clone(),
                };
                let settings = PoolSettings {
                    size: user.pool_size.unwrap_or(c.pool_size) as usize,
                    query_wait_timeout: c.query_wait_timeout,
                    idle_timeout: c.idle_timeout,
                    max_lifetime: c.max_lifetime,
                    max_prepared: c.max_prepared_statements.max(1) as usize,
                };
                Arc::new(Pool::new(format!("{}@{database}", user.name), target, settings))
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
    pub fn new(config: PgProxyConfig, shutdown: CancellationToken) -> std::io::Result<PgListener> {
        let cluster = config.cluster;
        let first = cluster
            .node
            .first()
            .ok_or_else(|| std::io::Error::other(format!("cluster {} has no node", cluster.name)))?;
        let primary = (first.host.as_str(), first.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("cannot resolve {}", first.host)))?;
        let users = cluster
            .user
            .iter()
            .map(|u| {
                let mut auth = UserAuth::new(&u.name, u.auth, u.password.clone());
                auth.pool_size = u.pool_size;
                auth.max_clients = u.max_client_connections;
                (u.name.clone(), auth)
            })
            .collect();
        let tls = acceptor(&cluster.tls).map_err(std::io::Error::other)?;
        let server_tls = ServerTls::new(&cluster.tls, &first.host).map_err(std::io::Error::other)?;
        let shared = Shared {
            tls,
            server_tls,
            primary,
            users,
            decoy: ScramVerifier::from_password(&format!("{:x}", rand::random::<u128>())),
            pools: Mutex::new(HashMap::new()),
            cancels: CancelRegistry::default(),
            statements: StatementRegistry::default(),
            per_user: Mutex::new(HashMap::new()),
            shutdown,
            cluster,
        };
        Ok(PgListener { shared: Arc::new(shared), grace: config.shutdown_grace })
    }

    /// Accepts clients until shutdown, then waits up to the grace period for sessions to finish.
    pub async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        let shared = &self.shared;
        let slots = Arc::new(Semaphore::new(shared.cluster.max_client_connections as usize));
        let tracker = TaskTracker::new();
        info!(cluster = %shared.cluster.name, listen = %listener.local_addr()?, primary = %shared.primary, "PostgreSQL listener ready");
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
                let limit = shared.cluster.max_client_connections;
                tracker.spawn(async move {
                    let error = PgError::TooManyClients { limit, scope: "" };
                    refuse_after_startup(&mut socket, &error).await;
                });
                continue;
            };
            let shared = shared.clone();
            let span = tracing::info_span!("session", client = %peer, cluster = %shared.cluster.name);
            tracker.spawn(
                async move {
                    Session::run(shared, socket).await;
                    drop(slot);
                }
                .instrument(span),
            );
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
        let mut out: Vec<(String, PoolSnapshot)> =
            pools.values().map(|p| (p.name.clone(), p.stats.snapshot())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}
