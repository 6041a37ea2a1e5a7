//! Running servers as their own OS user when we are root (initdb and mariadbd refuse to run as root).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::unistd::{Gid, Uid, User};

use crate::error::{Result, SandboxError};

/// The OS user a server runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// `Some(user)` when we are root (servers must then run as `name`), `None` when we run as an ordinary user.
pub fn server_user(name: &str, package: &str) -> Result<Option<RunAs>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let missing = || SandboxError::MissingOsUser { user: name.into(), package: package.into() };
    let user = User::from_name(name).ok().flatten().ok_or_else(missing)?;
    Ok(Some(RunAs { name: name.into(), uid: user.uid.as_raw(), gid: user.gid.as_raw() }))
}

/// Makes `cmd` run as `run_as` (when set), with HOME pointing at `home`.
pub fn apply(cmd: &mut Command, run_as: Option<&RunAs>, home: &Path) {
    cmd.env("HOME", home);
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid).env("USER", &user.name);
    }
}

/// Gives `path` and everything under it to `run_as` (no-op when not root).
pub fn chown_tree(path: &Path, run_as: Option<&RunAs>) -> Result<()> {
    let Some(user) = run_as else { return Ok(()) };
    let chown = |p: &Path| {
        nix::unistd::chown(p, Some(Uid::from_raw(user.uid)), Some(Gid::from_raw(user.gid)))
            .map_err(|e| SandboxError::io(format!("chown {}", p.display()), e.into()))
    };
    chown(path)?;
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| SandboxError::io(format!("read {}", path.display()), e))?;
        for entry in entries.flatten() {
            chown_tree(&entry.path(), run_as)?;
        }
    }
    Ok(())
}
