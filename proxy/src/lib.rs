//! hapool's proxy: listeners, PostgreSQL and MySQL wire protocol, authentication, TLS, pooling and routing.
//!
//! Empty until the PostgreSQL proxy issue; it reads the topology and never depends on the manager.
