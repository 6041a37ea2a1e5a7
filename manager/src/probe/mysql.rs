//! MySQL and MariaDB probes over one long-lived mysql_async connection per node. The two differ in
//! statement and column names only; `Dialect` holds those.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row, Value};

use super::{resolve_upstream, Link, ProbeError, Target};
use crate::observation::{Claimed, Observation, Replication};
use crate::position::{GtidSet, Position};

/// Statement and column names of one server family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// `@@read_only, @@server_id, <primary position>, <replica applied position>`.
    pub variables: &'static str,
    pub status: &'static str,
    pub io_running: &'static str,
    pub sql_running: &'static str,
    pub behind: &'static str,
    pub host: &'static str,
    pub port: &'static str,
    pub received: &'static str,
}

pub const MARIADB: Dialect = Dialect {
    variables: "SELECT @@read_only, @@server_id, @@gtid_current_pos, @@gtid_slave_pos",
    status: "SHOW SLAVE STATUS",
    io_running: "Slave_IO_Running",
    sql_running: "Slave_SQL_Running",
    behind: "Seconds_Behind_Master",
    host: "Master_Host",
    port: "Master_Port",
    received: "Gtid_IO_Pos",
};

/// MySQL 8.0.22 and later.
pub const MYSQL: Dialect = Dialect {
    variables: "SELECT @@read_only, @@server_id, @@gtid_executed, @@gtid_executed",
    status: "SHOW REPLICA STATUS",
    io_running: "Replica_IO_Running",
    sql_running: "Replica_SQL_Running",
    behind: "Seconds_Behind_Source",
    host: "Source_Host",
    port: "Source_Port",
    received: "Retrieved_Gtid_Set",
};

impl Dialect {
    /// The dialect of a server from its `VERSION()`.
    pub fn of_version(version: &str) -> Dialect {
        if version.to_ascii_lowercase().contains("mariadb") {
            MARIADB
        } else {
            MYSQL
        }
    }
}

/// Probes one MySQL/MariaDB node.
pub struct MyProber {
    target: Target,
    link: Link<(Conn, Dialect)>,
}

impl MyProber {
    pub fn new(target: Target) -> MyProber {
        MyProber { target, link: Link::default() }
    }

    pub async fn probe(&mut self) -> Result<Observation, ProbeError> {
        let timeout = self.target.timeout;
        let outcome = tokio::time::timeout(timeout, self.probe_once()).await;
        self.link.bounded(outcome, timeout)
    }

    async fn probe_once(&mut self) -> Result<Observation, ProbeError> {
        let (conn, dialect) = self.link.get(connect(&self.target)).await?;
        let dialect = *dialect;
        let answer = async {
            let vars: Option<Row> = conn.query_first(dialect.variables).await?;
            let status: Vec<Row> = conn.query(dialect.status).await?;
            Ok::<_, mysql_async::Error>((vars, status))
        };
        let (vars, status) = match answer.await {
            Ok(a) => a,
            Err(e) => {
                self.link.reset();
                return Err(ProbeError::Query(e.to_string()));
            }
        };
        let vars: Vec<Option<String>> = match &vars {
            Some(row) => (0..row.len()).map(|i| row.as_ref(i).and_then(text)).collect(),
            None => return Err(ProbeError::Answer("no variables row".into())),
        };
        let status = status.first().map(by_name);
        let mut obs = parse(&dialect, &vars, status.as_ref()).map_err(ProbeError::Answer)?;
        if let (Some(r), Some(s)) = (obs.replication.as_mut(), status.as_ref()) {
            let host = s.get(dialect.host).cloned().flatten();
            let port = s.get(dialect.port).cloned().flatten().and_then(|p| p.parse().ok());
            if let (Some(host), Some(port)) = (host, port) {
                r.upstream = resolve_upstream(&host, port).await;
            }
        }
        Ok(obs)
    }
}

async fn connect(t: &Target) -> Result<(Conn, Dialect), ProbeError> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(t.host.clone())
        .tcp_port(t.port)
        .user(Some(t.user.clone()))
        .pass(t.password.clone())
        .prefer_socket(false);
    let mut conn = Conn::new(opts).await.map_err(|e| ProbeError::Connect(e.to_string()))?;
    let version: Option<String> =
        conn.query_first("SELECT VERSION()").await.map_err(|e| ProbeError::Query(e.to_string()))?;
    Ok((conn, Dialect::of_version(&version.unwrap_or_default())))
}

/// A column value as text (`None` for NULL).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true)),
    }
}

fn by_name(row: &Row) -> HashMap<String, Option<String>> {
    row.columns_ref()
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name_str().into_owned(), row.as_ref(i).and_then(text)))
        .collect()
}

