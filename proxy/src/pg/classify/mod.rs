//! Which statements are provably read-only, decided with PostgreSQL's own grammar (`pg_query`), and cached by
//! statement text so that repeated and prepared statements cost a hash lookup.

mod functions;
mod hints;
pub mod normalize;
mod walk;

use std::borrow::Cow;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use hapool_config::{Routing, UnknownFunctions};
use lru::LruCache;

pub use functions::Functions;

/// What a statement is, for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Provably read-only: may run on a replica.
    Read,
    /// Read-only as far as the grammar shows, but it calls a function that is neither built in nor listed in
    /// `read_only_functions`: a replica only with `unknown_functions = "replica"`.
    UnknownFunction,
    /// Writes, or must run on the primary for another reason (row locks, sequences, advisory locks,
    /// notifications, DDL, session state).
    Write,
    /// Not parseable, or empty.
    Unparsed,
    /// `BEGIN` / `START TRANSACTION` with no access mode: read write unless the client set
    /// `default_transaction_read_only`.
    Begin,
    /// `BEGIN READ WRITE` / `START TRANSACTION READ WRITE`.
    BeginReadWrite,
    /// `BEGIN READ ONLY` / `START TRANSACTION READ ONLY`.
    BeginReadOnly,
    /// `COMMIT`, `ROLLBACK`, `SAVEPOINT` …: they go wherever the transaction is.
    TransactionControl,
}

/// A routing hint in a comment: `/* hapool:primary */` or `/* hapool:replica */`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hint {
    Primary,
    Replica,
}

/// The classifier's answer for one statement text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verdict {
    pub kind: Kind,
    pub hint: Option<Hint>,
}

impl Verdict {
    /// Whether the statement may run on a replica when nothing else (transaction, read-your-writes) says no.
    pub fn replica_ok(&self, unknown_functions: UnknownFunctions) -> bool {
        match (self.hint, self.kind) {
            (Some(Hint::Primary), _) => false,
            (_, Kind::Read | Kind::BeginReadOnly) => true,
            // A hint can vouch for a function the proxy does not know, never for a provable write.
            (Some(Hint::Replica), Kind::UnknownFunction) => true,
            (_, Kind::UnknownFunction) => unknown_functions == UnknownFunctions::Replica,
            _ => false,
        }
    }
}

/// How many distinct statement texts keep their verdict.
const CACHE: usize = 10_000;

/// Statements longer than this are classified every time rather than kept (bounded memory).
const CACHE_MAX_TEXT: usize = 4096;

/// What the cache keeps for a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cached {
    Verdict(Verdict),
    /// A text with literals replaced that does not parse (a literal where a parameter may not stand, as in
    /// `interval '1 day'` or `EXPLAIN (ANALYZE 1)`): statements of this shape are classified by their own text.
    ByText,
}

/// One listener's classifier: its function lists and a bounded cache of verdicts, keyed by statement text
/// with literals replaced (see `normalize`), or by the text itself.
#[derive(Debug)]
pub struct Classifier {
    functions: Functions,
    cache: Mutex<LruCache<Box<str>, Cached>>,
}

impl Classifier {
    pub fn new(routing: &Routing) -> Classifier {
        Classifier {
            functions: Functions::new(&routing.read_only_functions, &routing.write_functions),
            cache: Mutex::new(LruCache::new(NonZeroUsize::new(CACHE).expect("non-zero"))),
        }
    }

    /// The verdict for `sql`, from the cache when a statement of the same shape (the same text but for its
    /// literals) was seen before.
    pub fn classify(&self, sql: &str) -> Verdict {
        let shape = normalize::literals(sql);
        match self.cached(&shape) {
            Some(Cached::Verdict(v)) => return v,
            Some(Cached::ByText) => return self.classify_text(sql),
            None => {}
        }
        let Cow::Owned(shape) = shape else { return self.classify_text(sql) };
        let verdict = self.classify_uncached(&shape);
        if verdict.kind == Kind::Unparsed {
            self.remember(shape, Cached::ByText);
            return self.classify_text(sql);
        }
        self.remember(shape, Cached::Verdict(verdict));
        verdict
    }

    /// The verdict for `sql` itself, cached by its exact text.
    fn classify_text(&self, sql: &str) -> Verdict {
        if let Some(Cached::Verdict(v)) = self.cached(sql) {
            return v;
        }
        let verdict = self.classify_uncached(sql);
        self.remember(sql.to_string(), Cached::Verdict(verdict));
        verdict
    }

    fn cached(&self, key: &str) -> Option<Cached> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied()
    }

    fn remember(&self, key: String, entry: Cached) {
        if key.len() <= CACHE_MAX_TEXT {
            self.cache.lock().unwrap_or_else(|e| e.into_inner()).put(key.into_boxed_str(), entry);
        }
    }

    /// Parses and walks the statement. A parser panic (it is C code behind a Rust binding) counts as
    /// unparseable rather than taking the session down.
    pub fn classify_uncached(&self, sql: &str) -> Verdict {
        let kind = std::panic::catch_unwind(|| walk::kind(sql, &self.functions)).unwrap_or(Kind::Unparsed);
        Verdict { kind, hint: hints::hint(sql) }
    }
}

#[cfg(test)]
mod tests;
