//! The PostgreSQL side of the proxy.

pub mod auth;
pub mod buffers;
pub mod cancel;
pub mod classify;
pub mod clock;
pub mod codec;
pub mod error;
pub mod listener;
pub mod msg;
pub mod parking;
pub mod pool;
pub mod server;
pub mod session;
pub mod settings;
pub mod sqltext;
pub mod tcp;
pub mod tls;
