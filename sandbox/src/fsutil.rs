//! Small file helpers with errors that name the file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Result, SandboxError};

pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| SandboxError::io(format!("chmod {}", path.display()), e))
}

pub fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| SandboxError::io(format!("write {}", path.display()), e))
}

pub fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| SandboxError::io(format!("open {}", path.display()), e))?;
    file.write_all(text.as_bytes()).map_err(|e| SandboxError::io(format!("append to {}", path.display()), e))
}

pub fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| SandboxError::io(format!("create {}", path.display()), e))
}

/// A new temporary folder named `prefix…` that the servers' OS users can traverse.
pub fn sandbox_root(prefix: &str) -> Result<tempfile::TempDir> {
    let root =
        tempfile::Builder::new().prefix(prefix).tempdir().map_err(|e| SandboxError::io("create sandbox folder", e))?;
    set_mode(root.path(), 0o755)?;
    Ok(root)
}
