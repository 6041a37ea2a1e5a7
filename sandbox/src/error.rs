//! Why a sandbox operation failed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{program} not found ({searched}); install it with: apt-get install {package}")]
    MissingBinary { program: String, searched: String, package: String },
    #[error("OS user {user:?} does not exist; install {package} (it creates the user) or run as a non-root user")]
    MissingOsUser { user: String, package: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {output}")]
    CommandFailed { command: String, status: String, output: String },
    #[error("{node} exited during start; last lines of {}:\n{log_tail}", log.display())]
    ServerExited { node: String, log: PathBuf, log_tail: String },
    #[error("{what} not ready after {seconds}s; last lines of {}:\n{log_tail}", log.display())]
    Timeout { what: String, seconds: u64, log: PathBuf, log_tail: String },
    #[error("signal to pid {pid}: {source}")]
    Signal {
        pid: i32,
        #[source]
        source: nix::Error,
    },
}

impl SandboxError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> SandboxError {
        SandboxError::Io { what: what.into(), source }
    }
}

pub type Result<T> = std::result::Result<T, SandboxError>;
