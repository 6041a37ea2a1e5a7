//! Prepared statements shared across clients in transaction pooling: one proxy-wide name per distinct
//! (query, parameter types), so a statement prepared on a server serves every client that sends it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::leftovers::Leftovers;
use crate::pg::msg::parse_renamed;

/// A statement under its proxy-wide name, with the Parse message that creates it on a server.
#[derive(Debug)]
pub struct Statement {
    pub name: Arc<str>,
    pub parse: Bytes,
    /// Set once a server accepted this statement: a client's later Parse of it can be answered without one.
    pub validated: AtomicBool,
    /// What executing it leaves on the server that the proxy does not follow (`session::leftovers`).
    pub leftovers: Leftovers,
    /// It is `DISCARD ALL` or `DEALLOCATE ALL`: executing it drops every prepared statement of the connection.
    pub drops_all: bool,
    /// It is a plain SET or RESET the session follows: the change executing it makes (`unreported`).
    pub set: Option<super::unreported::Change>,
}

impl Statement {
    pub fn is_validated(&self) -> bool {
        self.validated.load(Ordering::Relaxed)
    }
}

/// One client's prepared statement names → proxy-wide statements. Boxed and made on first use: most clients
/// of a transaction pool never name a statement, and each idle client would otherwise carry an empty map.
#[derive(Debug, Default)]
pub struct Statements(Option<Box<Named>>);

/// Each name with the count of drops of every statement (`DISCARD ALL`, `DEALLOCATE ALL`) the client had sent
/// when it named it: a drop pipelined behind other requests removes, once it has run, the names given before
/// it and not those given after (the client may have sent more before its answer came).
#[derive(Debug, Default)]
struct Named {
    names: HashMap<String, (Arc<Statement>, u32)>,
    drops_sent: u32,
    /// The mark of the last drop that ran: a name given before it is gone for good, whatever is taken back.
    drop_ran: Option<u32>,
    /// Which names a drop the proxy did not follow took is unknown (they are kept), until the next drop the proxy
    /// follows that was sent after it (`mark_unsure`): the count of drops sent when it was marked.
    unsure: Option<u32>,
}

impl Statements {
    pub fn get(&self, name: &str) -> Option<&Arc<Statement>> {
        self.0.as_ref()?.names.get(name).map(|(s, _)| s)
    }

    /// The statement by this name unless it was given before the drop marked `drop` (`None`: no drop).
    pub fn get_unless_before(&self, name: &str, drop: Option<u32>) -> Option<&Arc<Statement>> {
        match self.0.as_ref()?.names.get(name)? {
            (_, given) if drop.is_some_and(|mark| before(*given, mark)) => None,
            (statement, _) => Some(statement),
        }
    }

    pub fn insert(&mut self, name: String, statement: Arc<Statement>) {
        let named = self.0.get_or_insert_default();
        named.names.insert(name, (statement, named.drops_sent));
    }

    pub fn remove(&mut self, name: &str) {
        if let Some(named) = self.0.as_mut() {
            named.names.remove(name);
        }
    }

    /// Gives `name` to `to` (`None`: removes it) for a Parse or Close on its way to the server, and returns how
    /// to take that back (`undo`).
    pub fn rename(&mut self, name: &str, to: Option<Arc<Statement>>) -> Box<Renamed> {
        let before = match &to {
            Some(statement) => {
                let named = self.0.get_or_insert_default();
                named.names.insert(name.to_string(), (statement.clone(), named.drops_sent))
            }
            None => self.0.as_mut().and_then(|named| named.names.remove(name)),
        };
        Box::new(Renamed { name: name.into(), before })
    }

    /// The Parse or Close that made `renamed` did not run (the server skipped it after an error, or the Parse
    /// failed). When a later change of the same name is still on its way (`later`), that one now follows what
    /// the name was before this one; otherwise the name is as it was before, unless a drop of every statement
    /// ran since it was given. Changes not run are taken back latest first.
    pub fn undo(&mut self, renamed: Renamed, later: Option<&mut Renamed>) {
        if let Some(later) = later {
            later.before = renamed.before;
            return;
        }
        let dropped = |named: &Named, given: u32| named.drop_ran.is_some_and(|mark| before(given, mark));
        match renamed.before {
            Some((statement, given)) if !self.0.as_ref().is_some_and(|named| dropped(named, given)) => {
                self.0.get_or_insert_default().names.insert(renamed.name.into(), (statement, given));
            }
            _ => self.remove(&renamed.name),
        }
    }

