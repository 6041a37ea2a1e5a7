//! What a configuration reload may replace for one listener: users and their secrets, address rules, TLS
//! material, timeouts, pool sizes. Each session reads the settings once, when it starts: new connections see a
//! reload, existing ones keep what they started with.

use std::collections::HashMap;
use std::sync::Arc;

use hapool_config::{Cluster, PoolMode};
use hapool_topology::NodeId;

use super::auth::UserAuth;
use super::classify::Classifier;
use super::tls::{acceptor, ClientTls, TlsError};
use hapool_tls::ServerTls;

/// A listener's current settings.
#[derive(Debug)]
pub struct Settings {
    pub cluster: Cluster,
    pub users: HashMap<String, Arc<UserAuth>>,
    /// Set when `tls.client_mode` is `allow` or `require`.
    pub tls: Option<ClientTls>,
    /// Per node name; set unless `tls.server_mode` is `disable`.
    pub server_tls: HashMap<String, Option<ServerTls>>,
    /// Decides which statements may run on a replica (with this cluster's function lists).
    pub classifier: Classifier,
}

/// Why settings could not be built or swapped in.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cluster {cluster}: {what} cannot change while running ({from} → {to}); restart hapool to change it")]
    NotLive { cluster: String, what: &'static str, from: String, to: String },
    #[error("cluster {cluster} has no node")]
    NoNode { cluster: String },
    #[error("cluster {cluster}: TLS: {source}")]
    Tls {
        cluster: String,
        #[source]
        source: TlsError,
    },
}

impl Settings {
    /// Derives SCRAM verifiers and loads TLS material. Which node is primary comes from the topology.
    pub fn build(cluster: Cluster) -> Result<Settings, SettingsError> {
        let name = cluster.name.clone();
        if cluster.node.is_empty() {
            return Err(SettingsError::NoNode { cluster: name });
        }
        let users = cluster
            .user
            .iter()
            .map(|u| {
                let mut auth = UserAuth::new(&u.name, u.auth, u.password.clone());
                auth.pool_size = u.pool_size;
                auth.max_clients = u.max_client_connections;
                (u.name.clone(), Arc::new(auth))
            })
            .collect();
        let tls_error = |source| SettingsError::Tls { cluster: name.clone(), source };
        let tls = acceptor(&cluster.tls).map_err(tls_error)?;
        let server_tls = cluster
            .node
            .iter()
            .map(|n| Ok((n.name.clone(), ServerTls::new(&cluster.tls, &n.host)?)))
            .collect::<Result<_, TlsError>>()
            .map_err(tls_error)?;
        Ok(Settings { classifier: Classifier::new(&cluster.routing), users, tls, server_tls, cluster })
    }

    /// The TLS for connections to `node` (`None`: plain text, or a node this configuration does not name).
    pub fn server_tls_of(&self, node: &NodeId) -> Option<ServerTls> {
        self.server_tls.get(&node.0).cloned().flatten()
    }

    pub fn transaction_pooling(&self) -> bool {
        self.cluster.pool_mode == PoolMode::Transaction
    }

    /// Whether reads may go to replicas: the split is on, and units of work are transactions (in session
    /// pooling a client keeps one server connection, on the primary).
    pub fn splits_reads(&self) -> bool {
        self.transaction_pooling() && self.cluster.routing.read_write_split
    }
}

/// What a reload may not change: the listening socket, the engine, the pooling mode, the client limit.
pub fn check_live_change(old: &Cluster, new: &Cluster) -> Result<(), SettingsError> {
    let refuse =
        |what, from: String, to: String| Err(SettingsError::NotLive { cluster: old.name.clone(), what, from, to });
    if old.listen != new.listen {
        return refuse("listen", old.listen.to_string(), new.listen.to_string());
    }
    if old.engine != new.engine {
        return refuse("engine", format!("{:?}", old.engine), format!("{:?}", new.engine));
    }
    if old.pool_mode != new.pool_mode {
        return refuse("pool_mode", format!("{:?}", old.pool_mode), format!("{:?}", new.pool_mode));
    }
    if old.max_client_connections != new.max_client_connections {
        return refuse(
            "max_client_connections",
            old.max_client_connections.to_string(),
            new.max_client_connections.to_string(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(extra: &str) -> Cluster {
        let toml = format!(
            "[[cluster]]\nname = \"c\"\nengine = \"postgres\"\n{extra}\n[[cluster.node]]\nname = \"a\"\nhost = \"127.0.0.1\"\n\
             [[cluster.user]]\nname = \"u\"\npassword = \"p\"\n"
        );
        hapool_config::parse(&toml, "t.toml", &|_| None, std::path::Path::new(".")).unwrap().cluster.remove(0)
    }

    #[test]
    fn live_changes_are_allowed_and_socket_changes_refused() {
        let old = cluster("");
        assert!(check_live_change(&old, &cluster("pool_size = 50\nidle_timeout = \"1m\"")).is_ok());
        for extra in ["listen = \"127.0.0.1:7000\"", "pool_mode = \"session\"", "max_client_connections = 5"] {
            let err = check_live_change(&old, &cluster(extra)).unwrap_err();
            assert!(err.to_string().contains("cannot change while running"), "{err}");
        }
    }
}
