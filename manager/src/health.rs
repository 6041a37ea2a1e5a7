//! Health with hysteresis: one failed probe makes a node Suspect, `failure_threshold` consecutive failures
//! make it Down, and `recovery_threshold` consecutive successes bring a Down node back Up.

use hapool_topology::Health;

/// The detector's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub failure: u32,
    pub recovery: u32,
}

/// A node's health and the run of results that led to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthState {
    pub health: Health,
    pub failures: u32,
    pub successes: u32,
    /// Whether the node has ever answered: before that it is Down, and its first good probe makes it Up.
    pub seen: bool,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState { health: Health::Down, failures: 0, successes: 0, seen: false }
    }
}

impl HealthState {
    /// The state after one more probe result. Fenced and Maintenance are set by the manager's actions, not by
    /// probes, and stay as they are.
    pub fn next(self, ok: bool, t: Thresholds) -> HealthState {
        let (failures, successes) = if ok { (0, self.successes.saturating_add(1)) } else { (self.failures + 1, 0) };
        let health = match (self.health, ok) {
            (Health::Fenced | Health::Maintenance, _) => self.health,
            (_, true) if !self.seen => Health::Up,
            (Health::Up | Health::Suspect, true) => Health::Up,
            (Health::Down, true) if successes >= t.recovery => Health::Up,
            (Health::Down, true) => Health::Down,
            (Health::Down, false) => Health::Down,
            (Health::Up | Health::Suspect, false) if failures >= t.failure => Health::Down,
            (Health::Up | Health::Suspect, false) => Health::Suspect,
        };
        HealthState { health, failures, successes, seen: self.seen || ok }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Health::*;

    /// Runs a sequence of results (`+` good, `-` failed) from a fresh node, returning the health after each.
    fn run(results: &str, failure: u32, recovery: u32) -> Vec<Health> {
        let t = Thresholds { failure, recovery };
        let mut state = HealthState::default();
        results
            .chars()
            .map(|c| {
                state = state.next(c == '+', t);
                state.health
            })
            .collect()
    }

    #[test]
    fn hysteresis_table() {
        let cases: &[(&str, u32, u32, &[Health])] = &[
            // Never seen: Down until the first good probe, which is enough.
            ("--+", 3, 2, &[Down, Down, Up]),
            // One miss is Suspect, a good probe clears it.
            ("+-+", 3, 2, &[Up, Suspect, Up]),
            // failure_threshold consecutive misses: Down.
            ("+---", 3, 2, &[Up, Suspect, Suspect, Down]),
            ("+-", 1, 2, &[Up, Down]),
            // Misses must be consecutive.
            ("+--+--", 3, 2, &[Up, Suspect, Suspect, Up, Suspect, Suspect]),
            // Back from Down needs recovery_threshold consecutive good probes.
            ("+---+-++", 3, 2, &[Up, Suspect, Suspect, Down, Down, Down, Down, Up]),
            ("+---+", 3, 1, &[Up, Suspect, Suspect, Down, Up]),
        ];
        for (results, failure, recovery, want) in cases {
            assert_eq!(&run(results, *failure, *recovery), want, "{results} f={failure} r={recovery}");
        }
    }

    #[test]
    fn fenced_and_maintenance_are_not_changed_by_probes() {
        let t = Thresholds { failure: 1, recovery: 1 };
        for health in [Fenced, Maintenance] {
            let state = HealthState { health, failures: 0, successes: 0, seen: true };
            assert_eq!(state.next(true, t).health, health);
            assert_eq!(state.next(false, t).health, health);
        }
    }
}
