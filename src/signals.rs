//! Waiting for Ctrl-C / SIGTERM in the foreground commands.

use nix::sys::signal::{SigSet, Signal};

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread, and in every thread it starts afterwards, so that
/// `wait` receives them. Call before starting threads.
pub fn block() -> anyhow::Result<SigSet> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set.thread_block()?;
    Ok(set)
}

/// Waits for one of the blocked signals and returns it.
pub fn wait(set: &SigSet) -> anyhow::Result<Signal> {
    Ok(set.wait()?)
}
