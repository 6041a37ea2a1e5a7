//! Helpers shared by the integration tests: real command-line clients and bounded polling.
#![allow(dead_code)]

pub mod manager;
pub mod proxy;
pub mod raw;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hapool_sandbox::{MyCluster, MyNode, PgCluster, PgNode};

/// Runs `psql` as the application user through `node`'s relay; returns trimmed unaligned output or stderr.
pub fn psql(cluster: &PgCluster, node: &PgNode, sql: &str) -> Result<String, String> {
    psql_conninfo(&format!("{} connect_timeout=3", cluster.app_conninfo(node)), sql)
}

/// Runs `psql` with any connection string.
pub fn psql_conninfo(conninfo: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run psql: {e}"))?;
    result(out)
}

/// Runs the `mariadb` client as the application user through `node`'s relay.
pub fn mariadb(cluster: &MyCluster, node: &MyNode, sql: &str) -> Result<String, String> {
    let c = cluster.credentials();
    let out = Command::new("mariadb")
        .args(["--no-defaults", "-h", "127.0.0.1", "--connect-timeout=3", "-N", "-B"])
        .arg(format!("-P{}", node.port()))
        .arg(format!("-u{}", c.app_user))
        .arg(format!("-p{}", c.app_password))
        .arg(&c.app_user)
        .arg("-e")
        .arg(sql)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run mariadb: {e}"))?;
    result(out)
}

fn result(out: Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes; returns whether it did.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A self-signed CA certificate (in `dir`) that signed nothing the sandbox serves.
pub fn unrelated_ca(dir: &std::path::Path) -> std::path::PathBuf {
    let cert = dir.join("other.crt");
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other", "-keyout"])
        .arg(dir.join("other.key"))
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    cert
}
