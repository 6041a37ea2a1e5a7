//! The topology: which nodes each cluster has, which one is primary, how healthy and how far behind each is.
//!
//! Plain data with no I/O. The manager owns and publishes `Arc<Topology>` snapshots; the proxy only reads them.

use std::fmt;
use std::net::SocketAddr;

/// Identifies a cluster by its configured name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub String);

/// Identifies a node by its configured name, unique within its cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub String);

/// Increases on every published change; doubles as the fencing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Generation(pub u64);

impl Generation {
    /// The generation that follows this one.
    pub fn next(self) -> Generation {
        Generation(self.0 + 1)
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The database engine a cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    Postgres,
    MySql,
}

/// What a node is in its replication topology, as last observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Primary,
    Replica,
    Unknown,
}

/// Whether a node may be used, as last decided by the manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    Up,
    Suspect,
    Down,
    Fenced,
    Maintenance,
}

/// How far a replica is behind its primary; `None` where not measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Lag {
    /// WAL bytes not yet replayed (PostgreSQL).
    pub bytes: Option<u64>,
    /// How long ago the newest change it has not applied was made on the primary; 0 when caught up.
    pub seconds: Option<f64>,
    /// Transactions not yet applied, by GTID sequence distance (MySQL/MariaDB).
    pub transactions: Option<u64>,
}

impl fmt::Display for Lag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(s) = self.seconds {
            parts.push(format!("{s:.1}s"));
        }
        if let Some(b) = self.bytes {
            parts.push(format!("{b}B"));
        }
        if let Some(t) = self.transactions {
            parts.push(format!("{t}tx"));
        }
        if parts.is_empty() {
            return f.write_str("?");
        }
        f.write_str(&parts.join("/"))
    }
}

/// One database server.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: NodeId,
    pub addr: SocketAddr,
    pub role: Role,
    pub health: Health,
    pub lag: Lag,
    /// The lag is over the cluster's `max_replica_lag` limits: the node gets no reads.
    pub lagging: bool,
    pub weight: u32,
}

impl Node {
    /// The node may serve clients: it is Up, or Suspect (one missed probe is not yet a failure).
    pub fn usable(&self) -> bool {
        matches!(self.health, Health::Up | Health::Suspect)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Unknown => "unknown",
        })
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Up => "up",
            Health::Suspect => "suspect",
            Health::Down => "down",
            Health::Fenced => "fenced",
            Health::Maintenance => "maintenance",
        })
    }
}

/// One replicated database cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub id: ClusterId,
    pub engine: Engine,
    pub primary: Option<NodeId>,
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// The node currently acting as primary, if any.
    pub fn primary_node(&self) -> Option<&Node> {
        let id = self.primary.as_ref()?;
        self.node(id)
    }

    /// The node with this id, if any.
    pub fn node(&self, id: &NodeId) -> Option<&Node> {
        self.nodes.iter().find(|n| &n.id == id)
    }
}

/// A snapshot of every cluster this hapool node knows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Topology {
    pub generation: Generation,
    pub clusters: Vec<Cluster>,
}

impl Topology {
    /// The cluster with this name, if any.
    pub fn cluster(&self, id: &ClusterId) -> Option<&Cluster> {
        self.clusters.iter().find(|c| &c.id == id)
    }

    /// The cluster with this configured name, if any.
    pub fn cluster_named(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.id.0 == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, role: Role) -> Node {
        Node {
            id: NodeId(name.into()),
            addr: "127.0.0.1:5432".parse().unwrap(),
            role,
            health: Health::Up,
            lag: Lag::default(),
            lagging: false,
            weight: 1,
        }
    }

    #[test]
    fn primary_node_follows_the_primary_id() {
        let mut cluster = Cluster {
            id: ClusterId("app".into()),
            engine: Engine::Postgres,
            primary: Some(NodeId("db2".into())),
            nodes: vec![node("db1", Role::Replica), node("db2", Role::Primary)],
        };
        assert_eq!(cluster.primary_node().unwrap().id.0, "db2");
        cluster.primary = None;
        assert!(cluster.primary_node().is_none());
    }

    #[test]
    fn generations_increase() {
        assert!(Generation(1).next() > Generation(1));
    }
}
