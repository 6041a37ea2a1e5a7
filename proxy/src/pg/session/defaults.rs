//! Session pooling: a client's startup settings (`search_path`, `statement_timeout`… sent in its startup packet,
//! the `unreported` baseline) are set on the server connection it holds with `set_config`, which PostgreSQL
//! takes for a session's own SET. Its `RESET`, `RESET ALL`, `SET … TO DEFAULT` and `DISCARD ALL` would then go
//! to the server's defaults, where on PostgreSQL they go back to the values the client logged in with. So for
//! such a client the proxy follows those statements as transaction pooling does (`unreported::change`, in the
//! simple and the extended protocol, alone or among other statements of one query), and once one has ended
//! outside a transaction it sets the startup values it cleared again, ahead of whatever the client sends after
//! its answer.

use super::expect::Expect;
use super::follow::text_set;
use super::leftovers::{self, Head, Leftovers};
use super::unreported;
use super::Session;
use crate::pg::msg;

impl Session {
    /// A session-pooled client that logged in with settings the server does not report: the case this file is for.
    pub(super) fn keeps_startup_settings(&self) -> bool {
        !self.transaction_pooling && self.unreported.is_some()
    }

    /// What the server owes for a simple query in session pooling: a SET or RESET of a client with startup
    /// settings is followed (`Expect::QuerySet`; inside a transaction block, once it commits: `settled`).
    pub(super) fn session_query(&mut self, body: &[u8]) -> Expect {
        let head = Head::of(body);
        self.replace_if_loading(head);
        if !self.keeps_startup_settings() {
            return Expect::Query;
        }
        let single = (head.is(b"set") || head.is(b"reset")).then(|| self.follow_unreported(body)).flatten();
        let change = single.or_else(|| (!leftovers::one_statement(body)).then(|| self.follow_several(body)).flatten());
        if change.is_none() && leftovers::head_leftovers(head).contains(Leftovers::SETTINGS) {
            self.settings_unknown();
        }
        change.map_or(Expect::Query, |change| Expect::QuerySet(Box::new(change)))
    }

    /// A Parse in session pooling: the statement's SET or RESET, if it is one, is noted under its name (the
    /// names are the client's own here) for the Binds that follow.
    pub(super) fn session_parse(&mut self, name: &str, text: &[u8]) {
        let head = Head::of(text);
        self.replace_if_loading(head);
        if self.keeps_startup_settings() {
            let set = text_set(head);
            if set.is_none() && leftovers::head_leftovers(head).contains(Leftovers::SETTINGS) {
                self.settings_unknown();
            }
            if set.is_some() || self.extended_sets.is_some() {
                self.extended_sets.get_or_insert_default().prepared(name, set);
            }
        }
    }

    /// A Bind in session pooling: the portal makes the SET its statement makes (`Expect::ExecuteSet` then).
    pub(super) fn session_bind(&mut self, body: &[u8]) {
        if let (Some(sets), Some((portal, name, _))) = (self.extended_sets.as_mut(), msg::bind_fields(body)) {
            let set = sets.of_statement(name).cloned();
            sets.bound(portal, set);
        }
    }

    /// At a ReadyForQuery outside a transaction: the startup values a followed RESET (or DISCARD ALL) took from
    /// the connection are set again. Nothing when the connection's values are unknown (a SET inside a
    /// transaction: what it left depends on how that ended): they are left as the server has them.
    #[cold]
    pub(super) fn restore_startup_settings(&mut self) {
        let (Some(client), Some(pooled)) = (self.unreported.as_deref(), self.server.as_mut()) else { return };
        let conn = pooled.conn();
        let Some(have) = conn.unreported.as_ref() else { return };
        if *have == client.current {
            return;
        }
        let mut sql = String::new();
        unreported::sync_sql(&client.current, Some(have), &mut sql);
        conn.unreported = Some(client.current.clone());
        msg::query(&mut self.to_server, &sql);
        self.outstanding.push(Expect::InjectedQuery);
    }
}
