//! Idle clients parked outside the runtime. A session with nothing to do (no server held, nothing buffered)
//! hands its socket and its state here and its task ends: a parked client costs its state and an epoll
//! registration in the kernel, not a task and a runtime registration (about 1 kB each, measured). One thread
//! per listener waits on the parked sockets (`mio`, edge-triggered) and gives a client back to the runtime when
//! it sends something or hangs up, when it has been idle too long, or at shutdown.
//!
//! The thread also keeps the clock of idleness: every `TICK` it advances an epoch and calls `on_tick`, which the
//! listener uses to wake its sessions so that those idle across whole ticks can park or time out. Sessions compare
//! epochs, so an idle client reads no clock.

use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use slab::Slab;
use tracing::warn;

/// One step of the idleness clock.
pub const TICK: Duration = Duration::from_secs(1);
/// Ticks since the parking started (a u32 of seconds lasts 136 years).
pub type Epoch = u32;
/// `Entry::expires` of a client without an idle timeout.
const NEVER: Epoch = Epoch::MAX;
/// The thread's own wake-up (shutdown), never a parked client's key.
const WAKE: Token = Token(usize::MAX);

/// Why a parked client goes back to the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// It sent something, or hung up: either way its session reads the socket.
    Readable,
    /// It stayed idle up to the epoch it was given.
    Expired,
    /// Parking closed: the listener is shutting down (or the parking thread failed).
    Closing,
}

/// Takes a client back: called on the parking thread (or by `close`), it must only hand the work on (spawn).
pub type Resume<T> = Box<dyn Fn(T, TcpStream, Wake) + Send + Sync>;
/// Called on the parking thread at every tick with the new epoch.
pub type OnTick = Box<dyn Fn(Epoch) + Send + Sync>;

/// Kept small: the slab holds one per parked client, and grows by doubling.
struct Entry<T> {
    item: T,
    socket: TcpStream,
    /// The epoch at which it is given back as `Expired` (`NEVER`).
    expires: Epoch,
}

struct Slots<T> {
    entries: Slab<Entry<T>>,
    /// Entries with an expiry (the tick scans the slab only when there are some).
    expiring: usize,
    open: bool,
}

struct Inner<T> {
    registry: Registry,
    waker: Waker,
    slots: Mutex<Slots<T>>,
    resume: Resume<T>,
}

/// The parked clients of one listener. Refuses to park anything until `start`, and again after `close`.
pub struct Parking<T> {
    epoch: Arc<AtomicU32>,
    inner: OnceLock<Arc<Inner<T>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<T> std::fmt::Debug for Parking<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parking").field("epoch", &self.epoch()).field("parked", &self.parked()).finish()
    }
}

impl<T> Default for Parking<T> {
    fn default() -> Self {
        Parking { epoch: Arc::default(), inner: OnceLock::new(), thread: Mutex::new(None) }
    }
}

