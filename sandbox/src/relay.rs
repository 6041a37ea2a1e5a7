//! A fault-injecting TCP relay in front of each node: everyone (clients, replicas, hapool) reaches the node
//! through it, so a test can cut one node off the network without touching the server process.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Result, SandboxError};

/// What the relay does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Bytes flow both ways.
    None,
    /// A partition: new connections are accepted but nothing flows on any connection until the fault clears
    /// (then held bytes are delivered, as after a healed network).
    Hang,
    /// Open connections are cut and new ones are closed at once.
    Refuse,
}

#[derive(Debug)]
struct State {
    fault: Fault,
    closing: bool,
    next_id: u64,
    conns: HashMap<u64, [TcpStream; 2]>,
}

#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks while the fault is `Hang`; returns whether traffic may flow.
    fn wait_flowing(&self) -> bool {
        let mut state = self.lock();
        while state.fault == Fault::Hang && !state.closing {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.fault == Fault::None && !state.closing
    }

    fn cut_all(state: &mut State) {
        for [a, b] in state.conns.values() {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
        state.conns.clear();
    }
}

/// A relay listening on a free loopback port and forwarding to `target`. Dropping it stops it and cuts every
/// connection.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    pub fn start(target: SocketAddr) -> Result<Relay> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| SandboxError::io("bind relay", e))?;
        let addr = listener.local_addr().map_err(|e| SandboxError::io("relay address", e))?;
        let shared = Arc::new(Shared {
            target,
            state: Mutex::new(State { fault: Fault::None, closing: false, next_id: 0, conns: HashMap::new() }),
            changed: Condvar::new(),
        });
        let s = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name(format!("relay-{}", addr.port()))
            .spawn(move || accept_loop(listener, s))
            .map_err(|e| SandboxError::io("spawn relay thread", e))?;
        Ok(Relay { addr, shared, acceptor: Some(acceptor) })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where the relay forwards to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    pub fn fault(&self) -> Fault {
        self.shared.lock().fault
    }

    /// Changes what happens to traffic, for open connections too.
    pub fn set_fault(&self, fault: Fault) {
        let mut state = self.shared.lock();
        state.fault = fault;
        if fault == Fault::Refuse {
            Shared::cut_all(&mut state);
        }
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Open relayed connections.
    pub fn connections(&self) -> usize {
        self.shared.lock().conns.len()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.closing = true;
            Shared::cut_all(&mut state);
        }
        self.shared.changed.notify_all();
        // Wake the blocking accept so the thread sees `closing`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.acceptor.take() {
            let _ = handle.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.lock().closing {
            return;
        }
        let Ok(client) = client else { continue };
        let s = shared.clone();
        // One short-lived thread per connection: connects (after any partition heals), then pumps.
        let _ = std::thread::Builder::new().name("relay-conn".into()).spawn(move || connect_and_pump(client, s));
    }
}

fn connect_and_pump(client: TcpStream, shared: Arc<Shared>) {
    if !shared.wait_flowing() {
        return;
    }
    let Ok(server) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(5)) else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) =
        (client.try_clone(), server.try_clone(), client.try_clone(), server.try_clone())
    else {
        return;
    };
    let id = {
        let mut state = shared.lock();
        if state.fault != Fault::None || state.closing {
            return;
        }
        let id = state.next_id;
        state.next_id += 1;
        state.conns.insert(id, [c3, s3]);
        id
    };
    let s = shared.clone();
    let upstream = std::thread::Builder::new().name("relay-up".into()).spawn(move || pump(c2, s2, &s, id));
    pump(server, client, &shared, id);
    if let Ok(handle) = upstream {
        let _ = handle.join();
    }
}

/// Copies `from` → `to` until either side closes or the relay cuts the connection.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared, id: u64) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !shared.wait_flowing() || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    shared.lock().conns.remove(&id);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(8) {
                let Ok(mut s) = stream else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn roundtrip(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        stream.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn passes_bytes_then_hangs_then_heals() {
        let relay = Relay::start(echo_server()).unwrap();
        let mut c = TcpStream::connect(relay.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        assert_eq!(roundtrip(&mut c, b"hello").unwrap(), b"hello");
        relay.set_fault(Fault::Hang);
        assert!(roundtrip(&mut c, b"held").is_err(), "no bytes may flow during a partition");
        relay.set_fault(Fault::None);
        let mut got = vec![0u8; 4];
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, b"held");
    }

    #[test]
    fn refuse_cuts_open_and_new_connections() {
        let relay = Relay::start(echo_server()).unwrap();
        let mut c = TcpStream::connect(relay.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(roundtrip(&mut c, b"x").unwrap(), b"x");
        relay.set_fault(Fault::Refuse);
        let mut buf = [0u8; 1];
        assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)));
        let mut d = TcpStream::connect(relay.addr()).unwrap();
        d.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(matches!(d.read(&mut buf), Ok(0) | Err(_)));
        assert_eq!(relay.connections(), 0);
    }
}
