//! Which nodes of a cluster the proxy may use, derived from the manager's topology (pure).

use std::net::SocketAddr;

use hapool_config::PrimaryReads;
use hapool_topology::{Health, NodeId, Role, Topology};

/// One node the proxy may connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usable {
    pub node: NodeId,
    pub addr: SocketAddr,
}

/// A listener's view of its cluster in one topology generation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Route {
    pub generation: u64,
    /// The primary, when there is one and it is usable (Up or Suspect).
    pub primary: Option<Usable>,
    /// Every usable node.
    pub usable: Vec<Usable>,
    /// Why there is no primary, for the client's error message.
    pub no_primary: Option<String>,
    /// Nodes that may serve reads now (usable replicas under the lag limit, and the primary if configured),
    /// with their weights.
    pub readers: Vec<(Usable, u32)>,
    /// Usable replicas left out of `readers` because they lag: why a read went to the primary.
    pub lagging: usize,
}

impl Route {
    /// The route of cluster `name` in `topology`.
    pub fn of(topology: &Topology, name: &str) -> Route {
        Route::with_reads(topology, name, PrimaryReads::False)
    }

    /// The route, with the primary among the readers as `primary_reads` says (`true`: like a replica of
    /// weight 1; `weight`: by its node weight).
    pub fn with_reads(topology: &Topology, name: &str, primary_reads: PrimaryReads) -> Route {
        let generation = topology.generation.0;
        let Some(cluster) = topology.cluster_named(name) else {
            return Route {
                generation,
                no_primary: Some("the cluster is not in the topology".into()),
                ..Route::default()
            };
        };
        let usable: Vec<Usable> =
            cluster.nodes.iter().filter(|n| n.usable()).map(|n| Usable { node: n.id.clone(), addr: n.addr }).collect();
        let (primary, no_primary) = match cluster.primary_node() {
            None => (None, Some("no node is primary".to_string())),
            Some(p) if !p.usable() => (None, Some(format!("primary {} is {}", p.id, p.health))),
            Some(p) => (Some(Usable { node: p.id.clone(), addr: p.addr }), None),
        };
        let mut readers = Vec::new();
        let mut lagging = 0;
        for n in cluster.nodes.iter().filter(|n| n.usable()) {
            let usable = Usable { node: n.id.clone(), addr: n.addr };
            let weight = match (n.role, primary.as_ref().is_some_and(|p| p.node == n.id)) {
                (_, true) => match primary_reads {
                    PrimaryReads::False => 0,
                    PrimaryReads::True => 1,
                    PrimaryReads::Weight => n.weight,
                },
                (Role::Replica, false) if n.lagging => {
                    lagging += 1;
                    0
                }
                (Role::Replica, false) => n.weight,
                _ => 0,
            };
            if weight > 0 {
                readers.push((usable, weight));
            }
        }
        Route { generation, primary, usable, no_primary, readers, lagging }
    }

    /// Whether a connection to `node` at `addr` may still be used.
    pub fn allows(&self, node: &NodeId, addr: SocketAddr) -> bool {
        self.usable.iter().any(|u| &u.node == node && u.addr == addr)
    }
}

/// Whether a health lets a node be used (re-exported for callers that only have a health).
pub fn usable(health: Health) -> bool {
    matches!(health, Health::Up | Health::Suspect)
}

#[cfg(test)]
mod tests {
    use hapool_topology::{Cluster, ClusterId, Engine, Generation, Lag, Node};

    use super::*;

    fn topology(primary: Option<&str>, healths: &[(&str, Health)]) -> Topology {
        let nodes = healths
            .iter()
            .enumerate()
            .map(|(i, (name, health))| Node {
                id: NodeId(name.to_string()),
                addr: SocketAddr::from(([127, 0, 0, 1], 5000 + i as u16)),
                role: if Some(*name) == primary { Role::Primary } else { Role::Replica },
                health: *health,
                lag: Lag::default(),
                lagging: false,
                weight: 1,
            })
            .collect();
        let cluster = Cluster {
            id: ClusterId("app".into()),
            engine: Engine::Postgres,
            primary: primary.map(|p| NodeId(p.into())),
            nodes,
        };
        Topology { generation: Generation(7), clusters: vec![cluster] }
    }

    #[test]
    fn routes() {
        let t = topology(Some("b"), &[("a", Health::Up), ("b", Health::Suspect), ("c", Health::Down)]);
        let r = Route::of(&t, "app");
        assert_eq!(r.generation, 7);
        assert_eq!(r.primary.as_ref().unwrap().node.0, "b");
        assert_eq!(r.usable.len(), 2);
        assert!(r.allows(&NodeId("a".into()), SocketAddr::from(([127, 0, 0, 1], 5000))));
        assert!(!r.allows(&NodeId("a".into()), SocketAddr::from(([127, 0, 0, 1], 5999))), "moved");
        assert!(!r.allows(&NodeId("c".into()), SocketAddr::from(([127, 0, 0, 1], 5002))));

        let down = Route::of(&topology(Some("a"), &[("a", Health::Down)]), "app");
        assert_eq!((down.primary, down.no_primary.as_deref()), (None, Some("primary a is down")));
        assert_eq!(
            Route::of(&topology(None, &[("a", Health::Up)]), "app").no_primary.as_deref(),
            Some("no node is primary")
        );
        assert!(Route::of(&topology(None, &[]), "other").no_primary.is_some());
    }

    #[test]
    fn readers_are_usable_replicas_under_the_lag_limit_and_the_primary_if_asked() {
        let mut t =
            topology(Some("a"), &[("a", Health::Up), ("b", Health::Up), ("c", Health::Up), ("d", Health::Down)]);
        t.clusters[0].nodes[2].lagging = true;
        t.clusters[0].nodes[1].weight = 3;
        t.clusters[0].nodes[0].weight = 5;
        let names = |r: &Route| r.readers.iter().map(|(u, w)| format!("{}:{w}", u.node)).collect::<Vec<_>>();
        let r = Route::of(&t, "app");
        assert_eq!(names(&r), ["b:3"]);
        assert_eq!(r.lagging, 1);
        assert_eq!(names(&Route::with_reads(&t, "app", PrimaryReads::True)), ["a:1", "b:3"]);
        assert_eq!(names(&Route::with_reads(&t, "app", PrimaryReads::Weight)), ["a:5", "b:3"]);
    }
}