impl<T: Send + 'static> Parking<T> {
    /// Starts the parking thread. Only the first call starts one; until one has, nothing parks.
    pub fn start(&self, resume: Resume<T>, on_tick: OnTick) -> std::io::Result<()> {
        if self.inner.get().is_some() {
            return Ok(());
        }
        let poll = Poll::new()?;
        let inner = Arc::new(Inner {
            registry: poll.registry().try_clone()?,
            waker: Waker::new(poll.registry(), WAKE)?,
            slots: Mutex::new(Slots { entries: Slab::new(), expiring: 0, open: true }),
            resume,
        });
        let epoch = self.epoch.clone();
        let theirs = inner.clone();
        // Spawned before parking opens: no client is parked without a thread to give it back.
        let thread = std::thread::Builder::new()
            .name("hapool-parking".into())
            .spawn(move || run(&theirs, poll, &epoch, &on_tick))?;
        // If another start won meanwhile, this thread ends at its first tick (it alone holds its parking).
        if self.inner.set(inner).is_ok() {
            *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        }
        Ok(())
    }

    /// Parks a client until it is readable, or until epoch `expires`. Gives it back when parking is not open
    /// (not started, closing) or the socket cannot be watched.
    pub fn park(&self, item: T, socket: TcpStream, expires: Option<Epoch>) -> Result<(), (T, TcpStream)> {
        let Some(inner) = self.inner.get() else { return Err((item, socket)) };
        let mut slots = inner.lock();
        if !slots.open {
            return Err((item, socket));
        }
        let entry = slots.entries.vacant_entry();
        let token = Token(entry.key());
        // Edge-triggered: a socket that is readable already is reported at once.
        if inner.registry.register(&mut SourceFd(&socket.as_raw_fd()), token, Interest::READABLE).is_err() {
            return Err((item, socket));
        }
        entry.insert(Entry { item, socket, expires: expires.unwrap_or(NEVER) });
        slots.expiring += usize::from(expires.is_some());
        Ok(())
    }

    /// Stops parking: every parked client is given back (`Closing`) and the thread ends. Idempotent.
    pub fn close(&self) {
        let Some(inner) = self.inner.get() else { return };
        inner.close();
        let _ = inner.waker.wake();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl<T> Parking<T> {
    /// The idleness clock: ticks since the thread started (0 before).
    pub fn epoch(&self) -> Epoch {
        self.epoch.load(Ordering::Relaxed)
    }

    /// How many clients are parked now.
    pub fn parked(&self) -> usize {
        self.inner.get().map_or(0, |inner| inner.lock().entries.len())
    }
}

impl<T> Inner<T> {
    fn lock(&self) -> MutexGuard<'_, Slots<T>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses further parks and gives every parked client back (`Closing`).
    fn close(&self) {
        let all: Vec<Entry<T>> = {
            let mut slots = self.lock();
            slots.open = false;
            let keys: Vec<usize> = slots.entries.iter().map(|(k, _)| k).collect();
            keys.into_iter().filter_map(|k| slots.take(k, &self.registry)).collect()
        };
        for entry in all {
            // Also runs while the thread unwinds from a panic: a second one must not abort the process.
            let resume = std::panic::AssertUnwindSafe(|| (self.resume)(entry.item, entry.socket, Wake::Closing));
            let _ = std::panic::catch_unwind(resume);
        }
    }
}

/// Closes the parking when its thread ends for any reason, a panic included: no client stays parked with nobody
/// to give it back.
struct CloseOnExit<'a, T>(&'a Inner<T>);

impl<T> Drop for CloseOnExit<'_, T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("parking: the thread failed; parked clients are given back and nothing parks any more");
        }
        self.0.close();
    }
}

impl<T> Slots<T> {
    fn take(&mut self, key: usize, registry: &Registry) -> Option<Entry<T>> {
        let entry = self.entries.try_remove(key)?;
        self.expiring -= usize::from(entry.expires != NEVER);
        // Fails only if the descriptor is no longer registered, which leaves nothing to undo.
        let _ = registry.deregister(&mut SourceFd(&entry.socket.as_raw_fd()));
        Some(entry)
    }
}

