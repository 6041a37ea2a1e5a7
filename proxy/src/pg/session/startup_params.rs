//! What a client's startup packet asks for beyond its user and database, given directly or as `-c name=value`
//! in `options` (libpq's `PGOPTIONS`). The parameters the server reports (`params::TRACKED`: client_encoding,
//! DateStyle, application_name…) are followed from its reports. The others a plain SET could set
//! (`search_path`, `statement_timeout`, `app.tenant`…) are followed as `unreported` settings, with PostgreSQL's
//! meaning: they are the session's defaults, which `RESET` and `DISCARD ALL` return to (in transaction pooling
//! on every server connection the client gets; in session pooling on the one it holds). Anything else (a role,
//! a transaction's own setting) is refused at login, as PgBouncer does, unless the cluster lists it in
//! `ignore_startup_parameters`: dropped in silence, a `search_path` the client asked for would not apply to its
//! statements. Pure.

use super::{params, unreported};

/// The parameters of a startup packet the session follows (name and value: those from `options` first, then
/// those given directly, each in the order given).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Followed {
    /// Reported by the server (`params::TRACKED`).
    pub reported: Vec<(String, String)>,
    /// Set on the server connections the client gets (`unreported`).
    pub settings: Vec<(String, String)>,
}

/// What the session follows of a startup packet, or why the login is refused.
pub fn followed(startup: &[(String, String)], ignore: &[String]) -> Result<Followed, String> {
    let mut out = Followed::default();
    // As PostgreSQL applies them: `options` first, then the parameters given directly (a later value of a
    // name wins).
    for (_, value) in startup.iter().filter(|(name, _)| name == "options") {
        for (name, value) in options(value)? {
            take(&mut out, name, value, ignore)?;
        }
    }
    for (name, value) in startup {
        match name.as_str() {
            // Read by the handshake itself; `_pq_.` names are protocol extensions a server may ignore.
            "user" | "database" | "replication" | "options" => {}
            _ if name.starts_with("_pq_.") => {}
            _ => take(&mut out, name.clone(), value.clone(), ignore)?,
        }
    }
    Ok(out)
}

fn take(out: &mut Followed, name: String, value: String, ignore: &[String]) -> Result<(), String> {
    let ignored = ignore.iter().any(|i| i.eq_ignore_ascii_case(&name));
    if params::is_tracked(&name) {
        out.reported.push((name, value));
    } else if !ignored && unreported::followed(&name) {
        out.settings.push((name, value));
    } else if !ignored {
        return Err(format!(
            "unsupported startup parameter: {name} (hapool follows the parameters a plain SET sets, but not a role \
             or a transaction's own settings; set it with SET once connected, or list the name in the cluster's \
             ignore_startup_parameters)"
        ));
    }
    Ok(())
}

/// The `name=value` settings of an `options` value, read as PostgreSQL reads it: words split at whitespace
/// (a backslash makes the next character part of the word), each setting `-c name=value`, `-cname=value` or
/// `--name=value`, a `-` in a name read as `_`. Any other switch is refused.
fn options(text: &str) -> Result<Vec<(String, String)>, String> {
    let words = split_words(text);
    let mut out = Vec::new();
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let setting = if word == "-c" {
            words.next().ok_or("options: -c without a setting after it")?.as_str()
        } else if let Some(rest) = word.strip_prefix("--").or_else(|| word.strip_prefix("-c")) {
            rest
        } else {
            return Err(format!("options: unsupported switch {word:?} (hapool reads -c name=value and --name=value)"));
        };
        let (name, value) = setting.split_once('=').ok_or_else(|| format!("options: {setting:?} is not name=value"))?;
        if name.is_empty() {
            return Err(format!("options: {setting:?} has no name"));
        }
        out.push((name.replace('-', "_"), value.to_string()));
    }
    Ok(out)
}

/// Words split at ASCII whitespace, a backslash taking the next character as it is (PostgreSQL's
/// `pg_split_opts`).
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return words;
        }
        let mut word = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_ascii_whitespace()) {
            match c {
                '\\' => word.extend(chars.next()),
                c => word.push(c),
            }
        }
        words.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reported_parameters_are_followed_directly_and_from_options() {
        let startup = pairs(&[
            ("user", "app"),
            ("database", "app"),
            ("client_encoding", "UTF8"),
            ("_pq_.something", "x"),
            ("options", "-c DateStyle=ISO,\\ DMY --application-name=my\\\\app -capplication_name=last"),
        ]);
        let want = pairs(&[
            ("DateStyle", "ISO, DMY"),
            ("application_name", "my\\app"),
            ("application_name", "last"),
            ("client_encoding", "UTF8"),
        ]);
        let got = followed(&startup, &[]).unwrap();
        assert_eq!(got, Followed { reported: want, settings: vec![] });
        assert_eq!(followed(&pairs(&[("options", "  ")]), &[]), Ok(Followed::default()), "empty options");
    }

    #[test]
    fn settings_a_plain_set_sets_are_followed() {
        let startup = pairs(&[
            ("search_path", "tenant1, public"),
            ("options", "-c statement_timeout=5s --app.tenant=42"),
            ("extra_float_digits", "3"),
        ]);
        let want = pairs(&[("statement_timeout", "5s"), ("app.tenant", "42"), ("search_path", "tenant1, public")]);
        let ignore = ["extra_float_digits".to_string()];
        assert_eq!(followed(&startup, &ignore), Ok(Followed { reported: vec![], settings: want }));
        let unignored = followed(&startup, &[]).unwrap().settings;
        assert!(unignored.contains(&("extra_float_digits".into(), "3".into())), "followed unless ignored");
        // A name given both ways: the direct one comes last, and wins (`Unreported::from_startup`).
        let both = pairs(&[("search_path", "direct"), ("options", "-c search_path=option")]);
        let got = followed(&both, &[]).unwrap().settings;
        assert_eq!(got, pairs(&[("search_path", "option"), ("search_path", "direct")]));
    }

    #[test]
    fn anything_else_is_refused_unless_ignored() {
        let ignore = ["extra_float_digits".to_string(), "Search_Path".to_string()];
        for name in ["role", "session_authorization", "transaction_isolation", "all"] {
            let startup = pairs(&[(name, "x")]);
            let refused = followed(&startup, &[]).unwrap_err();
            assert!(refused.starts_with(&format!("unsupported startup parameter: {name} ")), "{refused}");
        }
        let from_options = followed(&pairs(&[("options", "-c role=admin")]), &[]).unwrap_err();
        assert!(from_options.contains("role"), "{from_options}");
        let startup = pairs(&[("extra_float_digits", "3"), ("search_path", "t"), ("options", "-c search_path=u")]);
        assert_eq!(followed(&startup, &ignore), Ok(Followed::default()), "ignored, in any case");
    }

    #[test]
    fn options_are_read_as_postgres_reads_them() {
        for (text, want) in [
            ("-c a=1 -cb=2 --c-d=3", vec![("a", "1"), ("b", "2"), ("c_d", "3")]),
            ("-c  a=x\\ y\t--b=", vec![("a", "x y"), ("b", "")]),
            ("-c a=b=c", vec![("a", "b=c")]),
        ] {
            assert_eq!(options(text), Ok(pairs(&want)), "{text}");
        }
        for bad in ["-d 5", "-c", "-c a", "--=1", "x=1", "-B 100"] {
            assert!(options(bad).is_err(), "{bad}");
        }
    }
}
