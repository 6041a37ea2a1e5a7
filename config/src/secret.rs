//! Secrets (passwords) that never print, and `${ENV_VAR}` interpolation for config strings.

use std::fmt;

use serde::{Serialize, Serializer};

/// A password or other secret. `Debug`, `Display` and serialization all show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it (authentication).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Why a `${…}` reference could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolationError {
    /// `${NAME}` names a variable that is not set (and has no `:-default`).
    Unset(String),
    /// A `${` without its closing `}`, or an empty name.
    Malformed,
}

/// Replaces `${NAME}` with the variable's value and `${NAME:-default}` with the value or the default;
/// `$$` stands for a literal `$`.
pub fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(InterpolationError::Malformed)?;
            let (name, default) = match body[..end].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&body[..end], None),
            };
            if name.is_empty() {
                return Err(InterpolationError::Malformed);
            }
            match (lookup(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(InterpolationError::Unset(name.to_string())),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "PW").then(|| "s3cret".to_string())
    }

    #[test]
    fn variables_are_expanded() {
        assert_eq!(interpolate("${PW}", &env).unwrap(), "s3cret");
        assert_eq!(interpolate("a-${PW}-b", &env).unwrap(), "a-s3cret-b");
        assert_eq!(interpolate("${NOPE:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(interpolate("cost $$5 and $x", &env).unwrap(), "cost $5 and $x");
    }

    #[test]
    fn unset_and_malformed_are_errors() {
        assert_eq!(interpolate("${NOPE}", &env), Err(InterpolationError::Unset("NOPE".into())));
        assert_eq!(interpolate("${PW", &env), Err(InterpolationError::Malformed));
        assert_eq!(interpolate("${}", &env), Err(InterpolationError::Malformed));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }
}
