//! Client authentication at the proxy (SCRAM-SHA-256, MD5, trust) and the proxy's own login to servers.

pub mod backend;
pub mod end_point;
pub mod scram;

use hapool_config::{AuthMethod, Secret};

use scram::ScramVerifier;

/// How one configured user authenticates, with what the server side of SCRAM needs precomputed.
#[derive(Debug, Clone)]
pub struct UserAuth {
    pub name: String,
    pub method: AuthMethod,
    pub password: Option<Secret>,
    pub scram: Option<ScramVerifier>,
    /// Overrides the cluster's pool size for this user.
    pub pool_size: Option<u32>,
    /// Clients this user may have at once.
    pub max_clients: Option<u32>,
}

impl UserAuth {
    pub fn new(name: &str, method: AuthMethod, password: Option<Secret>) -> UserAuth {
        let scram = password.as_ref().map(|p| ScramVerifier::from_password(p.expose()));
        UserAuth { name: name.to_string(), method, password, scram, pool_size: None, max_clients: None }
    }
}

/// MD5 response check: `md5` + hex(md5(hex(md5(password + user)) + salt)).
pub fn md5_matches(user: &str, password: &str, salt: [u8; 4], response: &[u8]) -> bool {
    let expected = postgres_protocol::authentication::md5_hash(user.as_bytes(), password.as_bytes(), salt);
    constant_time_eq(expected.as_bytes(), response)
}

/// Compares without an early exit, so timing does not tell how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_checks_the_salted_double_hash() {
        let salt = [1, 2, 3, 4];
        let good = postgres_protocol::authentication::md5_hash(b"app", b"pw", salt);
        assert!(md5_matches("app", "pw", salt, good.as_bytes()));
        assert!(!md5_matches("app", "wrong", salt, good.as_bytes()));
        assert!(!md5_matches("app", "pw", [9, 9, 9, 9], good.as_bytes()));
        assert!(!md5_matches("app", "pw", salt, b"md5"));
    }
}
