//! `hapool run`: serve every configured cluster until SIGTERM/SIGINT (SIGHUP is logged: reload comes later).

use std::time::Duration;

use anyhow::Context;
use hapool_config::{Config, Engine};
use hapool_proxy::{PgListener, PgProxyConfig};
use nix::sys::signal::{SigSet, Signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::signals;

/// How long sessions get to finish their transaction at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let config = hapool_config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let signals = signals::block()?;
    serve(config, &signals, |_| {})
}

/// Starts the listeners of `config`, calls `ready` with their addresses, and serves until a stop signal.
pub fn serve(
    config: Config,
    signals: &SigSet,
    ready: impl FnOnce(&[(String, std::net::SocketAddr)]),
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let shutdown = CancellationToken::new();
    let mut bound = Vec::new();
    let mut tasks = Vec::new();
    for cluster in config.cluster {
        if cluster.engine != Engine::Postgres {
            warn!(cluster = %cluster.name, "MySQL clusters are not served yet; skipping");
            continue;
        }
        let listen = cluster.listen;
        let name = cluster.name.clone();
        let socket = runtime
            .block_on(tokio::net::TcpListener::bind(listen))
            .with_context(|| format!("cluster {name}: listen on {listen}"))?;
        bound.push((name.clone(), socket.local_addr()?));
        let listener = PgListener::new(PgProxyConfig { cluster, shutdown_grace: SHUTDOWN_GRACE }, shutdown.clone())
            .with_context(|| format!("cluster {name}"))?;
        tasks.push(runtime.spawn(async move { listener.serve(socket).await }));
    }
    ready(&bound);
    loop {
        match signals::wait(signals)? {
            Signal::SIGHUP => warn!("SIGHUP: configuration reload is not implemented yet; nothing changed"),
            signal => {
                info!(%signal, "shutting down: sessions finish their transactions");
                break;
            }
        }
    }
    shutdown.cancel();
    runtime.block_on(async {
        for task in tasks {
            let _ = task.await;
        }
    });
    Ok(())
}
