//! A MariaDB cluster: a primary and N replicas with GTID replication (`MASTER_USE_GTID=slave_pos`).

mod node;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub use node::MyNode;
use node::MyNodeSpec;

use crate::binaries::MariaDbBinaries;
use crate::error::{Result, SandboxError};
use crate::fsutil::{create_dir, sandbox_root};
use crate::net::free_port;
use crate::os_user::{chown_tree, server_user};
use crate::process::{log_tail, run};
use crate::Credentials;

/// What kind of MariaDB cluster to start.
#[derive(Debug, Clone)]
pub struct MyClusterOptions {
    pub replicas: usize,
    /// Semi-synchronous replication (the primary waits for one replica to acknowledge each commit).
    pub semi_sync: bool,
    pub max_connections: u32,
    pub credentials: Credentials,
}

impl Default for MyClusterOptions {
    fn default() -> Self {
        MyClusterOptions { replicas: 1, semi_sync: false, max_connections: 500, credentials: Credentials::default() }
    }
}

/// A running MariaDB cluster. `nodes()[0]` started as the primary. Dropping it stops every server and
/// deletes its folder.
#[derive(Debug)]
pub struct MyCluster {
    // Declared before `root` so the servers stop before their folder is removed.
    nodes: Vec<MyNode>,
    options: MyClusterOptions,
    root: tempfile::TempDir,
}

