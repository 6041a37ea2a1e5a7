//! The manager's decisions as a pure function: previous cluster state + one probe round → new state and the
//! changes to report. No I/O, no clock: the round carries its time.

use std::collections::BTreeSet;
use std::time::Instant;

use hapool_topology::{Lag, NodeId, Role};

use crate::events::{Change, Flag};
use crate::health::Thresholds;
use crate::lag::{over_limit, replica_lag};
use crate::observation::{Claimed, Observation};
use crate::state::{ClusterState, NodeState};

/// The configured limits decisions use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub thresholds: Thresholds,
    pub max_lag_seconds: Option<f64>,
    pub max_lag_bytes: Option<u64>,
}

/// One probe of every node of a cluster.
#[derive(Debug, Clone)]
pub struct Round {
    pub at: Instant,
    pub results: Vec<(NodeId, Result<Observation, String>)>,
}

impl Round {
    fn result(&self, id: &NodeId) -> Option<&Result<Observation, String>> {
        self.results.iter().find(|(n, _)| n == id).map(|(_, r)| r)
    }

    fn seen(&self, id: &NodeId) -> Option<&Observation> {
        self.result(id).and_then(|r| r.as_ref().ok())
    }
}

/// Applies one round to a cluster's state.
pub fn decide(prev: &ClusterState, round: &Round, limits: &Limits) -> (ClusterState, Vec<Change>) {
    let mut next = prev.clone();
    for node in &mut next.nodes {
        observe(node, round.result(&node.id));
    }
    let mut flags = BTreeSet::new();
    next.primary = elect(prev, &next, round, &mut flags);
    if next.primary != prev.primary {
        next.history.clear();
    }
    let primary_addr = next.primary.as_ref().and_then(|p| next.node(p)).map(|n| n.addr);
    if let Some(pos) = next.primary.as_ref().and_then(|p| round.seen(p)).and_then(|o| o.position.clone()) {
        next.history.push(pos, round.at);
    }
    let history = next.history.clone();
    for node in &mut next.nodes {
        let seen = round.seen(&node.id);
        if node.role == Role::Replica {
            if let Some(obs) = seen {
                node.lag = replica_lag(obs, &history, round.at);
                if node.lag.seconds.is_some() || node.lag.bytes.is_some() {
                    node.lagging = over_limit(&node.lag, limits.max_lag_seconds, limits.max_lag_bytes);
                }
            }
            let upstream = seen.and_then(|o| o.replication.as_ref()).and_then(|r| r.upstream);
            if let (Some(up), Some(primary)) = (upstream, primary_addr) {
                if up != primary {
                    flags.insert(Flag::WrongUpstream { node: node.id.clone(), upstream: up.to_string() });
                }
            }
        } else {
            node.lag = Lag::default();
            node.lagging = false;
        }
        let broken = seen.filter(|o| o.claimed == Claimed::Replica).and_then(|o| o.replication.as_ref()?.broken());
        if seen.is_some() {
            node.problem = broken.clone();
        }
        node.health = node.health.next(seen.is_some() && broken.is_none(), limits.thresholds);
    }
    // A flag about nodes that could not be probed this round can be neither confirmed nor cleared: keep it.
    for flag in &prev.flags {
        if flag_nodes(flag).iter().any(|n| round.seen(n).is_none()) {
            flags.insert(flag.clone());
        }
    }
    next.flags = flags;
    let changes = changes(prev, &next);
    (next, changes)
}

/// Records one node's probe result.
fn observe(node: &mut NodeState, result: Option<&Result<Observation, String>>) {
    match result {
        Some(Ok(obs)) => {
            node.role = match obs.claimed {
                Claimed::Primary => Role::Primary,
                Claimed::Replica => Role::Replica,
                Claimed::Neither => Role::Unknown,
            };
            node.observation = Some(obs.clone());
        }
        Some(Err(e)) => node.problem = Some(e.clone()),
        None => node.problem = Some("not probed".into()),
    }
}

/// Which node is primary after this round. One node claiming it is the primary. None claiming it keeps the
/// previous primary (a missed probe is not a demotion) unless that node now says it is a replica. Several
/// claiming it is flagged; the previous primary keeps the role if it is among them, otherwise the one the
/// replicas follow, and if that is not clear, none: no writes are better than writes to the wrong node.
fn elect(prev: &ClusterState, next: &ClusterState, round: &Round, flags: &mut BTreeSet<Flag>) -> Option<NodeId> {
    let claims: Vec<&NodeId> = next
        .nodes
        .iter()
        .filter(|n| round.seen(&n.id).is_some_and(|o| o.claimed == Claimed::Primary))
        .map(|n| &n.id)
        .collect();
    match claims.as_slice() {
        [] => {
            let old = prev.primary.as_ref()?;
            match round.seen(old).map(|o| o.claimed) {
                Some(Claimed::Replica) => {
                    flags.insert(Flag::PrimaryInRecovery(old.clone()));
                    None
                }
                Some(Claimed::Neither) => None,
                _ => Some(old.clone()),
            }
        }
        [one] => Some((*one).clone()),
        many => {
            flags.insert(Flag::TwoPrimaries(many.iter().map(|n| (*n).clone()).collect()));
            if let Some(old) = prev.primary.as_ref().filter(|p| many.contains(p)) {
                return Some(old.clone());
            }
            let votes = |id: &NodeId| {
                let addr = next.node(id).map(|n| n.addr);
                round
                    .results
                    .iter()
                    .filter_map(|(_, r)| r.as_ref().ok()?.replication.as_ref()?.upstream)
                    .filter(|up| Some(*up) == addr)
                    .count()
            };
            let mut tally: Vec<(usize, &NodeId)> = many.iter().map(|id| (votes(id), *id)).collect();
            tally.sort_by_key(|(votes, _)| std::cmp::Reverse(*votes));
            match tally.as_slice() {
                [(best, id), rest @ ..] if *best > 0 && rest.first().is_none_or(|(n, _)| n < best) => {
                    Some((*id).clone())
                }
                _ => None,
            }
        }
    }
}

fn flag_nodes(flag: &Flag) -> Vec<&NodeId> {
    match flag {
        Flag::TwoPrimaries(nodes) => nodes.iter().collect(),
        Flag::PrimaryInRecovery(node) | Flag::WrongUpstream { node, .. } => vec![node],
    }
}

/// Everything that differs between two states, in a stable order.
fn changes(prev: &ClusterState, next: &ClusterState) -> Vec<Change> {
    let mut out = Vec::new();
    if prev.primary != next.primary {
        out.push(Change::Primary { from: prev.primary.clone(), to: next.primary.clone() });
    }
    for (old, new) in prev.nodes.iter().zip(&next.nodes) {
        if old.role != new.role {
            out.push(Change::Role { node: new.id.clone(), from: old.role, to: new.role });
        }
        if old.health.health != new.health.health {
            let reason = new.problem.clone().filter(|_| !matches!(new.health.health, hapool_topology::Health::Up));
            out.push(Change::Health { node: new.id.clone(), from: old.health.health, to: new.health.health, reason });
        }
        if old.lagging != new.lagging {
            out.push(Change::Lag { node: new.id.clone(), over: new.lagging, lag: new.lag });
        }
    }
    for flag in next.flags.difference(&prev.flags) {
        out.push(Change::Flag { flag: flag.clone(), raised: true });
    }
    for flag in prev.flags.difference(&next.flags) {
        out.push(Change::Flag { flag: flag.clone(), raised: false });
    }
    out
}

#[cfg(test)]
mod tests;
