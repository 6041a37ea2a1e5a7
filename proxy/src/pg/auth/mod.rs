//! Client authentication at the proxy (SCRAM-SHA-256, MD5, trust) and the proxy's own login to servers.

pub mod backend;
pub mod end_point;
pub mod passthrough;
pub mod scram;

use std::sync::Arc;

use hapool_config::{password_kind, AuthMethod, PasswordKind, Secret};
use md5::{Digest, Md5};

use passthrough::KeyRing;
use scram::ScramVerifier;

/// How one configured user authenticates, with what the server side of SCRAM needs precomputed.
#[derive(Debug, Clone)]
pub struct UserAuth {
    pub name: String,
    pub method: AuthMethod,
    pub password: Option<Secret>,
    /// What the password is: itself, or a secret the server keeps (the configuration checked it).
    pub kind: PasswordKind,
    pub scram: Option<ScramVerifier>,
    /// `md5` + hex(md5(password ‖ user)), what MD5 logins are checked and answered with.
    pub md5: Option<Secret>,
    /// Overrides the cluster's pool size for this user.
    pub pool_size: Option<u32>,
    /// Clients this user may have at once.
    pub max_clients: Option<u32>,
}

impl UserAuth {
    pub fn new(name: &str, method: AuthMethod, password: Option<Secret>) -> UserAuth {
        let text = password.as_ref().map(Secret::expose);
        // Something that starts like a secret and is not one (the configuration refuses it) serves nothing: it
        // is never taken for a password.
        let kind = text.map_or(Ok(PasswordKind::Plain), password_kind);
        let (scram, md5) = match (kind, text) {
            (_, None) | (Err(_), _) => (None, None),
            (Ok(PasswordKind::Plain), Some(t)) => (Some(ScramVerifier::from_password(t)), Some(user_md5(name, t))),
            (Ok(PasswordKind::Md5Hash), Some(t)) => (None, Some(Secret::new(t))),
            (Ok(PasswordKind::ScramSecret), Some(t)) => (ScramVerifier::parse(t), None),
        };
        let kind = kind.unwrap_or(PasswordKind::ScramSecret);
        UserAuth { name: name.to_string(), method, password, kind, scram, md5, pool_size: None, max_clients: None }
    }

    /// What the proxy logs in to servers with as this user; `keys`: the listener's learned SCRAM keys.
    pub fn credentials(&self, keys: &Arc<KeyRing>) -> Credentials {
        match (&self.password, self.kind, &self.scram) {
            (None, _, _) => Credentials::None,
            (Some(password), PasswordKind::Plain, _) => Credentials::Password(password.clone()),
            (Some(hash), PasswordKind::Md5Hash, _) => Credentials::Md5Hash(hash.clone()),
            (Some(_), PasswordKind::ScramSecret, Some(verifier)) => {
                Credentials::Scram { verifier: verifier.clone(), keys: keys.clone() }
            }
            (Some(_), PasswordKind::ScramSecret, None) => Credentials::None,
        }
    }
}

impl Credentials {
    /// Whether a login as `user` can be tried now (with a SCRAM secret: once a client proved its key).
    pub fn ready(&self, user: &str) -> bool {
        match self {
            Credentials::Scram { verifier, keys } => keys.key_for(user, verifier).is_some(),
            _ => true,
        }
    }
}

/// What the proxy logs in to a server with, as one user.
#[derive(Debug)]
pub enum Credentials {
    None,
    Password(Secret),
    /// `md5` + hex(md5(password ‖ user)), as pg_authid keeps it: answers MD5 only.
    Md5Hash(Secret),
    /// The SCRAM secret the server keeps: answered with the ClientKey a client of the user proved.
    Scram {
        verifier: ScramVerifier,
        keys: Arc<KeyRing>,
    },
}

/// `md5` + hex(md5(password ‖ user)): what PostgreSQL keeps for an MD5 password.
pub fn user_md5(user: &str, password: &str) -> Secret {
    Secret::new(format!("md5{}", hex(&Md5::new().chain_update(password).chain_update(user).finalize())))
}

/// The answer to an MD5 challenge: `md5` + hex(md5(hex part of the user's hash ‖ salt)).
pub fn md5_salted(user_md5: &str, salt: [u8; 4]) -> String {
    let inner = user_md5.strip_prefix("md5").unwrap_or(user_md5);
    format!("md5{}", hex(&Md5::new().chain_update(inner).chain_update(salt).finalize()))
}

/// MD5 response check against the user's hash (`user_md5`).
pub fn md5_matches(user_md5: &str, salt: [u8; 4], response: &[u8]) -> bool {
    constant_time_eq(md5_salted(user_md5, salt).as_bytes(), response)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        let app = user_md5("app", "pw");
        assert!(md5_matches(app.expose(), salt, good.as_bytes()));
        assert!(!md5_matches(user_md5("app", "wrong").expose(), salt, good.as_bytes()));
        assert!(!md5_matches(app.expose(), [9, 9, 9, 9], good.as_bytes()));
        assert!(!md5_matches(app.expose(), salt, b"md5"));
        // What pg_authid keeps for role md5u with password 'x' (password_encryption = md5).
        assert_eq!(user_md5("md5u", "x").expose(), "md599d7714169587ba382241135a9f425e7");
        let hashed = UserAuth::new("md5u", AuthMethod::Md5, Some(Secret::new("md599d7714169587ba382241135a9f425e7")));
        let answer = postgres_protocol::authentication::md5_hash(b"md5u", b"x", salt);
        assert!(md5_matches(hashed.md5.as_ref().unwrap().expose(), salt, answer.as_bytes()));
        assert!(hashed.scram.is_none(), "an MD5 hash cannot serve SCRAM");
    }
}
