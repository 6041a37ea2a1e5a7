//! PgBouncer's `auth_query`: a client whose user the configuration does not name is looked up in the server, as
//! the cluster's `auth_user`, at every login (a password changed in the server applies at the next one). What the
//! server keeps for the password (a SCRAM secret or an MD5 hash) checks the client, and logs hapool in to the
//! server as that user (`auth::passthrough`); the password itself is never known here.

use std::sync::Arc;

use hapool_config::{password_kind, AuthMethod, PasswordKind, Secret};

use super::{server, unreported, RESET_TIMEOUT};
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
    database: &str,
) -> Result<Option<Arc<UserAuth>>, PgError> {
    let Some(auth_user) = settings.cluster.auth_user.as_deref().and_then(|name| settings.users.get(name)) else {
        return Ok(None);
    };
    let (pool, _) = shared.primary_pool(settings, auth_user, database).await?;
    let mut pooled = pool.acquire().await?;
    let sql = query(&settings.cluster.auth_query, user);
    let looked = tokio::time::timeout(RESET_TIMEOUT, server::query_value(pooled.conn(), &sql)).await;
    let secret = match looked {
        Ok(Ok(secret)) => {
            pooled.release();
            secret
        }
        // The connection's state is unknown: dropped, not pooled.
        Ok(Err(e)) => return Err(PgError::AuthQuery { message: e.to_string() }),
        Err(_) => return Err(PgError::AuthQuery { message: "no answer within 5s".into() }),
    };
    let Some(secret) = secret else { return Ok(None) };
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

/// The cluster's query with the user name in place of `$1`, as a literal, and only its second column asked
/// for (the password as the server keeps it).
fn query(auth_query: &str, user: &str) -> String {
    let own = auth_query.trim().trim_end_matches(';').replace("$1", &unreported::literal(user));
    format!("SELECT passwd FROM ({own}) AS hapool_auth_query(usename, passwd)")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_user_name_is_a_literal_and_the_password_the_second_column() {
        let q = super::query("SELECT usename, passwd FROM pg_shadow WHERE usename = $1;", "o'brien\\x");
        assert_eq!(
            q,
            "SELECT passwd FROM (SELECT usename, passwd FROM pg_shadow WHERE usename = E'o\\'brien\\\\x') AS \
             hapool_auth_query(usename, passwd)"
        );
    }
}
