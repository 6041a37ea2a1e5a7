//! The server side of SCRAM-SHA-256 (RFC 5802 / 7677) as PostgreSQL speaks it, and of SCRAM-SHA-256-PLUS:
//! channel binding to the TLS connection by `tls-server-end-point` (RFC 5929, see `end_point`).
//!
//! The salted password is derived once per user at startup; each login costs two HMACs and a hash.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

const ITERATIONS: u32 = 4096;

/// What the server keeps to verify a password: never the password itself.
#[derive(Clone)]
pub struct ScramVerifier {
    pub(super) salt: Box<[u8]>,
    pub(super) iterations: u32,
    pub(super) stored_key: [u8; 32],
    pub(super) server_key: [u8; 32],
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramVerifier(***)")
    }
}

pub(super) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA256 with one output block (`Hi` in RFC 5802).
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut u = hmac(password, &[salt, &1u32.to_be_bytes()]);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &[&u]);
        out.iter_mut().zip(u.iter()).for_each(|(o, x)| *o ^= x);
    }
    out
}

impl ScramVerifier {
    /// Derives the verifier with a fresh random salt.
    pub fn from_password(password: &str) -> ScramVerifier {
        let mut salt = [0u8; 16];
        rand::fill(&mut salt);
        Self::with_salt(password, salt, ITERATIONS)
    }

    pub fn with_salt(password: &str, salt: [u8; 16], iterations: u32) -> ScramVerifier {
        let salted = hi(password.as_bytes(), &salt, iterations);
        let client_key = hmac(&salted, &[b"Client Key"]);
        ScramVerifier {
            salt: Box::new(salt),
            iterations,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, &[b"Server Key"]),
        }
    }

    /// A secret as PostgreSQL keeps it (`pg_authid.rolpassword`: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:
    /// <ServerKey>`), as the configuration checked it (`hapool_config::scram_parts`).
    pub fn parse(secret: &str) -> Option<ScramVerifier> {
        let parts = hapool_config::scram_parts(secret)?;
        Some(ScramVerifier {
            salt: parts.salt.into_boxed_slice(),
            iterations: parts.iterations,
            stored_key: parts.stored_key,
            server_key: parts.server_key,
        })
    }

    /// What an unknown user's login runs against: a salt derived from the user name and `nonce` (a random
    /// value of the listener's), so that the same name always shows the same salt, as a known user's does, and
    /// no key any client could prove. Costs no key derivation.
    pub fn decoy(user: &str, nonce: &[u8; 32]) -> ScramVerifier {
        let salt: [u8; 32] = Sha256::new().chain_update(nonce).chain_update(user).finalize().into();
        ScramVerifier { salt: salt[..16].into(), iterations: ITERATIONS, stored_key: [0; 32], server_key: [0; 32] }
    }

    /// Whether `client_key` is the key this verifier checks (its hash is the StoredKey).
    pub fn opens_with(&self, client_key: &[u8; 32]) -> bool {
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        super::constant_time_eq(&stored, &self.stored_key)
    }
}

/// Why a SCRAM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message")]
    Malformed,
    /// The client's channel binding does not match the mechanism, what the proxy offered, or the connection.
    #[error("SCRAM channel binding check failed")]
    ChannelBinding,
    #[error("nonce mismatch")]
    Nonce,
    #[error("wrong password")]
    Proof,
    /// The server keeps another SCRAM secret for the user (its salt or iteration count) than the one configured.
    #[error("the server keeps another SCRAM secret for this user than the configured one (salt or iterations differ)")]
    OtherSecret,
}

/// One exchange: made from the client-first message, it produces server-first, then checks client-final.
pub struct ScramExchange<'a> {
    verifier: &'a ScramVerifier,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    /// What the client-final's `c=` must carry: the GS2 header, and the binding data if it binds.
    binding: Vec<u8>,
}

