//! One MariaDB server of a sandbox cluster, behind its relay.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::Signal;

use crate::binaries::MariaDbBinaries;
use crate::error::Result;
use crate::node::ServerNode;
use crate::os_user::RunAs;
use crate::process::{run, Launch};

/// How one node is started.
#[derive(Debug, Clone)]
pub(crate) struct MyNodeSpec<'a> {
    pub name: &'a str,
    pub dir: &'a Path,
    pub port: u16,
    pub server_id: u32,
    pub replica: bool,
    pub semi_sync: bool,
    pub max_connections: u32,
    pub run_as: Option<&'a RunAs>,
}

/// One MariaDB server behind its relay; the node operations (kill, pause, relay faults…) come from
/// [`ServerNode`].
#[derive(Debug)]
pub struct MyNode {
    base: ServerNode,
    dir: PathBuf,
    client: PathBuf,
}

impl Deref for MyNode {
    type Target = ServerNode;

    fn deref(&self) -> &ServerNode {
        &self.base
    }
}

impl MyNode {
    pub(crate) fn new(spec: &MyNodeSpec<'_>, bins: &MariaDbBinaries) -> Result<MyNode> {
        let launch = |relay_port: u16| Launch {
            program: bins.server.clone(),
            args: server_args(spec, relay_port).into_iter().map(Into::into).collect(),
            // Started as this user directly (not with --user): a server that switches user itself would lose
            // the parent-death signal that keeps it from outliving us.
            run_as: spec.run_as.cloned(),
            home: spec.dir.to_path_buf(),
            log: spec.dir.join("mariadb.log"),
            stop_signal: Signal::SIGTERM,
        };
        Ok(MyNode {
            base: ServerNode::new(spec.name, spec.port, launch)?,
            dir: spec.dir.to_path_buf(),
            client: bins.client.clone(),
        })
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("mariadb.sock")
    }

    /// Starts the server (if stopped) and waits until it answers queries.
    pub fn start(&self) -> Result<()> {
        self.base.start_and_wait(|| self.sql("SELECT 1").is_ok())
    }

    /// Turns a replica into a primary: stop and forget replication, accept writes.
    pub fn promote(&self) -> Result<()> {
        self.sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF")?;
        Ok(())
    }

    /// `SHOW SLAVE STATUS` as (field, value) pairs; empty when the node replicates from nobody.
    pub fn slave_status(&self) -> Result<Vec<(String, String)>> {
        let text = self.client("-E", "SHOW SLAVE STATUS")?;
        Ok(text
            .lines()
            .filter_map(|line| line.split_once(": "))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect())
    }

    /// One field of `SHOW SLAVE STATUS`, e.g. `Slave_IO_Running`.
    pub fn slave_status_field(&self, field: &str) -> Result<Option<String>> {
        Ok(self.slave_status()?.into_iter().find(|(k, _)| k == field).map(|(_, v)| v))
    }

    /// Runs SQL as root over the Unix socket; returns tab-separated rows without headers.
    pub fn sql(&self, sql: &str) -> Result<String> {
        self.client("-N", sql)
    }

    fn client(&self, format: &str, sql: &str) -> Result<String> {
        let out = run(Command::new(&self.client)
            .args(["--no-defaults", "-u", "root", "-B", format])
            .arg(format!("--socket={}", self.socket_path().display()))
            .arg("-e")
            .arg(sql))?;
        Ok(out.trim().to_string())
    }
}

/// mariadbd's command line for one node.
fn server_args(spec: &MyNodeSpec<'_>, relay_port: u16) -> Vec<String> {
    let dir = spec.dir;
    let mut args: Vec<String> = vec![
        "--no-defaults".into(),
        format!("--datadir={}", dir.join("data").display()),
        format!("--port={}", spec.port),
        "--bind-address=127.0.0.1".into(),
        format!("--socket={}", dir.join("mariadb.sock").display()),
        format!("--pid-file={}", dir.join("mariadb.pid").display()),
        format!("--tmpdir={}", dir.display()),
        format!("--server-id={}", spec.server_id),
        "--log-bin=mysql-bin".into(),
        "--relay-log=relay-bin".into(),
        "--log-slave-updates".into(),
        "--gtid-strict-mode=ON".into(),
        "--binlog-format=ROW".into(),
        "--skip-name-resolve".into(),
        "--innodb-buffer-pool-size=32M".into(),
        "--innodb-log-file-size=8M".into(),
        // Throwaway data: commits reach the OS at once, so a killed server loses nothing.
        "--innodb-flush-log-at-trx-commit=2".into(),
        "--sync-binlog=0".into(),
        format!("--max-connections={}", spec.max_connections),
        "--report-host=127.0.0.1".into(),
        format!("--report-port={}", relay_port),
    ];
    if spec.replica {
        args.push("--read-only=ON".into());
        // Crash-safe replica: after a kill, relay logs are refetched from the applied GTID position instead of
        // trusting a relay log the kill may have cut short.
        args.push("--relay-log-recovery=ON".into());
    }
    if spec.semi_sync {
        // The primary side is switched on once the replicas are connected (see MyCluster::start): before
        // that, every commit would wait for rpl_semi_sync_master_timeout.
        args.push("--rpl-semi-sync-slave-enabled=ON".into());
    }
    args
}
