//! Runs hapool's PostgreSQL proxy in-process, in front of a sandbox cluster, for black-box tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hapool_proxy::{PgListener, PgProxyConfig};
use hapool_sandbox::PgCluster;
use tokio_util::sync::CancellationToken;

pub struct TestProxy {
    pub addr: SocketAddr,
    pub listener: PgListener,
    shutdown: CancellationToken,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestProxy {
    /// A proxy for `cluster`'s primary. `cluster_keys` go into `[[cluster]]` (e.g. `pool_size = 4`);
    /// `users` are extra `[[cluster.user]]` tables; user app/app (SCRAM) is always there.
    pub fn start(cluster: &PgCluster, cluster_keys: &str, users: &str) -> TestProxy {
        let cluster_config = Self::config(cluster, cluster_keys, users);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let shutdown = CancellationToken::new();
        let listener = PgListener::new(
            PgProxyConfig { cluster: cluster_config, shutdown_grace: Duration::from_secs(5) },
            shutdown.clone(),
        )
        .unwrap();
        let socket = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = socket.local_addr().unwrap();
        let serving = listener.clone();
        runtime.spawn(async move { serving.serve(socket).await });
        TestProxy { addr, listener, shutdown, runtime: Some(runtime) }
    }

    /// Reloads with another configuration built the same way; returns the listener's verdict.
    pub fn reload(&self, cluster: &PgCluster, cluster_keys: &str, users: &str) -> Result<(), String> {
        self.listener.reload(Self::config(cluster, cluster_keys, users)).map_err(|e| e.to_string())
    }

    fn config(cluster: &PgCluster, cluster_keys: &str, users: &str) -> hapool_config::Cluster {
        let c = cluster.credentials();
        let toml = format!(
            "[[cluster]]\nname = \"test\"\nengine = \"postgres\"\nlisten = \"127.0.0.1:0\"\n{cluster_keys}\n\n\
             [[cluster.node]]\nname = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\n\n\
             [[cluster.user]]\nname = \"{}\"\npassword = \"{}\"\n{users}\n",
            cluster.primary().name(),
            cluster.primary().port(),
            c.app_user,
            c.app_password,
        );
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

/// A tokio-postgres client, its connection driven in the background.
pub async fn connect(conninfo: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}
