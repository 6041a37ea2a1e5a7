//! Runs hapool's PostgreSQL proxy in-process, in front of a sandbox cluster, for black-box tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hapool_manager::Manager;
use hapool_proxy::{PgListener, PgProxyConfig};
use hapool_sandbox::{PgCluster, PgNode};
use hapool_topology::{Cluster, ClusterId, Engine, Generation, Health, Lag, Node, NodeId, Role, Topology};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub struct TestProxy {
    pub addr: SocketAddr,
    pub listener: PgListener,
    /// Set when the proxy follows a real manager (`managed`).
    pub manager: Option<Manager>,
    shutdown: CancellationToken,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestProxy {
    /// A proxy for `cluster`'s primary, with a fixed topology (the primary Up, no manager). `cluster_keys` go
    /// into `[[cluster]]` (e.g. `pool_size = 4`); `users` are extra `[[cluster.user]]` tables; user app/app
    /// (SCRAM) is always there.
    pub fn start(cluster: &PgCluster, cluster_keys: &str, users: &str) -> TestProxy {
        let config = Self::config(cluster, &[cluster.primary()], cluster_keys, users);
        let (_, topology) = watch::channel(Arc::new(fixed_topology(&config)));
        Self::serve(config, topology, None, tokio_runtime(), CancellationToken::new())
    }

    /// A proxy following a real manager that probes `nodes`, listed in this order in the config.
    pub fn managed(cluster: &PgCluster, nodes: &[&PgNode], cluster_keys: &str, users: &str) -> TestProxy {
        let nodes: Vec<(&PgNode, &str)> = nodes.iter().map(|n| (*n, "")).collect();
        Self::managed_nodes(cluster, &nodes, cluster_keys, users)
    }

    /// As `managed`, with extra keys per `[[cluster.node]]` (e.g. `weight = 3`).
    pub fn managed_nodes(cluster: &PgCluster, nodes: &[(&PgNode, &str)], cluster_keys: &str, users: &str) -> TestProxy {
        let config = Self::config_nodes(cluster, nodes, cluster_keys, users);
        let runtime = tokio_runtime();
        let shutdown = CancellationToken::new();
        let mut manager = {
            let _enter = runtime.enter();
            Manager::start(std::slice::from_ref(&config), shutdown.clone()).unwrap()
        };
        assert!(runtime.block_on(manager.first_round(Duration::from_secs(5))), "first probe round");
        let topology = manager.topology.clone();
        Self::serve(config, topology, Some(manager), runtime, shutdown)
    }

    fn serve(
        config: hapool_config::Cluster,
        topology: watch::Receiver<Arc<Topology>>,
        manager: Option<Manager>,
        runtime: tokio::runtime::Runtime,
        shutdown: CancellationToken,
    ) -> TestProxy {
        let proxy_config = PgProxyConfig { cluster: config, shutdown_grace: Duration::from_secs(5) };
        let listener = PgListener::new(proxy_config, shutdown.clone(), topology).unwrap();
        let socket = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = socket.local_addr().unwrap();
        let serving = listener.clone();
        runtime.spawn(async move { serving.serve(socket).await });
        TestProxy { addr, listener, manager, shutdown, runtime: Some(runtime) }
    }

    /// Reloads with another configuration built the same way; returns the listener's verdict.
    pub fn reload(&self, cluster: &PgCluster, cluster_keys: &str, users: &str) -> Result<(), String> {
        let config = Self::config(cluster, &[cluster.primary()], cluster_keys, users);
        self.listener.reload(config).map_err(|e| e.to_string())
    }

    /// The `[[cluster]]` for these nodes, with the sandbox's monitor user probing every 200 ms.
    pub fn config(cluster: &PgCluster, nodes: &[&PgNode], cluster_keys: &str, users: &str) -> hapool_config::Cluster {
        let nodes: Vec<(&PgNode, &str)> = nodes.iter().map(|n| (*n, "")).collect();
        Self::config_nodes(cluster, &nodes, cluster_keys, users)
    }

    /// The `[[cluster]]` with extra keys per node. `cluster_keys` may end with a `[cluster.routing]` table.
    pub fn config_nodes(
        cluster: &PgCluster,
        nodes: &[(&PgNode, &str)],
        cluster_keys: &str,
        users: &str,
    ) -> hapool_config::Cluster {
        let c = cluster.credentials();
        let mut toml = format!(
            "[[cluster]]\nname = \"test\"\nengine = \"postgres\"\nlisten = \"127.0.0.1:0\"\n{cluster_keys}\n\n\
             [cluster.monitor]\nuser = \"{}\"\npassword = \"{}\"\nprobe_interval = \"200ms\"\n\
             probe_timeout = \"500ms\"\n\n\
             [[cluster.user]]\nname = \"{}\"\npassword = \"{}\"\n{users}\n",
            c.monitor_user, c.monitor_password, c.app_user, c.app_password,
        );
        for (n, keys) in nodes {
            toml.push_str(&format!(
                "\n[[cluster.node]]\nname = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\n{keys}\n",
                n.name(),
                n.port()
            ));
        }
        let config = hapool_config::parse(&toml, "test.toml", &|_| None, Path::new("."))
            .unwrap_or_else(|e| panic!("test config:\n{toml}\n{e}"));
        config.cluster.into_iter().next().unwrap()
    }

    pub fn conninfo(&self, user: &str, password: &str) -> String {
        format!("host=127.0.0.1 port={} user={user} password={password} dbname=app connect_timeout=5", self.addr.port())
    }

    /// The application user's connection string.
    pub fn app(&self) -> String {
        self.conninfo("app", "app")
    }

    /// Stops accepting and lets sessions finish (as SIGTERM does).
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Runs a future on the proxy's runtime (for tokio-postgres clients).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.as_ref().unwrap().block_on(f)
    }

    /// Total server connections the proxy has opened.
    pub fn servers_opened(&self) -> u64 {
        self.listener.stats().iter().map(|(_, s)| s.servers_opened).sum()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// The first configured node as an Up primary, the others Up replicas: what a manager would publish for a
/// healthy cluster, for tests of the proxy alone.
pub fn fixed_topology(config: &hapool_config::Cluster) -> Topology {
    let nodes: Vec<Node> = config
        .node
        .iter()
        .enumerate()
        .map(|(i, n)| Node {
            id: NodeId(n.name.clone()),
            addr: SocketAddr::new(n.host.parse().unwrap(), n.port),
            role: if i == 0 { Role::Primary } else { Role::Replica },
            health: Health::Up,
            lag: Lag::default(),
            lagging: false,
            weight: n.weight,
        })
        .collect();
    let cluster = Cluster {
        id: ClusterId(config.name.clone()),
        engine: Engine::Postgres,
        primary: Some(nodes[0].id.clone()),
        nodes,
    };
    Topology { generation: Generation(1), clusters: vec![cluster] }
}

/// A tokio-postgres client, its connection driven in the background.
pub async fn connect(conninfo: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

/// The first column of the first row of a simple query's answer.
pub fn first_value(rows: Vec<tokio_postgres::SimpleQueryMessage>) -> String {
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_string()),
            _ => None,
        })
        .expect("a row")
}
