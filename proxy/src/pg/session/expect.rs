//! The responses a server owes for what was sent to it, in order. Lets the session drop the answers to
//! messages it injected, insert answers it gives itself, and know when a connection is free.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::statements::Renamed;
use super::unreported::Change;
use crate::pg::buffers::BufferPool;

/// One outstanding request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The client's Parse, forwarded as it is (the unnamed statement, or any in session pooling).
    Parse,
    /// The client's Parse of a named statement (transaction pooling): `created` names the statement it adds to
    /// the server, `renamed` the change of the client's name it made, taken back if the Parse fails or is
    /// skipped.
    ParseNamed {
        created: Arc<str>,
        renamed: Box<Renamed>,
    },
    Bind,
    Describe,
    Execute,
    /// An Execute of a portal bound to a plain SET or RESET the session follows (`unreported`): the change it
    /// makes, held once it ran until the batch's ReadyForQuery says its implicit transaction committed. Boxed:
    /// most queues never hold one.
    ExecuteSet(Box<Change>),
    /// An Execute of a portal bound to `DISCARD ALL` or `DEALLOCATE ALL`: every prepared statement of the
    /// connection may be gone once it has run. With the client's drop count when it was sent
    /// (`Statements::mark_drop`).
    ExecuteDropAll(u32),
    Close,
    Sync,
    /// A simple Query or FunctionCall: everything up to ReadyForQuery.
    Query,
    /// A simple Query that is `DISCARD ALL` or `DEALLOCATE ALL`, with the client's drop count when it was sent.
    QueryDropAll(u32),
    /// A simple Query that is a plain SET or RESET the session follows (`unreported`): the change it makes if
    /// it succeeds outside a transaction. Boxed: most queues never hold one.
    QuerySet(Box<Change>),
    /// A Parse the proxy sent so that a Bind/Describe finds its statement: its ParseComplete is dropped.
    InjectedParse(Arc<str>),
    /// The same, behind a `Reclose`, of a statement the record has, sent only because a Parse or Close of it in
    /// an earlier batch is still in flight: whether it runs or is skipped, the statement is then as that batch
    /// left it, so later batches need not doubt it for this one (a pipeline of batches would otherwise keep
    /// making it again).
    Remade(Arc<str>),
    /// A Close of an evicted statement: its CloseComplete is dropped.
    InjectedClose(Arc<str>),
    /// A Close of a statement the proxy takes for present, sent right before its Parse because a drop of every
    /// statement may have run first (a Close of a statement that is gone is no error): its CloseComplete is
    /// dropped.
    Reclose(Arc<str>),
    /// A query the proxy sent (parameter sync, startup settings put back): everything up to ReadyForQuery is
    /// dropped.
    InjectedQuery,
    /// The client's Parse of a named statement the connection has, which the proxy would answer itself but which
    /// PostgreSQL may refuse (25P02: in a failed transaction, or behind a batch still in flight that may leave
    /// one): the server checks with a Parse of a statement of its own (`CHECK_PARSE`), closed right after
    /// (`CheckClose`, and before it in case one was left). Its ParseComplete or error is the client's; `renamed` is taken back on an error or a skip,
    /// as for `ParseNamed`.
    CheckedParse(Box<Renamed>),
    /// A Close of the statement of a `CheckedParse`, before and after it: its CloseComplete is dropped. The one
    /// after is skipped when the check failed, which made nothing to close.
    CheckClose,
    /// A Parse of the check statement made only to be parsed again (`Duplicate`): its ParseComplete is dropped;
    /// its error (25P02 in a failed transaction) is the client's.
    CheckParse,
    /// The client's Parse of a name it has already, which PostgreSQL refuses (42P05): the server refuses a second
    /// Parse of the check statement the same way, and its error reaches the client with the client's name.
    Duplicate(Box<str>),
    /// An answer the proxy gives itself, sent to the client when it reaches the head of the queue.
    Synthetic(Bytes),
    /// The same for a Parse or Close of a named statement the proxy answers itself (ParseComplete or
    /// CloseComplete, by `tag`): with the change of the client's name it made, taken back if an error before it
    /// makes the server skip it, as the server would have.
    Renamed(u8, Box<Renamed>),
}

