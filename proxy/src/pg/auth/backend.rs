//! The proxy logging in to a PostgreSQL server: SCRAM-SHA-256, MD5 or cleartext, as the server asks.

use std::net::SocketAddr;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::{backend::Message, frontend};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::passthrough::KeyedScram;
use super::{md5_salted, user_md5, Credentials};
use crate::pg::error::PgError;

/// Sends the startup message and answers authentication until AuthenticationOk. Leaves the rest of the
/// server's greeting (ParameterStatus, BackendKeyData, ReadyForQuery) in `rbuf` / on the socket.
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    addr: SocketAddr,
    params: &[(&str, &str)],
    user: &str,
    credentials: &Credentials,
) -> Result<(), PgError> {
    let mut out = BytesMut::new();
    frontend::startup_message(params.iter().copied(), &mut out).map_err(PgError::ServerIo)?;
    stream.write_all(&out).await.map_err(PgError::ServerIo)?;
    stream.flush().await.map_err(PgError::ServerIo)?;
    let refused = |message: &str| PgError::ServerLogin { addr, message: message.to_string() };
    let mut scram: Option<ClientScram<'_>> = None;
    // A SCRAM exchange begun must end with the server's proof that it knows the secret too, before its
    // AuthenticationOk counts (as libpq requires): otherwise anything in between could pose as the server.
    let mut server_proven = false;
    loop {
        let message = next(stream, rbuf).await?;
        out.clear();
        match message {
            Message::AuthenticationOk if scram.is_some() && !server_proven => {
                return Err(refused("the server ended SCRAM authentication without proving that it knows the secret"));
            }
            Message::AuthenticationOk => return Ok(()),
            Message::AuthenticationCleartextPassword => {
                let Credentials::Password(pw) = credentials else {
                    return Err(refused("the server asks for the password in clear text, and hapool has none"));
                };
                frontend::password_message(pw.expose().as_bytes(), &mut out).map_err(PgError::ServerIo)?;
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = match credentials {
                    Credentials::Password(pw) => user_md5(user, pw.expose()),
                    Credentials::Md5Hash(hash) => hash.clone(),
                    _ => return Err(refused("the server asks for MD5, and hapool has no password or MD5 hash")),
                };
                let answer = md5_salted(hash.expose(), body.salt());
                frontend::password_message(answer.as_bytes(), &mut out).map_err(PgError::ServerIo)?;
            }
            Message::AuthenticationSasl(body) => {
                let mut mechanisms = body.mechanisms();
                let mut offered = false;
                while let Some(m) = mechanisms.next().map_err(PgError::ServerIo)? {
                    offered |= m == SCRAM_SHA_256;
                }
                if !offered {
                    return Err(refused("the server offers no SCRAM-SHA-256"));
                }
                let s = ClientScram::start(user, credentials).map_err(|m| refused(&m))?;
                frontend::sasl_initial_response(SCRAM_SHA_256, &s.first(), &mut out).map_err(PgError::ServerIo)?;
                scram = Some(s);
            }
            Message::AuthenticationSaslContinue(body) => {
                let s = scram.as_mut().ok_or_else(|| PgError::ServerProtocol("SASL continue before SASL".into()))?;
                let last = s.update(body.data()).map_err(|m| refused(&m))?;
                frontend::sasl_response(&last, &mut out).map_err(PgError::ServerIo)?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let s = scram.as_mut().ok_or_else(|| PgError::ServerProtocol("SASL final before SASL".into()))?;
                s.finish(body.data()).map_err(|m| refused(&m))?;
                server_proven = true;
                continue;
            }
            Message::ErrorResponse(body) => {
                let mut message = String::new();
                let mut fields = body.fields();
                while let Ok(Some(f)) = fields.next() {
                    if f.type_() == b'M' {
                        message = String::from_utf8_lossy(f.value_bytes()).into_owned();
                    }
                }
                return Err(PgError::ServerLogin { addr, message });
            }
            _ => return Err(PgError::ServerProtocol("unexpected message during authentication".into())),
        }
        stream.write_all(&out).await.map_err(PgError::ServerIo)?;
        stream.flush().await.map_err(PgError::ServerIo)?;
    }
}

/// The client side of SCRAM-SHA-256: with the password (postgres-protocol's), or with the key a client of the
/// user proved when the password configured is the server's SCRAM secret (`passthrough`).
enum ClientScram<'a> {
    Password(ScramSha256),
    Keyed(KeyedScram<'a>),
}

