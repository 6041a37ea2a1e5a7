//! Choosing the node for a read among a route's readers: weighted round-robin (a precomputed smooth schedule
//! walked by an atomic counter: no lock per read) or least outstanding requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hapool_topology::NodeId;

use crate::route::Usable;

/// The longest schedule kept; weights are scaled down to fit (their ratios kept approximately).
const MAX_SCHEDULE: usize = 1000;

/// A smooth weighted round-robin order (nginx's algorithm) over `weights`: for 1:3, `b a b b` rather than
/// `a b b b`, so that a short run of reads is spread too.
pub fn schedule(weights: &[u32]) -> Vec<usize> {
    let total: u64 = weights.iter().map(|w| *w as u64).sum();
    if total == 0 {
        return Vec::new();
    }
    let scale = (total as f64 / MAX_SCHEDULE as f64).max(1.0);
    let weights: Vec<i64> =
        weights.iter().map(|w| ((*w as f64 / scale).round() as i64).max(i64::from(*w > 0))).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    (0..total)
        .map(|_| {
            for (c, w) in current.iter_mut().zip(&weights) {
                *c += w;
            }
            let best = (0..current.len()).max_by_key(|i| (current[*i], std::cmp::Reverse(*i))).expect("non-empty");
            current[best] -= total;
            best
        })
        .collect()
}

/// Requests in flight per node (server connections checked out for a read or write), for least-outstanding.
#[derive(Debug, Default)]
pub struct Loads {
    loads: Mutex<HashMap<NodeId, Arc<AtomicUsize>>>,
}

impl Loads {
    /// The counter of `node`, created on first use.
    pub fn of(&self, node: &NodeId) -> Arc<AtomicUsize> {
        self.loads.lock().unwrap_or_else(|e| e.into_inner()).entry(node.clone()).or_default().clone()
    }
}

/// The readers of one route with their schedule.
#[derive(Debug, Default)]
pub struct Readers {
    pub nodes: Vec<(Usable, Arc<AtomicUsize>)>,
    schedule: Vec<usize>,
    next: AtomicUsize,
}

impl Readers {
    pub fn new(readers: &[(Usable, u32)], loads: &Loads) -> Readers {
        let weights: Vec<u32> = readers.iter().map(|(_, w)| *w).collect();
        Readers {
            nodes: readers.iter().map(|(u, _)| (u.clone(), loads.of(&u.node))).collect(),
            schedule: schedule(&weights),
            next: AtomicUsize::new(0),
        }
    }

    /// No node may serve reads.
    pub fn is_empty(&self) -> bool {
        self.schedule.is_empty()
    }

    /// The next reader by weight; `advance = false` only looks at it (for a unit that executes nothing, so
    /// that the execution after it lands on the same reader and moves the schedule once).
    pub fn weighted(&self, advance: bool) -> Option<&Usable> {
        if self.schedule.is_empty() {
            return None;
        }
        let next = if advance { self.next.fetch_add(1, Ordering::Relaxed) } else { self.next.load(Ordering::Relaxed) };
        let i = next % self.schedule.len();
        Some(&self.nodes[self.schedule[i]].0)
    }

    /// The reader with the fewest requests in flight (ties by weight order).
    pub fn least_outstanding(&self) -> Option<&Usable> {
        self.nodes.iter().min_by_key(|(_, load)| load.load(Ordering::Relaxed)).map(|(u, _)| u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_the_weights_smoothly() {
        assert_eq!(schedule(&[1, 3]), [1, 0, 1, 1]);
        assert_eq!(schedule(&[1, 1]), [0, 1]);
        assert!(schedule(&[]).is_empty());
        assert!(schedule(&[0, 0]).is_empty());
        let s = schedule(&[5, 0, 2]);
        assert_eq!(s.iter().filter(|i| **i == 0).count(), 5);
        assert_eq!(s.iter().filter(|i| **i == 2).count(), 2);
        assert!(!s.contains(&1), "weight 0 gets nothing");
        let big = schedule(&[100_000, 300_000]);
        assert!(big.len() <= MAX_SCHEDULE);
        let share = big.iter().filter(|i| **i == 0).count() as f64 / big.len() as f64;
        assert!((share - 0.25).abs() < 0.01, "{share}");
    }

    #[test]
    fn readers_rotate_and_least_outstanding_picks_the_idle_one() {
        let loads = Loads::default();
        let node =
            |n: &str, port| Usable { node: NodeId(n.into()), addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)) };
        let readers = Readers::new(&[(node("a", 1), 1), (node("b", 2), 3)], &loads);
        let picks: Vec<String> = (0..8).map(|_| readers.weighted(true).unwrap().node.0.clone()).collect();
        assert_eq!(picks, ["b", "a", "b", "b", "b", "a", "b", "b"]);
        // Describe-then-execute: looking does not move the schedule.
        let pairs: Vec<(String, String)> = (0..4)
            .map(|_| (readers.weighted(false).unwrap().node.0.clone(), readers.weighted(true).unwrap().node.0.clone()))
            .collect();
        assert!(pairs.iter().all(|(a, b)| a == b), "{pairs:?}");
        assert_eq!(pairs.iter().filter(|(_, b)| b == "a").count(), 1);
        loads.of(&NodeId("a".into())).store(2, Ordering::Relaxed);
        assert_eq!(readers.least_outstanding().unwrap().node.0, "b");
        assert!(Readers::new(&[], &loads).weighted(true).is_none());
    }
}