impl<'a> ScramExchange<'a> {
    /// Reads `n,,n=user,r=nonce` (the user name is ignored, as PostgreSQL does). `end_point`: the connection's
    /// `tls-server-end-point` data when the proxy offered SCRAM-SHA-256-PLUS on it; `plus`: the mechanism the
    /// client chose is that one. A client that binds must have chosen it, and one that chose it must bind; a
    /// client that says it could bind (`y`) where the proxy offered binding was shown a list without it, by
    /// someone in between.
    pub fn start(
        verifier: &'a ScramVerifier,
        client_first: &[u8],
        end_point: Option<&[u8]>,
        plus: bool,
    ) -> Result<ScramExchange<'a>, ScramError> {
        let text = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed)?;
        let (cbind, rest) = text.split_once(',').ok_or(ScramError::Malformed)?;
        let data: &[u8] = match (cbind, plus, end_point) {
            ("n", false, _) => &[],
            ("y", false, None) => &[],
            ("p=tls-server-end-point", true, Some(data)) => data,
            ("n" | "y", _, _) => return Err(ScramError::ChannelBinding),
            _ if cbind.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed),
        };
        let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed)?;
        let client_nonce = bare
            .split(',')
            .find_map(|attr| attr.strip_prefix("r="))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b','))
            .ok_or(ScramError::Malformed)?;
        let mut server_nonce = [0u8; 18];
        rand::fill(&mut server_nonce);
        let nonce = format!("{client_nonce}{}", STANDARD.encode(server_nonce));
        let server_first = format!("r={nonce},s={},i={}", STANDARD.encode(&verifier.salt), verifier.iterations);
        Ok(ScramExchange {
            verifier,
            client_first_bare: bare.to_string(),
            server_first,
            nonce,
            binding: [format!("{cbind},{authzid},").as_bytes(), data].concat(),
        })
    }

    pub fn server_first(&self) -> &[u8] {
        self.server_first.as_bytes()
    }

    /// Checks `c=…,r=…,p=proof`; on success returns server-final (`v=signature`) and the client's ClientKey
    /// (recovered from its proof: what logs in to a server that keeps the same secret, see `passthrough`).
    pub fn finish(&self, client_final: &[u8]) -> Result<(Vec<u8>, [u8; 32]), ScramError> {
        let text = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed)?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(ScramError::Malformed)?;
        let mut binding = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                binding = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        let binding = STANDARD.decode(binding.ok_or(ScramError::Malformed)?).map_err(|_| ScramError::Malformed)?;
        if binding != self.binding {
            return Err(ScramError::ChannelBinding);
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::Nonce);
        }
        let proof = STANDARD.decode(proof).map_err(|_| ScramError::Malformed)?;
        if proof.len() != 32 {
            return Err(ScramError::Malformed);
        }
        let auth_message = format!("{},{},{}", self.client_first_bare, self.server_first, without_proof);
        let signature = hmac(&self.verifier.stored_key, &[auth_message.as_bytes()]);
        let mut client_key = [0u8; 32];
        client_key.iter_mut().zip(proof.iter().zip(signature.iter())).for_each(|(k, (p, s))| *k = p ^ s);
        if !self.verifier.opens_with(&client_key) {
            return Err(ScramError::Proof);
        }
        let server_signature = hmac(&self.verifier.server_key, &[auth_message.as_bytes()]);
        Ok((format!("v={}", STANDARD.encode(server_signature)).into_bytes(), client_key))
    }
}

#[cfg(test)]
mod tests {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    use super::*;

    /// Runs postgres-protocol's client (what tokio-postgres uses) against our server side.
    fn login(server_password: &str, client_password: &str) -> Result<(), ScramError> {
        bound_login(server_password, client_password, ChannelBinding::unsupported(), None, false)
    }

    /// The same with channel binding: what the client binds to, what the proxy's connection has, and whether
    /// the client chose SCRAM-SHA-256-PLUS.
    fn bound_login(
        server_password: &str,
        client_password: &str,
        client_binding: ChannelBinding,
        end_point: Option<&[u8]>,
        plus: bool,
    ) -> Result<(), ScramError> {
        let verifier = ScramVerifier::from_password(server_password);
        let mut client = ScramSha256::new(client_password.as_bytes(), client_binding);
        let exchange = ScramExchange::start(&verifier, client.message(), end_point, plus)?;
        client.update(exchange.server_first()).expect("client accepts server-first");
        let (server_final, _) = exchange.finish(client.message())?;
        client.finish(&server_final).expect("client verifies the server signature");
        Ok(())
    }

