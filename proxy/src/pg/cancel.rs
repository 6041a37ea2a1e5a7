//! Cancel requests: each client gets the proxy's own key; a cancel is forwarded only to the server serving
//! that client at that moment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::msg::cancel_request;

#[derive(Debug, Clone, Copy)]
struct Entry {
    secret: i32,
    server: Option<(SocketAddr, i32, i32)>,
}

/// Client keys handed out by one listener.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    entries: Mutex<HashMap<i32, Entry>>,
}

impl CancelRegistry {
    /// A fresh (pid, secret) for a new client.
    pub fn register(&self) -> (i32, i32) {
        let mut entries = self.lock();
        loop {
            let pid = rand::random::<i32>() & 0x7fff_ffff;
            if pid != 0 && !entries.contains_key(&pid) {
                let secret = rand::random::<i32>();
                entries.insert(pid, Entry { secret, server: None });
                return (pid, secret);
            }
        }
    }

    /// Records which server (address and its own key) serves the client now; `None` when none does.
    pub fn set_server(&self, pid: i32, server: Option<(SocketAddr, i32, i32)>) {
        if let Some(e) = self.lock().get_mut(&pid) {
            e.server = server;
        }
    }

    pub fn unregister(&self, pid: i32) {
        self.lock().remove(&pid);
    }

    /// Forwards a cancel if the key matches a client that is being served; silently ignores it otherwise,
    /// as PostgreSQL does.
    pub async fn cancel(&self, pid: i32, secret: i32) {
        let target = match self.lock().get(&pid) {
            Some(e) if super::auth::constant_time_eq(&e.secret.to_be_bytes(), &secret.to_be_bytes()) => e.server,
            _ => None,
        };
        if let Some((addr, server_pid, server_secret)) = target {
            if let Ok(mut s) = TcpStream::connect(addr).await {
                let _ = s.write_all(&cancel_request(server_pid, server_secret)).await;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}
