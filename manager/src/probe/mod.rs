//! Probing I/O: one long-lived monitor connection per node, re-established with backoff, and one bounded
//! probe per round. What a probe finds is parsed by pure functions into an `Observation`.

pub mod mysql;
pub mod pg;
mod pg_tls;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::observation::Observation;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("probe query failed: {0}")]
    Query(String),
    #[error("unexpected probe answer: {0}")]
    Answer(String),
    #[error("waiting {0:?} before reconnecting (last: {1})")]
    Backoff(Duration, String),
}

/// How to reach one node as the monitor user.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub timeout: Duration,
    /// TLS to a PostgreSQL node as `[cluster.tls] server_mode` says (`None`: plain text). MySQL probes are plain.
    pub tls: Option<hapool_tls::ServerTls>,
}

/// A prober of either engine.
pub enum Prober {
    Pg(pg::PgProber),
    My(mysql::MyProber),
}

impl Prober {
    /// One probe, bounded by the target's timeout (connecting included).
    pub async fn probe(&mut self) -> Result<Observation, ProbeError> {
        match self {
            Prober::Pg(p) => p.probe().await,
            Prober::My(p) => p.probe().await,
        }
    }

    /// The TLS settings for the connections it opens from now on (MySQL probes are plain: ignored).
    pub fn set_tls(&mut self, tls: Option<hapool_tls::ServerTls>) {
        if let Prober::Pg(p) = self {
            p.set_tls(tls);
        }
    }
}

/// A monitor connection that is re-established, with backoff, when it is missing.
pub struct Link<C> {
    conn: Option<C>,
    backoff: Backoff,
}

impl<C> Default for Link<C> {
    fn default() -> Self {
        Link { conn: None, backoff: Backoff::default() }
    }
}

impl<C> Link<C> {
    /// The connection, opening one with `connect` if there is none (unless backing off).
    pub async fn get<F>(&mut self, connect: F) -> Result<&mut C, ProbeError>
    where
        F: std::future::Future<Output = Result<C, ProbeError>>,
    {
        if self.conn.is_none() {
            self.backoff.check(Instant::now())?;
            match connect.await {
                Ok(conn) => {
                    self.backoff.succeeded();
                    self.conn = Some(conn);
                }
                Err(e) => {
                    self.backoff.failed(Instant::now(), &e);
                    return Err(e);
                }
            }
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    pub fn conn(&self) -> Option<&C> {
        self.conn.as_ref()
    }

    /// Forgets the connection (it failed or may be stuck); the next probe reconnects.
    pub fn reset(&mut self) {
        self.conn = None;
    }

    /// The outcome of a probe bounded by `timeout`: a probe that ran out of time may have left the connection
    /// stuck (a paused or partitioned server), so it is dropped.
    pub fn bounded<T>(
        &mut self,
        outcome: Result<Result<T, ProbeError>, tokio::time::error::Elapsed>,
        timeout: Duration,
    ) -> Result<T, ProbeError> {
        outcome.unwrap_or_else(|_| {
            self.reset();
            Err(ProbeError::Timeout(timeout))
        })
    }
}

/// Reconnection pacing: after a failed connection, wait 1, 2, 4 … rounds' worth (at most `MAX`) before
/// trying again; each round in between counts as a failed probe without touching the network.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
    until: Option<Instant>,
    last: String,
}

impl Backoff {
    const MAX: Duration = Duration::from_secs(5);

    /// `Err` while waiting.
    pub fn check(&self, now: Instant) -> Result<(), ProbeError> {
        match self.until {
            Some(until) if now < until => Err(ProbeError::Backoff(until - now, self.last.clone())),
            _ => Ok(()),
        }
    }

    pub fn failed(&mut self, now: Instant, error: &ProbeError) {
        self.failures = self.failures.saturating_add(1);
        // The first retry is at the next round; then the waits double.
        let wait =
            Duration::from_millis(250).saturating_mul(1 << self.failures.min(5).saturating_sub(1)).min(Self::MAX);
        self.until = (self.failures > 1).then(|| now + wait);
        self.last = error.to_string();
    }

    pub fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

/// Where a replica says it replicates from, as an address comparable with the configured nodes'.
pub async fn resolve_upstream(host: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    if host.starts_with('/') {
        return None; // a Unix socket: not one of our nodes' TCP addresses
    }
    let lookup = tokio::net::lookup_host((host, port));
    tokio::time::timeout(Duration::from_millis(200), lookup).await.ok()?.ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_lets_the_first_retry_through_then_doubles() {
        let now = Instant::now();
        let mut b = Backoff::default();
        assert!(b.check(now).is_ok());
        let e = ProbeError::Connect("refused".into());
        b.failed(now, &e);
        assert!(b.check(now).is_ok(), "first retry at the next round");
        b.failed(now, &e);
        assert!(b.check(now).is_err());
        assert!(b.check(now + Duration::from_millis(500)).is_ok());
        for _ in 0..10 {
            b.failed(now, &e);
        }
        assert!(b.check(now + Backoff::MAX).is_ok(), "capped");
        b.succeeded();
        assert!(b.check(now).is_ok());
    }
}
