//! Cancel requests: each client gets the proxy's own key; a cancel is forwarded only to the server serving
//! that client at that moment. The same registry wakes every session when something outside it changed
//! (shutdown, a retired node), so that a session's wait needs no waiter of its own on those signals.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::Waker;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::msg::cancel_request;

/// The server serving one client right now: its address and its own cancel key.
pub type CancelTarget = Option<(SocketAddr, i32, i32)>;

/// One client's entry, updated by its session without touching the registry's lock. One lock for all of it:
/// two made every client's slot a size class larger (16 bytes per client).
#[derive(Debug, Default)]
pub struct CancelSlot(Mutex<Slot>);

#[derive(Debug, Default)]
struct Slot {
    /// The server serving the client.
    serving: CancelTarget,
    /// How many cancels are being forwarded to it. PostgreSQL acts on a cancel request after it has read it
    /// (the postmaster signals the backend): one aimed at a query that ended meanwhile could still stop the
    /// next query on that connection. The session keeps its connection, out of the pool, until this is 0
    /// (`CancelSlot::release`).
    forwarding: u32,
    /// The session's task: woken by `CancelRegistry::wake_all` (and `tick_all`), and kept when woken. A task's
    /// waker wakes that task for as long as it lives, so a session registers once per task, not before every
    /// wait (that took two atomic operations per wait, 1.9 % of the proxy's user time).
    waker: Option<Waker>,
}

impl CancelSlot {
    /// Registers the session's task to wake when `wake_all` runs: once per task, before its first check of the
    /// signals' flags.
    pub fn watch(&self, waker: &Waker) {
        self.lock().waker = Some(waker.clone());
    }

    /// Drops the registered waker (its task is ending while the client stays).
    pub fn forget_waker(&self) {
        let waker = self.lock().waker.take();
        drop(waker);
    }

    fn wake(&self) {
        if let Some(waker) = self.lock().waker.as_ref() {
            waker.wake_by_ref();
        }
    }

    /// Records which server serves the client now; `None` when none does.
    pub fn set(&self, target: CancelTarget) {
        self.lock().serving = target;
    }

    /// The client gives its server connection up: no cancel is forwarded to it from now on. Whether one still
    /// is being forwarded (the connection must then stay with the client until it is through: `forwarding`).
    pub fn release(&self) -> bool {
        let mut slot = self.lock();
        slot.serving = None;
        slot.forwarding > 0
    }

    /// Whether a cancel is being forwarded to the client's server.
    pub fn forwarding(&self) -> bool {
        self.lock().forwarding > 0
    }

    fn get(&self) -> CancelTarget {
        self.lock().serving
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
struct Entry {
    secret: i32,
    /// Whether the session looks at its idleness (it may park, or has an idle timeout): woken at every tick of
    /// the parking's clock too (`CancelRegistry::tick_all`). Kept here, in the entry's padding: a field in
    /// the slot made every client's slot a size class larger, and cost ≈ 90 bytes per idle client.
    ticks: bool,
    slot: Arc<CancelSlot>,
}

/// Client keys handed out by one listener.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    entries: Mutex<HashMap<i32, Entry>>,
}

impl CancelRegistry {
    /// A fresh (pid, secret) for a new client, and the slot its session keeps up to date.
    pub fn register(&self) -> ((i32, i32), Arc<CancelSlot>) {
        let mut entries = self.lock();
        loop {
            let pid = rand::random::<i32>() & 0x7fff_ffff;
            if pid != 0 && !entries.contains_key(&pid) {
                let secret = rand::random::<i32>();
                let slot = Arc::new(CancelSlot::default());
                entries.insert(pid, Entry { secret, ticks: false, slot: slot.clone() });
                return ((pid, secret), slot);
            }
        }
    }

    /// Whether client `pid`'s session is woken at every tick of the idleness clock.
    pub fn set_ticks(&self, pid: i32, on: bool) {
        if let Some(entry) = self.lock().get_mut(&pid) {
            entry.ticks = on;
        }
    }

    pub fn unregister(&self, pid: i32) {
        self.lock().remove(&pid);
    }

    /// Wakes every session, after a signal it checks by flag has been raised (shutdown, a pool retired).
    /// Sessions that find nothing for them go back to waiting.
    pub fn wake_all(&self) {
        for entry in self.lock().values() {
            entry.slot.wake();
        }
    }

    /// Wakes the sessions that look at their idleness, at a tick of the idleness clock. The others (TLS
    /// clients and session pooling without `client_idle_timeout`) would find nothing to do.
    pub fn tick_all(&self) {
        for entry in self.lock().values().filter(|e| e.ticks) {
            entry.slot.wake();
        }
    }

