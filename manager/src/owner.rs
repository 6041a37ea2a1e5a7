//! The running manager: one probing task per cluster sends its rounds to the one owner task, which applies
//! `decide`, records the events, and publishes the topology when something routing depends on changed.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hapool_config::Cluster as ClusterConfig;
use hapool_topology::{ClusterId, Engine, Generation, NodeId, Topology};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::decide::{decide, Limits, Round};
use crate::events::{Event, EventLog};
use crate::health::Thresholds;
use crate::probe::mysql::MyProber;
use crate::probe::pg::PgProber;
use crate::probe::{Prober, Target};
use crate::state::{routing_view, ClusterState};

/// How many events the in-memory history keeps.
const EVENT_HISTORY: usize = 1000;

/// Why the manager cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("cluster {cluster} node {node}: cannot resolve {host}:{port}: {reason}")]
    Resolve { cluster: String, node: String, host: String, port: u16, reason: String },
    #[error("cluster {cluster}: no monitor user (set [cluster.monitor] user, or configure a user with a password)")]
    NoMonitorUser { cluster: String },
    #[error("cluster {cluster} node {node}: TLS to the server: {source}")]
    Tls { cluster: String, node: String, source: hapool_tls::TlsError },
}

/// Everything the manager knows right now, updated after every round.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub clusters: Vec<ClusterState>,
    /// Probe rounds completed, per cluster (same order).
    pub rounds: Vec<u64>,
    pub generation: Generation,
}

/// A running manager's outputs.
#[derive(Debug, Clone)]
pub struct Manager {
    /// The topology the proxy follows: a new snapshot only when something routing depends on changed.
    pub topology: watch::Receiver<Arc<Topology>>,
    /// The full state, every round (lag figures, positions, problems), for status displays.
    pub status: watch::Receiver<Arc<Status>>,
    pub events: Arc<EventLog>,
    /// Per cluster (by name): the server TLS settings of each node, in config order, for its probes.
    tls: Arc<Vec<(String, watch::Sender<NodeTls>)>>,
}

/// The server TLS settings of each node of a cluster, in config order (`None`: plain text).
type NodeTls = Vec<Option<hapool_tls::ServerTls>>;

impl Manager {
    /// Starts probing every cluster. Must run inside a tokio runtime; stops at `shutdown`.
    pub fn start(clusters: &[ClusterConfig], shutdown: CancellationToken) -> Result<Manager, ManagerError> {
        let mut states = Vec::new();
        let mut limits = Vec::new();
        let mut plans = Vec::new();
        let mut tls = Vec::new();
        for c in clusters {
            let (state, prober_list) = plan(c)?;
            let (tls_tx, tls_rx) = watch::channel(Vec::new());
            tls.push((c.name.clone(), tls_tx));
            states.push(state);
            limits.push(Limits {
                thresholds: Thresholds { failure: c.monitor.failure_threshold, recovery: c.monitor.recovery_threshold },
                max_lag_seconds: c.routing.max_replica_lag.map(|d| d.as_secs_f64()),
                max_lag_bytes: c.routing.max_replica_lag_bytes.map(|b| b.0),
            });
            plans.push((prober_list, c.monitor.probe_interval, tls_rx));
        }
        let topology =
            Topology { generation: Generation(0), clusters: states.iter().map(ClusterState::to_topology).collect() };
        let (topology_tx, topology_rx) = watch::channel(Arc::new(topology));
        let status = Status { rounds: vec![0; states.len()], clusters: states.clone(), generation: Generation(0) };
        let (status_tx, status_rx) = watch::channel(Arc::new(status));
        let events = Arc::new(EventLog::new(EVENT_HISTORY));
        let (rounds_tx, rounds_rx) = mpsc::channel(16);
        for (index, (probers, interval, tls)) in plans.into_iter().enumerate() {
            tokio::spawn(probe_loop(index, probers, interval, tls, rounds_tx.clone(), shutdown.clone()));
        }
        let owner = Owner { states, limits, topology: topology_tx, status: status_tx, events: events.clone() };
        tokio::spawn(owner.run(rounds_rx, shutdown));
        Ok(Manager { topology: topology_rx, status: status_rx, events, tls: Arc::new(tls) })
    }

    /// Gives the probes of `c` (a cluster the manager runs, with a reloaded configuration) the server TLS
    /// settings it says, the CA files read again, for the monitor connections they open next (as the proxy's
    /// pools do: a connection open now is not checked again). Nothing changes when a file cannot be read.
    pub fn reload_tls(&self, c: &ClusterConfig) -> Result<(), ManagerError> {
        let Some((_, sender)) = self.tls.iter().find(|(name, _)| name == &c.name) else { return Ok(()) };
        let nodes = c.node.iter().map(|n| node_tls(c, n)).collect::<Result<NodeTls, _>>()?;
        sender.send_replace(nodes);
        Ok(())
    }

    /// Waits until every cluster has been probed once (or `timeout` passes); true if they all were.
    pub async fn first_round(&mut self, timeout: Duration) -> bool {
        let all_probed = |s: &Arc<Status>| s.rounds.iter().all(|r| *r > 0);
        tokio::time::timeout(timeout, self.status.wait_for(all_probed)).await.is_ok_and(|r| r.is_ok())
    }
}

