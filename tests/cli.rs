//! The `hapool` command line: `check`, and `sandbox up|status|down` driving real servers.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually, psql_conninfo};

fn hapool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hapool"))
}

#[test]
fn check_accepts_the_example_config_and_prints_it_normalized() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/hapool.toml");
    let out = hapool().arg("check").arg("-c").arg(&example).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("[[cluster]]"), "{stdout}");
    assert!(stdout.contains("password = \"***\""), "secrets are hidden: {stdout}");
    assert!(!stdout.contains("change-me"), "secrets are hidden: {stdout}");
}

#[test]
fn check_reports_three_mistakes_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[[cluster]]\nname = \"app\"\nengine = \"postgres\"\npool_mode = \"statement\"\n\n  [[cluster.node]]\n  name = \"db1\"\n  host = \"10.0.0.1\"\n  port = 70000\n\n  [[cluster.user]]\n  name = \"app\"\n  password = \"${HAPOOL_TEST_UNSET_VARIABLE}\"\n",
    )
    .unwrap();
    let out = hapool().arg("check").arg("-c").arg(&file).env_remove("HAPOOL_TEST_UNSET_VARIABLE").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = file.display();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("{name}:4:13: cluster \"app\": pool_mode \"statement\" is not valid: expected one of \"session\", \"transaction\""),
            format!("{name}:9:10: cluster \"app\" node \"db1\": port 70000 is out of range 1-65535"),
            format!("{name}:13:14: cluster \"app\" user \"app\": password refers to ${{HAPOOL_TEST_UNSET_VARIABLE}}, which is not set in the environment"),
            format!("3 problems in {name}"),
        ]
    );
}

#[test]
fn check_reports_a_missing_file() {
    let out = hapool().args(["check", "-c", "/nonexistent/hapool.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/hapool.toml: cannot read"));
}

/// Starts `hapool sandbox up` and waits for its banner; returns the child and the banner lines.
fn sandbox_up(state: &Path) -> (Child, Vec<String>) {
    let mut child = hapool()
        .args(["sandbox", "up", "--pg-replicas", "1", "--state"])
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let reader = BufReader::new(child.stdout.take().unwrap());
    for line in reader.lines() {
        let line = line.unwrap();
        let done = line.starts_with("Ctrl-C");
        lines.push(line);
        if done {
            break;
        }
    }
    (child, lines)
}

/// Every server pid and data folder the state file records.
fn recorded(state: &Path) -> (Vec<i32>, Vec<PathBuf>) {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
    let clusters = json["clusters"].as_array().unwrap();
    let pids = clusters
        .iter()
        .flat_map(|c| c["nodes"].as_array().unwrap().iter().map(|n| n["pid"].as_i64().unwrap() as i32))
        .collect();
    let roots = clusters.iter().map(|c| PathBuf::from(c["root"].as_str().unwrap())).collect();
    (pids, roots)
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn sandbox_up_status_down() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let (mut child, banner) = sandbox_up(&state);
    let connect = banner.iter().find_map(|l| l.trim().strip_prefix("connect: PGPASSWORD=app psql ")).unwrap();
    let port = connect.split_whitespace().nth(3).unwrap();
    let conninfo = format!("host=127.0.0.1 port={port} user=app password=app dbname=app");
    assert_eq!(psql_conninfo(&conninfo, "SELECT 40 + 2").unwrap(), "42");
    assert!(banner.iter().any(|l| l.contains("connect: mariadb -h 127.0.0.1")), "{banner:?}");

    let status = hapool().args(["sandbox", "status", "--state"]).arg(&state).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("running"), "{status}");
    assert_eq!(status.matches(" up").count(), 4, "{status}");

    let (pids, roots) = recorded(&state);
    let down = hapool().args(["sandbox", "down", "--state"]).arg(&state).output().unwrap();
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    assert!(child.wait().unwrap().success());
    assert!(pids.iter().all(|p| !alive(*p)), "servers left running");
    assert!(roots.iter().all(|r| !r.exists()), "folders left behind");
    assert!(!state.exists());
}

#[test]
fn servers_die_with_a_killed_sandbox_process() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let (mut child, _) = sandbox_up(&state);
    let (pids, roots) = recorded(&state);
    assert!(pids.iter().all(|p| alive(*p)));
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert!(eventually(Duration::from_secs(10), || pids.iter().all(|p| !alive(*p))), "servers outlived their owner");
    // The data folders stay (nobody was left to delete them); remove them here.
    for root in roots {
        let _ = std::fs::remove_dir_all(root);
    }
    let down = hapool().args(["sandbox", "down", "--state"]).arg(&state).output().unwrap();
    assert!(String::from_utf8_lossy(&down.stdout).contains("stale"));
}

/// A free loopback port for a listener the test configures.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn run_serves_reloads_on_sighup_and_stops_on_sigterm() {
    // One worker is a current-thread runtime driven by its own thread; two, a multi-thread runtime.
    serve_reload_stop(1);
    serve_reload_stop(2);
}

fn serve_reload_stop(worker_threads: u32) {
    use hapool_sandbox::{PgCluster, PgClusterOptions};
    let pg = PgCluster::start(PgClusterOptions { replicas: 0, ..Default::default() }).unwrap();
    pg.primary().psql("CREATE ROLE late LOGIN PASSWORD 'latepw'").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hapool.toml");
    let port = free_port();
    let config = |extra_user: &str| {
        format!(
            "[runtime]\nworker_threads = {worker_threads}\n\
             [[cluster]]\nname = \"app\"\nengine = \"postgres\"\nlisten = \"127.0.0.1:{port}\"\n\
             [[cluster.node]]\nname = \"pg0\"\nhost = \"127.0.0.1\"\nport = {}\n\
             [[cluster.user]]\nname = \"app\"\npassword = \"app\"\n{extra_user}",
            pg.primary().port()
        )
    };
    std::fs::write(&file, config("")).unwrap();
    let mut child = hapool().arg("run").arg("-c").arg(&file).stderr(Stdio::piped()).spawn().unwrap();
    let conninfo = |user: &str, pw: &str| format!("host=127.0.0.1 port={port} user={user} password={pw} dbname=app");
    assert!(eventually(Duration::from_secs(10), || psql_conninfo(&conninfo("app", "app"), "SELECT 1").is_ok()));
    assert!(psql_conninfo(&conninfo("late", "latepw"), "SELECT 1").is_err());

    let hup = |child: &Child| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGHUP).unwrap()
    };
    std::fs::write(&file, config("[[cluster.user]]\nname = \"late\"\npassword = \"latepw\"\n")).unwrap();
    hup(&child);
    assert!(
        eventually(Duration::from_secs(10), || psql_conninfo(&conninfo("late", "latepw"), "SELECT 1").is_ok()),
        "the reloaded user can log in"
    );

    std::fs::write(&file, "[[cluster]]\nname = \"app\"\nengine = \"oracle\"\n").unwrap();
    hup(&child);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(psql_conninfo(&conninfo("late", "latepw"), "SELECT 1").unwrap(), "1", "a bad config changes nothing");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(log.contains("reload refused") && log.contains("hapool.toml:3:10"), "{log}");
}
