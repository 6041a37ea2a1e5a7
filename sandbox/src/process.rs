//! Server processes we started: spawn, signal (the whole process tree), stop, and clean up on drop.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::binaries::on_path;
use crate::error::{Result, SandboxError};
use crate::os_user::{apply, RunAs};

/// How to start one server process.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub run_as: Option<RunAs>,
    pub home: PathBuf,
    pub log: PathBuf,
    /// The signal that asks the server to shut down quickly and cleanly.
    pub stop_signal: Signal,
}

/// One server process under our control. Dropping it stops the server and every process it started.
/// The server is also killed when the thread that started it exits, so keep a cluster on one thread.
#[derive(Debug)]
pub struct Server {
    pub name: String,
    launch: Launch,
    child: Mutex<Option<Child>>,
}

impl Server {
    pub fn new(name: impl Into<String>, launch: Launch) -> Server {
        Server { name: name.into(), launch, child: Mutex::new(None) }
    }

    pub fn log_path(&self) -> &Path {
        &self.launch.log
    }

    /// Starts the server unless it is already running. Its output is appended to the log file.
    pub fn spawn(&self) -> Result<()> {
        let mut guard = self.lock();
        if let Some(child) = guard.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                return Ok(());
            }
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.launch.log)
            .map_err(|e| SandboxError::io(format!("open {}", self.launch.log.display()), e))?;
        let log2 = log.try_clone().map_err(|e| SandboxError::io("clone log handle", e))?;
        let mut cmd = match on_path("setpriv") {
            // The server is SIGKILLed if the thread that started it dies without stopping it (a test runner
            // killed mid-run): no orphans. setpriv execs the server, so the pid we hold is the server's.
            Some(setpriv) => {
                let mut c = Command::new(setpriv);
                c.args(["--pdeathsig", "KILL", "--"]).arg(&self.launch.program);
                c
            }
            None => Command::new(&self.launch.program),
        };
        cmd.args(&self.launch.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group: a Ctrl-C at the terminal reaches hapool, which then stops the servers.
            .process_group(0);
        apply(&mut cmd, self.launch.run_as.as_ref(), &self.launch.home);
        let child = cmd.spawn().map_err(|e| SandboxError::io(format!("start {}", self.launch.program.display()), e))?;
        *guard = Some(child);
        Ok(())
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<i32> {
        let mut guard = self.lock();
        let child = guard.as_mut()?;
        match child.try_wait() {
            Ok(None) => Some(child.id() as i32),
            _ => None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// Sends `signal` to the server and every process it started.
    pub fn signal_tree(&self, signal: Signal) -> Result<()> {
        let Some(pid) = self.pid() else { return Ok(()) };
        for p in process_tree(pid) {
            // A child may exit between listing and signalling; only the main pid must succeed.
            let sent = kill(Pid::from_raw(p), signal);
            if p == pid {
                sent.map_err(|source| SandboxError::Signal { pid, source })?;
            }
        }
        Ok(())
    }

    /// SIGKILL to the whole tree (a crash), then reaps the server.
    pub fn kill(&self) {
        let _ = self.signal_tree(Signal::SIGCONT);
        let tree = self.pid().map(process_tree).unwrap_or_default();
        for p in &tree {
            let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
        if let Some(mut child) = self.lock().take() {
            let _ = child.wait();
        }
        wait_gone(&tree, Duration::from_secs(5));
    }

    /// Asks the server to stop with its stop signal; kills it if it has not exited within `grace`.
    pub fn stop(&self, grace: Duration) {
        let Some(pid) = self.pid() else { return };
        let tree = process_tree(pid);
        let _ = self.signal_tree(Signal::SIGCONT);
        let _ = kill(Pid::from_raw(pid), self.launch.stop_signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && self.is_running() {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        wait_gone(&tree, Duration::from_secs(5));
    }

    /// SIGSTOP to the whole tree: the server hangs, connections stay open.
    pub fn pause(&self) -> Result<()> {
        self.signal_tree(Signal::SIGSTOP)
    }

    pub fn resume(&self) -> Result<()> {
        self.signal_tree(Signal::SIGCONT)
    }

    /// Whether the server exited on its own (used while waiting for it to become ready).
    pub fn has_exited(&self) -> bool {
        let mut guard = self.lock();
        matches!(guard.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        // A panic while holding this lock leaves the Option intact; keep using it.
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// `pid` and all its descendants, read from /proc.
pub fn process_tree(pid: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // The command name may contain spaces and parentheses; fields resume after the last ')'.
            let rest = &stat[stat.rfind(')')? + 2..];
            let ppid: i32 = rest.split(' ').nth(1)?.parse().ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    tree
}

/// Whether a process exists (a zombie counts as gone).
pub fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rfind(')').and_then(|i| stat.get(i + 2..i + 3)) != Some("Z"),
        Err(_) => false,
    }
}

fn wait_gone(pids: &[i32], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && pids.iter().any(|p| is_alive(*p)) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs a command to completion, returning its standard output; a non-zero exit is an error with its output.
pub fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| SandboxError::io(format!("run {shown}"), e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stdout));
        Err(SandboxError::CommandFailed {
            command: shown,
            status: out.status.to_string(),
            output: output.trim().to_string(),
        })
    }
}

/// The last `n` lines of a log file, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Polls `ready` every 50 ms until it is true, the server exits, or `timeout` passes.
pub fn wait_ready(server: &Server, what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if server.has_exited() {
            return Err(SandboxError::ServerExited {
                node: server.name.clone(),
                log: server.log_path().to_path_buf(),
                log_tail: log_tail(server.log_path(), 20),
            });
        }
        if Instant::now() >= deadline {
            return Err(SandboxError::Timeout {
                what: what.to_string(),
                seconds: timeout.as_secs(),
                log: server.log_path().to_path_buf(),
                log_tail: log_tail(server.log_path(), 20),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