    /// The client's statement with this proxy-wide name.
    pub fn by_proxy_name(&self, name: &str) -> Option<&Arc<Statement>> {
        self.0.as_ref()?.names.values().map(|(s, _)| s).find(|s| &*s.name == name)
    }

    /// Every name goes, and the room they took (the drop count stays, for drops still on their way).
    pub fn clear(&mut self) {
        if let Some(named) = self.0.as_mut() {
            named.names = HashMap::new();
            named.unsure = None;
        }
    }

    /// A drop the proxy did not see coming ran, with more requests behind it, or a statement that may drop some
    /// names (an SQL DEALLOCATE of one, DO, EXECUTE) was sent: the names are kept, and are unsure (`unsure`) until
    /// the next drop the proxy follows.
    pub fn mark_unsure(&mut self) {
        self.mark_unsure_before(None);
    }

    /// The same for a statement sent before the drop marked `later` (`None`: after every drop sent so far).
    pub fn mark_unsure_before(&mut self, later: Option<u32>) {
        // (Also for a client without names yet: it may give some before the drop runs.)
        let named = self.0.get_or_insert_default();
        named.unsure = Some(later.map_or(named.drops_sent, |mark| mark.wrapping_sub(1)));
    }

    /// Whether a drop the proxy did not follow may have taken names it still has (a Parse of one is then not
    /// refused as a name in use).
    pub fn unsure(&self) -> bool {
        self.0.as_ref().is_some_and(|named| named.unsure.is_some())
    }

    /// A drop of every statement is being sent: its mark, for `dropped` when it has run. A client without names
    /// gets 0: it had none to lose, and names it gives later are counted from 0 too.
    pub fn mark_drop(&mut self) -> u32 {
        self.0.as_mut().map_or(0, |named| {
            named.drops_sent = named.drops_sent.wrapping_add(1);
            named.drops_sent
        })
    }

    /// The drop marked `mark` has run: the names given before it was sent are gone.
    pub fn dropped(&mut self, mark: u32) {
        if let Some(named) = self.0.as_mut() {
            named.names.retain(|_, (_, given)| !before(*given, mark));
            named.drop_ran = Some(mark);
            // A drop sent before the statement that made the names unsure settles nothing of it.
            if named.unsure.is_some_and(|since| before(since, mark)) {
                named.unsure = None;
            }
        }
    }
}

/// A client's statement name changed by a Parse or Close in flight (`Statements::rename`): what the name was
/// before, to put back when the server does not run it.
#[derive(Debug, Clone)]
pub struct Renamed {
    name: Box<str>,
    before: Option<(Arc<Statement>, u32)>,
}

