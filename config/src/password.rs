//! What a PostgreSQL user's configured `password` is: the password itself, or what the server keeps instead of
//! it (`pg_authid.rolpassword`, as PgBouncer's userlist holds it): an MD5 hash or a SCRAM-SHA-256 secret. With
//! such a secret hapool checks clients and logs in to the server without ever knowing the password. Pure.

/// The kind of a configured PostgreSQL password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordKind {
    Plain,
    /// `md5` and 32 hexadecimal digits: md5(password ‖ user name).
    Md5Hash,
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64).
    ScramSecret,
}

/// The parts of a SCRAM-SHA-256 secret, still base64: iterations, salt, StoredKey, ServerKey.
pub fn scram_parts(text: &str) -> Option<(u32, &str, &str, &str)> {
    let rest = text.strip_prefix("SCRAM-SHA-256$")?;
    let (params, keys) = rest.split_once('$')?;
    let (iterations, salt) = params.split_once(':')?;
    let (stored, server) = keys.split_once(':')?;
    let iterations: u32 = iterations.parse().ok().filter(|i| *i > 0)?;
    let key = |k: &str| k.len() == 44 && k.ends_with('=') && !k.ends_with("==") && base64(k);
    (!salt.is_empty() && base64(salt) && key(stored) && key(server)).then_some((iterations, salt, stored, server))
}

/// Standard base64 with padding.
fn base64(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    text.len().is_multiple_of(4)
        && text.len() - body.len() <= 2
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// What `text` is, or why it looks like a secret and is not a usable one (the text itself is never shown).
pub fn password_kind(text: &str) -> Result<PasswordKind, &'static str> {
    if text.starts_with("SCRAM-SHA-256$") {
        return scram_parts(text).map(|_| PasswordKind::ScramSecret).ok_or(
            "it starts like a SCRAM secret but is not one: expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:\
             <ServerKey>, as pg_authid.rolpassword holds it",
        );
    }
    let md5 = text.len() == 35 && text.starts_with("md5") && text[3..].bytes().all(|b| b.is_ascii_hexdigit());
    Ok(if md5 { PasswordKind::Md5Hash } else { PasswordKind::Plain })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_the_secrets_a_server_keeps() {
        // From a PostgreSQL 15 server: `SELECT rolpassword FROM pg_authid WHERE rolname = …`.
        let scram = "SCRAM-SHA-256$4096:/fzR7dLl/fl+VsAM8JxGRQ==$wr9FBcMGQGQuI2LjeuvFevjLvBgkCmKEs7CZlbMcLdk=:\
                     uIMTZz5b42se8M36duw4AP0g2pQeH3ehGLz4N+fzzFs=";
        assert_eq!(password_kind(scram), Ok(PasswordKind::ScramSecret));
        assert_eq!(scram_parts(scram).unwrap().0, 4096);
        assert_eq!(password_kind("md599d7714169587ba382241135a9f425e7"), Ok(PasswordKind::Md5Hash));
        for plain in ["pw", "md5", "md599d7714169587ba382241135a9f425e", "md5 not a hash at all, a password.", ""] {
            assert_eq!(password_kind(plain), Ok(PasswordKind::Plain), "{plain}");
        }
        for broken in [
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$4096:c2FsdA==$short:short",
            &scram.replace("4096", "0"),
            &scram.replace("4096", "x"),
            &scram.replace(":uIM", ":?IM"),
            &scram.replace("$wr9", "$"),
        ] {
            assert!(password_kind(broken).is_err(), "{broken}");
        }
    }
}
