//! Session parameters the server does not report (`search_path`, `statement_timeout`, `work_mem`, custom
//! `app.tenant` settings…): the proxy reads a client's plain `SET` / `RESET` of one from the
//! statement (and takes those it sent in its startup packet, see `startup_params`), and brings every server
//! connection the client gets to the same values. Pure.

use std::collections::BTreeMap;

use super::leftovers::{self, Leftovers};
use super::params;
use crate::pg::sqltext;

/// Parameter (lowercase) → its name as the client wrote it and the statement that sets it (the client's own
/// `SET`, or a `set_config` of a startup value). Empty: the server's defaults.
pub type Values = BTreeMap<String, (String, String)>;

/// What a followed statement changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Set {
        key: String,
        name: String,
        value: String,
    },
    Reset {
        key: String,
    },
    /// `RESET ALL`.
    ResetAll,
    /// The SETs and RESETs of one query of several statements, in order: that query is one transaction, so
    /// they hold together or not at all.
    Several(Vec<Change>),
}

/// A client's values. The change a SET on its way makes waits in the queue of what the server owes
/// (`Expect::QuerySet`), applied when that statement's own answer says it succeeded.
#[derive(Debug, Default)]
pub struct Unreported {
    pub current: Values,
    /// The values of the startup packet: what `RESET`, `RESET ALL` and `DISCARD ALL` return to, as on
    /// PostgreSQL (a startup value is the session's default).
    pub baseline: Values,
}

impl Unreported {
    /// A client that sent these settings (name, value) in its startup packet.
    pub fn from_startup(settings: &[(String, String)]) -> Unreported {
        let baseline: Values = settings
            .iter()
            .map(|(name, value)| {
                let statement = format!("SELECT pg_catalog.set_config({}, {}, false)", literal(name), literal(value));
                (key(name), (name.clone(), statement))
            })
            .collect();
        Unreported { current: baseline.clone(), baseline }
    }

    /// Applies a change (its statement succeeded) to the client's values and to `on_server`, what the server
    /// connection it ran on has: a `RESET` there goes to the server's default, not to the client's startup value
    /// (brought back by the next checkout, or in session pooling once the client has nothing in flight).
    pub fn apply(&mut self, change: Change, on_server: &mut Values) {
        self.apply_to(change, on_server);
    }

    fn apply_to(&mut self, change: Change, on_server: &mut Values) {
        match change {
            Change::Set { key, name, value } => {
                let entry = (name.clone(), format!("SET {name} = {value}"));
                on_server.insert(key.clone(), entry.clone());
                self.current.insert(key, entry);
            }
            Change::Reset { key } => {
                on_server.remove(&key);
                match self.baseline.get(&key) {
                    Some(entry) => self.current.insert(key, entry.clone()),
                    None => self.current.remove(&key),
                };
            }
            Change::ResetAll => {
                on_server.clear();
                self.current = self.baseline.clone();
            }
            Change::Several(changes) => {
                for change in changes {
                    self.apply_to(change, on_server);
                }
            }
        }
    }

    /// Back to the startup values (`DISCARD ALL`); false when there are none, so nothing is left to follow.
    pub fn reset(&mut self) -> bool {
        self.current = self.baseline.clone();
        !self.baseline.is_empty()
    }
}

/// The SETs and RESETs the session follows that come through the extended protocol (JDBC and psycopg send
/// every statement so): the change of the unnamed statement, the portals bound to one, and the changes that
/// ran in the batch now being answered, which hold once its ReadyForQuery says its implicit transaction
/// committed (an error later in the batch rolls them back).
#[derive(Debug, Default)]
pub struct ExtendedSets {
    unnamed: Option<Change>,
    /// Session pooling: the client's named statements that make one (in transaction pooling the proxy-wide
    /// statement carries it).
    named: Vec<(Box<str>, Change)>,
    portals: Vec<(Box<str>, Change)>,
    pub ran: Vec<Change>,
}

