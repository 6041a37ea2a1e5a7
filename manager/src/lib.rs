//! hapool's replication manager: probes every node, measures replication lag, decides health and roles,
//! and publishes the topology the proxy follows.
//!
//! Decisions are pure functions (`decide`) over plain state (`state`); the probing I/O (`probe`) and the one
//! task that owns and publishes the topology (`owner`) are separate.

pub mod decide;
pub mod events;
pub mod health;
pub mod lag;
pub mod observation;
mod owner;
pub mod position;
pub mod probe;
pub mod state;

pub use owner::{Manager, ManagerError, Status};
pub use state::{check_live_change, status_line};
