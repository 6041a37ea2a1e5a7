//! PgBouncer's `auth_query`: a client whose user the configuration does not name is looked up in the server, as
//! the cluster's `auth_user`, at every login (a password changed in the server applies at the next one). What the
//! server keeps for the password (a SCRAM secret or an MD5 hash) checks the client, and logs hapool in to the
//! server as that user (`auth::passthrough`); the password itself is never known here.
//!
//! The lookup comes before the password, so anyone who can connect can make it run: it runs on a pool of its
//! own (`Shared::lookup_pool`: two connections, in `auth_dbname`, never a client's), with the user name bound as
//! a parameter, and a failure tells the client only that the lookup failed (the log says why).

use std::sync::Arc;

use hapool_config::{password_kind, AuthMethod, PasswordKind, Secret};

use super::{server, RESET_TIMEOUT};
use crate::pg::auth::UserAuth;
use crate::pg::error::PgError;
use crate::pg::listener::Shared;
use crate::pg::settings::Settings;

/// The user as the server keeps it, or `None` when the cluster has no `auth_user`, or the server has no such
/// user or no password for it (then the login fails as a wrong password does, telling nothing).
pub(super) async fn look_up(
    shared: &Shared,
    settings: &Settings,
    user: &str,
) -> Result<Option<Arc<UserAuth>>, PgError> {
    let Some(auth_user) = settings.cluster.auth_user.as_deref().and_then(|name| settings.users.get(name)) else {
        return Ok(None);
    };
    let secret = match run(shared, settings, auth_user, user).await {
        Ok(secret) => secret,
        Err(reason) => {
            tracing::warn!(cluster = %settings.cluster.name, user, %reason, "auth_query failed");
            return Err(PgError::AuthQuery);
        }
    };
    let Some(secret) = secret else {
        shared.forget_user(user);
        return Ok(None);
    };
    let method = match password_kind(&secret) {
        Ok(PasswordKind::ScramSecret) => AuthMethod::ScramSha256,
        Ok(PasswordKind::Md5Hash) => AuthMethod::Md5,
        _ => {
            tracing::warn!(user, "auth_query returned something other than a SCRAM secret or an MD5 hash");
            return Ok(None);
        }
    };
    let auth = Arc::new(UserAuth::new(user, method, Some(Secret::new(secret))));
    shared.remember_user(auth.clone());
    Ok(Some(auth))
}

/// Runs the cluster's query for `user` on the lookup pool: the password column of its first row.
async fn run(shared: &Shared, settings: &Settings, auth_user: &UserAuth, user: &str) -> Result<Option<String>, String> {
    let pool = shared.lookup_pool(settings, auth_user).await.map_err(|e| e.to_string())?;
    let mut pooled = pool.acquire().await.map_err(|e| e.to_string())?;
    let sql = query(&settings.cluster.auth_query);
    let ran = tokio::time::timeout(RESET_TIMEOUT, server::query_value_with(pooled.conn(), &sql, user)).await;
    match ran {
        Ok(Ok(Ok(secret))) => {
            pooled.release();
            Ok(secret)
        }
        // The server's error: the connection is still good (the Sync ended its transaction).
        Ok(Ok(Err((code, message)))) => {
            pooled.release();
            Err(format!("{code}: {message}"))
        }
        // The connection's state is unknown: dropped, not pooled.
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", RESET_TIMEOUT.as_secs())),
    }
}

/// The cluster's query with only its second column asked for (the password as the server keeps it).
fn query(auth_query: &str) -> String {
    let own = auth_query.trim().trim_end_matches(';');
    format!("SELECT passwd FROM ({own}) AS hapool_auth_query(usename, passwd)")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_password_is_the_second_column() {
        let q = super::query("SELECT usename, passwd FROM pg_shadow WHERE usename = $1;");
        assert_eq!(
            q,
            "SELECT passwd FROM (SELECT usename, passwd FROM pg_shadow WHERE usename = $1) AS \
             hapool_auth_query(usename, passwd)"
        );
    }
}
