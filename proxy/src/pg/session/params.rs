//! Session parameters that must follow a client from one server connection to the next.

/// Parameters the server reports (ParameterStatus) that a client may change and expects to keep.
/// `default_transaction_read_only` is reported since PostgreSQL 14; following it lets a read-only client's
/// transactions go to replicas, and keeps the setting on every server the client uses.
pub const TRACKED: [&str; 7] = [
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "application_name",
    "standard_conforming_strings",
    "default_transaction_read_only",
];

pub fn is_tracked(name: &str) -> bool {
    TRACKED.iter().any(|t| t.eq_ignore_ascii_case(name))
}

/// Whether `SET <word> …` leaves nothing beyond what the server reports: a form that ends with the transaction
/// (`SET LOCAL`, `SET TRANSACTION`, `SET CONSTRAINTS`), or a reported parameter, by its name or its SET alias
/// (`NAMES`, `TIME ZONE`). Asked by `leftovers` (nothing left behind) and `unreported` (nothing to follow).
pub fn set_leaves_only_reported(word: &str) -> bool {
    ["local", "transaction", "constraints", "names", "time"].iter().any(|w| w.eq_ignore_ascii_case(word))
        || is_tracked(word)
}

/// What the client expects: the pool's defaults, overridden by what the client asked for at startup.
pub fn desired(server: &[(String, String)], startup: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        server.iter().filter(|(k, _)| is_tracked(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    for (k, v) in startup {
        if let Some(name) = TRACKED.iter().find(|t| t.eq_ignore_ascii_case(k)) {
            match out.iter_mut().find(|(n, _)| n == name) {
                Some(entry) => entry.1 = v.clone(),
                None => out.push((name.to_string(), v.clone())),
            }
        }
    }
    out
}

/// Records a value the server reported while serving the client (the client changed it); returns whether a
/// tracked parameter changed.
pub fn record(desired: &mut Vec<(String, String)>, name: &str, value: &str) -> bool {
    if !is_tracked(name) {
        return false;
    }
    match desired.iter_mut().find(|(n, _)| n == name) {
        Some(entry) if entry.1 != value => entry.1 = value.to_string(),
        Some(_) => return false,
        None => desired.push((name.to_string(), value.to_string())),
    }
    true
}

/// A fingerprint of the parameters a client wants: a server last synced to the same fingerprint needs no SET.
pub fn fingerprint(desired: &[(String, String)]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    desired.hash(&mut h);
    h.finish()
}

/// The SETs that bring a server to the client's values, or `None` when it already has them. `server`: the values
/// the server reported.
pub fn sync_sql(desired: &[(String, String)], server: &std::collections::HashMap<String, String>) -> Option<String> {
    let mut sql = String::new();
    for (name, value) in desired {
        if server.get(name) != Some(value) {
            sql.push_str(&format!("SET {} = '{}';", quote_ident(name), value.replace('\'', "''")));
        }
    }
    (!sql.is_empty()).then_some(sql)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn startup_values_override_server_defaults() {
        let server = pairs(&[("TimeZone", "UTC"), ("server_version", "15"), ("application_name", "hapool")]);
        let startup = pairs(&[("application_name", "psql"), ("datestyle", "ISO, DMY"), ("user", "app")]);
        let d = desired(&server, &startup);
        assert_eq!(d, pairs(&[("TimeZone", "UTC"), ("application_name", "psql"), ("DateStyle", "ISO, DMY")]));
    }

    #[test]
    fn only_differences_are_set_and_quoted() {
        let d = pairs(&[("TimeZone", "Europe/Paris"), ("application_name", "it's")]);
        let server: HashMap<String, String> = [("TimeZone".to_string(), "Europe/Paris".to_string())].into();
        assert_eq!(sync_sql(&d, &server).unwrap(), "SET \"application_name\" = 'it''s';");
        let same: HashMap<String, String> = d.iter().cloned().collect();
        assert_eq!(sync_sql(&d, &same), None);
        let every = "SET \"TimeZone\" = 'Europe/Paris';SET \"application_name\" = 'it''s';";
        assert_eq!(sync_sql(&d, &HashMap::new()).unwrap(), every, "nothing reported: every value is set");
    }

    #[test]
    fn reported_changes_are_recorded() {
        let mut d = pairs(&[("TimeZone", "UTC")]);
        let before = fingerprint(&d);
        assert!(record(&mut d, "TimeZone", "Asia/Tokyo"));
        assert!(!record(&mut d, "server_version", "16"));
        assert!(!record(&mut d, "TimeZone", "Asia/Tokyo"));
        assert_ne!(fingerprint(&d), before);
        assert_eq!(d, pairs(&[("TimeZone", "Asia/Tokyo")]));
    }
}
