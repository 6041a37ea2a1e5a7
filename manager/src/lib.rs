//! hapool's manager: probes, replication lag, failure detection, failover and switchover, coordination, VIP.
//!
//! Empty until the manager issue; it owns and publishes the topology and never depends on the proxy.