impl<'a> ClientScram<'a> {
    fn start(user: &str, credentials: &'a Credentials) -> Result<ClientScram<'a>, String> {
        match credentials {
            Credentials::Password(pw) => {
                Ok(ClientScram::Password(ScramSha256::new(pw.expose().as_bytes(), ChannelBinding::unsupported())))
            }
            Credentials::Scram { verifier, keys } => match keys.key_for(user, verifier) {
                Some(key) => Ok(ClientScram::Keyed(KeyedScram::new(verifier, key))),
                None => Err(format!(
                    "no client of user {user:?} has logged in with SCRAM since hapool started: its password is \
                     configured as a SCRAM secret, and hapool logs in to the server with the key a client's SCRAM \
                     login proves"
                )),
            },
            _ => Err("the server asks for SCRAM-SHA-256, and hapool has neither the password nor its SCRAM secret"
                .to_string()),
        }
    }

    fn first(&self) -> Vec<u8> {
        match self {
            ClientScram::Password(s) => s.message().to_vec(),
            ClientScram::Keyed(k) => k.client_first().into_bytes(),
        }
    }

    fn update(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            ClientScram::Password(s) => {
                s.update(server_first).map(|()| s.message().to_vec()).map_err(|e| e.to_string())
            }
            ClientScram::Keyed(k) => k.client_final(server_first).map(String::into_bytes).map_err(|e| e.to_string()),
        }
    }

    fn finish(&mut self, server_final: &[u8]) -> Result<(), String> {
        match self {
            ClientScram::Password(s) => s.finish(server_final).map_err(|e| e.to_string()),
            ClientScram::Keyed(k) => k.verify(server_final).map_err(|e| e.to_string()),
        }
    }
}

/// Reads until one whole backend message is buffered, and parses it.
pub async fn next<S: AsyncRead + Unpin>(stream: &mut S, rbuf: &mut BytesMut) -> Result<Message, PgError> {
    loop {
        if let Some(m) = Message::parse(rbuf).map_err(|e| PgError::ServerProtocol(e.to_string()))? {
            return Ok(m);
        }
        if stream.read_buf(rbuf).await.map_err(PgError::ServerIo)? == 0 {
            return Err(PgError::ServerIo(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use hapool_config::Secret;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::pg::auth::scram::{ScramExchange, ScramVerifier};

    fn auth_message(code: i32, data: &[u8]) -> Vec<u8> {
        let len = (8 + data.len()) as i32;
        [&b"R"[..], &len.to_be_bytes(), &code.to_be_bytes(), data].concat()
    }

    /// The body of the next message the proxy sent (after its startup message, which has no tag).
    async fn read_message(s: &mut tokio::io::DuplexStream) -> Vec<u8> {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).await.unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(head[1..].try_into().unwrap()) as usize - 4];
        s.read_exact(&mut body).await.unwrap();
        body
    }

    /// A server that runs SCRAM with the right secret and then says AuthenticationOk, sending its own proof
    /// (SASLFinal) or not.
    async fn login_against(proves: bool) -> Result<(), PgError> {
        let (mut proxy_side, mut server) = tokio::io::duplex(4096);
        let verifier = ScramVerifier::from_password("pw");
        let serve = async move {
            let mut len = [0u8; 4];
            server.read_exact(&mut len).await.unwrap();
            let mut startup = vec![0u8; i32::from_be_bytes(len) as usize - 4];
            server.read_exact(&mut startup).await.unwrap();
            server.write_all(&auth_message(10, b"SCRAM-SHA-256\0\0")).await.unwrap();
            let initial = read_message(&mut server).await;
            let first = &initial[b"SCRAM-SHA-256\0".len() + 4..];
            let exchange = ScramExchange::start(&verifier, first, None, false).unwrap();
            server.write_all(&auth_message(11, exchange.server_first())).await.unwrap();
            let last = read_message(&mut server).await;
            let (server_final, _) = exchange.finish(&last).unwrap();
            if proves {
                server.write_all(&auth_message(12, &server_final)).await.unwrap();
            }
            server.write_all(&auth_message(0, b"")).await.unwrap();
            server
        };
        let credentials = Credentials::Password(Secret::new("pw"));
        let addr = "127.0.0.1:5432".parse().unwrap();
        let mut rbuf = BytesMut::new();
        let login = login(&mut proxy_side, &mut rbuf, addr, &[("user", "app")], "app", &credentials);
        let (result, _server) = tokio::join!(login, serve);
        result
    }

    #[tokio::test]
    async fn a_server_must_prove_it_knows_the_secret_before_its_ok_counts() {
        login_against(true).await.unwrap();
        let err = login_against(false).await.unwrap_err().to_string();
        assert!(err.contains("without proving that it knows the secret"), "{err}");
    }
}