/// The initial state of one cluster and a prober per node.
fn plan(c: &ClusterConfig) -> Result<(ClusterState, Vec<(NodeId, Prober)>), ManagerError> {
    // An application user whose password is the server's secret (pg_authid's) cannot log the prober in.
    let plain = |p: &hapool_config::Secret| {
        c.engine != hapool_config::Engine::Postgres
            || hapool_config::password_kind(p.expose()) == Ok(hapool_config::PasswordKind::Plain)
    };
    let (user, password) = match (&c.monitor.user, c.user.iter().find(|u| u.password.as_ref().is_some_and(plain))) {
        (Some(user), _) => (user.clone(), c.monitor.password.as_ref().map(|p| p.expose().to_string())),
        (None, Some(u)) => {
            warn!(cluster = %c.name, user = %u.name, "no [cluster.monitor] user: probing as an application user");
            (u.name.clone(), u.password.as_ref().map(|p| p.expose().to_string()))
        }
        (None, None) => return Err(ManagerError::NoMonitorUser { cluster: c.name.clone() }),
    };
    let mut nodes = Vec::new();
    let mut probers = Vec::new();
    for n in &c.node {
        let addr = resolve(&n.host, n.port).map_err(|reason| ManagerError::Resolve {
            cluster: c.name.clone(),
            node: n.name.clone(),
            host: n.host.clone(),
            port: n.port,
            reason,
        })?;
        let target = Target {
            host: n.host.clone(),
            port: n.port,
            user: user.clone(),
            password: password.clone(),
            timeout: c.monitor.probe_timeout,
            tls: node_tls(c, n)?,
        };
        let prober = match c.engine {
            hapool_config::Engine::Postgres => Prober::Pg(PgProber::new(target)),
            hapool_config::Engine::Mysql => Prober::My(MyProber::new(target)),
        };
        nodes.push((NodeId(n.name.clone()), addr, n.weight));
        probers.push((NodeId(n.name.clone()), prober));
    }
    let engine = match c.engine {
        hapool_config::Engine::Postgres => Engine::Postgres,
        hapool_config::Engine::Mysql => Engine::MySql,
    };
    Ok((ClusterState::new(ClusterId(c.name.clone()), engine, nodes), probers))
}

/// TLS to one node of `c` as `[cluster.tls]` says (MySQL probes are plain).
fn node_tls(c: &ClusterConfig, n: &hapool_config::Node) -> Result<Option<hapool_tls::ServerTls>, ManagerError> {
    match c.engine {
        hapool_config::Engine::Postgres => hapool_tls::ServerTls::new(&c.tls, &n.host)
            .map_err(|source| ManagerError::Tls { cluster: c.name.clone(), node: n.name.clone(), source }),
        hapool_config::Engine::Mysql => Ok(None),
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port).to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or_else(|| "no address".to_string())
}

/// Probes every node of one cluster concurrently, once per interval, until shutdown. Server TLS settings
/// sent on `tls` (a reload) apply from the next round.
async fn probe_loop(
    index: usize,
    mut probers: Vec<(NodeId, Prober)>,
    interval: Duration,
    mut tls: watch::Receiver<NodeTls>,
    rounds: mpsc::Sender<(usize, Round)>,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if tls.has_changed().unwrap_or(false) {
            let nodes = tls.borrow_and_update().clone();
            for ((_, prober), node) in probers.iter_mut().zip(nodes) {
                prober.set_tls(node);
            }
        }
        let probes = probers.iter_mut().map(|(id, p)| async move { (id.clone(), p.probe().await) });
        let results = join_all(probes).await.into_iter().map(|(id, r)| (id, r.map_err(|e| e.to_string()))).collect();
        let round = Round { at: Instant::now(), results };
        if rounds.send((index, round)).await.is_err() {
            return;
        }
    }
}

/// The one owner of the topology.
struct Owner {
    states: Vec<ClusterState>,
    limits: Vec<Limits>,
    topology: watch::Sender<Arc<Topology>>,
    status: watch::Sender<Arc<Status>>,
    events: Arc<EventLog>,
}

impl Owner {
    async fn run(mut self, mut rounds: mpsc::Receiver<(usize, Round)>, shutdown: CancellationToken) {
        let mut counts = vec![0u64; self.states.len()];
        loop {
            let (index, round) = tokio::select! {
                r = rounds.recv() => match r { Some(r) => r, None => return },
                _ = shutdown.cancelled() => return,
            };
            let (next, changes) = decide(&self.states[index], &round, &self.limits[index]);
            let at = std::time::SystemTime::now();
            for change in changes {
                self.events.record(Event { at, cluster: next.id.clone(), change });
            }
            let published = next.to_topology();
            let current = self.topology.borrow().clone();
            let changed = current.clusters.get(index).is_none_or(|c| routing_view(c) != routing_view(&published));
            let mut generation = current.generation;
            if changed {
                generation = generation.next();
                let mut topology = (*current).clone();
                topology.generation = generation;
                topology.clusters[index] = published;
                self.topology.send_replace(Arc::new(topology));
            }
            self.states[index] = next;
            counts[index] += 1;
            let status = Status { clusters: self.states.clone(), rounds: counts.clone(), generation };
            self.status.send_replace(Arc::new(status));
        }
    }
}
