//! What the manager knows about each cluster between probe rounds, and the topology it publishes from it.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use hapool_topology::{Cluster, ClusterId, Engine, Health, Lag, Node, NodeId, Role};

use crate::events::Flag;
use crate::health::HealthState;
use crate::lag::History;
use crate::observation::Observation;

/// One node as the manager knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeState {
    pub id: NodeId,
    pub addr: SocketAddr,
    pub weight: u32,
    pub role: Role,
    pub health: HealthState,
    /// The last successful probe's findings (kept while probes fail).
    pub observation: Option<Observation>,
    /// Why the last probe did not count as good: the probe error or broken replication.
    pub problem: Option<String>,
    pub lag: Lag,
    pub lagging: bool,
}

/// One cluster as the manager knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterState {
    pub id: ClusterId,
    pub engine: Engine,
    pub primary: Option<NodeId>,
    pub nodes: Vec<NodeState>,
    /// The current primary's positions over time, for lag in seconds.
    pub history: History,
    pub flags: BTreeSet<Flag>,
}

impl ClusterState {
    /// A cluster not probed yet: every node Down with an unknown role, no primary.
    pub fn new(id: ClusterId, engine: Engine, nodes: impl IntoIterator<Item = (NodeId, SocketAddr, u32)>) -> Self {
        let nodes = nodes
            .into_iter()
            .map(|(id, addr, weight)| NodeState {
                id,
                addr,
                weight,
                role: Role::Unknown,
                health: HealthState::default(),
                observation: None,
                problem: Some("not probed yet".into()),
                lag: Lag::default(),
                lagging: false,
            })
            .collect();
        ClusterState { id, engine, primary: None, nodes, history: History::default(), flags: BTreeSet::new() }
    }

    pub fn node(&self, id: &NodeId) -> Option<&NodeState> {
        self.nodes.iter().find(|n| &n.id == id)
    }

    /// The cluster as the proxy sees it.
    pub fn to_topology(&self) -> Cluster {
        let nodes = self
            .nodes
            .iter()
            .map(|n| Node {
                id: n.id.clone(),
                addr: n.addr,
                role: n.role,
                health: n.health.health,
                lag: n.lag,
                lagging: n.lagging,
                weight: n.weight,
            })
            .collect();
        Cluster { id: self.id.clone(), engine: self.engine, primary: self.primary.clone(), nodes }
    }
}

/// What routing depends on: the primary, and each node's role, health and whether it is over the lag limit.
pub type RoutingView<'a> = (Option<&'a NodeId>, Vec<(&'a NodeId, Role, Health, bool)>);

/// A new topology is published only when the routing view differs: lag figures alone do not make a new
/// generation, crossing a lag limit does.
pub fn routing_view(cluster: &Cluster) -> RoutingView<'_> {
    let nodes = cluster.nodes.iter().map(|n| (&n.id, n.role, n.health, n.lagging)).collect();
    (cluster.primary.as_ref(), nodes)
}

/// One line per cluster for logs and the demo: `app (gen 3): db1 primary up | db2 replica up lag 0.0s/0B`.
pub fn status_line(cluster: &ClusterState, generation: hapool_topology::Generation) -> String {
    let nodes: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| {
            let mut line = format!("{} {} {}", n.id, n.role, n.health.health);
            if n.role == Role::Replica {
                line.push_str(&format!(" lag {}", n.lag));
                if n.lagging {
                    line.push_str(" (over limit)");
                }
            }
            if let Some(p) = n.problem.as_ref().filter(|_| n.health.health != Health::Up) {
                line.push_str(&format!(" ({p})"));
            }
            line
        })
        .collect();
    format!("{} (generation {}): {}", cluster.id, generation.0, nodes.join(" | "))
}

/// What a configuration reload cannot change for the manager: the nodes and how they are probed.
pub fn check_live_change(old: &hapool_config::Cluster, new: &hapool_config::Cluster) -> Result<(), String> {
    let nodes = |c: &hapool_config::Cluster| -> Vec<(String, String, u16, u32)> {
        c.node.iter().map(|n| (n.name.clone(), n.host.clone(), n.port, n.weight)).collect()
    };
    if nodes(old) != nodes(new) {
        return Err(format!("cluster {}: nodes cannot change while running; restart hapool to change them", old.name));
    }
    if old.monitor != new.monitor || old.routing.max_replica_lag != new.routing.max_replica_lag {
        return Err(format!("cluster {}: [cluster.monitor] cannot change while running; restart hapool", old.name));
    }
    if old.routing.max_replica_lag_bytes != new.routing.max_replica_lag_bytes {
        return Err(format!("cluster {}: max_replica_lag_bytes cannot change while running; restart hapool", old.name));
    }
    Ok(())
}