/// The parking thread: gives back clients whose sockets became readable, ticks the clock, expires the idle.
fn run<T>(inner: &Arc<Inner<T>>, mut poll: Poll, epoch: &AtomicU32, on_tick: &OnTick) {
    let _close = CloseOnExit(inner);
    let mut events = Events::with_capacity(256);
    let mut next_tick = Instant::now() + TICK;
    let mut back = Vec::new();
    loop {
        let timeout = next_tick.saturating_duration_since(Instant::now());
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                warn!(error = %e, "parking: waiting for parked clients failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let now = Instant::now();
        let ticked = now >= next_tick;
        let current = if ticked {
            next_tick = now + TICK;
            epoch.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            epoch.load(Ordering::Relaxed)
        };
        let open = {
            let mut slots = inner.lock();
            for event in events.iter().filter(|e| e.token() != WAKE) {
                back.extend(slots.take(event.token().0, &inner.registry).map(|e| (e, Wake::Readable)));
            }
            if ticked && slots.expiring > 0 {
                let expired: Vec<usize> =
                    slots.entries.iter().filter(|(_, e)| e.expires <= current).map(|(k, _)| k).collect();
                for key in expired {
                    back.extend(slots.take(key, &inner.registry).map(|e| (e, Wake::Expired)));
                }
            }
            slots.open
        };
        for (entry, why) in back.drain(..) {
            (inner.resume)(entry.item, entry.socket, why);
        }
        // Closed, or the listener is gone (only this thread still holds the parking).
        if !open || Arc::strong_count(inner) == 1 {
            return;
        }
        if ticked {
            on_tick(current);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;
    use std::sync::mpsc;

    use super::*;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (client, server)
    }

    fn started() -> (Parking<u32>, mpsc::Receiver<(u32, Wake)>, mpsc::Receiver<Epoch>) {
        started_failing_on(None)
    }

    /// A started parking whose resume reports what comes back, and panics for client `fails` if given.
    fn started_failing_on(fails: Option<u32>) -> (Parking<u32>, mpsc::Receiver<(u32, Wake)>, mpsc::Receiver<Epoch>) {
        let parking = Parking::default();
        let (tx, back) = mpsc::channel();
        let (tick_tx, ticks) = mpsc::channel();
        let tx = Mutex::new(tx);
        let tick_tx = Mutex::new(tick_tx);
        let resume: Resume<u32> = Box::new(move |item, _socket, why| {
            assert_ne!(Some(item), fails, "this resume fails for client {item}");
            tx.lock().unwrap().send((item, why)).unwrap();
        });
        let on_tick: OnTick = Box::new(move |epoch| {
            let _ = tick_tx.lock().unwrap().send(epoch);
        });
        parking.start(resume, on_tick).unwrap();
        (parking, back, ticks)
    }

    const WITHIN: Duration = Duration::from_secs(5);

    #[test]
    fn nothing_parks_before_start() {
        let parking = Parking::<u32>::default();
        let (_client, server) = pair();
        assert!(parking.park(1, server, None).is_err());
        assert_eq!(parking.epoch(), 0);
    }

    #[test]
    fn a_client_comes_back_when_it_writes_or_hangs_up() {
        let (parking, back, _) = started();
        let (mut a, a_server) = pair();
        let (b, b_server) = pair();
        parking.park(1, a_server, None).unwrap();
        parking.park(2, b_server, None).unwrap();
        assert_eq!(parking.parked(), 2);
        a.write_all(b"Q").unwrap();
        assert_eq!(back.recv_timeout(WITHIN).unwrap(), (1, Wake::Readable));
        drop(b);
        assert_eq!(back.recv_timeout(WITHIN).unwrap(), (2, Wake::Readable));
        assert_eq!(parking.parked(), 0);
    }

    #[test]
    fn a_socket_readable_already_comes_back_at_once() {
        let (parking, back, _) = started();
        let (mut a, a_server) = pair();
        a.write_all(b"Q").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        parking.park(7, a_server, None).unwrap();
        assert_eq!(back.recv_timeout(WITHIN).unwrap(), (7, Wake::Readable));
    }

    #[test]
    fn idle_clients_expire_at_their_epoch_and_the_clock_ticks() {
        let (parking, back, ticks) = started();
        let (_a, a_server) = pair();
        let (_b, b_server) = pair();
        let now = parking.epoch();
        parking.park(1, a_server, Some(now + 1)).unwrap();
        parking.park(2, b_server, None).unwrap();
        assert_eq!(back.recv_timeout(WITHIN).unwrap(), (1, Wake::Expired));
        assert!(ticks.recv_timeout(WITHIN).unwrap() > now);
        assert_eq!(parking.parked(), 1);
    }

    #[test]
    fn a_failed_thread_gives_everything_back_and_refuses_more() {
        let (parking, back, _) = started_failing_on(Some(1));
        let (mut a, a_server) = pair();
        let (_b, b_server) = pair();
        parking.park(1, a_server, None).unwrap();
        parking.park(2, b_server, None).unwrap();
        a.write_all(b"Q").unwrap();
        assert_eq!(back.recv_timeout(WITHIN).unwrap(), (2, Wake::Closing));
        let (_c, c_server) = pair();
        assert!(parking.park(3, c_server, None).is_err());
        assert_eq!(parking.parked(), 0);
    }

    #[test]
    fn close_gives_everything_back_and_refuses_more() {
        let (parking, back, _) = started();
        let (_a, a_server) = pair();
        parking.park(1, a_server, None).unwrap();
        parking.close();
        assert_eq!(back.recv_timeout(WITHIN).unwrap(), (1, Wake::Closing));
        let (_b, b_server) = pair();
        assert!(parking.park(2, b_server, None).is_err());
    }
}