    #[test]
    fn channel_binding_to_the_proxys_certificate() {
        let ours = b"hash of the proxy's certificate".to_vec();
        let bind = |data: &[u8]| ChannelBinding::tls_server_end_point(data.to_vec());
        bound_login("pw", "pw", bind(&ours), Some(&ours), true).unwrap();
        let theirs = b"hash of a certificate in between".to_vec();
        assert_eq!(bound_login("pw", "pw", bind(&theirs), Some(&ours), true), Err(ScramError::ChannelBinding));
        assert_eq!(bound_login("pw", "guess", bind(&ours), Some(&ours), true), Err(ScramError::Proof));
        // A client that does not bind may say so (n) where binding is offered.
        bound_login("pw", "pw", ChannelBinding::unsupported(), Some(&ours), false).unwrap();
        // One that could (y) was shown a list without -PLUS: not what the proxy sent.
        let could = ChannelBinding::unrequested();
        assert_eq!(bound_login("pw", "pw", could, Some(&ours), false), Err(ScramError::ChannelBinding));
        bound_login("pw", "pw", ChannelBinding::unrequested(), None, false).unwrap();
        // Binding without choosing -PLUS, or -PLUS without binding, or binding on a plain connection.
        assert_eq!(bound_login("pw", "pw", bind(&ours), Some(&ours), false), Err(ScramError::ChannelBinding));
        let unbound = ChannelBinding::unsupported();
        assert_eq!(bound_login("pw", "pw", unbound, Some(&ours), true), Err(ScramError::ChannelBinding));
        assert_eq!(bound_login("pw", "pw", bind(&ours), None, true), Err(ScramError::ChannelBinding));
    }

    #[test]
    fn the_right_password_logs_in_and_the_server_proves_itself() {
        login("s3cret", "s3cret").unwrap();
    }

    #[test]
    fn a_wrong_password_fails() {
        assert_eq!(login("s3cret", "guess"), Err(ScramError::Proof));
    }

    #[test]
    fn rfc7677_test_vector_keys() {
        // RFC 7677 section 3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations.
        let salt: [u8; 16] = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap().try_into().unwrap();
        let v = ScramVerifier::with_salt("pencil", salt, 4096);
        let mut ex = ScramExchange::start(&v, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", None, false).unwrap();
        ex.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        ex.server_first =
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".into();
        let final_msg = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let (server_final, client_key) = ex.finish(final_msg).unwrap();
        assert_eq!(server_final, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert!(v.opens_with(&client_key));
        // The same user's secret as pg_authid would hold it.
        let secret = format!(
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==${}:{}",
            STANDARD.encode(v.stored_key),
            STANDARD.encode(v.server_key)
        );
        let parsed = ScramVerifier::parse(&secret).unwrap();
        assert_eq!((&*parsed.salt, parsed.stored_key, parsed.server_key), (&salt[..], v.stored_key, v.server_key));
        assert!(ScramVerifier::parse("pencil").is_none());
    }

    #[test]
    fn an_unknown_user_shows_one_salt_of_its_own_and_cannot_log_in() {
        let nonce = [5u8; 32];
        let (a, again, b) = (
            ScramVerifier::decoy("ann", &nonce),
            ScramVerifier::decoy("ann", &nonce),
            ScramVerifier::decoy("bob", &nonce),
        );
        assert_eq!(a.salt, again.salt, "the same name, the same salt at every try");
        assert_ne!(a.salt, b.salt, "like known users, each name its own salt");
        assert_eq!(a.iterations, ITERATIONS);
        let mut client = ScramSha256::new(b"anything", ChannelBinding::unsupported());
        let exchange = ScramExchange::start(&a, client.message(), None, false).unwrap();
        client.update(exchange.server_first()).unwrap();
        assert_eq!(exchange.finish(client.message()).err(), Some(ScramError::Proof));
    }

    #[test]
    fn malformed_messages_are_errors() {
        let v = ScramVerifier::with_salt("x", [0; 16], 2);
        for first in [&b""[..], b"n", b"x,,n=,r=abc", b"n,,n=,r=", b"\xff\xfe"] {
            assert!(ScramExchange::start(&v, first, None, false).is_err(), "{first:?}");
        }
        let unique = ScramExchange::start(&v, b"p=tls-unique,,n=,r=a", Some(b"x"), true);
        assert_eq!(unique.err(), Some(ScramError::ChannelBinding), "only tls-server-end-point");
        let ex = ScramExchange::start(&v, b"n,,n=,r=abc", None, false).unwrap();
        for last in [&b""[..], b"c=biws,r=abc,p=", b"c=biws,r=wrong,p=AAAA", b"c=eSws,r=x,p=AAAA"] {
            assert!(ex.finish(last).is_err(), "{last:?}");
        }
    }
}
