//! Every state change the manager decides, logged once and kept in a bounded history for operators.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::SystemTime;

use hapool_topology::{ClusterId, Health, Lag, NodeId, Role};

/// Something that needs an operator's attention about the roles in a cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flag {
    /// More than one node accepts writes.
    TwoPrimaries(Vec<NodeId>),
    /// The node that was primary now reports it is a replica (in recovery / read-only with replication).
    PrimaryInRecovery(NodeId),
    /// A replica replicates from somewhere other than the current primary.
    WrongUpstream { node: NodeId, upstream: String },
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flag::TwoPrimaries(nodes) => {
                let names: Vec<&str> = nodes.iter().map(|n| n.0.as_str()).collect();
                write!(f, "more than one node accepts writes: {}", names.join(", "))
            }
            Flag::PrimaryInRecovery(node) => write!(f, "primary {node} now reports it is a replica"),
            Flag::WrongUpstream { node, upstream } => {
                write!(f, "replica {node} replicates from {upstream}, not from the primary")
            }
        }
    }
}

/// What changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Health { node: NodeId, from: Health, to: Health, reason: Option<String> },
    Role { node: NodeId, from: Role, to: Role },
    Primary { from: Option<NodeId>, to: Option<NodeId> },
    Lag { node: NodeId, over: bool, lag: Lag },
    Flag { flag: Flag, raised: bool },
}

impl Change {
    /// What kind of change, for structured logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Health { .. } => "health",
            Change::Role { .. } => "role",
            Change::Primary { .. } => "primary",
            Change::Lag { .. } => "lag",
            Change::Flag { .. } => "flag",
        }
    }

    /// Whether this change is bad news (logged as a warning).
    pub fn is_warning(&self) -> bool {
        match self {
            Change::Health { to, .. } => !matches!(to, Health::Up),
            Change::Primary { to, .. } => to.is_none(),
            Change::Lag { over, .. } => *over,
            Change::Flag { raised, .. } => *raised,
            Change::Role { .. } => false,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |n: &Option<NodeId>| n.as_ref().map_or("none".to_string(), |n| n.0.clone());
        match self {
            Change::Health { node, from, to, reason: Some(r) } => write!(f, "node {node} {from} → {to} ({r})"),
            Change::Health { node, from, to, reason: None } => write!(f, "node {node} {from} → {to}"),
            Change::Role { node, from, to } => write!(f, "node {node} role {from} → {to}"),
            Change::Primary { from, to } => write!(f, "primary {} → {}", name(from), name(to)),
            Change::Lag { node, over: true, lag } => write!(f, "node {node} lag {lag} is over the limit: no reads"),
            Change::Lag { node, over: false, lag } => write!(f, "node {node} lag {lag} is back under the limit"),
            Change::Flag { flag, raised: true } => write!(f, "{flag}"),
            Change::Flag { flag, raised: false } => write!(f, "resolved: {flag}"),
        }
    }
}

/// A change in one cluster, with when it was decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: SystemTime,
    pub cluster: ClusterId,
    pub change: Change,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cluster {}: {}", self.cluster, self.change)
    }
}

/// The newest events, oldest dropped first.
#[derive(Debug)]
pub struct EventLog {
    capacity: usize,
    events: Mutex<VecDeque<Event>>,
}

impl EventLog {
    pub fn new(capacity: usize) -> EventLog {
        EventLog { capacity: capacity.max(1), events: Mutex::new(VecDeque::new()) }
    }

    /// Logs the event (a warning for bad news) and keeps it.
    pub fn record(&self, event: Event) {
        let (cluster, kind) = (&event.cluster.0, event.change.kind());
        if event.change.is_warning() {
            tracing::warn!(cluster, kind, "{}", event.change);
        } else {
            tracing::info!(cluster, kind, "{}", event.change);
        }
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if events.len() == self.capacity {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// The kept events, oldest first.
    pub fn recent(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_bounded() {
        let log = EventLog::new(3);
        for i in 0..5 {
            let change = Change::Primary { from: None, to: Some(NodeId(format!("n{i}"))) };
            log.record(Event { at: SystemTime::now(), cluster: ClusterId("c".into()), change });
        }
        let names: Vec<String> = log.recent().iter().map(|e| e.change.to_string()).collect();
        assert_eq!(names, ["primary none → n2", "primary none → n3", "primary none → n4"]);
    }
}
