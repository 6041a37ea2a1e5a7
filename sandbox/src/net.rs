//! Free loopback ports for the sandbox's servers.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;

use crate::error::{Result, SandboxError};

/// Where server ports are chosen: below Linux's ephemeral range (32768–60999 by default), which the kernel
/// hands out to every outgoing connection and every bind to port 0. A port picked from the ephemeral range and
/// released could be taken by a client socket before the server binds it (seen in CI: MariaDB failed with
/// "Address already in use"); a port below it can only be taken by another explicit choice.
const FIRST: u16 = 20_000;
const LAST: u16 = 32_000;

/// A loopback port that was free a moment ago, outside the ephemeral range, picked at random so that
/// sandboxes started in parallel do not pick the same one.
pub fn free_port() -> Result<u16> {
    let span = u64::from(LAST - FIRST);
    let start = RandomState::new().build_hasher().finish() % span;
    for i in 0..span {
        let port = FIRST + ((start + i * 7919) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    let e = std::io::Error::new(std::io::ErrorKind::AddrInUse, "every port in 20000-32000 is taken");
    Err(SandboxError::io("find a free loopback port", e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_are_free_and_outside_the_ephemeral_range() {
        for _ in 0..50 {
            let port = super::free_port().unwrap();
            assert!((super::FIRST..super::LAST).contains(&port));
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