    /// Forwards a cancel if the key matches a client that is being served; silently ignores it otherwise,
    /// as PostgreSQL does. Until the server has closed the cancel's connection (it has then signalled its
    /// backend), the client's session keeps that server connection (`CancelSlot::release`).
    pub async fn cancel(&self, pid: i32, secret: i32) {
        let slot = match self.lock().get(&pid) {
            Some(e) if super::auth::constant_time_eq(&e.secret.to_be_bytes(), &secret.to_be_bytes()) => e.slot.clone(),
            _ => return,
        };
        let target = {
            let mut t = slot.lock();
            let Some(serving) = t.serving else { return };
            t.forwarding += 1;
            serving
        };
        let forwarding = Forwarding(&slot);
        let (addr, server_pid, server_secret) = target;
        let Ok(Ok(mut s)) = tokio::time::timeout(CANCEL_TIMEOUT, TcpStream::connect(addr)).await else { return };
        // The query may have ended while connecting, and the client given its server connection up: sent only
        // while the client still holds the same one.
        if slot.get() != Some(target) {
            return;
        }
        if s.write_all(&cancel_request(server_pid, server_secret)).await.is_ok() {
            let mut end = [0u8; 1];
            let _ = tokio::time::timeout(CANCEL_TIMEOUT, s.read(&mut end)).await;
        }
        drop(forwarding);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long a cancel's connection to the server may take, to open and then to be closed by the server.
const CANCEL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A cancel being forwarded: when it is through, the count goes down and the session is woken (it may hold its
/// server connection for it).
struct Forwarding<'a>(&'a CancelSlot);

impl Drop for Forwarding<'_> {
    fn drop(&mut self) {
        let mut slot = self.0.lock();
        slot.forwarding = slot.forwarding.saturating_sub(1);
        if let Some(waker) = slot.waker.as_ref() {
            waker.wake_by_ref();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use tokio::io::AsyncReadExt;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A slot whose waker counts its wake-ups.
    fn watched(registry: &CancelRegistry, ticks: bool) -> (Arc<CancelSlot>, Arc<Count>) {
        let ((pid, _), slot) = registry.register();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        registry.set_ticks(pid, ticks);
        slot.watch(&Waker::from(count.clone()));
        (slot, count)
    }

    /// The query a cancel was aimed at ended, and its server connection went to another client (or back to the
    /// pool), while the proxy was connecting to forward the cancel: nothing is sent.
    #[test]
    fn a_cancel_whose_client_lost_its_server_while_connecting_is_not_sent() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let registry = CancelRegistry::default();
            let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let target = Some((server.local_addr().unwrap(), 77, 88));
            let mut sent = Vec::new();
            for (moved, want) in [(false, 16), (true, 0)] {
                let ((pid, secret), slot) = registry.register();
                slot.set(target);
                let cancel = registry.cancel(pid, secret);
                tokio::pin!(cancel);
                // The first poll starts the connect; it cannot be done before the I/O driver has run.
                assert!(futures_util::poll!(&mut cancel).is_pending());
                if moved {
                    slot.set(None);
                }
                // The server reads the request and closes (the cancel waits for that), or sees it closed.
                let serve = async {
                    let (stream, _) = server.accept().await.unwrap();
                    let mut got = Vec::new();
                    stream.take(16).read_to_end(&mut got).await.unwrap();
                    got
                };
                let ((), got) = tokio::join!(cancel, serve);
                sent.push((got.len(), want));
            }
            assert_eq!(sent, [(16, 16), (0, 0)], "(bytes sent, expected)");
        });
    }

    /// PostgreSQL signals the backend after it has read the cancel, then closes the cancel's connection: until
    /// then the client's session must not give its server connection up (a late signal would stop the next
    /// client's query there), and it is woken once the cancel is through.
    #[test]
    fn a_cancel_is_forwarding_until_the_server_closes_its_connection() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let registry = CancelRegistry::default();
            let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let (slot, woken) = watched(&registry, false);
            let pid = *registry.lock().iter().find(|(_, e)| Arc::ptr_eq(&e.slot, &slot)).unwrap().0;
            let secret = registry.lock()[&pid].secret;
            slot.set(Some((server.local_addr().unwrap(), 77, 88)));
            let cancel = tokio::spawn(async move { registry.cancel(pid, secret).await });
            let (mut stream, _) = server.accept().await.unwrap();
            let mut request = [0u8; 16];
            stream.read_exact(&mut request).await.unwrap();
            assert!(slot.release(), "read by the server, not yet acted on: the connection stays");
            assert!(slot.forwarding());
            drop(stream);
            cancel.await.unwrap();
            assert!(!slot.forwarding() && !slot.release(), "through once the server closed its connection");
            assert_eq!(woken.0.load(Ordering::Relaxed), 1, "the session is woken to give its connection up");
        });
    }

    #[test]
    fn ticks_wake_only_the_sessions_that_look_at_their_idleness() {
        let registry = CancelRegistry::default();
        let (idle_aware, a) = watched(&registry, true);
        let (_plain, b) = watched(&registry, false);
        registry.tick_all();
        assert_eq!((a.0.load(Ordering::Relaxed), b.0.load(Ordering::Relaxed)), (1, 0));
        registry.wake_all();
        assert_eq!((a.0.load(Ordering::Relaxed), b.0.load(Ordering::Relaxed)), (2, 1), "signals wake everyone");
        registry.tick_all();
        assert_eq!(a.0.load(Ordering::Relaxed), 3, "a waker stays registered when woken");
        idle_aware.forget_waker();
        registry.wake_all();
        assert_eq!((a.0.load(Ordering::Relaxed), b.0.load(Ordering::Relaxed)), (3, 2), "a forgotten one is not woken");
    }
}
