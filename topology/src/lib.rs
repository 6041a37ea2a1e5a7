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
    pub bytes: Option<u64>,
    pub seconds: Option<f64>,
}

/// One database server.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: NodeId,
    pub addr: SocketAddr,
    pub role: Role,
    pub health: Health,
    pub lag: Lag,
    pub weight: u32,
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
