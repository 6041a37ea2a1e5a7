//! One PostgreSQL server of a sandbox cluster, behind its relay.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::Signal;

use crate::binaries::PgBinaries;
use crate::error::Result;
use crate::node::ServerNode;
use crate::os_user::RunAs;
use crate::process::{run, Launch};

/// One PostgreSQL server behind its relay; the node operations (kill, pause, relay faults…) come from
/// [`ServerNode`].
#[derive(Debug)]
pub struct PgNode {
    base: ServerNode,
    dir: PathBuf,
    bins: PgBinaries,
}

impl Deref for PgNode {
    type Target = ServerNode;

    fn deref(&self) -> &ServerNode {
        &self.base
    }
}

impl PgNode {
    pub(crate) fn new(name: &str, dir: &Path, port: u16, bins: &PgBinaries, run_as: Option<RunAs>) -> Result<PgNode> {
        let data = dir.join("data");
        let launch = Launch {
            program: bins.program("postgres"),
            args: vec![
                "-D".into(),
                data.into(),
                "-p".into(),
                port.to_string().into(),
                "-k".into(),
                dir.into(),
                "-c".into(),
                format!("cluster_name={name}").into(),
            ],
            run_as,
            home: dir.to_path_buf(),
            log: dir.join("postgres.log"),
            // Fast shutdown: roll back sessions, checkpoint, exit.
            stop_signal: Signal::SIGINT,
        };
        Ok(PgNode { base: ServerNode::new(name, port, |_| launch)?, dir: dir.to_path_buf(), bins: bins.clone() })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The folder holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// Starts the server (if stopped) and waits until it accepts connections.
    pub fn start(&self) -> Result<()> {
        let mut isready = Command::new(self.bins.program("pg_isready"));
        isready.arg("-q").arg("-h").arg(&self.dir).arg("-p").arg(self.direct_port().to_string());
        self.base.start_and_wait(|| isready.status().map(|s| s.success()).unwrap_or(false))
    }

    /// Promotes a replica and waits (up to 60 s) until it accepts writes.
    pub fn promote(&self) -> Result<()> {
        self.psql("SELECT pg_promote(true, 60)")?;
        Ok(())
    }

    /// Whether the server is a replica (`pg_is_in_recovery()`).
    pub fn is_in_recovery(&self) -> Result<bool> {
        Ok(self.psql("SELECT pg_is_in_recovery()")? == "t")
    }

    /// Runs SQL as the superuser in database `postgres` over the Unix socket; returns unaligned output.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_db("postgres", sql)
    }

    /// Runs SQL as the superuser in `db` over the Unix socket; returns unaligned, tuples-only output.
    pub fn psql_db(&self, db: &str, sql: &str) -> Result<String> {
        let out = run(Command::new(self.bins.program("psql"))
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", db])
            .arg("-h")
            .arg(&self.dir)
            .arg("-p")
            .arg(self.direct_port().to_string())
            .arg("-c")
            .arg(sql)
            // Nothing the sandbox runs may hang forever (a commit waiting for a missing sync standby would).
            .env("PGOPTIONS", "-c statement_timeout=60s"))?;
        Ok(out.trim().to_string())
    }
}