impl Expect {
    /// Whether a server message with `tag` is the last one this request produces.
    pub fn completed_by(&self, tag: u8) -> bool {
        match self {
            Expect::Parse
            | Expect::ParseNamed { .. }
            | Expect::InjectedParse(_)
            | Expect::Remade(_)
            | Expect::CheckedParse(_)
            | Expect::CheckParse
            | Expect::Duplicate(_) => tag == b'1',
            Expect::Bind => tag == b'2',
            Expect::Close | Expect::InjectedClose(_) | Expect::Reclose(_) | Expect::CheckClose => tag == b'3',
            Expect::Describe => tag == b'T' || tag == b'n',
            Expect::Execute | Expect::ExecuteSet(_) | Expect::ExecuteDropAll(_) => matches!(tag, b'C' | b'I' | b's'),
            Expect::Sync | Expect::Query | Expect::QueryDropAll(_) | Expect::QuerySet(_) | Expect::InjectedQuery => {
                tag == b'Z'
            }
            Expect::Synthetic(_) | Expect::Renamed(..) => false,
        }
    }

    /// Whether the server's answers to this request reach the client.
    pub fn forwarded(&self) -> bool {
        !matches!(
            self,
            Expect::InjectedParse(_)
                | Expect::Remade(_)
                | Expect::InjectedClose(_)
                | Expect::Reclose(_)
                | Expect::CheckClose
                | Expect::CheckParse
                | Expect::InjectedQuery
        )
    }

    /// Requests that end an extended-protocol error (the server skips everything up to Sync).
    pub fn ends_error(&self) -> bool {
        matches!(
            self,
            Expect::Sync | Expect::Query | Expect::QueryDropAll(_) | Expect::QuerySet(_) | Expect::InjectedQuery
        )
    }

    /// For a request that drops every prepared statement: the client's drop count when it was sent.
    pub fn drop_mark(&self) -> Option<u32> {
        match self {
            Expect::ExecuteDropAll(mark) | Expect::QueryDropAll(mark) => Some(*mark),
            _ => None,
        }
    }
}

/// How sure the proxy is of what the server has of a statement (`Outstanding::unsure_of`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsure {
    No,
    /// A Parse or Close of it in an earlier batch still in flight.
    EarlierBatch,
    /// A drop of every statement in flight (or, as the session sees it, an error left them unknown).
    Dropped,
}

/// What happened to requests skipped after an error, for the session to repair its bookkeeping.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Statements whose Parse the server skipped: they do not exist there.
    pub not_prepared: Vec<Arc<str>>,
    /// A Close the server skipped: the statement still exists, unknown to us.
    pub close_skipped: bool,
    /// A `Reclose` the server skipped: whether its statement exists depends on whether a drop ran before.
    pub reclose_skipped: bool,
    /// A Parse the server skipped that would have made the unnamed statement (transaction pooling).
    pub unnamed_skipped: bool,
    /// No Sync was queued: the server skips what the client sends until the Sync it has yet to send.
    pub sync_to_come: bool,
    /// Changes of the client's statement names made by what was skipped, in the order sent (to be taken back
    /// in reverse).
    pub renamed: Vec<Renamed>,
}

/// The queue of outstanding requests of one server connection.
#[derive(Debug, Default)]
pub struct Outstanding {
    queue: VecDeque<Expect>,
}

impl Outstanding {
    pub fn push(&mut self, e: Expect) {
        self.queue.push_back(e);
    }

    /// Whether a ReadyForQuery is owed (a Sync or a simple query is in flight): the unit will end by itself.
    pub fn awaits_ready(&self) -> bool {
        self.queue.iter().any(|e| e.ends_error())
    }

