//! `hapool sandbox up|down|status` and (until the proxy exists) `hapool demo`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hapool_sandbox::{MyCluster, MyClusterOptions, PgCluster, PgClusterOptions, ServerNode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cli::UpArgs;
use crate::signals;

/// What `up` started, written to the state file for `status` and `down`.
#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    /// The `hapool sandbox up` process that owns the clusters.
    pub pid: i32,
    pub clusters: Vec<ClusterState>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterState {
    pub engine: String,
    pub root: PathBuf,
    /// A command that opens a client on the primary as the application user.
    pub connect: String,
    pub nodes: Vec<NodeState>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub role: String,
    /// The relay port clients use.
    pub port: u16,
    /// The server's own port.
    pub direct_port: u16,
    pub pid: Option<i32>,
}

fn pg_state(c: &PgCluster) -> ClusterState {
    let nodes = c.nodes().iter().map(|n| &**n);
    cluster_state("postgres", c.root(), c.psql_command(c.primary()), nodes)
}

fn my_state(c: &MyCluster) -> ClusterState {
    let nodes = c.nodes().iter().map(|n| &**n);
    cluster_state("mariadb", c.root(), c.mariadb_command(c.primary()), nodes)
}

/// The first node is the one started as primary.
fn cluster_state<'a>(
    engine: &str,
    root: &Path,
    connect: String,
    nodes: impl Iterator<Item = &'a ServerNode>,
) -> ClusterState {
    let nodes = nodes
        .enumerate()
        .map(|(i, n)| NodeState {
            name: n.name().into(),
            role: if i == 0 { "primary" } else { "replica" }.into(),
            port: n.port(),
            direct_port: n.direct_port(),
            pid: n.pid(),
        })
        .collect();
    ClusterState { engine: engine.into(), root: root.to_path_buf(), connect, nodes }
}

/// Starts the clusters, writes the state file, prints how to connect, and waits for a signal.
pub fn up(args: &UpArgs, demo: bool) -> anyhow::Result<()> {
    let state_file = &args.state.state;
    if let Some(existing) = read_state(state_file)? {
        if alive(existing.pid) {
            bail!("a sandbox is already running (pid {}); stop it with `hapool sandbox down`", existing.pid);
        }
    }
    // Before any thread starts (the relays), so that every thread leaves these signals to `wait`.
    let signals = signals::block()?;
    let started = Instant::now();
    let pg = (!args.no_postgres)
        .then(|| PgCluster::start(PgClusterOptions { replicas: args.pg_replicas, ..Default::default() }))
        .transpose()
        .context("start the PostgreSQL sandbox")?;
    let my = (!args.no_mariadb)
        .then(|| MyCluster::start(MyClusterOptions { replicas: args.mariadb_replicas, ..Default::default() }))
        .transpose()
        .context("start the MariaDB sandbox")?;
    let state = State {
        pid: std::process::id() as i32,
        clusters: pg.iter().map(pg_state).chain(my.iter().map(my_state)).collect(),
    };
    write_state(state_file, &state)?;
    let took = started.elapsed();
    match pg.as_ref().filter(|_| demo) {
        Some(pg) => {
            let (config, file) = demo_config(pg, my.as_ref())?;
            crate::run::serve(config, Some(&file), &signals, |bound| {
                print_banner(&state, took, demo);
                for (name, addr) in bound {
                    println!();
                    println!("hapool proxy for cluster {name:?} (config {}):", file.display());
                    println!("  connect: PGPASSWORD=app psql -h {} -p {} -U app app", addr.ip(), addr.port());
                }
            })?;
        }
        None => {
            print_banner(&state, took, demo);
            let signal = signals::wait(&signals)?;
            eprintln!("hapool: {signal}: stopping the sandbox");
        }
    }
    let _ = std::fs::remove_file(state_file);
    drop(my);
    drop(pg);
    Ok(())
}

fn print_banner(state: &State, took: Duration, demo: bool) {
    let title = if demo { "hapool demo" } else { "hapool sandbox" };
    println!("{title}: clusters ready in {:.1}s", took.as_secs_f64());
    for c in &state.clusters {
        println!();
        println!("{} (data in {}):", c.engine, c.root.display());
        for n in &c.nodes {
            println!("  {:<4} {:<8} 127.0.0.1:{} (server port {})", n.name, n.role, n.port, n.direct_port);
        }
        println!("  connect: {}", c.connect);
    }
    println!();
    println!("Ctrl-C or `hapool sandbox down` stops everything and deletes the data.");
}

