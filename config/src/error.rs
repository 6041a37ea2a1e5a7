//! Config errors: what is wrong, where (file:line:col), and under which key.

use std::fmt;
use std::path::PathBuf;

/// One step of a key path: a table key or an index into an array of tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Where a value lives in the document, e.g. `cluster[0].node[1].port`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn key(&self, key: &str) -> KeyPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_string()));
        KeyPath(segs)
    }

    pub fn index(&self, index: usize) -> KeyPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        KeyPath(segs)
    }

    /// The last key of the path (what the problem is about), or "" for the root.
    pub fn last_key(&self) -> &str {
        self.0
            .iter()
            .rev()
            .find_map(|s| match s {
                Seg::Key(k) => Some(k.as_str()),
                Seg::Index(_) => None,
            })
            .unwrap_or("")
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// What is wrong with one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The TOML itself does not parse, or does not fit the schema (unknown key, wrong type).
    Syntax {
        message: String,
    },
    Missing,
    OutOfRange {
        value: i64,
        min: i64,
        max: i64,
    },
    Invalid {
        value: String,
        expected: String,
    },
    Duplicate {
        value: String,
    },
    Conflict {
        value: String,
        other: String,
    },
    Exclusive {
        other: String,
    },
    Requires {
        what: String,
    },
    /// A value that cannot be used, said without showing it (a password).
    Unusable {
        reason: String,
    },
    UnsetVariable {
        variable: String,
    },
    MalformedReference,
    UnreadableFile {
        file: PathBuf,
        reason: String,
    },
}

/// One problem at one key, with a human context such as `cluster "app" node "db2"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: KeyPath,
    pub context: String,
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.context.is_empty() {
            write!(f, "{}: ", self.context)?;
        }
        let key = self.path.last_key();
        match &self.kind {
            ProblemKind::Syntax { message } => write!(f, "{message}"),
            ProblemKind::Missing => write!(f, "{key} is required"),
            ProblemKind::OutOfRange { value, min, max } => {
                write!(f, "{key} {value} is out of range {min}-{max}")
            }
            ProblemKind::Invalid { value, expected } => {
                write!(f, "{key} {value:?} is not valid: expected {expected}")
            }
            ProblemKind::Duplicate { value } => write!(f, "{key} {value:?} is used more than once"),
            ProblemKind::Conflict { value, other } => {
                write!(f, "{key} {value} is also used by {other}")
            }
            ProblemKind::Exclusive { other } => {
                write!(f, "{key} and {other} cannot both be set")
            }
            ProblemKind::Requires { what } => write!(f, "{key} requires {what}"),
            ProblemKind::Unusable { reason } => write!(f, "{key} cannot be used: {reason}"),
            ProblemKind::UnsetVariable { variable } => {
                write!(f, "{key} refers to ${{{variable}}}, which is not set in the environment")
            }
            ProblemKind::MalformedReference => {
                write!(f, "{key} has a malformed ${{…}} reference")
            }
            ProblemKind::UnreadableFile { file, reason } => {
                write!(f, "{key} {} cannot be read: {reason}", file.display())
            }
        }
    }
}

/// A problem placed in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub problem: Problem,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.problem)
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render(.0))]
    Invalid(Vec<Located>),
}

impl ConfigError {
    /// Every located problem (empty for a read error).
    pub fn problems(&self) -> &[Located] {
        match self {
            ConfigError::Invalid(problems) => problems,
            ConfigError::Read { .. } => &[],
        }
    }
}

fn render(problems: &[Located]) -> String {
    problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")
}
