//! Logging in to a server as a user whose configured password is the SCRAM secret the server keeps
//! (`pg_authid.rolpassword`, as PgBouncer's userlist holds it). hapool never has that user's password, but a
//! client's SCRAM login through hapool proves the client's ClientKey, and the ClientKey is all the client side of
//! SCRAM needs against a server that keeps the same secret (the same salt and iteration count). The keys learned
//! are kept per user, in memory only, and used only while they open the configured secret.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::scram::{hmac, ScramError, ScramVerifier};

/// The ClientKeys learned from clients' SCRAM logins, by user.
#[derive(Default)]
pub struct KeyRing(Mutex<HashMap<String, [u8; 32]>>);

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRing(***)")
    }
}

impl KeyRing {
    /// A client of `user` proved `key` (its SCRAM login succeeded).
    pub fn learn(&self, user: &str, key: [u8; 32]) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(user.to_string(), key);
    }

    /// The key of `user` that opens `verifier` (one learned under a secret a reload has since replaced does not).
    pub fn key_for(&self, user: &str, verifier: &ScramVerifier) -> Option<[u8; 32]> {
        let key = *self.0.lock().unwrap_or_else(|e| e.into_inner()).get(user)?;
        verifier.opens_with(&key).then_some(key)
    }
}

/// The client side of one SCRAM-SHA-256 exchange made with a ClientKey instead of a password.
pub struct KeyedScram<'a> {
    verifier: &'a ScramVerifier,
    client_key: [u8; 32],
    client_first_bare: String,
    auth_message: String,
}

impl<'a> KeyedScram<'a> {
    pub fn new(verifier: &'a ScramVerifier, client_key: [u8; 32]) -> KeyedScram<'a> {
        let nonce: [u8; 18] = rand::random();
        let client_first_bare = format!("n=,r={}", STANDARD.encode(nonce));
        KeyedScram { verifier, client_key, client_first_bare, auth_message: String::new() }
    }

    /// `n,,n=,r=nonce` (no channel binding: the proxy's login to a server).
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Answers the server's first message: the client-final message with the proof. The server's salt and
    /// iteration count must be the secret's, or the key cannot answer.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed)?;
        // `r=…,s=…,i=…` in that order; a mandatory extension (`m=`) is one this client does not know.
        if text.starts_with("m=") {
            return Err(ScramError::Malformed);
        }
        let attr = |name: &str| text.split(',').find_map(|a| a.strip_prefix(name));
        let nonce = attr("r=").ok_or(ScramError::Malformed)?;
        let ours = &self.client_first_bare["n=,r=".len()..];
        if !nonce.starts_with(ours) || nonce.len() == ours.len() {
            return Err(ScramError::Nonce);
        }
        let salt = STANDARD.decode(attr("s=").ok_or(ScramError::Malformed)?).map_err(|_| ScramError::Malformed)?;
        let iterations: u32 = attr("i=").and_then(|i| i.parse().ok()).ok_or(ScramError::Malformed)?;
        if *salt != *self.verifier.salt || iterations != self.verifier.iterations {
            return Err(ScramError::OtherSecret);
        }
        let without_proof = format!("c=biws,r={nonce}");
        self.auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = hmac(&self.verifier.stored_key, &[self.auth_message.as_bytes()]);
        let proof: Vec<u8> = self.client_key.iter().zip(signature).map(|(k, s)| k ^ s).collect();
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)))
    }

    /// Checks the server's final message: the server knows the secret too.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let expected = hmac(&self.verifier.server_key, &[self.auth_message.as_bytes()]);
        let given = server_final.strip_prefix(b"v=").ok_or(ScramError::Malformed)?;
        let given = STANDARD.decode(given).map_err(|_| ScramError::Malformed)?;
        if self.auth_message.is_empty() || !super::constant_time_eq(&given, &expected) {
            return Err(ScramError::Proof);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::scram::ScramExchange;
    use super::*;

    /// A client logs in with its password through the proxy's server side; the key it proved logs the proxy in
    /// to a server side that keeps the same secret, and not to one with another secret.
    #[test]
    fn a_clients_proven_key_logs_in_where_the_same_secret_is_kept() {
        let server_secret = ScramVerifier::from_password("s3cret");
        let mut client = postgres_protocol::authentication::sasl::ScramSha256::new(
            b"s3cret",
            postgres_protocol::authentication::sasl::ChannelBinding::unsupported(),
        );
        let at_proxy = ScramExchange::start(&server_secret, client.message(), None, false).unwrap();
        client.update(at_proxy.server_first()).unwrap();
        let (_, key) = at_proxy.finish(client.message()).unwrap();
        let ring = KeyRing::default();
        ring.learn("app", key);
        assert_eq!(ring.key_for("app", &server_secret), Some(key));
        assert_eq!(ring.key_for("other", &server_secret), None);
        let replaced = ScramVerifier::from_password("s3cret");
        assert_eq!(ring.key_for("app", &replaced), None, "another salt: another key");

        // The proxy's login to the server, with the key.
        let mut proxy = KeyedScram::new(&server_secret, key);
        let at_server = ScramExchange::start(&server_secret, proxy.client_first().as_bytes(), None, false).unwrap();
        let last = proxy.client_final(at_server.server_first()).unwrap();
        let (server_final, _) = at_server.finish(last.as_bytes()).unwrap();
        proxy.verify(&server_final).unwrap();
        assert_eq!(proxy.verify(b"v=AAAA"), Err(ScramError::Proof));

        // A server that keeps another secret for the user (another salt) cannot be answered.
        let mut proxy = KeyedScram::new(&server_secret, key);
        let elsewhere = ScramExchange::start(&replaced, proxy.client_first().as_bytes(), None, false).unwrap();
        assert_eq!(proxy.client_final(elsewhere.server_first()), Err(ScramError::OtherSecret));
        let mut proxy = KeyedScram::new(&server_secret, key);
        assert_eq!(proxy.client_final(b"r=someone-elses,s=AAAA,i=4096"), Err(ScramError::Nonce));
    }
}
