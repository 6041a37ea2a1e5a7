//! What every sandbox node has, whatever its engine: a server process behind a relay.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::error::Result;
use crate::process::{wait_ready, Launch, Server};
use crate::relay::Relay;

/// A server process and the relay in front of it. Clients, replicas and hapool reach the server through
/// [`ServerNode::addr`]. `PgNode` and `MyNode` dereference to this.
#[derive(Debug)]
pub struct ServerNode {
    // Field order matters for drop: stop the server before cutting its relay.
    server: Server,
    relay: Relay,
    name: String,
    port: u16,
}

impl ServerNode {
    /// A node for the server on `port`; `launch` is told the relay's port (MariaDB reports it to its primary).
    pub(crate) fn new(name: &str, port: u16, launch: impl FnOnce(u16) -> Launch) -> Result<ServerNode> {
        let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], port)))?;
        Ok(ServerNode { server: Server::new(name, launch(relay.port())), relay, name: name.to_string(), port })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where clients connect: the relay in front of the server.
    pub fn addr(&self) -> SocketAddr {
        self.relay.addr()
    }

    /// The relay's port (what clients use).
    pub fn port(&self) -> u16 {
        self.relay.port()
    }

    /// The server's own port, bypassing the relay (benchmarks).
    pub fn direct_port(&self) -> u16 {
        self.port
    }

    /// The relay, to inject network faults.
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    pub fn log_path(&self) -> &Path {
        self.server.log_path()
    }

    /// The server's main pid while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.server.pid()
    }

    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// Asks the server to shut down cleanly; SIGKILL after 10 s.
    pub fn stop(&self) {
        self.server.stop(Duration::from_secs(10));
    }

    /// SIGKILL to the server and every process it started: a crash.
    pub fn kill(&self) {
        self.server.kill();
    }

    /// SIGSTOP to every process of the server: it hangs with its connections open.
    pub fn pause(&self) -> Result<()> {
        self.server.pause()
    }

    pub fn resume(&self) -> Result<()> {
        self.server.resume()
    }

    /// Starts the server if it is stopped, then polls `ready` until it holds (60 s at most).
    pub(crate) fn start_and_wait(&self, ready: impl FnMut() -> bool) -> Result<()> {
        self.server.spawn()?;
        wait_ready(&self.server, &format!("{} accepting connections", self.name), Duration::from_secs(60), ready)
    }
}
