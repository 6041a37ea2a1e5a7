//! What an idle session does next: keep waiting, park (its task ends and the listener's parking holds the
//! client, see `pg::parking`), or end (`client_idle_timeout`). Pure: the session counts idleness in ticks of the
//! parking clock, not in time it reads.

use std::time::Duration;

use crate::pg::parking::{Epoch, TICK};

/// A session idle across this many ticks (so at least one whole tick) parks.
pub const PARK_AFTER_TICKS: Epoch = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    Wait,
    Park,
    Expire,
}

/// `can_park`: the session could hand its client over now (plain TCP, transaction pooling, no server held,
/// nothing buffered or owed). `soon`: it was just greeted, or came back from a long park and did one piece of
/// work: such a client is more likely idle again than busy, so it parks without waiting for the clock.
/// `idle_ticks`: ticks since its present idle wait began; `limit`: `client_idle_timeout` in ticks. The wait
/// began somewhere within its first tick, so a client ends only once more than `limit` ticks have passed:
/// late by up to one tick, never early.
/// `can_park` is asked only when the rest says park: it is a chain of checks, and the session asks before every
/// wait between transactions.
pub fn verdict(can_park: impl FnOnce() -> bool, soon: bool, idle_ticks: Epoch, limit: Option<Epoch>) -> Idle {
    if limit.is_some_and(|l| idle_ticks > l) {
        Idle::Expire
    } else if (soon || idle_ticks >= PARK_AFTER_TICKS) && can_park() {
        Idle::Park
    } else {
        Idle::Wait
    }
}

/// The epoch at which a client idle since `since` has passed its limit (see `verdict`).
pub fn expiry(since: Epoch, limit: Option<Epoch>) -> Option<Epoch> {
    limit.map(|l| since.saturating_add(l).saturating_add(1))
}

/// `client_idle_timeout` in ticks, rounded up (never 0: a client is not closed the moment it goes idle).
pub fn limit_ticks(timeout: Option<Duration>) -> Option<Epoch> {
    timeout.map(|t| t.as_millis().div_ceil(TICK.as_millis()).clamp(1, Epoch::MAX as u128 / 2) as Epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        use Idle::*;
        // (can_park, soon, idle_ticks, limit) → verdict
        let cases = [
            (true, false, 0, None, Wait),
            (true, false, 1, None, Wait),
            (true, false, 2, None, Park),
            (true, true, 0, None, Park),
            (false, true, 0, None, Wait),
            (false, false, 50, None, Wait),
            (false, false, 3, Some(3), Wait),
            (false, false, 4, Some(3), Expire),
            (true, true, 4, Some(3), Expire),
            (true, false, 2, Some(3), Park),
            (false, false, 2, Some(3), Wait),
        ];
        for (can_park, soon, ticks, limit, want) in cases {
            assert_eq!(verdict(|| can_park, soon, ticks, limit), want, "{can_park} {soon} {ticks} {limit:?}");
        }
    }

    #[test]
    fn timeouts_round_up_to_ticks() {
        assert_eq!(limit_ticks(None), None);
        assert_eq!(limit_ticks(Some(Duration::from_millis(1))), Some(1));
        assert_eq!(limit_ticks(Some(Duration::from_secs(2))), Some(2));
        assert_eq!(limit_ticks(Some(Duration::from_millis(2500))), Some(3));
    }
}
