//! TCP options of the sockets to clients and to servers (`[cluster.tcp]`): keepalive, so that a peer that
//! vanished is noticed on an idle connection, and (on client sockets only: the listener leaves it out of the
//! servers' options) the user timeout, which bounds how long data sent may go unacknowledged (a client that
//! stopped reading holds its server connection no longer than that).

use std::os::fd::AsFd;

use hapool_config::Tcp;
use nix::sys::socket::{setsockopt, sockopt};

/// Sets `options` on a connected socket. Options left unset keep the operating system's values.
pub fn apply(socket: &impl AsFd, options: &Tcp) -> nix::Result<()> {
    setsockopt(socket, sockopt::KeepAlive, &options.keepalive)?;
    if options.keepalive {
        if let Some(idle) = options.keepalive_idle {
            setsockopt(socket, sockopt::TcpKeepIdle, &seconds(idle))?;
        }
        if let Some(interval) = options.keepalive_interval {
            setsockopt(socket, sockopt::TcpKeepInterval, &seconds(interval))?;
        }
        if let Some(count) = options.keepalive_count {
            setsockopt(socket, sockopt::TcpKeepCount, &count)?;
        }
    }
    if let Some(timeout) = options.user_timeout {
        // The configuration allows at most i32::MAX milliseconds.
        let millis = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        setsockopt(socket, sockopt::TcpUserTimeout, &millis)?;
    }
    Ok(())
}

/// Whole seconds (the configuration allows 1 to 32767).
fn seconds(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nix::sys::socket::getsockopt;

    use super::*;

    #[test]
    fn the_options_reach_the_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let options = Tcp {
            keepalive: true,
            keepalive_idle: Some(Duration::from_secs(45)),
            keepalive_interval: Some(Duration::from_secs(7)),
            keepalive_count: Some(4),
            user_timeout: Some(Duration::from_millis(2500)),
        };
        apply(&socket, &options).unwrap();
        assert!(getsockopt(&socket, sockopt::KeepAlive).unwrap());
        assert_eq!(getsockopt(&socket, sockopt::TcpKeepIdle).unwrap(), 45);
        assert_eq!(getsockopt(&socket, sockopt::TcpKeepInterval).unwrap(), 7);
        assert_eq!(getsockopt(&socket, sockopt::TcpKeepCount).unwrap(), 4);
        assert_eq!(getsockopt(&socket, sockopt::TcpUserTimeout).unwrap(), 2500);
        let off = Tcp { keepalive: false, user_timeout: None, ..options };
        apply(&socket, &off).unwrap();
        assert!(!getsockopt(&socket, sockopt::KeepAlive).unwrap());
    }
}
