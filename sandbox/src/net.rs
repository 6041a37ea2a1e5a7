//! Free loopback ports.

use std::net::TcpListener;

use crate::error::{Result, SandboxError};

/// A loopback port that was free a moment ago (the OS hands out ephemeral ports in rotation, so a port
/// just released is unlikely to be handed out again at once).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| SandboxError::io("bind a free loopback port", e))?;
    let port = listener.local_addr().map_err(|e| SandboxError::io("read a bound port", e))?.port();
    Ok(port)
}