    /// Whether a batch or simple query of the client's own is in flight (the proxy's own queries do not count:
    /// they fail no transaction of the client's).
    pub fn client_batch_in_flight(&self) -> bool {
        self.queue.iter().any(|e| e.ends_error() && !matches!(e, Expect::InjectedQuery))
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn front(&self) -> Option<&Expect> {
        self.queue.front()
    }

    pub fn pop(&mut self) -> Option<Expect> {
        self.queue.pop_front()
    }

    /// The change of the followed SET at the head, taken out of it (the head stays, as a plain Query).
    pub fn take_set(&mut self) -> Option<Box<Change>> {
        match self.queue.front_mut() {
            Some(head @ Expect::QuerySet(_)) => match std::mem::replace(head, Expect::Query) {
                Expect::QuerySet(change) => Some(change),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether an answer the proxy gives itself is at the head.
    #[inline]
    pub fn synthetic_at_head(&self) -> bool {
        matches!(self.queue.front(), Some(Expect::Synthetic(_) | Expect::Renamed(..)))
    }

    /// Pops synthetic answers at the head, in order (a name change among them now holds: everything sent before
    /// it ran).
    pub fn pop_synthetic(&mut self) -> Option<Bytes> {
        match self.queue.front() {
            Some(Expect::Synthetic(_) | Expect::Renamed(..)) => match self.queue.pop_front() {
                Some(Expect::Synthetic(b)) => Some(b),
                Some(Expect::Renamed(tag, _)) => Some(crate::pg::msg::empty(tag)),
                _ => None,
            },
            _ => None,
        }
    }

    /// After an ErrorResponse to an extended-protocol message: the server skips every message up to the next
    /// Sync (a simple Query among them too), so their answers (and our synthetic ones among them) never come.
    /// When no Sync is queued, the client has yet to send it (`Skipped::sync_to_come`).
    pub fn skip_to_sync(&mut self) -> Skipped {
        let mut skipped = Skipped::default();
        while let Some(head) = self.queue.front() {
            if *head == Expect::Sync {
                break;
            }
            match self.queue.pop_front() {
                Some(Expect::ParseNamed { created, renamed }) => {
                    skipped.not_prepared.push(created);
                    skipped.renamed.push(*renamed);
                }
                Some(Expect::InjectedParse(n)) | Some(Expect::Remade(n)) => skipped.not_prepared.push(n),
                Some(Expect::Renamed(_, renamed) | Expect::CheckedParse(renamed)) => skipped.renamed.push(*renamed),
                Some(Expect::Parse) => skipped.unnamed_skipped = true,
                Some(Expect::InjectedClose(_)) => skipped.close_skipped = true,
                Some(Expect::Reclose(_)) => skipped.reclose_skipped = true,
                _ => {}
            }
        }
        skipped.sync_to_come = self.queue.is_empty();
        skipped
    }

    /// Whether what the proxy's records say of the statement `name` on the server may not hold by the time what
    /// is sent now runs (`Unsure`): a request that drops every prepared statement is still on its way, or a Parse
    /// or Close of `name` that changed the record is, in an earlier batch (an error there makes the server skip
    /// it). One pass.
    pub fn unsure_of(&self, name: &str) -> Unsure {
        let (mut touched, mut earlier) = (false, false);
        for e in &self.queue {
            match e {
                Expect::ExecuteDropAll(_) | Expect::QueryDropAll(_) => return Unsure::Dropped,
                Expect::ParseNamed { created: n, .. } | Expect::InjectedParse(n) | Expect::InjectedClose(n)
                    if **n == *name =>
                {
                    touched = true
                }
                Expect::Sync if touched => earlier = true,
                _ => {}
            }
        }
        if earlier {
            Unsure::EarlierBatch
        } else {
            Unsure::No
        }
    }

    /// The mark of a drop of every statement sent in the batch being sent now (no Sync or simple query since):
    /// what comes behind it runs only if the drop ran.
    pub fn drop_in_batch(&self) -> Option<u32> {
        self.queue.iter().rev().take_while(|e| !e.ends_error()).find_map(Expect::drop_mark)
    }

    /// Whether a Parse or Close of the client's statement name `name` in an earlier batch is still on its way:
    /// what the name stands for is known only once that batch is answered (an error there makes the server skip
    /// it, and the session takes the change back). One pass.
    pub fn renames_in_earlier_batch(&self, name: &str) -> bool {
        let mut renamed = false;
        for e in &self.queue {
            match e {
                Expect::ParseNamed { renamed: r, .. } | Expect::Renamed(_, r) | Expect::CheckedParse(r)
                    if r.name() == name =>
                {
                    renamed = true
                }
                e if renamed && e.ends_error() => return true,
                _ => {}
            }
        }
        false
    }

    /// The first change of the client's statement name `name` still on its way (`Statements::undo`).
    pub fn pending_rename(&mut self, name: &str) -> Option<&mut Renamed> {
        self.queue.iter_mut().find_map(|e| match e {
            Expect::ParseNamed { renamed, .. } | Expect::Renamed(_, renamed) | Expect::CheckedParse(renamed)
                if renamed.name() == name =>
            {
                Some(&mut **renamed)
            }
            _ => None,
        })
    }

    /// Whether a Close of the statement `name` is on its way (the proxy evicted it).
    pub fn closes(&self, name: &str) -> bool {
        self.queue.iter().any(|e| matches!(e, Expect::InjectedClose(n) if **n == *name))
    }

    /// Statements whose Parse is still on its way to being answered: sent after every request before them.
    pub fn pending_creations(&self) -> impl Iterator<Item = &Arc<str>> {
        self.queue.iter().filter_map(|e| match e {
            Expect::ParseNamed { created: n, .. } | Expect::InjectedParse(n) | Expect::Remade(n) => Some(n),
            _ => None,
        })
    }

    /// Whether nothing follows the head: the client has nothing else in flight behind the request now answered.
    pub fn nothing_after_head(&self) -> bool {
        self.queue.len() <= 1
    }

    /// The mark of the first drop of every statement queued behind the head (sent after it).
    pub fn drop_mark_after_head(&self) -> Option<u32> {
        self.queue.iter().skip(1).find_map(Expect::drop_mark)
    }

    /// Whether nothing but Syncs follows the head: the client sent nothing more after the request now answered.
    pub fn only_syncs_after_head(&self) -> bool {
        self.queue.iter().skip(1).all(|e| *e == Expect::Sync)
    }

    /// Removes the Sync requests queued right behind the head (see COPY FROM STDIN).
    pub fn drop_syncs_after_head(&mut self) {
        while self.queue.len() > 1 && self.queue[1] == Expect::Sync {
            self.queue.remove(1);
        }
    }

    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// Room for requests, lent by `pool` (at checkout).
    pub fn lend(&mut self, pool: &BufferPool) {
        pool.lend_queue(&mut self.queue);
    }

    /// Gives the queue's room back to `pool` when nothing is owed (an idle client holds none).
    pub fn reclaim(&mut self, pool: &BufferPool) {
        pool.reclaim_queue(&mut self.queue);
    }
}

#[cfg(test)]
mod tests {
    use super::super::statements::Statements;
    use super::*;

    #[test]
    fn requests_complete_on_their_last_message() {
        assert!(Expect::Parse.completed_by(b'1'));
        assert!(!Expect::Describe.completed_by(b't'), "ParameterDescription comes before RowDescription");
        assert!(Expect::Describe.completed_by(b'n'));
        assert!(!Expect::Execute.completed_by(b'D'));
        assert!(Expect::Execute.completed_by(b's'), "a portal suspended by a row limit");
        assert!(Expect::Query.completed_by(b'Z') && !Expect::Query.completed_by(b'C'));
    }

    #[test]
    fn an_error_skips_to_sync_and_reports_unprepared_statements() {
        let mut q = Outstanding::default();
        q.push(Expect::Bind);
        q.push(Expect::InjectedParse("hp_1".into()));
        q.push(Expect::Synthetic(Bytes::from_static(b"1")));
        let renamed = Statements::default().rename("s2", None);
        q.push(Expect::ParseNamed { created: "hp_2".into(), renamed: renamed.clone() });
        q.push(Expect::InjectedClose("hp_0".into()));
        q.push(Expect::Sync);
        q.push(Expect::Execute);
        q.pop();
        let skipped = q.skip_to_sync();
        assert_eq!(skipped.not_prepared, vec![Arc::from("hp_1"), Arc::from("hp_2")]);
        assert!(skipped.close_skipped && !skipped.sync_to_come);
        assert_eq!(skipped.renamed, vec![*renamed], "the client's name is to be taken back");
        assert_eq!(q.pop(), Some(Expect::Sync));
        assert_eq!(q.pop(), Some(Expect::Execute));
        // A simple query behind the failed message is skipped too; with no Sync sent yet, one is to come.
        q.push(Expect::Execute);
        q.push(Expect::Query);
        q.push(Expect::Synthetic(Bytes::from_static(b"3")));
        q.push(Expect::Renamed(b'3', Statements::default().rename("s", None)));
        q.pop();
        let skipped = q.skip_to_sync();
        assert!(q.is_empty() && skipped.sync_to_come && skipped.renamed.len() == 1);
    }

    #[test]
    fn a_drop_of_every_statement_is_in_flight_until_its_execute_is_answered_or_skipped() {
        let mut q = Outstanding::default();
        q.push(Expect::Bind);
        q.push(Expect::ExecuteDropAll(1));
        q.push(Expect::Reclose("hp_1".into()));
        q.push(Expect::InjectedParse("hp_1".into()));
        q.push(Expect::Sync);
        assert_eq!(q.unsure_of("hp_9"), Unsure::Dropped);
        assert!(Expect::ExecuteDropAll(1).completed_by(b'C') && !Expect::Reclose("x".into()).forwarded());
        q.pop();
        let skipped = q.skip_to_sync();
        assert_eq!(q.unsure_of("hp_9"), Unsure::No);
        assert!(skipped.reclose_skipped && !skipped.close_skipped);
        assert_eq!(skipped.not_prepared, vec![Arc::from("hp_1")]);
    }

    #[test]
    fn a_statement_made_or_closed_in_an_earlier_batch_in_flight_is_unsure() {
        let mut q = Outstanding::default();
        q.push(Expect::Execute);
        q.push(Expect::InjectedParse("hp_1".into()));
        q.push(Expect::InjectedClose("hp_2".into()));
        let sure = |q: &Outstanding, name| q.unsure_of(name) == Unsure::No;
        assert!(sure(&q, "hp_1") && sure(&q, "hp_2"), "the same batch: skipped together with what follows");
        q.push(Expect::Sync);
        assert_eq!((q.unsure_of("hp_1"), q.unsure_of("hp_2")), (Unsure::EarlierBatch, Unsure::EarlierBatch));
        assert!(sure(&q, "hp_3"));
        // Made again only for that doubt: it changes nothing of the record.
        let mut q = Outstanding::default();
        q.push(Expect::Reclose("hp_1".into()));
        q.push(Expect::Remade("hp_1".into()));
        q.push(Expect::Sync);
        assert!(sure(&q, "hp_1"));
    }

    #[test]
    fn a_name_changed_in_an_earlier_batch_in_flight_is_in_doubt() {
        let mut q = Outstanding::default();
        q.push(Expect::Execute);
        q.push(Expect::Renamed(b'3', Statements::default().rename("a", None)));
        assert!(!q.renames_in_earlier_batch("a"), "the batch being sent: its own messages follow it");
        q.push(Expect::Sync);
        assert!(q.renames_in_earlier_batch("a") && !q.renames_in_earlier_batch("b"));
        assert!(q.pending_rename("a").is_some() && q.pending_rename("b").is_none());
    }

    #[test]
    fn what_follows_the_head() {
        let mut q = Outstanding::default();
        q.push(Expect::Execute);
        q.push(Expect::Sync);
        assert!(q.only_syncs_after_head());
        q.push(Expect::InjectedParse("hp_1".into()));
        q.push(Expect::Parse);
        q.push(Expect::ParseNamed { created: "hp_2".into(), renamed: Statements::default().rename("s", None) });
        assert!(!q.only_syncs_after_head());
        let names: Vec<&str> = q.pending_creations().map(|n| &**n).collect();
        assert_eq!(names, ["hp_1", "hp_2"]);
    }

    #[test]
    fn synthetic_answers_leave_in_order() {
        let mut q = Outstanding::default();
        q.push(Expect::Synthetic(Bytes::from_static(b"a")));
        q.push(Expect::Synthetic(Bytes::from_static(b"b")));
        q.push(Expect::Bind);
        assert_eq!(q.pop_synthetic().as_deref(), Some(&b"a"[..]));
        assert_eq!(q.pop_synthetic().as_deref(), Some(&b"b"[..]));
        assert_eq!(q.pop_synthetic(), None);
        assert_eq!(q.front(), Some(&Expect::Bind));
    }
}
