//! Where a unit of work goes (a transaction, or an autocommit statement with what the client pipelined after
//! it up to its Sync): the primary, or a reader. Pure: the session supplies the verdicts and its state.

use hapool_config::{ReadYourWrites, UnknownFunctions};

use crate::pg::classify::{Hint, Kind, Verdict};

/// Why a unit went to the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Why {
    /// Read/write split is off, or the cluster uses session pooling.
    NoSplit,
    /// A write (or something that must run there: DDL, locks, sequences, SET …).
    Write,
    /// A read-write transaction.
    Transaction,
    /// read_your_writes = "session" after this client wrote.
    AfterWrite,
    /// `/* hapool:primary */`.
    Hint,
    /// Not parseable, or not a statement the proxy can see (a Bind of an unknown statement).
    Unparsed,
    /// Calls a function the proxy does not know.
    Function,
    /// No replica may serve reads now (all down or lagging) and `fallback_to_primary` is on.
    NoReplica,
    /// read_your_writes = "causal": no replica had caught up with the client's last write in time.
    Causal,
    /// An extended-protocol batch placed before its Sync came: the rest of it could write.
    Partial,
}

impl Why {
    /// Every reason, in declaration order: `why as usize` indexes it.
    pub const ALL: [Why; 10] = [
        Why::NoSplit,
        Why::Write,
        Why::Transaction,
        Why::AfterWrite,
        Why::Hint,
        Why::Unparsed,
        Why::Function,
        Why::NoReplica,
        Why::Causal,
        Why::Partial,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Why::NoSplit => "no_split",
            Why::Write => "write",
            Why::Transaction => "transaction",
            Why::AfterWrite => "after_write",
            Why::Hint => "hint",
            Why::Unparsed => "unparsed",
            Why::Function => "function",
            Why::NoReplica => "no_replica",
            Why::Causal => "causal",
            Why::Partial => "partial",
        }
    }
}

/// The answer for one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Primary(Why),
    Reader,
}

/// What the decision depends on besides the statements.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// Read/write split on and transaction pooling.
    pub split: bool,
    pub read_your_writes: ReadYourWrites,
    /// The client has written before (for read_your_writes = "session").
    pub wrote: bool,
    pub unknown_functions: UnknownFunctions,
    /// The client set `default_transaction_read_only = on`: a plain `BEGIN` starts a read-only transaction.
    pub default_read_only: bool,
}

/// The place of a unit from the verdicts of its statements, first one first (`None` where a message has no
/// statement the proxy can see). Every statement must be fit for a replica for the unit to go to one.
pub fn place(verdicts: impl IntoIterator<Item = Option<Verdict>>, ctx: &Context) -> Place {
    if !ctx.split {
        return Place::Primary(Why::NoSplit);
    }
    let mut verdicts = verdicts.into_iter();
    let Some(first) = verdicts.next() else { return Place::Primary(Why::Unparsed) };
    let Some(first) = first else { return Place::Primary(Why::Unparsed) };
    if let Some(why) = primary_because(&first, ctx) {
        return Place::Primary(why);
    }
    if ctx.wrote && ctx.read_your_writes == ReadYourWrites::Session {
        return Place::Primary(Why::AfterWrite);
    }
    for v in verdicts {
        match v {
            None => return Place::Primary(Why::Unparsed),
            Some(v) => {
                if let Some(why) = primary_because(&v, ctx) {
                    return Place::Primary(why);
                }
            }
        }
    }
    Place::Reader
}

fn primary_because(v: &Verdict, ctx: &Context) -> Option<Why> {
    if v.kind == Kind::Begin && ctx.default_read_only && v.hint != Some(Hint::Primary) {
        return None;
    }
    if v.replica_ok(ctx.unknown_functions) {
        return None;
    }
    Some(match (v.hint, v.kind) {
        (Some(Hint::Primary), _) => Why::Hint,
        (_, Kind::Begin | Kind::BeginReadWrite) => Why::Transaction,
        (_, Kind::UnknownFunction) => Why::Function,
        (_, Kind::Unparsed) => Why::Unparsed,
        _ => Why::Write,
    })
}

