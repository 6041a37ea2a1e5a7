//! Runs hapool's manager in-process against sandbox clusters, and waits on what it publishes.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hapool_manager::state::{ClusterState, NodeState};
use hapool_manager::{Manager, Status};
use hapool_sandbox::{MyCluster, PgCluster};
use hapool_topology::{Health, Topology};
use tokio_util::sync::CancellationToken;

/// How long a healthy sandbox cluster's nodes may take to be seen Up.
const ALL_UP_WITHIN: Duration = Duration::from_secs(20);

pub struct TestManager {
    pub manager: Manager,
    shutdown: CancellationToken,
    runtime: Option<tokio::runtime::Runtime>,
}

/// Probe settings for tests: a round every 200 ms, 500 ms to answer, Down after 3 misses, Up after 2 answers.
pub const MONITOR: &str = "probe_interval = \"200ms\"\nprobe_timeout = \"500ms\"\n\
                           failure_threshold = 3\nrecovery_threshold = 2\n";

impl TestManager {
    /// A manager for one cluster given as TOML.
    pub fn start(toml: &str) -> TestManager {
        let config = hapool_config::parse(toml, "test.toml", &|_| None, Path::new("."))
            .unwrap_or_else(|e| panic!("test config:\n{toml}\n{e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let shutdown = CancellationToken::new();
        let mut manager = {
            let _enter = runtime.enter();
            Manager::start(&config.cluster, shutdown.clone()).unwrap()
        };
        assert!(runtime.block_on(manager.first_round(Duration::from_secs(5))), "first probe round");
        TestManager { manager, shutdown, runtime: Some(runtime) }
    }

    /// A manager for a sandbox PostgreSQL cluster (nodes in sandbox order); `extra` goes into `[[cluster]]`.
    /// Returns once every node is Up (see `all_up`).
    pub fn postgres(pg: &PgCluster, extra: &str) -> TestManager {
        Self::postgres_monitored(pg, extra, MONITOR)
    }

    /// As `postgres`, with `monitor` as the probe settings instead of `MONITOR`.
    pub fn postgres_monitored(pg: &PgCluster, extra: &str, monitor: &str) -> TestManager {
        Self::postgres_started(pg, extra, monitor).all_up()
    }

    /// As `postgres`, returning after the first probe round whatever the nodes' health.
    pub fn postgres_as_is(pg: &PgCluster, extra: &str) -> TestManager {
        Self::postgres_started(pg, extra, MONITOR)
    }

    fn postgres_started(pg: &PgCluster, extra: &str, monitor: &str) -> TestManager {
        Self::start(&postgres_toml(pg, extra, monitor))
    }

    /// Reloads the server TLS settings of a manager made by `postgres*`, `extra` as there.
    pub fn reload_postgres_tls(&self, pg: &PgCluster, extra: &str) {
        let toml = postgres_toml(pg, extra, MONITOR);
        let config = hapool_config::parse(&toml, "test.toml", &|_| None, Path::new(".")).unwrap();
        self.manager.reload_tls(&config.cluster[0]).unwrap();
    }

    /// A manager for a sandbox MariaDB cluster, once every node is Up.
    pub fn mariadb(my: &MyCluster, extra: &str) -> TestManager {
        let c = my.credentials();
        let nodes = my.nodes().iter().map(|n| (n.name().to_string(), n.port()));
        Self::start(&cluster_toml("mysql", &c.monitor_user, &c.monitor_password, nodes, extra, MONITOR)).all_up()
    }

    /// Waits until every node of the first cluster is Up. A node whose first probe missed (a slow answer under
    /// the suite's load) is still Down after the first round: a test that then kills it and waits for Down
    /// would see the Down it started with, and a test that counts published generations would count its Up.
    fn all_up(self) -> TestManager {
        let up = self.wait(ALL_UP_WITHIN, |s| s.clusters[0].nodes.iter().all(|n| n.health.health == Health::Up));
        assert!(up.is_some(), "every node Up: {}", self.line());
        self
    }

    pub fn status(&self) -> Arc<Status> {
        self.manager.status.borrow().clone()
    }

    pub fn topology(&self) -> Arc<Topology> {
        self.manager.topology.borrow().clone()
    }

    /// The current state of node `name` (of the first cluster).
    pub fn node(&self, name: &str) -> NodeState {
        let status = self.status();
        let cluster: &ClusterState = &status.clusters[0];
        cluster.nodes.iter().find(|n| n.id.0 == name).expect("node").clone()
    }

    /// Polls every 50 ms until `check` holds for the status, up to `timeout`; the time it took.
    pub fn wait(&self, timeout: Duration, mut check: impl FnMut(&Status) -> bool) -> Option<Duration> {
        let started = std::time::Instant::now();
        while started.elapsed() < timeout {
            if check(&self.status()) {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Polls until node `name` satisfies `check`.
    pub fn wait_node(
        &self,
        name: &str,
        timeout: Duration,
        mut check: impl FnMut(&NodeState) -> bool,
    ) -> Option<Duration> {
        self.wait(timeout, |s| s.clusters[0].nodes.iter().any(|n| n.id.0 == name && check(n)))
    }

    /// The one-line status of the first cluster, for failure messages.
    pub fn line(&self) -> String {
        let status = self.status();
        hapool_manager::status_line(&status.clusters[0], status.generation)
    }

    /// Runs a task on the manager's runtime.
    pub fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, f: F) {
        self.runtime.as_ref().unwrap().spawn(f);
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.as_ref().unwrap().block_on(f)
    }
}

impl Drop for TestManager {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

fn postgres_toml(pg: &PgCluster, extra: &str, monitor: &str) -> String {
    let c = pg.credentials();
    let nodes = pg.nodes().iter().map(|n| (n.name().to_string(), n.port()));
    cluster_toml("postgres", &c.monitor_user, &c.monitor_password, nodes, extra, monitor)
}

fn cluster_toml(
    engine: &str,
    user: &str,
    password: &str,
    nodes: impl Iterator<Item = (String, u16)>,
    extra: &str,
    monitor: &str,
) -> String {
    let mut toml = format!(
        "[[cluster]]\nname = \"test\"\nengine = \"{engine}\"\nlisten = \"127.0.0.1:0\"\n{extra}\n\n\
         [cluster.monitor]\nuser = \"{user}\"\npassword = \"{password}\"\n{monitor}\n\
         [[cluster.user]]\nname = \"app\"\npassword = \"app\"\n"
    );
    for (name, port) in nodes {
        toml.push_str(&format!("\n[[cluster.node]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\n"));
    }
    toml
}
