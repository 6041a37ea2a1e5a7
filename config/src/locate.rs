//! Maps a key path to a line and column of the source, using toml_edit's spans.

use toml_edit::{Document, Item, Table};

use crate::error::{KeyPath, Seg};

/// A parsed document kept for locating problems.
pub struct Locator<'a> {
    source: &'a str,
    doc: Option<Document<String>>,
}

impl<'a> Locator<'a> {
    pub fn new(source: &'a str) -> Locator<'a> {
        Locator { source, doc: Document::parse(source.to_string()).ok() }
    }

    /// Line and column (1-based) of the value at `path`; of the nearest enclosing table when the key is absent.
    pub fn locate(&self, path: &KeyPath) -> (usize, usize) {
        let offset = self.doc.as_ref().and_then(|doc| span_of(doc.as_table(), &path.0)).unwrap_or(0);
        let (line, column) = line_col(self.source, offset);
        if self.is_found(path) {
            (line, column)
        } else {
            (self.header_line_above(line), 1)
        }
    }

    /// Whether the exact key exists (else the location is its table's, and we show the table header).
    fn is_found(&self, path: &KeyPath) -> bool {
        self.doc.as_ref().is_none_or(|doc| exists_in(doc.as_table(), &path.0))
    }

    /// The nearest `[table]` / `[[array]]` header at or above `line`.
    fn header_line_above(&self, line: usize) -> usize {
        let lines: Vec<&str> = self.source.lines().collect();
        (1..=line.min(lines.len())).rev().find(|&n| lines[n - 1].trim_start().starts_with('[')).unwrap_or(line)
    }
}

fn span_of(root: &Table, path: &[Seg]) -> Option<usize> {
    let mut table = root;
    let mut best = table.span().map(|s| s.start);
    let mut segs = path.iter().peekable();
    while let Some(seg) = segs.next() {
        let Seg::Key(key) = seg else { return best };
        let Some(item) = table.get(key) else { return best };
        let here = item.span().or_else(|| table.key(key).and_then(|k| k.span())).map(|s| s.start);
        best = here.or(best);
        let next_table = match (item, segs.peek()) {
            (Item::ArrayOfTables(array), Some(Seg::Index(i))) => {
                segs.next();
                let Some(t) = array.get(*i) else { return best };
                best = t.span().map(|s| s.start).or_else(|| first_key(t)).or(best);
                t
            }
            (Item::Table(t), _) => t,
            _ => return best,
        };
        table = next_table;
    }
    best
}

fn exists_in(table: &Table, path: &[Seg]) -> bool {
    match path {
        [] => true,
        [Seg::Key(k), Seg::Index(i), rest @ ..] => match table.get(k) {
            Some(Item::ArrayOfTables(a)) => a.get(*i).is_some_and(|t| exists_in(t, rest)),
            _ => false,
        },
        [Seg::Key(k), rest @ ..] => match table.get(k) {
            Some(Item::Table(t)) => exists_in(t, rest),
            Some(_) => rest.is_empty(),
            None => false,
        },
        [Seg::Index(_), ..] => false,
    }
}

/// Where the first key of a table is written (array-of-tables elements carry no span of their own).
fn first_key(table: &Table) -> Option<usize> {
    table
        .iter()
        .filter_map(|(k, item)| {
            let key = table.key(k).and_then(|k| k.span());
            key.or_else(|| item.span()).map(|s| s.start)
        })
        .min()
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = source[line_start..offset].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[admin]\nlisten = \"x\"\n\n[[cluster]]\nname = \"a\"\n\n[[cluster]]\nname = \"b\"\n  [[cluster.node]]\n  port = 70000\n";

    fn path(segs: &[Seg]) -> KeyPath {
        KeyPath(segs.to_vec())
    }

    #[test]
    fn finds_values_in_arrays_of_tables() {
        let loc = Locator::new(DOC);
        let p = path(&[
            Seg::Key("cluster".into()),
            Seg::Index(1),
            Seg::Key("node".into()),
            Seg::Index(0),
            Seg::Key("port".into()),
        ]);
        assert_eq!(loc.locate(&p), (10, 10));
        let p = path(&[Seg::Key("cluster".into()), Seg::Index(1), Seg::Key("name".into())]);
        assert_eq!(loc.locate(&p), (8, 8));
        let p = path(&[Seg::Key("admin".into()), Seg::Key("listen".into())]);
        assert_eq!(loc.locate(&p), (2, 10));
    }

    #[test]
    fn missing_keys_point_at_their_table() {
        let loc = Locator::new(DOC);
        let p = path(&[Seg::Key("cluster".into()), Seg::Index(0), Seg::Key("engine".into())]);
        assert_eq!(loc.locate(&p).0, 4);
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncdé\nf", 8), (3, 1));
        assert_eq!(line_col("ab\ncdé", 5), (2, 3));
    }
}
