//! The proxy logging in to a PostgreSQL server: SCRAM-SHA-256, MD5 or cleartext, as the server asks.

use std::net::SocketAddr;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::{backend::Message, frontend};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::pg::error::PgError;

/// Sends the startup message and answers authentication until AuthenticationOk. Leaves the rest of the
/// server's greeting (ParameterStatus, BackendKeyData, ReadyForQuery) in `rbuf` / on the socket.
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    addr: SocketAddr,
    params: &[(&str, &str)],
    user: &str,
    password: Option<&str>,
) -> Result<(), PgError> {
    let mut out = BytesMut::new();
    frontend::startup_message(params.iter().copied(), &mut out).map_err(PgError::ServerIo)?;
    stream.write_all(&out).await.map_err(PgError::ServerIo)?;
    stream.flush().await.map_err(PgError::ServerIo)?;
    let need_password =
        || PgError::ServerLogin { addr, message: "the server asks for a password and none is configured".into() };
    let mut scram: Option<ScramSha256> = None;
    loop {
        let message = next(stream, rbuf).await?;
        out.clear();
        match message {
            Message::AuthenticationOk => return Ok(()),
            Message::AuthenticationCleartextPassword => {
                let pw = password.ok_or_else(need_password)?;
                frontend::password_message(pw.as_bytes(), &mut out).map_err(PgError::ServerIo)?;
            }
            Message::AuthenticationMd5Password(body) => {
                let pw = password.ok_or_else(need_password)?;
                let hash = postgres_protocol::authentication::md5_hash(user.as_bytes(), pw.as_bytes(), body.salt());
                frontend::password_message(hash.as_bytes(), &mut out).map_err(PgError::ServerIo)?;
            }
            Message::AuthenticationSasl(body) => {
                let pw = password.ok_or_else(need_password)?;
                let mut mechanisms = body.mechanisms();
                let mut offered = false;
                while let Some(m) = mechanisms.next().map_err(PgError::ServerIo)? {
                    offered |= m == SCRAM_SHA_256;
                }
                if !offered {
                    return Err(PgError::ServerLogin { addr, message: "the server offers no SCRAM-SHA-256".into() });
                }
                let s = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out).map_err(PgError::ServerIo)?;
                scram = Some(s);
            }
            Message::AuthenticationSaslContinue(body) => {
                let s = scram.as_mut().ok_or_else(|| PgError::ServerProtocol("SASL continue before SASL".into()))?;
                s.update(body.data()).map_err(|e| PgError::ServerLogin { addr, message: e.to_string() })?;
                frontend::sasl_response(s.message(), &mut out).map_err(PgError::ServerIo)?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let s = scram.as_mut().ok_or_else(|| PgError::ServerProtocol("SASL final before SASL".into()))?;
                s.finish(body.data()).map_err(|e| PgError::ServerLogin { addr, message: e.to_string() })?;
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
