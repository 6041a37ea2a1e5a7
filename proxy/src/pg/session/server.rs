//! Messages from the server: forwarded in order, answers to injected requests dropped, synthetic answers
//! put in their place, and the bookkeeping (transaction status, prepared statements, parameters) updated.

use bytes::{Buf, BytesMut};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::expect::Expect;
use super::{params, Session};
use crate::pg::buffers::rewind;
use crate::pg::codec::{decode, message_len, next_message, FrameRef};
use crate::pg::error::PgError;
use crate::pg::msg;
use crate::pg::server::{ServerConn, SERVER_READ};

/// Server messages are bounded by PostgreSQL itself (1 GB); the proxy does not cap them further.
const MAX_SERVER_MESSAGE: usize = 1 << 30;

impl Session {
    /// Handles every complete message buffered from the server, each where it lies in the read buffer.
    pub(super) fn process_server(&mut self) -> Result<(), PgError> {
        let Some(pooled) = self.server.as_mut() else { return Ok(()) };
        // Out of the connection while its messages are handled (they borrow it): handling one reads no buffer
        // of the connection's, and keeps the connection.
        let mut rbuf = std::mem::take(&mut pooled.conn().rbuf);
        let mut done = 0;
        let result = loop {
            match next_message(&rbuf[done..], MAX_SERVER_MESSAGE) {
                Ok(Some(frame)) => {
                    done += frame.bytes().len();
                    self.on_server_message(frame);
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(PgError::ServerProtocol(e.to_string())),
            }
        };
        rbuf.advance(done);
        // Once all is read, the next read goes to the start of the buffer again (advancing leaves the room
        // behind it unused); otherwise room for the rest of a message begun.
        rewind(&mut rbuf);
        match message_len(&rbuf, MAX_SERVER_MESSAGE) {
            Ok(Some(total)) if total > rbuf.len() => rbuf.reserve(total - rbuf.len()),
            _ if rbuf.capacity() - rbuf.len() < SERVER_READ / 4 => rbuf.reserve(SERVER_READ / 2),
            _ => {}
        }
        if let Some(pooled) = self.server.as_mut() {
            pooled.conn().rbuf = rbuf;
        }
        result
    }

    fn on_server_message(&mut self, frame: FrameRef<'_>) {
        self.emit_synthetic();
        let tag = frame.tag();
        let head_forwarded = self.outstanding.front().is_none_or(Expect::forwarded);
        match tag {
            b'S' => {
                if let Some((name, value)) = msg::parameter_fields(frame.body()) {
                    self.server_conn().params.insert(name.to_string(), value.to_string());
                    // Copied out of the pool's shared set only when the client really changed a value.
                    let changes = head_forwarded
                        && params::is_tracked(name)
                        && !self.desired.iter().any(|(n, v)| n == name && v == value);
                    if changes && params::record(std::sync::Arc::make_mut(&mut self.desired), name, value) {
                        // The client changed it on this server: both now agree on the new values.
                        let hash = self.desired_changed();
                        self.server_conn().synced = Some(hash);
                    }
                }
                if head_forwarded {
                    self.to_client.extend_from_slice(frame.bytes());
                }
                return;
            }
            // Notices and notifications can come at any time and are the client's.
            b'N' | b'A' => return self.to_client.extend_from_slice(frame.bytes()),
            b'E' => {
                self.statement_failed = true;
                // An error ends a COPY FROM STDIN begun by an Execute on the server's side: it then waits for a
                // Sync (and drops the client's CopyData). One begun by a simple Query ends at its ReadyForQuery.
                if self.outstanding.front().is_some_and(|head| !head.ends_error()) {
                    self.copy_in = false;
                }
                // "cached plan must not change result type": after DDL, statements prepared on this connection
                // (shared by every client) keep failing; it is replaced by a fresh one once the client is done.
                if msg::error_code(frame.body()) == Some("0A000") {
                    self.server_conn().broken = true;
                }
                // The proxy's own parameter sync failed: what the connection now has is unknown. The next
                // checkout would set everything again, but that could fail again: it is replaced. The
                // client sees the error; the values of its own SETs replayed here are dropped, so that one a
                // server refuses (on a replica, say) does not fail every later statement too (its startup
                // values stay: a server accepted them at login).
                if self.outstanding.front() == Some(&Expect::InjectedQuery) {
                    self.reset_unreported();
                    let conn = self.server_conn();
                    conn.synced = None;
                    conn.unreported = None;
                    conn.broken = true;
                }
            }
            b'G' => {
                self.copy_in = true;
                // Syncs the client sent right behind its Execute reached a server already in COPY mode, which
                // ignores them (drivers send one before they see CopyInResponse).
                self.outstanding.drop_syncs_after_head();
            }
            b'Z' => {
                self.tx_status = frame.body().first().copied().unwrap_or(b'I');
                // No COPY goes on past a ReadyForQuery (one that failed in a simple query ends with it).
                self.copy_in = false;
                // A SET the session follows ended: its change holds if it succeeded outside a transaction.
                if let Some(change) = self.outstanding.take_set() {
                    self.set_ended(*change);
                }
                // So do those of the extended-protocol batch this ends, if nothing in it failed; those waiting on
                // a transaction's end that was not read are unknown once outside it.
                if self.sets_await_transaction() {
                    self.sets_at_ready();
                }
                // Only with nothing of the client's in flight behind it: the restoring query then runs before
                // anything the client sends next, and outside any transaction of its.
                if self.tx_status == b'I' && self.keeps_startup_settings() && self.outstanding.nothing_after_head() {
                    self.restore_startup_settings();
                }
                self.statement_failed = false;
            }
            b'C' if head_forwarded => {
                if let Some(discard) = msg::drops_every_statement(frame.body()) {
                    self.statements_dropped(discard);
                }
                if self.sets_await_transaction() {
                    self.transaction_tag(frame.body());
                }
            }
            _ => {}
        }
        // Decided on a borrow: most messages (DataRow…) neither complete nor fail a request.
        let Some(head) = self.outstanding.front() else {
            self.to_client.extend_from_slice(frame.bytes());
            return;
        };
        // An injected request that fails is shown too: the client's next message fails with it.
        match head {
            Expect::Duplicate(name) if tag == b'E' && msg::error_code(frame.body()) == Some("42P05") => {
                let text = format!("prepared statement \"{name}\" already exists");
                msg::error(&mut self.to_client, msg::Severity::Error, "42P05", &text, None);
            }
            _ if head.forwarded() || tag == b'E' => self.to_client.extend_from_slice(frame.bytes()),
            _ => {}
        }
        let failed = tag == b'E' && !head.ends_error();
        if !failed && !head.completed_by(tag) {
            return self.emit_synthetic();
        }
        let head = self.outstanding.pop();
        if let (false, Some(Expect::ExecuteSet(change))) = (failed, &head) {
            self.extended_sets.get_or_insert_default().ran.push((**change).clone());
        }
        let created = match &head {
            Some(Expect::ParseNamed { created: name, .. } | Expect::InjectedParse(name) | Expect::Remade(name)) => {
                Some(name)
            }
            _ => None,
        };
        if failed {
            if let Some(name) = created {
                self.server_conn().prepared.remove(name);
            }
            let mut skipped = self.outstanding.skip_to_sync();
            // The client's names are as if what failed and what was skipped never ran (PostgreSQL keeps no
            // statement whose Parse failed, and a Close skipped leaves its statement).
            let failed_parse = match head {
                Some(Expect::ParseNamed { renamed, .. } | Expect::CheckedParse(renamed)) => Some(*renamed),
                _ => None,
            };
            for renamed in skipped.renamed.drain(..).rev().chain(failed_parse) {
                let later = self.outstanding.pending_rename(renamed.name());
                self.statements.undo(renamed, later);
            }
            // What the client sends next, until its Sync, the server ignores: so does the proxy (`client`). The
            // server waits for that Sync: the connection is not at a boundary until then (a simple Query the
            // client sent ahead of it, skipped, had cleared `unsynced`).
            if skipped.sync_to_come {
                self.server_skipping = true;
                self.unsynced = true;
            }
            let conn = self.server_conn();
            for name in &skipped.not_prepared {
                conn.prepared.remove(name);
            }
            if skipped.unnamed_skipped {
                // The server kept the unnamed statement it had, which is not this client's.
                conn.unnamed_owner = None;
            }
            if skipped.close_skipped {
                // A statement we think closed still exists there: every Parse closes first from now on, and the
                // connection is not reused.
                conn.broken = true;
                conn.statements_uncertain = true;
            }
            if skipped.reclose_skipped {
                // Whether the statements it was to close exist is unknown: closed before every Parse from now
                // on, and the connection is not reused.
                conn.broken = true;
                conn.statements_uncertain = true;
            }
        } else if let Some(name) = created {
            // On the server now. An error in an earlier batch may have struck it off the record meanwhile (its
            // own Parse there was skipped; this one, sent because of that doubt, made it): back on, unless the
            // proxy has evicted it since.
            if !self.outstanding.closes(name) {
                self.server_conn().prepared.confirm(name);
            }
            if let Some(statement) = self.statements.by_proxy_name(name) {
                statement.validated.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.emit_synthetic();
    }

    /// The server ran `DISCARD ALL` or `DEALLOCATE ALL`, in whatever form the client sent it (a simple query
    /// alone is also followed when sent; the extended protocol, or among other statements, only here): the
    /// connection now holds no prepared statement but those whose Parse is still on its way, and with `discard`
    /// no setting of the client's (nor has the client: its SETs sent behind it apply when they end). The
    /// client's own names given before the drop was sent go too, as on PostgreSQL; for a drop the proxy did not
    /// see coming (a later statement of a multi-statement query), all of them when it sent nothing after it,
    /// none otherwise.
    fn statements_dropped(&mut self, discard: bool) {
        // The field, not `server_conn()`: the queue of what is owed is read while the connection is borrowed.
        let conn = self.server.as_mut().expect("a server is checked out").conn();
        conn.prepared.clear();
        for name in self.outstanding.pending_creations() {
            conn.prepared.insert(name.clone());
        }
        if discard {
            conn.unreported = Some(Default::default());
        }
        match self.outstanding.front().and_then(Expect::drop_mark) {
            Some(mark) => self.statements.dropped(mark),
            None if self.outstanding.only_syncs_after_head() => self.statements.clear(),
            // As of when it was sent: a drop queued behind it, sent later, settles it when it runs.
            None => self.statements.mark_unsure_before(self.outstanding.drop_mark_after_head()),
        }
        // The client's followed SETs are gone too. Those it sent behind the drop are still in the queue
        // (`Expect::QuerySet`) and apply when their own answers come.
        if discard {
            self.reset_unreported();
        }
    }

    /// The client's settings go back to its startup values (none: the server's defaults), as after
    /// `DISCARD ALL` on PostgreSQL; its next checkout brings the connection to them.
    fn reset_unreported(&mut self) {
        if !self.unreported.as_mut().is_some_and(|u| u.reset()) {
            self.unreported = None;
        }
    }

    /// Sends the answers the proxy gives itself that are now at the head of the queue. Called for every server
    /// message, where there is almost never one: that check is inline, the rest is not (out of line whole, it
    /// cost about 250 instructions per transaction, callgrind).
    #[inline]
    pub(super) fn emit_synthetic(&mut self) {
        if self.outstanding.synthetic_at_head() {
            self.emit_synthetic_now();
        }
    }

    fn emit_synthetic_now(&mut self) {
        while let Some(bytes) = self.outstanding.pop_synthetic() {
            self.to_client.extend_from_slice(&bytes);
        }
    }
}

/// Runs `sql` on an idle server connection and reads its answers up to ReadyForQuery. The server's error is
/// an error too: a connection whose reset failed is not clean.
pub async fn run_reset(conn: &mut ServerConn, sql: &str) -> Result<(), PgError> {
    conn.synced = None;
    if sql == "DISCARD ALL" {
        conn.unreported = Some(Default::default());
    }
    exchange(conn, sql).await?.value_of(sql).map(|_| ())
}

/// Runs a one-value query of the proxy's own on an idle server connection: the first column of its first row
/// (`None` for no row or NULL). A failure is an error: the proxy's own queries must not fail.
pub async fn query_value(conn: &mut ServerConn, sql: &str) -> Result<Option<String>, PgError> {
    exchange(conn, sql).await?.value_of(sql)
}

/// Runs settings of the proxy's own (a client's startup settings) on an idle server connection: the server's
/// refusal, if it refused them (SQLSTATE and message; nothing was set then: one query is one transaction).
pub async fn run_settings(conn: &mut ServerConn, sql: &str) -> Result<Option<(String, String)>, PgError> {
    Ok(exchange(conn, sql).await?.error)
}

#[derive(Default)]
struct Answer {
    value: Option<String>,
    /// The first error's SQLSTATE and message.
    error: Option<(String, String)>,
}

impl Answer {
    /// The value of a query of the proxy's own, whose failure is an error.
    fn value_of(self, sql: &str) -> Result<Option<String>, PgError> {
        match self.error {
            Some((code, _)) => Err(PgError::ServerProtocol(format!("{sql}: server error {code}"))),
            None => Ok(self.value),
        }
    }
}

/// Runs a one-value query of the proxy's own with one text parameter (`$1`), through the extended protocol: the
/// value is bound, never part of the text, whatever it holds and whatever the connection's encoding. Its error
/// is the server's SQLSTATE and message.
pub async fn query_value_with(
    conn: &mut ServerConn,
    sql: &str,
    param: &str,
) -> Result<Result<Option<String>, (String, String)>, PgError> {
    let mut out = BytesMut::new();
    frontend::parse("", sql, [], &mut out).map_err(PgError::ServerIo)?;
    let bind = frontend::bind(
        "",
        "",
        [0],
        [param],
        |p, buf| {
            buf.extend_from_slice(p.as_bytes());
            Ok(postgres_protocol::IsNull::No)
        },
        [0],
        &mut out,
    );
    bind.map_err(|_| PgError::ServerProtocol("could not encode a parameter".into()))?;
    frontend::execute("", 0, &mut out).map_err(PgError::ServerIo)?;
    frontend::sync(&mut out);
    let answer = send_and_read(conn, &out).await?;
    Ok(answer.error.map_or(Ok(answer.value), Err))
}

/// Sends a simple query and reads everything up to its ReadyForQuery, keeping parameters the server reports.
async fn exchange(conn: &mut ServerConn, sql: &str) -> Result<Answer, PgError> {
    let mut out = BytesMut::new();
    msg::query(&mut out, sql);
    send_and_read(conn, &out).await
}

/// Sends `out` and reads everything up to the ReadyForQuery it ends with. Until then the connection is marked
/// broken: one whose exchange fails or is abandoned (its caller's timeout drops this future) is closed, never
/// given to a client with the rest of an answer still on its way.
async fn send_and_read(conn: &mut ServerConn, out: &[u8]) -> Result<Answer, PgError> {
    let was_broken = std::mem::replace(&mut conn.broken, true);
    conn.stream.write_all(out).await.map_err(PgError::ServerIo)?;
    conn.stream.flush().await.map_err(PgError::ServerIo)?;
    let mut answer = Answer::default();
    loop {
        while let Some(frame) =
            decode(&mut conn.rbuf, MAX_SERVER_MESSAGE).map_err(|e| PgError::ServerProtocol(e.to_string()))?
        {
            match frame.tag() {
                b'Z' => {
                    conn.broken = was_broken;
                    return Ok(answer);
                }
                b'D' if answer.value.is_none() => answer.value = msg::first_column(frame.body()),
                b'E' => {
                    let field = |f| msg::error_field(frame.body(), f).unwrap_or_default().to_string();
                    answer.error.get_or_insert_with(|| (field(b'C'), field(b'M')));
                }
                b'S' => {
                    if let Some((name, value)) = msg::parameter_fields(frame.body()) {
                        conn.params.insert(name.to_string(), value.to_string());
                        conn.synced = None;
                    }
                }
                _ => {}
            }
        }
        if conn.stream.read_buf(&mut conn.rbuf).await.map_err(PgError::ServerIo)? == 0 {
            return Err(PgError::ServerIo(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
}