/// Turns the variables row and the replica status row (absent on a server that replicates from nobody) into
/// an observation. The upstream address is resolved by the caller.
pub fn parse(
    dialect: &Dialect,
    vars: &[Option<String>],
    status: Option<&HashMap<String, Option<String>>>,
) -> Result<Observation, String> {
    let var = |i: usize| vars.get(i).cloned().flatten();
    let gtid = |t: Option<String>| {
        t.map(|t| GtidSet::parse(&t).map(Position::Gtid).ok_or(format!("bad GTID position {t:?}"))).transpose()
    };
    let read_only = var(0).ok_or("@@read_only is null")? != "0";
    let server_id = var(1).and_then(|s| s.parse().ok());
    let col = |name: &str| status.and_then(|s| s.get(name).cloned().flatten()).filter(|v| !v.is_empty());
    let replicating = col(dialect.host).is_some();
    let mut obs = Observation {
        claimed: match (replicating, read_only) {
            (true, _) => Claimed::Replica,
            (false, false) => Claimed::Primary,
            (false, true) => Claimed::Neither,
        },
        position: None,
        received: None,
        reported_delay: None,
        replication: None,
        timeline: None,
        downstream: Vec::new(),
        server_id,
    };
    if replicating {
        obs.position = gtid(var(3))?;
        obs.received = gtid(col(dialect.received))?;
        obs.reported_delay = col(dialect.behind).and_then(|s| s.parse().ok());
        let receiving = col(dialect.io_running).as_deref() == Some("Yes");
        let errno = |n: &str| col(n).is_some_and(|e| e != "0");
        let error = if errno("Last_SQL_Errno") {
            col("Last_SQL_Error")
        } else if !receiving && errno("Last_IO_Errno") {
            col("Last_IO_Error")
        } else {
            None
        };
        obs.replication = Some(Replication {
            receiving,
            applying: col(dialect.sql_running).as_deref() == Some("Yes"),
            error,
            upstream: None,
        });
    } else {
        obs.position = gtid(var(2))?;
    }
    Ok(obs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(read_only: &str, current: &str, slave: &str) -> Vec<Option<String>> {
        vec![Some(read_only.into()), Some("1".into()), Some(current.into()), Some(slave.into())]
    }

    fn status(pairs: &[(&str, &str)]) -> HashMap<String, Option<String>> {
        pairs.iter().map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect()
    }

    #[test]
    fn a_mariadb_primary() {
        let obs = parse(&MARIADB, &vars("0", "0-1-42", ""), None).unwrap();
        assert_eq!(obs.claimed, Claimed::Primary);
        assert_eq!(obs.position, Some(Position::Gtid(GtidSet::parse("0-1-42").unwrap())));
        assert_eq!(obs.server_id, Some(1));
    }

    #[test]
    fn a_read_only_server_without_replication_is_neither() {
        assert_eq!(parse(&MARIADB, &vars("1", "0-1-42", ""), None).unwrap().claimed, Claimed::Neither);
    }

    #[test]
    fn mariadb_replicas() {
        let healthy = status(&[
            ("Master_Host", "127.0.0.1"),
            ("Master_Port", "3306"),
            ("Slave_IO_Running", "Yes"),
            ("Slave_SQL_Running", "Yes"),
            ("Seconds_Behind_Master", "0"),
            ("Gtid_IO_Pos", "0-1-42"),
            ("Last_SQL_Errno", "0"),
            ("Last_IO_Errno", "0"),
        ]);
        let obs = parse(&MARIADB, &vars("1", "0-1-40", "0-1-40"), Some(&healthy)).unwrap();
        assert_eq!(obs.claimed, Claimed::Replica);
        assert_eq!(obs.reported_delay, Some(0.0));
        assert_eq!(obs.received, Some(Position::Gtid(GtidSet::parse("0-1-42").unwrap())));
        assert!(obs.replication.as_ref().unwrap().broken().is_none());

        let mut stopped = healthy.clone();
        stopped.insert("Slave_SQL_Running".into(), Some("No".into()));
        stopped.insert("Seconds_Behind_Master".into(), None);
        let r = parse(&MARIADB, &vars("1", "", ""), Some(&stopped)).unwrap().replication.unwrap();
        assert!(!r.applying && r.broken().is_none(), "stopped on purpose is lagging, not broken");

        let mut failed = stopped.clone();
        failed.insert("Last_SQL_Errno".into(), Some("1062".into()));
        failed.insert("Last_SQL_Error".into(), Some("Duplicate entry".into()));
        let r = parse(&MARIADB, &vars("1", "", ""), Some(&failed)).unwrap().replication.unwrap();
        assert_eq!(r.broken().unwrap(), "replication error: Duplicate entry");

        let mut lost = healthy.clone();
        lost.insert("Slave_IO_Running".into(), Some("Connecting".into()));
        let r = parse(&MARIADB, &vars("1", "", ""), Some(&lost)).unwrap().replication.unwrap();
        assert!(r.broken().is_some());
    }

    #[test]
    fn dialect_detection() {
        assert_eq!(Dialect::of_version("10.11.6-MariaDB-0+deb12u1-log"), MARIADB);
        assert_eq!(Dialect::of_version("8.0.36"), MYSQL);
    }

    #[test]
    fn bad_answers_are_errors() {
        assert!(parse(&MARIADB, &[], None).is_err());
        assert!(parse(&MARIADB, &vars("0", "garbage", ""), None).is_err());
    }
}
