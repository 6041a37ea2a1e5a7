//! PostgreSQL probes over one long-lived tokio-postgres connection per node.

use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage, Socket};

use super::{pg_tls, resolve_upstream, Link, ProbeError, Target};
use crate::observation::{Claimed, Downstream, Observation, Replication};
use crate::position::{Lsn, Position};

/// Everything one probe needs, in one round trip. Column order is `Column`'s.
pub const PROBE_SQL: &str = "\
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END,
       pg_last_wal_receive_lsn(),
       extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()),
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END,
       r.status, r.sender_host, r.sender_port, r.received_tli,
       (SELECT json_agg(json_build_object('name', application_name, 'client', client_addr::text, 'state', state,
                                          'sync', sync_state, 'flush', flush_lsn::text,
                                          'replay', replay_lsn::text))
          FROM pg_stat_replication)
  FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver r ON true";

/// The columns of `PROBE_SQL`.
#[derive(Clone, Copy)]
enum Column {
    InRecovery,
    Position,
    Received,
    Delay,
    WalFile,
    Paused,
    ReceiverStatus,
    SenderHost,
    SenderPort,
    ReceivedTli,
    Downstream,
}

/// Probes one PostgreSQL node.
pub struct PgProber {
    target: Target,
    link: Link<Client>,
}

impl PgProber {
    pub fn new(target: Target) -> PgProber {
        PgProber { target, link: Link::default() }
    }

    pub fn set_tls(&mut self, tls: Option<hapool_tls::ServerTls>) {
        self.target.tls = tls;
    }

    pub async fn probe(&mut self) -> Result<Observation, ProbeError> {
        let timeout = self.target.timeout;
        let outcome = tokio::time::timeout(timeout, self.probe_once()).await;
        self.link.bounded(outcome, timeout)
    }

    async fn probe_once(&mut self) -> Result<Observation, ProbeError> {
        if self.link.conn().is_some_and(|c| c.is_closed()) {
            self.link.reset();
        }
        let client = self.link.get(connect(&self.target)).await?;
        let messages = match client.simple_query(PROBE_SQL).await {
            Ok(m) => m,
            Err(e) => {
                self.link.reset();
                return Err(ProbeError::Query(error_text(&e)));
            }
        };
        let row = messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .ok_or_else(|| ProbeError::Answer("no row".into()))?;
        let columns: Vec<Option<&str>> = (0..row.len()).map(|i| row.get(i)).collect();
        let mut obs = parse(&columns).map_err(ProbeError::Answer)?;
        if let Some(r) = obs.replication.as_mut() {
            let host = columns.get(Column::SenderHost as usize).copied().flatten();
            let port = columns.get(Column::SenderPort as usize).copied().flatten().and_then(|p| p.parse().ok());
            if let (Some(host), Some(port)) = (host, port) {
                r.upstream = resolve_upstream(host, port).await;
            }
        }
        Ok(obs)
    }
}

async fn connect(t: &Target) -> Result<Client, ProbeError> {
    let mut config = tokio_postgres::Config::new();
    config.host(&t.host).port(t.port).user(&t.user).dbname("postgres").application_name("hapool-monitor");
    config.connect_timeout(t.timeout);
    if let Some(p) = &t.password {
        config.password(p);
    }
    match &t.tls {
        Some(tls) => {
            config.ssl_mode(pg_tls::ssl_mode(tls));
            spawn_connection(&config, pg_tls::Rustls(tls.clone())).await
        }
        None => spawn_connection(config.ssl_mode(SslMode::Disable), NoTls).await,
    }
}

