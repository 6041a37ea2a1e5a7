//! A PostgreSQL cluster: a primary and N streaming replicas with physical slots.

mod conf;
mod node;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub use node::PgNode;

use crate::binaries::{on_path, PgBinaries};
use crate::error::{Result, SandboxError};
use crate::fsutil::{append, create_dir, sandbox_root, set_mode, write};
use crate::net::free_port;
use crate::os_user::{apply, chown_tree, server_user, RunAs};
use crate::process::{log_tail, run};
use crate::Credentials;

/// What kind of PostgreSQL cluster to start.
#[derive(Debug, Clone)]
pub struct PgClusterOptions {
    pub replicas: usize,
    /// Make the first replica a synchronous standby.
    pub synchronous: bool,
    /// Serve TLS with a generated self-signed certificate (for 127.0.0.1 and localhost).
    pub tls: bool,
    pub max_connections: u32,
    pub credentials: Credentials,
}

impl Default for PgClusterOptions {
    fn default() -> Self {
        PgClusterOptions {
            replicas: 2,
            synchronous: false,
            tls: false,
            max_connections: 300,
            credentials: Credentials::default(),
        }
    }
}

/// A running PostgreSQL cluster. `nodes()[0]` started as the primary. Dropping it stops every server and
/// deletes its folder.
#[derive(Debug)]
pub struct PgCluster {
    // Declared before `root` so the servers stop before their folder is removed.
    nodes: Vec<PgNode>,
    options: PgClusterOptions,
    root: tempfile::TempDir,
}

impl PgCluster {
    /// Starts a primary and `options.replicas` replicas, and waits until every replica streams.
    pub fn start(options: PgClusterOptions) -> Result<PgCluster> {
        let bins = PgBinaries::find()?;
        let run_as = server_user("postgres", "postgresql")?;
        let root = sandbox_root("hapool-pg-")?;
        let mut cluster = PgCluster { nodes: Vec::new(), options, root };
        for i in 0..=cluster.options.replicas {
            let name = format!("pg{i}");
            let dir = cluster.root.path().join(&name);
            create_dir(&dir)?;
            chown_tree(&dir, run_as.as_ref())?;
            let node = PgNode::new(&name, &dir, free_port()?, &bins, run_as.clone())?;
            if i == 0 {
                cluster.init_primary(&node, &bins, run_as.as_ref())?;
            } else {
                cluster.clone_replica(&node, &bins, run_as.as_ref())?;
            }
            cluster.nodes.push(node);
        }
        cluster.wait_streaming(Duration::from_secs(60))?;
        if cluster.options.synchronous && cluster.options.replicas > 0 {
            // Only now: with no standby connected yet, every commit (even CREATE ROLE) would wait forever.
            cluster.nodes[0].psql(conf::SYNC_PG1)?;
            cluster.nodes[0].psql("SELECT pg_reload_conf()")?;
            cluster.wait_sync_standby(Duration::from_secs(30))?;
        }
        Ok(cluster)
    }

    fn init_primary(&self, node: &PgNode, bins: &PgBinaries, run_as: Option<&RunAs>) -> Result<()> {
        let data = node.data_dir();
        let mut initdb = Command::new(bins.program("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync", "--no-instructions"]);
        apply(&mut initdb, run_as, node.socket_dir());
        run(&mut initdb)?;
        append(&data.join("postgresql.conf"), &conf::postgresql_conf(self.options.max_connections, self.options.tls))?;
        write(&data.join("pg_hba.conf"), &conf::pg_hba(&self.options.credentials))?;
        if self.options.tls {
            self.make_certificate(&data)?;
        }
        chown_tree(&data, run_as)?;
        node.start()?;
        for sql in conf::bootstrap_sql(&self.options.credentials) {
            node.psql(&sql)?;
        }
        Ok(())
    }

    fn clone_replica(&self, node: &PgNode, bins: &PgBinaries, run_as: Option<&RunAs>) -> Result<()> {
        let primary = &self.nodes[0];
        let creds = &self.options.credentials;
        let data = node.data_dir();
        let mut backup = Command::new(bins.program("pg_basebackup"));
        backup
            .args(["-h", "127.0.0.1", "-p"])
            .arg(primary.direct_port().to_string())
            .args(["-U", &creds.replication_user, "-D"])
            .arg(&data)
            .args(["-X", "stream", "-C", "-S", node.name(), "-c", "fast", "--no-sync"])
            .env("PGPASSWORD", &creds.replication_password);
        apply(&mut backup, run_as, node.socket_dir());
        run(&mut backup)?;
        // Replicas stream through the primary's relay, so cutting the primary's network cuts replication too.
        append(&data.join("postgresql.auto.conf"), &conf::standby_conf(creds, primary.port(), node.name()))?;
        write(&data.join("standby.signal"), "")?;
        chown_tree(&data, run_as)?;
        node.start()
    }