impl ExtendedSets {
    /// `portal` is now bound to a statement that makes `set` (or none).
    pub fn bound(&mut self, portal: &str, set: Option<Change>) {
        self.portals.retain(|(p, _)| &**p != portal);
        if let Some(change) = set {
            self.portals.push((portal.into(), change));
        }
    }

    /// The statement `name` (`""`: the unnamed one) now makes `set` (or none).
    pub fn prepared(&mut self, name: &str, set: Option<Change>) {
        if name.is_empty() {
            self.unnamed = set;
            return;
        }
        self.named.retain(|(n, _)| &**n != name);
        if let Some(change) = set {
            self.named.push((name.into(), change));
        }
    }

    /// The change the statement `name` makes (session pooling).
    pub fn of_statement(&self, name: &str) -> Option<&Change> {
        match name {
            "" => self.unnamed.as_ref(),
            _ => self.named.iter().find(|(n, _)| &**n == name).map(|(_, change)| change),
        }
    }

    /// The change an Execute of `portal` makes.
    pub fn at(&self, portal: &str) -> Option<Change> {
        self.portals.iter().find(|(p, _)| &**p == portal).map(|(_, change)| change.clone())
    }
}

/// Followed SETs that succeeded inside a transaction block (and those of an extended-protocol batch when a
/// transaction's end is read before its ReadyForQuery): they hold only if it commits.
#[derive(Debug, Default)]
pub struct InTransaction {
    pub changes: Vec<Change>,
    /// A SAVEPOINT, PREPARE TRANSACTION, CALL or DO came after one of them: which of them a later `ROLLBACK`
    /// tag undoes (it also ends `ROLLBACK TO SAVEPOINT`), whether a prepared transaction commits, or what a
    /// procedure committed or rolled back, is not read.
    pub uncertain: bool,
}

/// What a CommandComplete says about the transaction block followed SETs wait on.
#[derive(Debug, PartialEq, Eq)]
pub enum TxTag {
    /// `COMMIT`, `END`, `COMMIT AND CHAIN`: what ran before it holds.
    Commit,
    /// `ROLLBACK`, `ABORT`, a `COMMIT` of a failed transaction, and `ROLLBACK TO SAVEPOINT`: what ran since the
    /// block began (or since a savepoint made before it) is undone.
    Rollback,
    /// `SAVEPOINT`, `PREPARE TRANSACTION`, and a `CALL` or `DO` (outside a block, a procedure may commit or
    /// roll back what came before it).
    Uncertain,
}

/// The transaction tag of a CommandComplete body, if it is one. A SAVEPOINT made before any SET waiting does not
/// matter: a `ROLLBACK TO` it undoes them all.
pub fn transaction_tag(command_complete: &[u8]) -> Option<TxTag> {
    match command_complete {
        b"COMMIT\0" => Some(TxTag::Commit),
        b"ROLLBACK\0" => Some(TxTag::Rollback),
        b"SAVEPOINT\0" | b"PREPARE TRANSACTION\0" | b"CALL\0" | b"DO\0" => Some(TxTag::Uncertain),
        _ => None,
    }
}

