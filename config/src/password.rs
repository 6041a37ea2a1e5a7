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

/// A SCRAM-SHA-256 secret's parts, decoded: iterations, salt, StoredKey, ServerKey.
pub struct ScramParts {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

/// The parts of a SCRAM-SHA-256 secret (standard base64, as PostgreSQL writes it).
pub fn scram_parts(text: &str) -> Option<ScramParts> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    let rest = text.strip_prefix("SCRAM-SHA-256$")?;
    let (params, keys) = rest.split_once('$')?;
    let (iterations, salt) = params.split_once(':')?;
    let (stored, server) = keys.split_once(':')?;
    let key = |k: &str| STANDARD.decode(k).ok().and_then(|k| <[u8; 32]>::try_from(k).ok());
    Some(ScramParts {
        iterations: iterations.parse().ok().filter(|i| *i > 0)?,
        salt: STANDARD.decode(salt).ok().filter(|s| !s.is_empty())?,
        stored_key: key(stored)?,
        server_key: key(server)?,
    })
}

/// What `text` is, or why it looks like a secret and is not a usable one (the text itself is never shown).
pub fn password_kind(text: &str) -> Result<PasswordKind, &'static str> {
    if text.starts_with("SCRAM-SHA-256$") {
        return scram_parts(text).map(|_| PasswordKind::ScramSecret).ok_or(
            "it starts like a SCRAM secret but is not one: expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:\
             <ServerKey>, as pg_authid.rolpassword holds it",
        );
    }
    // As PostgreSQL tells them (`get_password_type`): lowercase hexadecimal digits only.
    let md5 = text.len() == 35
        && text.starts_with("md5")
        && text[3..].bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
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
        assert_eq!(scram_parts(scram).unwrap().iterations, 4096);
        assert_eq!(password_kind("md599d7714169587ba382241135a9f425e7"), Ok(PasswordKind::Md5Hash));
        let upper = "md599D7714169587BA382241135A9F425E7";
        for plain in
            ["pw", "md5", "md599d7714169587ba382241135a9f425e", "md5 not a hash at all, a password.", "", upper]
        {
            assert_eq!(password_kind(plain), Ok(PasswordKind::Plain), "{plain}");
        }
        for broken in [
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$4096:c2FsdA==$short:short",
            &scram.replace("4096", "0"),
            &scram.replace("4096", "x"),
            &scram.replace(":uIM", ":?IM"),
            &scram.replace("$wr9", "$"),
            // Right characters, wrong base64: the last one leaves bits over.
            &scram.replace("Ldk=", "Ldl="),
        ] {
            assert!(password_kind(broken).is_err(), "{broken}");
        }
    }
}