impl Renamed {
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The same change: the same name, from the same statement (compared by identity).
impl PartialEq for Renamed {
    fn eq(&self, other: &Self) -> bool {
        let before = |r: &Renamed| r.before.as_ref().map(|(s, given)| (Arc::as_ptr(s), *given));
        self.name == other.name && before(self) == before(other)
    }
}

impl Eq for Renamed {}

/// Whether a name given at drop count `given` was given before the drop marked `mark` was sent (in wrapping
/// order: a count wraps after 2³² drops).
fn before(given: u32, mark: u32) -> bool {
    (given.wrapping_sub(mark) as i32) < 0
}

/// Interns statements by the Parse body after the name (query text and parameter types).
#[derive(Debug, Default)]
pub struct StatementRegistry {
    by_text: Mutex<HashMap<Bytes, Arc<Statement>>>,
    /// Never reset, so names stay unique even after the map starts over.
    next_id: AtomicU64,
}

/// Above this many distinct statements the registry starts over (clients keep theirs; servers re-prepare).
const MAX_STATEMENTS: usize = 100_000;

impl StatementRegistry {
    pub fn intern(&self, rest: &[u8]) -> Arc<Statement> {
        let mut map = self.by_text.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(rest) {
            return s.clone();
        }
        if map.len() >= MAX_STATEMENTS {
            map.clear();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let name: Arc<str> = Arc::from(format!("hapool_{id}"));
        let head = super::leftovers::Head::of(rest);
        let statement = Arc::new(Statement {
            parse: parse_renamed(&name, rest),
            name,
            validated: AtomicBool::new(false),
            leftovers: super::leftovers::head_leftovers(head),
            drops_all: super::follow::text_drops_all(head),
            set: super::follow::text_set(head),
        });
        map.insert(Bytes::copy_from_slice(rest), statement.clone());
        statement
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_same_statement() {
        let r = StatementRegistry::default();
        let a = r.intern(b"SELECT 1\0\0\0");
        let b = r.intern(b"SELECT 1\0\0\0");
        let c = r.intern(b"SELECT 2\0\0\0");
        assert!(Arc::ptr_eq(&a, &b));
        assert_ne!(a.name, c.name);
        assert_eq!(&a.parse[5..5 + a.name.len()], a.name.as_bytes());
        assert!(a.leftovers.is_empty());
        let set = r.intern(b"SET work_mem = '1GB'\0\0\0");
        assert_eq!(set.leftovers, Leftovers::SETTINGS, "its Bind marks the connection");
    }

    #[test]
    fn names_stay_unsure_until_a_drop_sent_after_what_made_them_so() {
        let r = StatementRegistry::default();
        let mut names = Statements::default();
        names.mark_unsure();
        assert!(names.unsure(), "marked before the client had a name");
        let earlier = names.mark_drop();
        names.insert("a".into(), r.intern(b"SELECT 1\0\0\0"));
        names.mark_unsure();
        names.dropped(earlier);
        assert!(names.unsure(), "a drop sent before the mark settles nothing");
        let later = names.mark_drop();
        names.dropped(later);
        assert!(!names.unsure(), "one sent after it does");
        names.mark_unsure();
        names.clear();
        assert!(!names.unsure(), "nor after every name went");
        // A drop that ran unforeseen, with a drop queued behind it (sent later): that one settles it.
        let queued = names.mark_drop();
        names.mark_unsure_before(Some(queued));
        names.dropped(queued);
        assert!(!names.unsure(), "the drop sent after it");
    }

    #[test]
    fn a_drop_removes_the_names_given_before_it_was_sent() {
        let r = StatementRegistry::default();
        let mut names = Statements::default();
        assert_eq!(names.mark_drop(), 0, "no names yet: nothing to lose");
        names.insert("a".into(), r.intern(b"SELECT 1\0\0\0"));
        let first = names.mark_drop();
        names.insert("b".into(), r.intern(b"SELECT 2\0\0\0"));
        let second = names.mark_drop();
        names.insert("c".into(), r.intern(b"SELECT 3\0\0\0"));
        names.dropped(0);
        assert!(names.get("a").is_some(), "the drop sent before any name removes none");
        names.dropped(first);
        assert!(names.get("a").is_none() && names.get("b").is_some() && names.get("c").is_some());
        names.insert("a".into(), r.intern(b"SELECT 1\0\0\0"));
        names.dropped(second);
        assert!(names.get("b").is_none(), "named between the two drops");
        assert!(names.get("a").is_some() && names.get("c").is_some(), "named after the second drop was sent");
        let third = names.mark_drop();
        assert!(names.get_unless_before("a", Some(third)).is_none() && names.get_unless_before("a", None).is_some());
        assert!(before(u32::MAX, 0) && !before(0, u32::MAX), "wrapping order");
    }

    #[test]
    fn a_name_change_not_run_is_taken_back() {
        let r = StatementRegistry::default();
        let (one, two) = (r.intern(b"SELECT 1\0\0\0"), r.intern(b"SELECT 2\0\0\0"));
        let is = |names: &Statements, s: &Arc<Statement>| names.get("a").is_some_and(|a| Arc::ptr_eq(a, s));
        let mut names = Statements::default();
        names.insert("a".into(), one.clone());
        let closed = names.rename("a", None);
        let parsed = names.rename("a", Some(two.clone()));
        let again = names.rename("a", Some(two.clone()));
        assert!(is(&names, &two));
        // Skipped together, taken back latest first: the name comes back to the first statement.
        names.undo(*again, None);
        names.undo(*parsed, None);
        assert!(names.get("a").is_none(), "closed again, as the Close left it");
        names.undo(*closed, None);
        assert!(is(&names, &one));

        // A change not run while a later one of the same name is on its way: the later one takes its place.
        let closed = names.rename("a", None);
        let mut parsed = names.rename("a", Some(two.clone()));
        names.undo(*closed, Some(&mut parsed));
        assert!(is(&names, &two), "the later Parse still stands");
        names.undo(*parsed, None);
        assert!(is(&names, &one), "and without it, the name is what it was before both");

        // A drop of every statement that ran since the name was given: nothing comes back.
        let mark = names.mark_drop();
        let closed = names.rename("a", None);
        names.dropped(mark);
        names.undo(*closed, None);
        assert!(names.get("a").is_none());
    }
}
