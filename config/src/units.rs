//! Parsing of the human units the config accepts: durations ("500ms", "3s", "1h 30m") and byte sizes ("16MB").

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// A size in bytes. Units follow PostgreSQL: `kB`, `MB`, `GB`, `TB` are powers of 1024 (`KiB`… accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

const UNITS: [(&str, u64); 5] = [("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10), ("B", 1)];

impl ByteSize {
    /// Parses "16MB", "512kB", "1GiB", "100" (bytes). Returns `None` when the text is not a size.
    pub fn parse(text: &str) -> Option<ByteSize> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let number: u64 = digits.parse().ok()?;
        let multiplier = match unit.trim() {
            "" | "B" => 1,
            "kB" | "KB" | "k" | "K" | "KiB" => 1 << 10,
            "MB" | "M" | "MiB" => 1 << 20,
            "GB" | "G" | "GiB" => 1 << 30,
            "TB" | "T" | "TiB" => 1 << 40,
            _ => return None,
        };
        number.checked_mul(multiplier).map(ByteSize)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, size) =
            UNITS.iter().find(|(_, size)| self.0 != 0 && self.0.is_multiple_of(*size)).copied().unwrap_or(("B", 1));
        write!(f, "{}{unit}", self.0 / size)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses "500ms", "3s", "2m", "1h 30m". Returns `None` when the text is not a duration.
pub fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        assert_eq!(ByteSize::parse("16MB"), Some(ByteSize(16 << 20)));
        assert_eq!(ByteSize::parse("512kB"), Some(ByteSize(512 << 10)));
        assert_eq!(ByteSize::parse("1GiB"), Some(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("100"), Some(ByteSize(100)));
        assert_eq!(ByteSize::parse("2 MB"), Some(ByteSize(2 << 20)));
    }

    #[test]
    fn bad_sizes_are_refused() {
        for text in ["", "MB", "12XB", "-1MB", "1.5MB", "99999999999999999999TB"] {
            assert_eq!(ByteSize::parse(text), None, "{text}");
        }
    }

    #[test]
    fn sizes_print_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(16 << 20).to_string(), "16MB");
        assert_eq!(ByteSize(1536).to_string(), "1536B");
        assert_eq!(ByteSize(2048).to_string(), "2kB");
        assert_eq!(ByteSize(0).to_string(), "0B");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("3"), None);
        assert_eq!(parse_duration("soon"), None);
    }
}