/// A string literal that reads the same whatever `standard_conforming_strings` is.
fn literal(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The change made by a single plain `SET [SESSION] name {TO | =} value`, `RESET name` or `RESET ALL` of a
/// parameter the server does not report; `None` for anything else (`SET LOCAL`, a role, a reported parameter,
/// several statements…), which the proxy does not follow.
pub fn change(sql: &str) -> Option<Change> {
    let sql = sql.trim().trim_end_matches(';').trim();
    // Replayed as written, so only what replays safely: one statement (no `;` outside quotes), no comment
    // (a `--` would swallow the statements after it), no escapes or dollar quotes (which hide where a string
    // ends).
    let outside_quotes = sql.split('\'').step_by(2);
    if outside_quotes.clone().any(|part| part.contains(';') || part.contains("--") || part.contains("/*"))
        || sql.contains(['\\', '$'])
    {
        return None;
    }
    let (verb, rest) = sql.split_once(char::is_whitespace)?;
    let mut rest = rest.trim_start();
    if verb.eq_ignore_ascii_case("reset") {
        if rest.eq_ignore_ascii_case("all") {
            return Some(Change::ResetAll);
        }
        return followed(rest).then(|| Change::Reset { key: key(rest) });
    }
    if !verb.eq_ignore_ascii_case("set") {
        return None;
    }
    if let Some((word, after)) = rest.split_once(char::is_whitespace) {
        if word.eq_ignore_ascii_case("session") {
            rest = after.trim_start();
        }
    }
    let end = rest.find(|c: char| c.is_whitespace() || c == '=')?;
    let (name, after) = rest.split_at(end);
    let after = after.trim_start();
    let value = match after.strip_prefix('=') {
        Some(v) => v,
        None => after.get(..2).filter(|to| to.eq_ignore_ascii_case("to")).map(|_| &after[2..])?,
    }
    .trim();
    if value.is_empty() || !followed(name) {
        return None;
    }
    if value.eq_ignore_ascii_case("default") {
        return Some(Change::Reset { key: key(name) });
    }
    Some(Change::Set { key: key(name), name: name.to_string(), value: value.to_string() })
}

/// The SETs and RESETs of a query of several statements (`Change::Several`), when the proxy follows every
/// change of settings in it: `None` when one is a form it does not follow (`set_config`, a role…; a `SET
/// LOCAL` ends with the query),
/// or when a statement controls transactions (BEGIN, COMMIT, SAVEPOINT…, or a CALL or DO that may commit: the
/// query is then not one transaction, and what holds depends on where it failed).
pub fn several(sql: &str) -> Option<Change> {
    const CONTROL: [&str; 11] =
        ["begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release", "prepare", "call", "do"];
    let statements = sqltext::statements(sql)?;
    let mut changes = Vec::new();
    for statement in statements {
        let statement = sqltext::skip_leading_comments(statement);
        let keyword = sqltext::leading_keyword(statement.as_bytes());
        if CONTROL.iter().any(|w| keyword.eq_ignore_ascii_case(w.as_bytes())) {
            return None;
        }
        match change(statement) {
            Some(change) => changes.push(change),
            None if leftovers::leftovers(statement).contains(Leftovers::SETTINGS) => return None,
            None => {}
        }
    }
    (!changes.is_empty()).then_some(Change::Several(changes))
}

/// Whether the proxy follows this parameter name: a plain (possibly dotted, possibly quoted) name of a
/// parameter the server does not report. Not the role or session authorization (they decide permissions and
/// are only cleared), not the current transaction's own settings (`transaction_read_only = off` would fail on
/// every replica it was replayed on), nor the keywords of other SET forms.
pub fn followed(name: &str) -> bool {
    let plain = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '"'));
    let k = key(name);
    let special = [
        "role",
        "session",
        "session_authorization",
        "xml",
        "all",
        "transaction_read_only",
        "transaction_isolation",
        "transaction_deferrable",
    ];
    plain && !name.is_empty() && !special.contains(&k.as_str()) && !params::set_leaves_only_reported(&k)
}

fn key(name: &str) -> String {
    name.replace('"', "").to_ascii_lowercase()
}