/// The demo's config: the proxy on 127.0.0.1:6432 (or a free port when 6432 is taken) in front of the
/// sandbox's PostgreSQL nodes, transaction pooling, the manager probing every node of both clusters (the MariaDB
/// one is monitored only until the MySQL proxy exists). Written next to the cluster so a newcomer can read it.
fn demo_config(pg: &PgCluster, my: Option<&MyCluster>) -> anyhow::Result<(hapool_config::Config, PathBuf)> {
    let port = if std::net::TcpListener::bind(("127.0.0.1", 6432)).is_ok() { 6432 } else { 0 };
    let c = pg.credentials();
    let mut text = format!(
        "# Written by `hapool demo`.\n\
         [[cluster]]\nname = \"demo\"\nengine = \"postgres\"\nlisten = \"127.0.0.1:{port}\"\n\
         pool_mode = \"transaction\"\npool_size = 10\n\n\
         [cluster.monitor]\nuser = \"{mon}\"\npassword = \"{mon_pw}\"\n\n\
         [cluster.routing]\nmax_replica_lag = \"5s\"\n\n\
         [[cluster.user]]\nname = \"{user}\"\npassword = \"{password}\"\n",
        mon = c.monitor_user,
        mon_pw = c.monitor_password,
        user = c.app_user,
        password = c.app_password,
    );
    for n in pg.nodes() {
        text.push_str(&node_table(n.name(), n.port()));
    }
    if let Some(my) = my {
        let c = my.credentials();
        text.push_str(&format!(
            "\n# Monitored by the manager; the MySQL proxy comes in a later version.\n\
             [[cluster]]\nname = \"demo-mariadb\"\nengine = \"mysql\"\nlisten = \"127.0.0.1:0\"\n\n\
             [cluster.monitor]\nuser = \"{}\"\npassword = \"{}\"\n\n\
             [[cluster.user]]\nname = \"{}\"\npassword = \"{}\"\n",
            c.monitor_user, c.monitor_password, c.app_user, c.app_password,
        ));
        for n in my.nodes() {
            text.push_str(&node_table(n.name(), n.port()));
        }
    }
    let file = pg.root().join("hapool.toml");
    std::fs::write(&file, &text).with_context(|| format!("write {}", file.display()))?;
    let config = hapool_config::load(&file).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((config, file))
}

fn node_table(name: &str, port: u16) -> String {
    format!("\n[[cluster.node]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\n")
}

/// Asks the running `up` to stop and waits (up to 60 s) until it has.
pub fn down(state_file: &Path) -> anyhow::Result<()> {
    let Some(state) = read_state(state_file)? else {
        println!("no sandbox is running ({} does not exist)", state_file.display());
        return Ok(());
    };
    if !alive(state.pid) {
        std::fs::remove_file(state_file).with_context(|| format!("remove stale {}", state_file.display()))?;
        println!("no sandbox is running (removed the stale {})", state_file.display());
        return Ok(());
    }
    kill(Pid::from_raw(state.pid), Signal::SIGTERM).with_context(|| format!("signal pid {}", state.pid))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while alive(state.pid) {
        if Instant::now() >= deadline {
            bail!("the sandbox (pid {}) did not stop within 60s", state.pid);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("sandbox stopped");
    Ok(())
}

/// Prints the running clusters and whether each server is alive.
pub fn status(state_file: &Path) -> anyhow::Result<()> {
    let Some(state) = read_state(state_file)? else {
        println!("no sandbox is running");
        return Ok(());
    };
    let owner = if alive(state.pid) { "running" } else { "not running (stale state file)" };
    println!("sandbox pid {}: {owner}", state.pid);
    for c in &state.clusters {
        println!("{}: {}", c.engine, c.connect);
        for n in &c.nodes {
            let up = n.pid.is_some_and(alive);
            println!("  {:<4} {:<8} 127.0.0.1:{:<5} {}", n.name, n.role, n.port, if up { "up" } else { "down" });
        }
    }
    Ok(())
}

fn read_state(path: &Path) -> anyhow::Result<Option<State>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

fn write_state(path: &Path, state: &State) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(state)?;
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// Whether the process runs (a zombie, which a parent has yet to reap, has stopped).
fn alive(pid: i32) -> bool {
    hapool_sandbox::is_alive(pid)
}
