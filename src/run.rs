//! `hapool run`: the manager probes every configured cluster, the proxy serves them following the manager's
//! topology, until SIGTERM/SIGINT; SIGHUP reloads the config.

use std::time::Duration;

use anyhow::Context;
use hapool_config::{Cluster, Config, Engine};
use hapool_manager::{status_line, Manager};
use hapool_proxy::{PgListener, PgProxyConfig};
use nix::sys::signal::{SigSet, Signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::signals;

/// How long sessions get to finish their transaction at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How often the one-line status of every cluster is logged (also after every topology change).
const STATUS_EVERY: Duration = Duration::from_secs(30);

pub fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let config = hapool_config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let signals = signals::block()?;
    serve(config, Some(path), &signals, |_| {})
}

/// Starts the listeners of `config`, calls `ready` with their addresses, and serves until a stop signal.
/// SIGHUP reloads the config from `path` (when there is one).
pub fn serve(
    config: Config,
    path: Option<&std::path::Path>,
    signals: &SigSet,
    ready: impl FnOnce(&[(String, std::net::SocketAddr)]),
) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = config.runtime.threads(cores);
    let runtime = build_runtime(threads)?;
    info!(threads, cores, "serving");
    let shutdown = CancellationToken::new();
    let _runtime = runtime.enter();
    let mut manager = Manager::start(&config.cluster, shutdown.clone()).context("manager")?;
    let first_wait = config.cluster.iter().map(|c| c.monitor.probe_timeout).max().unwrap_or_default();
    if !runtime.block_on(manager.first_round(first_wait + Duration::from_secs(1))) {
        warn!("the first probe round did not finish in time; starting anyway");
    }
    runtime.spawn(report_status(manager.clone(), shutdown.clone()));
    let mut current = config.cluster.clone();
    let mut bound = Vec::new();
    let mut tasks = Vec::new();
    let mut listeners: Vec<(String, PgListener)> = Vec::new();
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
        let proxy_config = PgProxyConfig { cluster, shutdown_grace: SHUTDOWN_GRACE };
        let listener = PgListener::new(proxy_config, shutdown.clone(), manager.topology.clone())
            .with_context(|| format!("cluster {name}"))?;
        listeners.push((name, listener.clone()));
        tasks.push(runtime.spawn(async move { listener.serve(socket).await }));
    }
    std::thread::scope(|scope| -> anyhow::Result<()> {
        // Cancels on every way out of this block, so the thread below always ends.
        let _stop = shutdown.clone().drop_guard();
        if threads == 1 {
            // A current-thread runtime runs its tasks only while some thread is in `block_on`; the main thread
            // waits for signals, so one thread drives it until shutdown.
            let (runtime, stop) = (&runtime, shutdown.clone());
            std::thread::Builder::new().name("hapool-runtime".into()).spawn_scoped(scope, move || {
                runtime.block_on(stop.cancelled());
            })?;
        }
        ready(&bound);
        wait_for_stop(signals, path, &listeners, &manager, &mut current)
    })?;
    runtime.block_on(async {
        for task in tasks {
            let _ = task.await;
        }
    });
    Ok(())
}

/// Serves signals until one says stop: SIGHUP reloads from `path`.
fn wait_for_stop(
    signals: &SigSet,
    path: Option<&std::path::Path>,
    listeners: &[(String, PgListener)],
    manager: &Manager,
    current: &mut [Cluster],
) -> anyhow::Result<()> {
    loop {
        match signals::wait(signals)? {
            Signal::SIGHUP => match path {
                Some(path) => reload(path, listeners, manager, current),
                None => warn!("SIGHUP: this config has no file to reload from"),
            },
            signal => {
                info!(%signal, "shutting down: sessions finish their transactions");
                return Ok(());
            }
        }
    }
}

/// One worker: a current-thread runtime (measured faster than a one-worker multi-thread runtime: 22.9k against
/// 21.9k tps, pgbench -S -c 32, medians of 6 rotations; bench/RESULTS.md). More: multi-thread.
fn build_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
}

/// Logs one line per cluster after every topology change and every `STATUS_EVERY`.
async fn report_status(mut manager: Manager, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + STATUS_EVERY, STATUS_EVERY);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            changed = manager.topology.changed() => if changed.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
        let status = manager.status.borrow().clone();
        for cluster in &status.clusters {
            info!(cluster = %cluster.id, "status: {}", status_line(cluster, status.generation));
        }
    }
}

/// Re-reads the config and hands each cluster's new settings to its listener, and its server TLS settings to
/// the manager's probes. A config with errors changes nothing; a cluster that cannot take a change live says
/// why and keeps its old settings.
fn reload(path: &std::path::Path, listeners: &[(String, PgListener)], manager: &Manager, current: &mut [Cluster]) {
    let config = match hapool_config::load(path) {
        Ok(config) => config,
        Err(e) => {
            for line in e.to_string().lines() {
                warn!("reload refused: {line}");
            }
            return;
        }
    };
    for (name, listener) in listeners {
        match config.cluster.iter().find(|c| &c.name == name) {
            Some(cluster) => {
                let Some(old) = current.iter_mut().find(|c| &c.name == name) else { continue };
                if let Err(e) = hapool_manager::check_live_change(old, cluster) {
                    warn!("reload refused: {e}");
                    continue;
                }
                match listener.reload(cluster.clone()) {
                    Ok(()) => *old = cluster.clone(),
                    Err(e) => {
                        warn!("reload refused: {e}");
                        continue;
                    }
                }
                if let Err(e) = manager.reload_tls(cluster) {
                    warn!("reload: the probes keep their server TLS settings: {e}");
                }
            }
            None => {
                warn!(cluster = %name, "reload: the cluster is gone from the config; it keeps running until restart")
            }
        }
    }
    for cluster in &config.cluster {
        if cluster.engine == Engine::Postgres && !listeners.iter().any(|(n, _)| n == &cluster.name) {
            warn!(cluster = %cluster.name, "reload: a new cluster needs a restart to start listening");
        }
    }
}
