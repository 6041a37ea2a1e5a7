//! A client's first steps: startup packet (SSL/GSS requests, cancel requests), then authentication.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use std::net::IpAddr;

use hapool_config::{hba_decision, AuthMethod, ClientTlsMode, HbaMethod, PasswordKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::pg::auth::md5_matches;
use crate::pg::auth::scram::{ScramError, ScramExchange, ScramVerifier};
use crate::pg::codec::{cstr, decode, decode_startup, Frame, Startup};
use crate::pg::error::PgError;
use crate::pg::listener::Shared;
use crate::pg::msg;
use crate::pg::settings::Settings;
use crate::pg::tls::ClientStream;

/// Slows down password guessing: every failed login waits this long before its error.
const AUTH_FAILURE_DELAY: Duration = Duration::from_millis(250);

/// The largest authentication message accepted from a client.
const MAX_AUTH_MESSAGE: usize = 8 * 1024;

/// The outcome of a connection's startup.
#[derive(Debug)]
pub enum Handshake {
    /// A cancel request, handled; the connection ends.
    Cancelled,
    /// An authenticated client, with the startup parameters the session follows (`startup_params`): those the
    /// server reports, and the settings it does not.
    Ready {
        user: String,
        database: String,
        params: Vec<(String, String)>,
        startup_settings: Vec<(String, String)>,
        leftover: BytesMut,
    },
}

pub async fn handshake(
    shared: &Shared,
    settings: &Settings,
    socket: &mut ClientStream,
    peer: IpAddr,
) -> Result<Handshake, PgError> {
    let mut buf = BytesMut::with_capacity(256);
    let params = loop {
        let startup = loop {
            if let Some(s) = decode_startup(&mut buf)? {
                break s;
            }
            read_more(socket, &mut buf).await?;
        };
        match startup {
            Startup::SslRequest => match &settings.tls {
                Some(acceptor) if !socket.is_tls() => {
                    if !buf.is_empty() {
                        // Bytes sent before the handshake would be trusted as if encrypted (CVE-2021-23222).
                        return Err(PgError::ClientMessage("unencrypted data after the SSL request".into()));
                    }
                    socket.write_all(b"S").await.map_err(PgError::ClientIo)?;
                    socket.upgrade(acceptor).await.map_err(PgError::ClientIo)?;
                }
                _ => socket.write_all(b"N").await.map_err(PgError::ClientIo)?,
            },
            Startup::GssEncRequest => socket.write_all(b"N").await.map_err(PgError::ClientIo)?,
            Startup::Cancel { pid, secret } => {
                shared.cancels.cancel(pid, secret).await;
                return Ok(Handshake::Cancelled);
            }
            Startup::Unsupported { version } => {
                return Err(PgError::ClientMessage(format!(
                    "unsupported frontend protocol {}.{}: hapool speaks 3.0",
                    version >> 16,
                    version & 0xffff
                )))
            }
            Startup::Startup { params } => break params,
        }
    };
    if settings.cluster.tls.client_mode == ClientTlsMode::Require && !socket.is_tls() {
        return Err(PgError::TlsRequired);
    }
    let get = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let user = get("user").ok_or_else(|| PgError::ClientMessage("no PostgreSQL user name specified".into()))?;
    if get("replication").is_some_and(|v| v != "false" && v != "0") {
        return Err(PgError::ClientMessage("replication connections are not supported through hapool".into()));
    }
    let database = get("database").filter(|d| !d.is_empty()).unwrap_or_else(|| user.clone());
    // Before the password: a login that cannot be served as asked is refused whoever the client is.
    let ignore = &settings.cluster.ignore_startup_parameters;
    let followed = super::startup_params::followed(&params, ignore).map_err(PgError::ClientMessage)?;
    authenticate(shared, settings, socket, &mut buf, &user, peer).await?;
    Ok(Handshake::Ready {
        user,
        database,
        params: followed.reported,
        startup_settings: followed.settings,
        leftover: buf,
    })
}

/// Answers a client that cannot be served (e.g. over the connection limit): reads its startup packet, declining
/// TLS, so that its driver shows our error rather than a broken handshake, then sends `error`.
pub async fn refuse_after_startup(socket: &mut TcpStream, error: &PgError) {
    let mut buf = BytesMut::with_capacity(256);
    let read_startup = async {
        loop {
            match decode_startup(&mut buf) {
                Ok(Some(Startup::SslRequest | Startup::GssEncRequest)) => {
                    socket.write_all(b"N").await.map_err(PgError::ClientIo)?;
                }
                Ok(Some(_)) | Err(_) => return Ok(()),
                Ok(None) => read_more(socket, &mut buf).await?,
            }
        }
    };
    let read: Result<Result<(), PgError>, _> = tokio::time::timeout(Duration::from_secs(5), read_startup).await;
    if matches!(read, Ok(Ok(()))) {
        let mut out = BytesMut::new();
        msg::error(&mut out, msg::Severity::Fatal, error.sqlstate(), &error.to_string(), None);
        let _ = socket.write_all(&out).await;
    }
}

async fn read_more<S: AsyncRead + Unpin>(socket: &mut S, buf: &mut BytesMut) -> Result<(), PgError> {
    match socket.read_buf(buf).await {
        Ok(0) => Err(PgError::ClientIo(std::io::ErrorKind::UnexpectedEof.into())),
        Ok(_) => Ok(()),
        Err(e) => Err(PgError::ClientIo(e)),
    }
}

/// Reads one password-family message (`p`).
async fn password_message(socket: &mut ClientStream, buf: &mut BytesMut) -> Result<Frame, PgError> {
    loop {
        if let Some(frame) = decode(buf, MAX_AUTH_MESSAGE)? {
            if frame.tag() != b'p' {
                return Err(PgError::ClientMessage(format!(
                    "expected a password message, got message type {:?}",
                    frame.tag() as char
                )));
            }
            return Ok(frame);
        }
        read_more(socket, buf).await?;
    }
}

async fn authenticate(
    shared: &Shared,
    settings: &Settings,
    socket: &mut ClientStream,
    buf: &mut BytesMut,
    user: &str,
    peer: IpAddr,
) -> Result<(), PgError> {
    let hba = hba_decision(&settings.cluster.hba, user, peer);
    if hba == HbaMethod::Reject {
        return Err(PgError::HbaRejected { user: user.to_string(), ip: peer });
    }
    // A user the configuration does not name is looked up in the server (`auth_user`), if the cluster says so.
    let configured = settings.users.get(user);
    let auth = match configured {
        Some(auth) => Some(auth.clone()),
        None => super::lookup::look_up(shared, settings, user).await?,
    };
    let auth = auth.as_deref();
    // Trusted by address: only a configured user (an unknown one cannot be served; one looked up in the server
    // always gives its password, or a trust rule for "all" would let in every role the server has).
    if hba == HbaMethod::Trust && configured.is_some() {
        return Ok(());
    }
    let ok = match auth.map(|a| a.method) {
        Some(AuthMethod::Trust) => true,
        Some(AuthMethod::Md5) => {
            let salt: [u8; 4] = rand::random();
            let mut out = BytesMut::new();
            msg::auth_md5(&mut out, salt);
            socket.write_all(&out).await.map_err(PgError::ClientIo)?;
            let frame = password_message(socket, buf).await?;
            let response = frame.body().strip_suffix(&[0]).unwrap_or(frame.body());
            let hash = auth.and_then(|a| a.md5.as_ref()).map(|h| h.expose()).unwrap_or("");
            !hash.is_empty() && md5_matches(hash, salt, response)
        }
        // SCRAM, and unknown users too: they fail at the proof, like a wrong password, revealing nothing.
        _ => match scram(shared, settings, socket, buf, user, auth.and_then(|a| a.scram.as_ref())).await? {
            Some(key) => {
                // The server's own secret as the password: the key the client proved is how hapool logs in.
                if auth.is_some_and(|a| a.kind == PasswordKind::ScramSecret) {
                    shared.keys.learn(user, key);
                }
                true
            }
            None => false,
        },
    };
    if ok {
        return Ok(());
    }
    tokio::time::sleep(AUTH_FAILURE_DELAY).await;
    Err(PgError::AuthFailed { user: user.to_string() })
}

async fn scram(
    shared: &Shared,
    settings: &Settings,
    socket: &mut ClientStream,
    buf: &mut BytesMut,
    user: &str,
    verifier: Option<&ScramVerifier>,
) -> Result<Option<[u8; 32]>, PgError> {
    let decoy;
    let verifier = match verifier {
        Some(verifier) => verifier,
        None => {
            decoy = ScramVerifier::decoy(user, &shared.decoy_nonce);
            &decoy
        }
    };
    // Channel binding is offered on TLS, when the certificate's binding data is known.
    let end_point = settings.tls.as_ref().and_then(|t| t.end_point.as_deref()).filter(|_| socket.is_tls());
    let mut out = BytesMut::new();
    msg::auth_sasl(&mut out, end_point.is_some());
    socket.write_all(&out).await.map_err(PgError::ClientIo)?;
    let initial = password_message(socket, buf).await?;
    let bad = || PgError::ClientMessage("malformed SASL initial response".into());
    let (mechanism, mut rest) = cstr(initial.body()).ok_or_else(bad)?;
    let plus = match mechanism {
        "SCRAM-SHA-256" => false,
        "SCRAM-SHA-256-PLUS" if end_point.is_some() => true,
        _ => return Err(PgError::ClientMessage(format!("unsupported SASL mechanism {mechanism:?}"))),
    };
    if rest.len() < 4 {
        return Err(bad());
    }
    let len = rest.get_i32();
    if len < 0 || len as usize != rest.len() {
        return Err(bad());
    }
    let exchange = match ScramExchange::start(verifier, rest, end_point, plus) {
        Ok(exchange) => exchange,
        Err(e @ ScramError::ChannelBinding) => return Err(PgError::ClientMessage(e.to_string())),
        Err(_) => return Ok(None),
    };
    out.clear();
    msg::auth_sasl_continue(&mut out, exchange.server_first());
    socket.write_all(&out).await.map_err(PgError::ClientIo)?;
    let response = password_message(socket, buf).await?;
    match exchange.finish(response.body()) {
        Ok((server_final, client_key)) => {
            out.clear();
            msg::auth_sasl_final(&mut out, &server_final);
            socket.write_all(&out).await.map_err(PgError::ClientIo)?;
            Ok(Some(client_key))
        }
        Err(e @ ScramError::ChannelBinding) => Err(PgError::ClientMessage(e.to_string())),
        Err(_) => Ok(None),
    }
}
