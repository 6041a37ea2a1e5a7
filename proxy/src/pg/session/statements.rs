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
}

impl Statement {
    pub fn is_validated(&self) -> bool {
        self.validated.load(Ordering::Relaxed)
    }
}

/// One client's prepared statement names → proxy-wide statements. Boxed and made on first use: most clients
/// of a transaction pool never name a statement, and each idle client would otherwise carry an empty map.
#[derive(Debug, Default)]
#[allow(clippy::box_collection)] // deliberate: 8 bytes in every session instead of an empty map's 48
pub struct Statements(Option<Box<HashMap<String, Arc<Statement>>>>);

impl Statements {
    pub fn get(&self, name: &str) -> Option<&Arc<Statement>> {
        self.0.as_ref()?.get(name)
    }

    pub fn insert(&mut self, name: String, statement: Arc<Statement>) {
        self.0.get_or_insert_default().insert(name, statement);
    }

    pub fn remove(&mut self, name: &str) {
        if let Some(map) = self.0.as_mut() {
            map.remove(name);
        }
    }

    /// The client's statement with this proxy-wide name.
    pub fn by_proxy_name(&self, name: &str) -> Option<&Arc<Statement>> {
        self.0.as_ref()?.values().find(|s| &*s.name == name)
    }

    pub fn clear(&mut self) {
        self.0 = None;
    }
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
        let statement = Arc::new(Statement {
            parse: parse_renamed(&name, rest),
            name,
            validated: AtomicBool::new(false),
            leftovers: super::leftovers::query_leftovers(rest),
            drops_all: super::client::text_drops_all(rest),
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
}