    /// A CA and a server certificate it signed (for 127.0.0.1 and localhost), as a real deployment has:
    /// clients verify the server against the CA (a self-signed leaf would be refused by strict verifiers).
    fn make_certificate(&self, data: &Path) -> Result<()> {
        let openssl = on_path("openssl").ok_or_else(|| SandboxError::MissingBinary {
            program: "openssl".into(),
            searched: "PATH".into(),
            package: "openssl".into(),
        })?;
        let tls = self.root.path().join("tls");
        create_dir(&tls)?;
        let rsa = ["-newkey", "rsa:2048", "-nodes"];
        run(Command::new(&openssl)
            .args(["req", "-x509", "-days", "3650", "-subj", "/CN=hapool sandbox CA"])
            .args(rsa)
            .arg("-keyout")
            .arg(tls.join("ca.key"))
            .arg("-out")
            .arg(tls.join("ca.crt")))?;
        run(Command::new(&openssl)
            .args(["req", "-subj", "/CN=localhost"])
            .args(rsa)
            .arg("-keyout")
            .arg(tls.join("server.key"))
            .arg("-out")
            .arg(tls.join("server.csr")))?;
        write(&tls.join("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")?;
        run(Command::new(&openssl)
            .args(["x509", "-req", "-days", "3650", "-CAcreateserial", "-in"])
            .arg(tls.join("server.csr"))
            .arg("-CA")
            .arg(tls.join("ca.crt"))
            .arg("-CAkey")
            .arg(tls.join("ca.key"))
            .arg("-extfile")
            .arg(tls.join("server.ext"))
            .arg("-out")
            .arg(tls.join("server.crt")))?;
        for file in ["server.crt", "server.key"] {
            std::fs::copy(tls.join(file), data.join(file)).map_err(|e| SandboxError::io(format!("copy {file}"), e))?;
        }
        set_mode(&data.join("server.key"), 0o600)
    }

    /// Waits until the primary reports every replica streaming.
    pub fn wait_streaming(&self, timeout: Duration) -> Result<()> {
        let want = self.nodes.len() - 1;
        let deadline = Instant::now() + timeout;
        loop {
            let sql = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'";
            let streaming: usize = self.nodes[0].psql(sql)?.parse().unwrap_or(0);
            if streaming >= want {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log = self.nodes.last().map(|n| n.log_path().to_path_buf()).unwrap_or_default();
                return Err(SandboxError::Timeout {
                    what: format!("{want} streaming replicas ({streaming} streaming)"),
                    seconds: timeout.as_secs(),
                    log_tail: log_tail(&log, 20),
                    log,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_sync_standby(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.nodes[0].psql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")? != "1" {
            if Instant::now() >= deadline {
                let log = self.nodes[0].log_path().to_path_buf();
                return Err(SandboxError::Timeout {
                    what: "a synchronous standby".into(),
                    seconds: timeout.as_secs(),
                    log_tail: log_tail(&log, 20),
                    log,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn nodes(&self) -> &[PgNode] {
        &self.nodes
    }

    /// The node that started as primary.
    pub fn primary(&self) -> &PgNode {
        &self.nodes[0]
    }

    pub fn replicas(&self) -> &[PgNode] {
        &self.nodes[1..]
    }

    pub fn node(&self, name: &str) -> Option<&PgNode> {
        self.nodes.iter().find(|n| n.name() == name)
    }

    pub fn credentials(&self) -> &Credentials {
        &self.options.credentials
    }

    /// The folder everything lives in.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The CA that signed the servers' certificate, when TLS is on.
    pub fn tls_ca(&self) -> Option<PathBuf> {
        self.options.tls.then(|| self.root.path().join("tls/ca.crt"))
    }

    /// The servers' certificate and key (PEM), when TLS is on: reusable by a proxy in front of them.
    pub fn tls_cert_and_key(&self) -> Option<(PathBuf, PathBuf)> {
        let dir = self.root.path().join("tls");
        self.options.tls.then(|| (dir.join("server.crt"), dir.join("server.key")))
    }

    /// A libpq connection string for the application user through `node`'s relay.
    pub fn app_conninfo(&self, node: &PgNode) -> String {
        let c = &self.options.credentials;
        format!(
            "host=127.0.0.1 port={} user={} password={} dbname={}",
            node.port(),
            c.app_user,
            c.app_password,
            c.app_user
        )
    }

    /// A shell command that opens psql on `node` as the application user.
    pub fn psql_command(&self, node: &PgNode) -> String {
        let c = &self.options.credentials;
        format!("PGPASSWORD={} psql -h 127.0.0.1 -p {} -U {} {}", c.app_password, node.port(), c.app_user, c.app_user)
    }
}

impl Drop for PgCluster {
    /// Replicas first: a primary that loses its replicas first may wait for them while shutting down
    /// (MariaDB with semi-sync waited out the full grace period).
    fn drop(&mut self) {
        while let Some(node) = self.nodes.pop() {
            node.stop();
        }
    }
}
