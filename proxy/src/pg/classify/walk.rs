//! The statement tree → a routing kind.

use pg_query::protobuf::{a_const, TransactionStmtKind};
use pg_query::{Node, NodeEnum, NodeRef};

use super::functions::{Effect, Functions};
use super::Kind;

/// The kind of `sql`, which may hold several statements: all of them must be reads for the whole to be one.
pub fn kind(sql: &str, functions: &Functions) -> Kind {
    let Ok(parsed) = pg_query::parse(sql, 0) else { return Kind::Unparsed };
    let stmts: Vec<&NodeEnum> =
        parsed.protobuf.stmts.iter().filter_map(|s| s.stmt.as_ref().and_then(|n| n.node.as_ref())).collect();
    let kinds: Vec<Kind> = stmts.iter().map(|s| statement(s)).collect();
    let combined = match kinds.as_slice() {
        [] => return Kind::Unparsed,
        [one] => *one,
        many if many.iter().all(|k| *k == Kind::Read) => Kind::Read,
        _ => Kind::Write,
    };
    if combined != Kind::Read {
        return combined;
    }
    // Reads so far; anything nested that writes or locks, and the functions called, can still say otherwise.
    for (node, _, _, _) in parsed.protobuf.nodes() {
        match node {
            NodeRef::InsertStmt(_) | NodeRef::UpdateStmt(_) | NodeRef::DeleteStmt(_) | NodeRef::MergeStmt(_) => {
                return Kind::Write;
            }
            NodeRef::SelectStmt(s) if !s.locking_clause.is_empty() || s.into_clause.is_some() => return Kind::Write,
            _ => {}
        }
    }
    let mut unknown = false;
    for (name, _) in &parsed.functions {
        match functions.effect(name) {
            Effect::Writes => return Kind::Write,
            Effect::Unknown => unknown = true,
            Effect::ReadOnly => {}
        }
    }
    if unknown {
        Kind::UnknownFunction
    } else {
        Kind::Read
    }
}

/// One top-level statement, before looking inside it.
fn statement(stmt: &NodeEnum) -> Kind {
    match stmt {
        NodeEnum::SelectStmt(_) | NodeEnum::VariableShowStmt(_) => Kind::Read,
        NodeEnum::ExplainStmt(e) => match analyze(&e.options) {
            // EXPLAIN ANALYZE runs the statement.
            true => e.query.as_ref().and_then(|q| q.node.as_ref()).map_or(Kind::Write, statement),
            false => Kind::Read,
        },
        NodeEnum::CopyStmt(c) if !c.is_from && !c.is_program && c.filename.is_empty() => {
            c.query.as_ref().and_then(|q| q.node.as_ref()).map_or(Kind::Read, statement)
        }
        NodeEnum::TransactionStmt(t) => match TransactionStmtKind::try_from(t.kind) {
            Ok(TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart) => {
                match access_mode(&t.options) {
                    Some(true) => Kind::BeginReadOnly,
                    Some(false) => Kind::BeginReadWrite,
                    None => Kind::Begin,
                }
            }
            _ => Kind::TransactionControl,
        },
        _ => Kind::Write,
    }
}

/// Whether EXPLAIN's options include ANALYZE (true or without a value).
fn analyze(options: &[Node]) -> bool {
    options.iter().any(|o| match &o.node {
        Some(NodeEnum::DefElem(d)) if d.defname == "analyze" => d.arg.as_ref().is_none_or(|a| truthy(a)),
        _ => false,
    })
}

/// The access mode the transaction options give: `Some(true)` for `READ ONLY`, `Some(false)` for `READ WRITE`.
fn access_mode(options: &[Node]) -> Option<bool> {
    options.iter().rev().find_map(|o| match &o.node {
        Some(NodeEnum::DefElem(d)) if d.defname == "transaction_read_only" => {
            Some(d.arg.as_ref().is_some_and(|a| truthy(a)))
        }
        _ => None,
    })
}

fn truthy(node: &Node) -> bool {
    match &node.node {
        Some(NodeEnum::AConst(c)) => match &c.val {
            Some(a_const::Val::Ival(i)) => i.ival != 0,
            Some(a_const::Val::Boolval(b)) => b.boolval,
            Some(a_const::Val::Sval(s)) => matches!(s.sval.as_str(), "on" | "true" | "1" | "yes"),
            _ => false,
        },
        Some(NodeEnum::String(s)) => matches!(s.sval.as_str(), "on" | "true" | "1" | "yes"),
        Some(NodeEnum::Boolean(b)) => b.boolval,
        _ => false,
    }
}