/// The statements that bring a connection that has `have` (`None`: unknown) to `want`.
pub fn sync_sql(want: &Values, have: Option<&Values>, sql: &mut String) {
    if let Some(have) = have {
        for (key, (name, _)) in have {
            if !want.contains_key(key) {
                sql.push_str(&format!("RESET {name};"));
            }
        }
    }
    for (key, entry) in want {
        if have.and_then(|h| h.get(key)) != Some(entry) {
            sql.push_str(&entry.1);
            sql.push(';');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, name: &str, value: &str) -> Option<Change> {
        Some(Change::Set { key: key.into(), name: name.into(), value: value.into() })
    }

    fn reset(key: &str) -> Option<Change> {
        Some(Change::Reset { key: key.into() })
    }

    #[test]
    fn followed_statements() {
        let cases = [
            ("SET statement_timeout = '5s'", set("statement_timeout", "statement_timeout", "'5s'")),
            ("set Statement_Timeout to 5000;", set("statement_timeout", "Statement_Timeout", "5000")),
            ("SET SESSION work_mem='64MB'", set("work_mem", "work_mem", "'64MB'")),
            ("SET app.tenant = '42'", set("app.tenant", "app.tenant", "'42'")),
            ("SET search_path = s1, public", set("search_path", "search_path", "s1, public")),
            ("SET search_path TO \"My Schema\", public", set("search_path", "search_path", "\"My Schema\", public")),
            ("SET search_path='a;b'", set("search_path", "search_path", "'a;b'")),
            ("SET work_mem TO DEFAULT", reset("work_mem")),
            ("RESET work_mem", reset("work_mem")),
            ("reset  search_path ;", reset("search_path")),
            ("RESET ALL", Some(Change::ResetAll)),
            ("SET LOCAL work_mem = '1GB'", None),
            ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", None),
            ("SET ROLE reporting", None),
            ("SET SESSION AUTHORIZATION app", None),
            ("SET session_authorization = 'app'", None),
            ("SET role = 'app'", None),
            ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", None),
            ("RESET ROLE", None),
            ("SET TimeZone = 'UTC'", None),
            ("SET TIME ZONE 'UTC'", None),
            ("SET application_name = 'x'", None),
            ("SET work_mem = '1GB'; SELECT 1", None),
            ("SET search_path", None),
            ("SET search_paths x", None),
            ("SET work_mem =", None),
            ("SELECT 'SET work_mem = 1'", None),
            ("SET x(1) = 2", None),
            ("SET transaction_read_only = off", None),
            ("SET work_mem = '64MB' -- more", None),
            ("SET work_mem = /* more */ '64MB'", None),
            ("SET app.note = E'it\\'s'", None),
            ("SET app.note = $$a;b$$", None),
            ("SET app.note = 'a -- b'", set("app.note", "app.note", "'a -- b'")),
        ];
        for (sql, want) in cases {
            assert_eq!(change(sql), want, "{sql}");
        }
    }

    #[test]
    fn changes_apply_and_connections_sync() {
        let mut u = Unreported::default();
        let mut on_server = Values::new();
        u.apply(change("SET work_mem = '64MB'").unwrap(), &mut on_server);
        u.apply(change("SET search_path = s1").unwrap(), &mut on_server);
        u.apply(change("SET Work_Mem = '32MB'").unwrap(), &mut on_server);
        assert_eq!(on_server, u.current);
        let mut sql = String::new();
        sync_sql(&u.current, Some(&Values::new()), &mut sql);
        assert_eq!(sql, "SET search_path = s1;SET Work_Mem = '32MB';");
        let have = u.current.clone();
        u.apply(change("RESET search_path").unwrap(), &mut on_server);
        sql.clear();
        sync_sql(&u.current, Some(&have), &mut sql);
        assert_eq!(sql, "RESET search_path;", "only the difference");
        sql.clear();
        sync_sql(&u.current, None, &mut sql);
        assert_eq!(sql, "SET Work_Mem = '32MB';", "unknown: everything wanted");
        u.apply(Change::ResetAll, &mut on_server);
        assert!(u.current.is_empty() && on_server.is_empty());
    }

    #[test]
    fn transaction_tags() {
        let cases = [
            (&b"COMMIT\0"[..], Some(TxTag::Commit)),
            (b"ROLLBACK\0", Some(TxTag::Rollback)),
            (b"SAVEPOINT\0", Some(TxTag::Uncertain)),
            (b"PREPARE TRANSACTION\0", Some(TxTag::Uncertain)),
            (b"CALL\0", Some(TxTag::Uncertain)),
            (b"COMMIT PREPARED\0", None),
            (b"RELEASE\0", None),
            (b"SET\0", None),
            (b"SELECT 1\0", None),
        ];
        for (tag, want) in cases {
            assert_eq!(transaction_tag(tag), want, "{}", String::from_utf8_lossy(tag));
        }
    }

    #[test]
    fn portals_remember_the_set_they_are_bound_to() {
        let mut sets = ExtendedSets::default();
        sets.bound("", change("SET work_mem = '8MB'"));
        sets.bound("p1", change("RESET search_path"));
        assert_eq!(sets.at(""), change("SET work_mem = '8MB'"));
        sets.bound("", None);
        assert_eq!((sets.at(""), sets.at("p1")), (None, change("RESET search_path")), "bound again to another");
        assert_eq!(sets.at("p2"), None);
    }

    #[test]
    fn startup_settings_are_the_defaults_a_reset_returns_to() {
        let settings = [("search_path", "tenant1, public"), ("app.note", "it's a \\ test")];
        let settings: Vec<(String, String)> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut u = Unreported::from_startup(&settings);
        let mut sql = String::new();
        sync_sql(&u.current, Some(&Values::new()), &mut sql);
        assert_eq!(
            sql,
            "SELECT pg_catalog.set_config(E'app.note', E'it\\'s a \\\\ test', false);\
             SELECT pg_catalog.set_config(E'search_path', E'tenant1, public', false);",
            "the value as the startup packet gave it: a list stays a list"
        );
        let startup = u.current.clone();
        let mut on_server = startup.clone();
        u.apply(change("SET search_path = s2").unwrap(), &mut on_server);
        assert_eq!(on_server, u.current, "a SET: the server has what the client has");
        u.apply(change("RESET search_path").unwrap(), &mut on_server);
        assert_eq!(u.current, startup, "back to the startup value");
        assert!(!on_server.contains_key("search_path"), "the server went to its own default");
        u.apply(change("SET work_mem = '8MB'").unwrap(), &mut on_server);
        assert!(
            !on_server.contains_key("search_path") && on_server.contains_key("work_mem"),
            "a later change leaves the server's default where it was: {on_server:?}"
        );
        u.apply(Change::ResetAll, &mut on_server);
        assert_eq!((u.current.clone(), on_server), (startup.clone(), Values::new()));
        u.apply(change("SET search_path = s3").unwrap(), &mut Values::new());
        assert!(u.reset(), "DISCARD ALL: the startup values stay");
        assert_eq!(u.current, startup);
        assert!(!Unreported::default().reset(), "without startup values nothing is left to follow");
    }

    #[test]
    fn several_statements_of_one_query_are_followed_together() {
        let sets = |list: &[&str]| Some(Change::Several(list.iter().map(|s| change(s).unwrap()).collect()));
        let cases = [
            ("SET app.x = '1'; SELECT 1", sets(&["SET app.x = '1'"])),
            ("SELECT 1; RESET search_path;", sets(&["RESET search_path"])),
            (
                "SET search_path = 'a;b'; /* c */ SET work_mem TO DEFAULT",
                sets(&["SET search_path = 'a;b'", "RESET work_mem"]),
            ),
            ("SELECT 1; SELECT 2", None),
            ("SET ROLE x; SELECT 1", None),
            ("BEGIN; SET work_mem = '1MB'; COMMIT", None),
            ("SET work_mem = '1MB'; CALL p()", None),
            ("SET work_mem = '1MB'; SELECT $$;$$", None),
            ("SET work_mem = '1MB'; SELECT set_config('search_path', 'x', false)", None),
            ("SET LOCAL work_mem = '1MB'; SET search_path = a", sets(&["SET search_path = a"])),
            ("SET ROLE x; SET search_path = a", None),
            ("SET work_mem = '1MB'; SELECT set_config('search_path', 'x', true)", sets(&["SET work_mem = '1MB'"])),
        ];
        for (sql, want) in cases {
            assert_eq!(several(sql), want, "{sql}");
        }
        // Applied in order: a RESET, then a SET of another parameter, leave the first at the server's default.
        let mut u = Unreported::from_startup(&[("search_path".into(), "s1".into())]);
        let startup = u.current.clone();
        let mut on_server = startup.clone();
        u.apply(several("RESET search_path; SET work_mem = '8MB'").unwrap(), &mut on_server);
        assert_eq!(u.current.get("search_path"), startup.get("search_path"), "back to the startup value");
        assert!(!on_server.contains_key("search_path") && on_server.contains_key("work_mem"), "{on_server:?}");
    }
}