/// Whether a unit placed on the primary for this reason counts as the client writing (read_your_writes).
/// (A batch placed before its end does not: its later messages are judged as they come, `note_late_write`.)
pub fn writes(place: Place) -> bool {
    matches!(place, Place::Primary(Why::Write | Why::Transaction | Why::Function | Why::Unparsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(kind: Kind) -> Option<Verdict> {
        Some(Verdict { kind, hint: None })
    }

    fn ctx() -> Context {
        Context {
            split: true,
            read_your_writes: ReadYourWrites::Off,
            wrote: false,
            unknown_functions: UnknownFunctions::Primary,
            default_read_only: false,
        }
    }

    #[test]
    fn places() {
        let hinted = |kind, hint| Some(Verdict { kind, hint: Some(hint) });
        let cases: &[(&[Option<Verdict>], Context, Place)] = &[
            (&[v(Kind::Read)], ctx(), Place::Reader),
            (&[v(Kind::Read), v(Kind::Read)], ctx(), Place::Reader),
            (&[v(Kind::Read), v(Kind::Write)], ctx(), Place::Primary(Why::Write)),
            (&[v(Kind::Read), None], ctx(), Place::Primary(Why::Unparsed)),
            (&[None], ctx(), Place::Primary(Why::Unparsed)),
            (&[], ctx(), Place::Primary(Why::Unparsed)),
            (&[v(Kind::Begin)], ctx(), Place::Primary(Why::Transaction)),
            (&[v(Kind::BeginReadOnly)], ctx(), Place::Reader),
            (&[v(Kind::BeginReadWrite)], ctx(), Place::Primary(Why::Transaction)),
            (&[v(Kind::Begin)], Context { default_read_only: true, ..ctx() }, Place::Reader),
            (
                &[v(Kind::BeginReadWrite)],
                Context { default_read_only: true, ..ctx() },
                Place::Primary(Why::Transaction),
            ),
            (
                &[hinted(Kind::Begin, Hint::Primary)],
                Context { default_read_only: true, ..ctx() },
                Place::Primary(Why::Hint),
            ),
            (&[v(Kind::TransactionControl)], ctx(), Place::Primary(Why::Write)),
            (&[v(Kind::UnknownFunction)], ctx(), Place::Primary(Why::Function)),
            (&[hinted(Kind::Read, Hint::Primary)], ctx(), Place::Primary(Why::Hint)),
            (&[hinted(Kind::UnknownFunction, Hint::Replica)], ctx(), Place::Reader),
            (&[hinted(Kind::Write, Hint::Replica)], ctx(), Place::Primary(Why::Write)),
            (&[v(Kind::Read)], Context { split: false, ..ctx() }, Place::Primary(Why::NoSplit)),
            (&[v(Kind::Read)], Context { wrote: true, ..ctx() }, Place::Reader),
            (
                &[v(Kind::Read)],
                Context { wrote: true, read_your_writes: ReadYourWrites::Session, ..ctx() },
                Place::Primary(Why::AfterWrite),
            ),
            (
                &[v(Kind::UnknownFunction)],
                Context { unknown_functions: UnknownFunctions::Replica, ..ctx() },
                Place::Reader,
            ),
        ];
        for (verdicts, ctx, want) in cases {
            assert_eq!(place(verdicts.iter().copied(), ctx), *want, "{verdicts:?} {ctx:?}");
        }
    }

    #[test]
    fn every_reason_indexes_its_own_counter() {
        for (i, why) in Why::ALL.iter().enumerate() {
            assert_eq!(*why as usize, i, "{why:?}");
        }
    }

    #[test]
    fn what_counts_as_writing() {
        assert!(writes(Place::Primary(Why::Write)));
        assert!(writes(Place::Primary(Why::Transaction)));
        assert!(!writes(Place::Primary(Why::Partial)));
        assert!(!writes(Place::Primary(Why::Hint)));
        assert!(!writes(Place::Reader));
    }
}