/// Connects with `tls` and runs the connection's I/O in a task of its own.
async fn spawn_connection<T>(config: &tokio_postgres::Config, tls: T) -> Result<Client, ProbeError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await.map_err(|e| ProbeError::Connect(error_text(&e)))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The server's own message when there is one (tokio-postgres's Display says only "db error").
fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Turns the probe row into an observation (the upstream address is resolved by the caller).
pub fn parse(columns: &[Option<&str>]) -> Result<Observation, String> {
    let col = |c: Column| columns.get(c as usize).copied().flatten();
    let lsn = |c: Column| col(c).map(|t| Lsn::parse(t).map(Position::Lsn).ok_or(format!("bad LSN {t:?}"))).transpose();
    let in_recovery = col(Column::InRecovery).ok_or("pg_is_in_recovery() is null")? == "t";
    let position = lsn(Column::Position)?;
    let mut obs = Observation {
        claimed: if in_recovery { Claimed::Replica } else { Claimed::Primary },
        position,
        received: None,
        reported_delay: None,
        replication: None,
        timeline: None,
        downstream: Vec::new(),
        server_id: None,
    };
    if in_recovery {
        obs.received = lsn(Column::Received)?;
        obs.reported_delay = col(Column::Delay).and_then(|d| d.parse().ok());
        obs.timeline = col(Column::ReceivedTli).and_then(|t| t.parse().ok());
        obs.replication = Some(Replication {
            receiving: col(Column::ReceiverStatus) == Some("streaming"),
            applying: col(Column::Paused) != Some("t"),
            error: None,
            upstream: None,
        });
    } else {
        // A WAL file name starts with the timeline in 8 hex digits.
        obs.timeline = col(Column::WalFile).and_then(|f| u32::from_str_radix(f.get(..8)?, 16).ok());
        if let Some(json) = col(Column::Downstream) {
            obs.downstream = downstream(json)?;
        }
    }
    Ok(obs)
}

fn downstream(json: &str) -> Result<Vec<Downstream>, String> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(json).map_err(|e| format!("pg_stat_replication: {e}"))?;
    let text = |v: &serde_json::Value, k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_string);
    Ok(rows
        .iter()
        .map(|r| Downstream {
            name: text(r, "name").unwrap_or_default(),
            client: text(r, "client"),
            state: text(r, "state").unwrap_or_default(),
            sync_state: text(r, "sync").unwrap_or_default(),
            flush: text(r, "flush").and_then(|l| Lsn::parse(&l)).map(Position::Lsn),
            replay: text(r, "replay").and_then(|l| Lsn::parse(&l)).map(Position::Lsn),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_primary_row() {
        let json = r#"[{"name":"pg1","client":"127.0.0.1","state":"streaming","sync":"async","flush":"0/3000148","replay":"0/3000148"}]"#;
        let row = [
            Some("f"),
            Some("0/3000148"),
            None,
            None,
            Some("000000020000000000000003"),
            None,
            None,
            None,
            None,
            None,
            Some(json),
        ];
        let obs = parse(&row).unwrap();
        assert_eq!(obs.claimed, Claimed::Primary);
        assert_eq!(obs.position, Some(Position::Lsn(Lsn(0x300_0148))));
        assert_eq!(obs.timeline, Some(2));
        assert_eq!(obs.downstream.len(), 1);
        assert_eq!(obs.downstream[0].sync_state, "async");
        assert!(obs.replication.is_none());
    }

    #[test]
    fn replica_rows() {
        let streaming = [
            Some("t"),
            Some("0/3000100"),
            Some("0/3000148"),
            Some("2.5"),
            None,
            Some("f"),
            Some("streaming"),
            Some("127.0.0.1"),
            Some("5432"),
            Some("1"),
            None,
        ];
        let obs = parse(&streaming).unwrap();
        assert_eq!(obs.claimed, Claimed::Replica);
        assert_eq!(obs.received, Some(Position::Lsn(Lsn(0x300_0148))));
        assert_eq!(obs.reported_delay, Some(2.5));
        let r = obs.replication.unwrap();
        assert!(r.receiving && r.applying && r.broken().is_none());

        // No WAL receiver row (its primary is gone) and replay paused.
        let mut lost = streaming;
        lost[5] = Some("t");
        for column in &mut lost[6..10] {
            *column = None;
        }
        let r = parse(&lost).unwrap().replication.unwrap();
        assert!(!r.receiving && !r.applying);
        assert!(r.broken().is_some());
    }

    #[test]
    fn bad_rows_are_errors_not_panics() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[Some("f"), Some("nonsense")]).is_err());
        let row = [Some("f"), Some("0/1"), None, None, None, None, None, None, None, None, Some("{")];
        assert!(parse(&row).is_err());
    }
}
