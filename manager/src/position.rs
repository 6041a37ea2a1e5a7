//! Replication positions: PostgreSQL WAL LSNs and MySQL/MariaDB GTID sets, and the distance between two.

use std::collections::BTreeMap;
use std::fmt;

/// A PostgreSQL WAL location, `X/Y` in text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses PostgreSQL's `X/Y` hexadecimal form.
    pub fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        let hi = u64::from_str_radix(hi, 16).ok()?;
        let lo = u64::from_str_radix(lo, 16).ok()?;
        (hi <= u32::MAX as u64 && lo <= u32::MAX as u64).then_some(Lsn(hi << 32 | lo))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// The newest transaction sequence number per replication stream: MariaDB's `domain-server-seq` list
/// (keyed by domain) or MySQL's `uuid:1-100:200-300` set (keyed by source uuid, highest number; gaps,
/// which MySQL allows only transiently, are not counted).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GtidSet(pub BTreeMap<String, u64>);

impl GtidSet {
    /// Parses either form; an empty string is the empty set. `None` when the text is neither.
    pub fn parse(text: &str) -> Option<GtidSet> {
        let mut set = BTreeMap::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, seq) = if item.contains(':') { mysql_item(item)? } else { mariadb_item(item)? };
            let entry = set.entry(key).or_insert(0);
            *entry = (*entry).max(seq);
        }
        Some(GtidSet(set))
    }

    /// How many transactions `self` has that `behind` has not applied yet (0 if `behind` is ahead).
    pub fn distance_to(&self, behind: &GtidSet) -> u64 {
        // Saturating: two streams near the 64-bit limit would otherwise wrap to a small distance.
        self.0
            .iter()
            .map(|(k, seq)| seq.saturating_sub(behind.0.get(k).copied().unwrap_or(0)))
            .fold(0, u64::saturating_add)
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.0.iter().map(|(k, s)| format!("{k}:{s}")).collect();
        f.write_str(&items.join(","))
    }
}

/// `domain-server-seq`: the domain is the stream, the server id does not matter for distance.
fn mariadb_item(item: &str) -> Option<(String, u64)> {
    let mut parts = item.split('-');
    let domain: u32 = parts.next()?.parse().ok()?;
    let _server: u32 = parts.next()?.parse().ok()?;
    let seq: u64 = parts.next()?.parse().ok()?;
    parts.next().is_none().then(|| (domain.to_string(), seq))
}

/// `uuid:1-5:7-9` (or `uuid:7`): the source and its highest transaction number.
fn mysql_item(item: &str) -> Option<(String, u64)> {
    let mut parts = item.split(':');
    let uuid = parts.next()?.to_ascii_lowercase();
    let mut max = None;
    for range in parts {
        let end = range.rsplit('-').next()?;
        max = Some(max.unwrap_or(0).max(end.parse::<u64>().ok()?));
    }
    Some((uuid, max?))
}

/// Where a server is in its replication stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    Lsn(Lsn),
    Gtid(GtidSet),
}

impl Position {
    /// How far `behind` trails `self`: WAL bytes for LSNs, transactions for GTIDs; 0 when not behind,
    /// `None` when the two are of different kinds.
    pub fn distance_to(&self, behind: &Position) -> Option<u64> {
        match (self, behind) {
            (Position::Lsn(a), Position::Lsn(b)) => Some(a.0.saturating_sub(b.0)),
            (Position::Gtid(a), Position::Gtid(b)) => Some(a.distance_to(b)),
            _ => None,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Lsn(l) => l.fmt(f),
            Position::Gtid(g) => g.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_and_print() {
        for (text, value) in [("0/0", 0), ("0/3000148", 0x300_0148), ("16/B374D848", 0x16_B374_D848)] {
            assert_eq!(Lsn::parse(text), Some(Lsn(value)), "{text}");
            assert_eq!(Lsn(value).to_string(), text);
        }
        for bad in ["", "0", "x/1", "1/", "100000000/0", "0/100000000"] {
            assert_eq!(Lsn::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn gtid_sets_of_both_dialects() {
        let cases: &[(&str, &[(&str, u64)])] = &[
            ("", &[]),
            ("0-1-100", &[("0", 100)]),
            ("0-1-100,1-2-7", &[("0", 100), ("1", 7)]),
            ("0-1-5, 0-2-9", &[("0", 9)]),
            ("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5", &[("3e11fa47-71ca-11e1-9e33-c80aa9429562", 5)]),
            ("a:1-5:11-18,b:3", &[("a", 18), ("b", 3)]),
        ];
        for (text, want) in cases {
            let want: BTreeMap<String, u64> = want.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            assert_eq!(GtidSet::parse(text), Some(GtidSet(want)), "{text}");
        }
        for bad in ["0-1", "x-1-2", "0-1-2-3", "a:", "a:x-y"] {
            assert_eq!(GtidSet::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn distances() {
        let g = |t: &str| Position::Gtid(GtidSet::parse(t).unwrap());
        let l = |v: u64| Position::Lsn(Lsn(v));
        let cases = [
            (l(1000), l(400), Some(600)),
            (l(400), l(1000), Some(0)),
            (g("0-1-100"), g("0-1-90"), Some(10)),
            (g("0-1-100,1-1-5"), g("0-1-100"), Some(5)),
            (g("0-1-90"), g("0-1-100"), Some(0)),
            (l(1), g("0-1-1"), None),
            // Sequence numbers are 64-bit: the sum over streams stops at the largest distance, not wraps.
            (g("0-1-18446744073709551615,1-1-18446744073709551615"), g(""), Some(u64::MAX)),
        ];
        for (ahead, behind, want) in cases {
            assert_eq!(ahead.distance_to(&behind), want, "{ahead} vs {behind}");
        }
    }
}