impl MyCluster {
    /// Starts a primary and `options.replicas` replicas, and waits until every replica has caught up.
    pub fn start(options: MyClusterOptions) -> Result<MyCluster> {
        let bins = MariaDbBinaries::find()?;
        let run_as = server_user("mysql", "mariadb-server")?;
        let root = sandbox_root("hapool-my-")?;
        // Every node starts from one freshly installed system database, so they share its (empty) history.
        let template = root.path().join("template");
        // A private tmpdir: concurrent installs sharing /tmp removed each other's temporary tables.
        let tmp = root.path().join("tmp");
        create_dir(&tmp)?;
        chown_tree(&tmp, run_as.as_ref())?;
        let mut install = Command::new(&bins.install_db);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", template.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"])
            .arg("--innodb-log-file-size=8M");
        if let Some(user) = &run_as {
            install.arg(format!("--user={}", user.name));
        }
        run(&mut install)?;
        let mut cluster = MyCluster { nodes: Vec::new(), options, root };
        for i in 0..=cluster.options.replicas {
            let name = format!("my{i}");
            let dir = cluster.root.path().join(&name);
            create_dir(&dir)?;
            run(Command::new("cp").arg("-a").arg(&template).arg(dir.join("data")))?;
            chown_tree(&dir, run_as.as_ref())?;
            let spec = MyNodeSpec {
                name: &name,
                dir: &dir,
                port: free_port()?,
                server_id: i as u32 + 1,
                replica: i > 0,
                semi_sync: cluster.options.semi_sync,
                max_connections: cluster.options.max_connections,
                run_as: run_as.as_ref(),
            };
            let node = MyNode::new(&spec, &bins)?;
            node.start()?;
            if i == 0 {
                cluster.bootstrap(&node)?;
            } else {
                cluster.follow_primary(&node)?;
            }
            cluster.nodes.push(node);
        }
        let _ = std::fs::remove_dir_all(&template);
        cluster.wait_replicated(Duration::from_secs(60))?;
        if cluster.options.semi_sync {
            cluster.enable_semi_sync(Duration::from_secs(30))?;
        }
        Ok(cluster)
    }

    fn bootstrap(&self, primary: &MyNode) -> Result<()> {
        let c = &self.options.credentials;
        primary.sql(&format!(
            "CREATE USER '{app}'@'%' IDENTIFIED BY '{app_pw}';\
             CREATE DATABASE `{app}`;\
             GRANT ALL ON `{app}`.* TO '{app}'@'%';\
             CREATE USER '{mon}'@'%' IDENTIFIED BY '{mon_pw}';\
             GRANT PROCESS, BINLOG MONITOR, SLAVE MONITOR ON *.* TO '{mon}'@'%';\
             CREATE USER '{repl}'@'%' IDENTIFIED BY '{repl_pw}';\
             GRANT REPLICATION SLAVE, SLAVE MONITOR ON *.* TO '{repl}'@'%';",
            app = c.app_user,
            app_pw = c.app_password,
            mon = c.monitor_user,
            mon_pw = c.monitor_password,
            repl = c.replication_user,
            repl_pw = c.replication_password,
        ))?;
        Ok(())
    }

    fn follow_primary(&self, replica: &MyNode) -> Result<()> {
        replica.sql(&change_master_sql(&self.options.credentials, self.nodes[0].port()))?;
        Ok(())
    }

    /// Turns the primary side of semi-sync on, reconnects the replicas so they register as semi-sync clients,
    /// and waits until they all have. (Only on the primary: MariaDB 10.11 replicas with the primary side on
    /// hung in shutdown. Whoever promotes a replica switches it on there.)
    fn enable_semi_sync(&self, timeout: Duration) -> Result<()> {
        self.nodes[0].sql("SET GLOBAL rpl_semi_sync_master_enabled = ON")?;
        for replica in self.replicas() {
            replica.sql("STOP SLAVE IO_THREAD; START SLAVE IO_THREAD")?;
        }
        let want = self.replicas().len().to_string();
        let deadline = Instant::now() + timeout;
        let primary = &self.nodes[0];
        while primary.sql("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_CLIENTS'")? != want {
            if Instant::now() >= deadline {
                return Err(SandboxError::Timeout {
                    what: format!("{want} semi-sync replicas"),
                    seconds: timeout.as_secs(),
                    log: primary.log_path().to_path_buf(),
                    log_tail: log_tail(primary.log_path(), 20),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Waits until every replica has applied everything the primary has written.
    pub fn wait_replicated(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let primary = &self.nodes[0];
        loop {
            let target = primary.sql("SELECT @@gtid_binlog_pos")?;
            let mut behind = None;
            for replica in self.replicas() {
                if replica.sql("SELECT @@gtid_slave_pos")? != target {
                    behind = Some(replica);
                    break;
                }
            }
            let Some(replica) = behind else { return Ok(()) };
            if Instant::now() >= deadline {
                let status: Vec<String> =
                    replica.slave_status().unwrap_or_default().iter().map(|(k, v)| format!("{k}: {v}")).collect();
                let status = status.join("\n");
                return Err(SandboxError::Timeout {
                    what: format!("{} to reach GTID {target}; SHOW SLAVE STATUS:\n{status}", replica.name()),
                    seconds: timeout.as_secs(),
                    log: replica.log_path().to_path_buf(),
                    log_tail: log_tail(replica.log_path(), 20),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn nodes(&self) -> &[MyNode] {
        &self.nodes
    }

    /// The node that started as primary.
    pub fn primary(&self) -> &MyNode {
        &self.nodes[0]
    }

    pub fn replicas(&self) -> &[MyNode] {
        &self.nodes[1..]
    }

    pub fn node(&self, name: &str) -> Option<&MyNode> {
        self.nodes.iter().find(|n| n.name() == name)
    }

    pub fn credentials(&self) -> &Credentials {
        &self.options.credentials
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A shell command that opens the mariadb client on `node` as the application user.
    pub fn mariadb_command(&self, node: &MyNode) -> String {
        let c = &self.options.credentials;
        format!("mariadb -h 127.0.0.1 -P {} -u {} -p{} {}", node.port(), c.app_user, c.app_password, c.app_user)
    }
}

/// Points a replica at the primary's relay, by GTID.
pub fn change_master_sql(c: &Credentials, primary_port: u16) -> String {
    format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary_port}, MASTER_USER='{}', \
         MASTER_PASSWORD='{}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1; \
         START SLAVE",
        c.replication_user, c.replication_password
    )
}

impl Drop for MyCluster {
    /// Replicas first: a primary that loses its replicas first may wait for them while shutting down
    /// (MariaDB with semi-sync waited out the full grace period).
    fn drop(&mut self) {
        while let Some(node) = self.nodes.pop() {
            node.stop();
        }
    }
}
