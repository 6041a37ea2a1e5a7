//! Replication lag from positions: how far (bytes or transactions) and how long (seconds) a replica trails.
//!
//! Seconds are the harder half. "Now minus the commit time of the last applied transaction" grows without end
//! on an idle primary although nothing is missing, so the delay a server reports is used only while the
//! replica really trails the primary's position. It is then capped by the manager's own view: how long ago the
//! primary was first seen past the replica's position (from the history of the primary's positions). The
//! smaller of the two is the lag; a caught-up replica has a lag of 0.

use std::collections::VecDeque;
use std::time::Instant;

use hapool_topology::Lag;

use crate::observation::Observation;
use crate::position::Position;

/// How many distinct primary positions are remembered (one per probe round with writes: minutes of history).
const HISTORY: usize = 600;

/// The primary's positions, each with when it was first seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    samples: VecDeque<(Position, Instant)>,
}

impl History {
    /// Records the primary's position seen at `at` (only when it moved).
    pub fn push(&mut self, position: Position, at: Instant) {
        if self.samples.back().is_some_and(|(p, _)| *p == position) {
            return;
        }
        if self.samples.len() == HISTORY {
            self.samples.pop_front();
        }
        self.samples.push_back((position, at));
    }

    /// The primary's newest known position.
    pub fn latest(&self) -> Option<&Position> {
        self.samples.back().map(|(p, _)| p)
    }

    /// Since when the primary has been past `position`: the first remembered sample ahead of it (positions
    /// only grow). `None` when even the newest is not ahead.
    pub fn ahead_since(&self, position: &Position) -> Option<Instant> {
        self.samples.iter().find(|(p, _)| p.distance_to(position).is_some_and(|d| d > 0)).map(|(_, at)| *at)
    }

    /// Forgets everything (a new primary starts a new history).
    pub fn clear(&mut self) {
        self.samples.clear();
    }
}

/// The lag of a replica from its last observation, the primary's history and the time now.
pub fn replica_lag(replica: &Observation, history: &History, now: Instant) -> Lag {
    let (Some(position), Some(latest)) = (replica.position.as_ref(), history.latest()) else {
        return Lag::default();
    };
    let Some(distance) = latest.distance_to(position) else { return Lag::default() };
    let seconds = if distance == 0 {
        0.0
    } else {
        let seen = history.ahead_since(position).map_or(0.0, |since| now.duration_since(since).as_secs_f64());
        match replica.reported_delay {
            Some(reported) => reported.max(0.0).min(seen),
            None => seen,
        }
    };
    let (bytes, transactions) = match latest {
        Position::Lsn(_) => (Some(distance), None),
        Position::Gtid(_) => (None, Some(distance)),
    };
    Lag { bytes, seconds: Some(seconds), transactions }
}

/// Whether a lag is over the configured limits. Unknown parts never count as over.
pub fn over_limit(lag: &Lag, max_seconds: Option<f64>, max_bytes: Option<u64>) -> bool {
    let seconds = matches!((lag.seconds, max_seconds), (Some(s), Some(m)) if s > m);
    let bytes = matches!((lag.bytes, max_bytes), (Some(b), Some(m)) if b > m);
    seconds || bytes
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::observation::Claimed;
    use crate::position::{GtidSet, Lsn};

    fn replica(position: Position, reported: Option<f64>) -> Observation {
        Observation {
            claimed: Claimed::Replica,
            position: Some(position),
            received: None,
            reported_delay: reported,
            replication: None,
            timeline: None,
            downstream: Vec::new(),
            server_id: None,
        }
    }

    fn lsn(v: u64) -> Position {
        Position::Lsn(Lsn(v))
    }

    #[test]
    fn lag_table() {
        let t0 = Instant::now();
        let secs = |s: u64| t0 + Duration::from_secs(s);
        // The primary wrote at 0 s (to 100), 10 s (to 200) and 20 s (to 300); now is 25 s.
        let mut history = History::default();
        for (at, pos) in [(0, 100), (5, 100), (10, 200), (20, 300)] {
            history.push(lsn(pos), secs(at));
        }
        let now = secs(25);
        let cases = [
            // Caught up: 0 whatever the server says (an idle primary's last commit may be hours old).
            (lsn(300), Some(3600.0), Some(0), 0.0),
            (lsn(350), None, Some(0), 0.0),
            // Behind since the primary passed 200 at 20 s: at most 5 s, less if the server says less.
            (lsn(200), Some(60.0), Some(100), 5.0),
            (lsn(250), Some(0.5), Some(50), 0.5),
            // Behind since 10 s (passed 100 at 10 s), no server figure.
            (lsn(100), None, Some(200), 15.0),
            // Further behind than the history reaches: the oldest sample bounds it.
            (lsn(50), None, Some(250), 25.0),
        ];
        for (pos, reported, bytes, seconds) in cases {
            let lag = replica_lag(&replica(pos.clone(), reported), &history, now);
            assert_eq!(lag.bytes, bytes, "{pos}");
            assert_eq!(lag.seconds, Some(seconds), "{pos} {reported:?}");
        }
    }

    #[test]
    fn gtid_lag_counts_transactions() {
        let now = Instant::now();
        let mut history = History::default();
        history.push(Position::Gtid(GtidSet::parse("0-1-120").unwrap()), now);
        let lag = replica_lag(&replica(Position::Gtid(GtidSet::parse("0-1-100").unwrap()), None), &history, now);
        assert_eq!((lag.bytes, lag.transactions), (None, Some(20)));
    }

    #[test]
    fn unknown_positions_give_unknown_lag() {
        let lag = replica_lag(&replica(lsn(1), None), &History::default(), Instant::now());
        assert_eq!(lag, Lag::default());
    }

    #[test]
    fn limits() {
        let lag = Lag { bytes: Some(2048), seconds: Some(1.5), transactions: None };
        assert!(!over_limit(&lag, None, None));
        assert!(over_limit(&lag, Some(1.0), None));
        assert!(!over_limit(&lag, Some(2.0), Some(4096)));
        assert!(over_limit(&lag, Some(2.0), Some(1024)));
        assert!(!over_limit(&Lag::default(), Some(0.0), Some(0)));
    }

    #[test]
    fn history_is_bounded_and_keeps_changes_only() {
        let now = Instant::now();
        let mut history = History::default();
        for i in 0..(HISTORY as u64 + 50) {
            history.push(lsn(i / 2), now);
        }
        assert!(history.samples.len() <= HISTORY);
        assert_eq!(history.latest(), Some(&lsn((HISTORY as u64 + 49) / 2)));
    }
}
