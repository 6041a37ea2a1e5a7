//! When a followed SET holds. Outside a transaction block, once its own answer says it succeeded (an
//! extended-protocol batch's SETs at its ReadyForQuery, if nothing in the batch failed). Inside one, only if the
//! block commits: such SETs wait (`InTransaction`) for the `COMMIT` or `ROLLBACK` that ends it, read from the
//! CommandComplete tags the server sends. A SAVEPOINT (or PREPARE TRANSACTION, CALL, DO) after one of them makes
//! the outcome unread (a `ROLLBACK TO` has the tag `ROLLBACK` too): what the connection has is then unknown, as
//! for any change not followed.

use super::leftovers::Leftovers;
use super::unreported::{self, Change, TxTag, Values};
use super::Session;

impl Session {
    /// Whether a CommandComplete may decide the fate of followed SETs (cheap: asked of every one).
    #[inline]
    pub(super) fn sets_await_transaction(&self) -> bool {
        self.in_transaction.is_some() || self.extended_sets.as_ref().is_some_and(|sets| !sets.ran.is_empty())
    }

    /// A CommandComplete while followed SETs wait: a COMMIT makes them the client's and the connection's, a
    /// ROLLBACK undoes them on the server (the records are right as they are), a SAVEPOINT, PREPARE
    /// TRANSACTION, CALL or DO leaves the outcome unread.
    #[cold]
    pub(super) fn transaction_tag(&mut self, command_complete: &[u8]) {
        let Some(tag) = unreported::transaction_tag(command_complete) else { return };
        let ran = self.take_ran();
        let mut waiting = self.in_transaction.take().map(|w| *w).unwrap_or_default();
        waiting.changes.extend(ran);
        match tag {
            TxTag::Uncertain => {
                waiting.uncertain = true;
                self.in_transaction = Some(Box::new(waiting));
            }
            _ if waiting.uncertain => self.settings_unknown(),
            TxTag::Commit => waiting.changes.into_iter().for_each(|change| self.apply_change(change)),
            TxTag::Rollback => {}
        }
    }

    /// At a ReadyForQuery: the SETs of the extended-protocol batch it ends, each as `set_ended` says; and, once
    /// outside a transaction, any still waiting on one whose end was not read (a COMMIT that failed): unknown.
    #[cold]
    pub(super) fn sets_at_ready(&mut self) {
        let ran = self.take_ran();
        for change in ran {
            self.set_ended(change);
        }
        if self.tx_status == b'I' && self.in_transaction.take().is_some() {
            self.settings_unknown();
        }
    }

    /// The SETs that ran in the extended-protocol batch being answered, taken out.
    fn take_ran(&mut self) -> Vec<Change> {
        self.extended_sets.as_mut().map(|sets| std::mem::take(&mut sets.ran)).unwrap_or_default()
    }

    /// A followed SET's answer is in (`statement_failed` says whether it failed). One that succeeded outside a
    /// transaction block is the client's now, and this connection's; inside one it waits for the block's end.
    /// One that failed is not followed: what the connection has is then unknown.
    pub(super) fn set_ended(&mut self, change: Change) {
        if self.statement_failed {
            return self.settings_unknown();
        }
        if self.tx_status != b'I' {
            return self.in_transaction.get_or_insert_default().changes.push(change);
        }
        self.apply_change(change);
    }

    /// A change that holds: the client's record, and the connection's (from what the connection had, which
    /// after a RESET or a `DISCARD ALL` is not the client's values: the server's default stands there).
    fn apply_change(&mut self, change: Change) {
        let transaction_pooling = self.transaction_pooling;
        let client = self.unreported.get_or_insert_default();
        let conn = self.server.as_mut().expect("a server is checked out").conn();
        match conn.unreported.as_mut() {
            Some(on_server) => client.apply(change, on_server),
            // Transaction pooling: a record unknown (a settings change the proxy does not read, noted since) stays
            // so; the client's next checkout of the connection sets all its values again.
            None if transaction_pooling => client.apply(change, &mut Values::new()),
            // Session pooling: a followed change is what the restoring of startup values starts from again.
            None => {
                let mut on_server = client.current.clone();
                client.apply(change, &mut on_server);
                conn.unreported = Some(on_server);
            }
        }
    }

    /// What the connection's settings are is unknown. In transaction pooling it is cleared before another client
    /// gets it (an unknown record alone would let the next client keep whatever this one had set there before),
    /// and this client's next checkout of it sets all its values again; in session pooling no startup value is
    /// restored from a stale record until a followed change says again what it has.
    pub(super) fn settings_unknown(&mut self) {
        if self.server.is_none() {
            return;
        }
        if self.transaction_pooling {
            self.note_leftovers(Leftovers::SETTINGS);
        } else {
            self.server_conn().unreported = None;
        }
    }
}
