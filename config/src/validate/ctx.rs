//! The validation context: collects every problem, and turns raw values into typed ones with defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{KeyPath, Problem, ProblemKind};
use crate::secret::{interpolate, InterpolationError, Secret};
use crate::units::{parse_duration, ByteSize};

/// Looks up an environment variable; tests pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A table being validated: its key path and how to name it to a human (`cluster "app" node "db2"`).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub path: KeyPath,
    pub context: String,
}

impl Scope {
    /// A sub-table, e.g. `[cluster.monitor]`.
    pub fn table(&self, key: &str) -> Scope {
        Scope { path: self.path.key(key), context: join(&self.context, key) }
    }

    /// The `index`th element of an array of tables, named by its `name` key when it has one.
    pub fn element(&self, key: &str, index: usize, name: Option<&str>) -> Scope {
        let label = match name {
            Some(name) => format!("{key} {name:?}"),
            None => format!("{key} #{}", index + 1),
        };
        Scope { path: self.path.key(key).index(index), context: join(&self.context, &label) }
    }
}

fn join(context: &str, more: &str) -> String {
    if context.is_empty() {
        more.to_string()
    } else {
        format!("{context} {more}")
    }
}

/// Collects problems while converting values.
pub struct Ctx<'a> {
    pub problems: Vec<Problem>,
    env: EnvLookup<'a>,
    base_dir: PathBuf,
}

impl<'a> Ctx<'a> {
    pub fn new(env: EnvLookup<'a>, base_dir: &Path) -> Ctx<'a> {
        Ctx { problems: Vec::new(), env, base_dir: base_dir.to_path_buf() }
    }

    pub fn report(&mut self, scope: &Scope, key: &str, kind: ProblemKind) {
        self.problems.push(Problem { path: scope.path.key(key), context: scope.context.clone(), kind });
    }

    /// A string with `${VAR}` expanded; `None` when absent or when expansion failed (reported).
    pub fn string(&mut self, scope: &Scope, key: &str, raw: Option<&String>) -> Option<String> {
        let raw = raw?;
        match interpolate(raw, self.env) {
            Ok(value) => Some(value),
            Err(InterpolationError::Unset(variable)) => {
                self.report(scope, key, ProblemKind::UnsetVariable { variable });
                None
            }
            Err(InterpolationError::Malformed) => {
                self.report(scope, key, ProblemKind::MalformedReference);
                None
            }
        }
    }

    /// A string that must be present and non-empty.
    pub fn required(&mut self, scope: &Scope, key: &str, raw: Option<&String>) -> String {
        match self.string(scope, key, raw) {
            Some(value) if !value.trim().is_empty() => value,
            Some(_) => {
                self.report(scope, key, invalid("", "a non-empty value"));
                String::new()
            }
            None => {
                if raw.is_none() {
                    self.report(scope, key, ProblemKind::Missing);
                }
                String::new()
            }
        }
    }

    /// An integer within `min..=max`.
    pub fn int(&mut self, scope: &Scope, key: &str, raw: Option<i64>, default: u32, min: i64, max: i64) -> u32 {
        match raw {
            None => default,
            Some(value) if (min..=max).contains(&value) => value as u32,
            Some(value) => {
                self.report(scope, key, ProblemKind::OutOfRange { value, min, max });
                default
            }
        }
    }

    /// An optional integer within `min..=max`.
    pub fn opt_int(&mut self, scope: &Scope, key: &str, raw: Option<i64>, min: i64, max: i64) -> Option<u32> {
        raw.map(|v| self.int(scope, key, Some(v), min as u32, min, max))
    }

    /// A duration such as "500ms"; zero is refused.
    pub fn duration(&mut self, scope: &Scope, key: &str, raw: Option<&String>, default: Duration) -> Duration {
        self.opt_duration(scope, key, raw).unwrap_or(default)
    }

    pub fn opt_duration(&mut self, scope: &Scope, key: &str, raw: Option<&String>) -> Option<Duration> {
        let text = self.string(scope, key, raw)?;
        match parse_duration(&text) {
            Some(d) if !d.is_zero() => Some(d),
            _ => {
                self.report(scope, key, invalid(&text, "a duration above zero such as \"500ms\", \"3s\" or \"1m\""));
                None
            }
        }
    }

    /// A size such as "16MB".
    pub fn size(&mut self, scope: &Scope, key: &str, raw: Option<&String>) -> Option<ByteSize> {
        let text = self.string(scope, key, raw)?;
        let parsed = ByteSize::parse(&text);
        if parsed.is_none() {
            self.report(scope, key, invalid(&text, "a size such as \"16MB\", \"512kB\" or \"1GB\""));
        }
        parsed
    }

    /// A `host:port` socket address.
    pub fn socket(&mut self, scope: &Scope, key: &str, raw: Option<&String>, default: &str) -> SocketAddr {
        let fallback = default.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        let Some(text) = self.string(scope, key, raw) else { return fallback };
        match text.parse() {
            Ok(addr) => addr,
            Err(_) => {
                self.report(scope, key, invalid(&text, "an address such as \"127.0.0.1:6432\" or \"[::1]:6432\""));
                fallback
            }
        }
    }

    /// One of a fixed set of words.
    pub fn choice<T: Copy>(
        &mut self,
        scope: &Scope,
        key: &str,
        raw: Option<&String>,
        default: T,
        options: &[(&str, T)],
    ) -> T {
        let Some(text) = self.string(scope, key, raw) else { return default };
        match options.iter().find(|(name, _)| *name == text) {
            Some((_, value)) => *value,
            None => {
                let names: Vec<String> = options.iter().map(|(n, _)| format!("{n:?}")).collect();
                self.report(scope, key, invalid(&text, &format!("one of {}", names.join(", "))));
                default
            }
        }
    }

    /// A secret given inline (`password`, `${ENV}` allowed) or in a file (`password_file`), not both.
    pub fn secret(&mut self, scope: &Scope, inline: Option<&String>, file: Option<&String>) -> Option<Secret> {
        if inline.is_some() && file.is_some() {
            self.report(scope, "password", ProblemKind::Exclusive { other: "password_file".into() });
            return None;
        }
        if let Some(value) = self.string(scope, "password", inline) {
            return Some(Secret::new(value));
        }
        let name = self.string(scope, "password_file", file)?;
        let path = self.path(&name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(Secret::new(text.trim_end_matches(['\r', '\n']))),
            Err(e) => {
                self.report(scope, "password_file", ProblemKind::UnreadableFile { file: path, reason: e.to_string() });
                None
            }
        }
    }

    /// A path from the config, relative to the config file's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.base_dir.join(name)
    }

    /// A file that must exist and be readable.
    pub fn readable_file(&mut self, scope: &Scope, key: &str, raw: Option<&String>) -> Option<PathBuf> {
        let name = self.string(scope, key, raw)?;
        let path = self.path(&name);
        match std::fs::File::open(&path) {
            Ok(_) => Some(path),
            Err(e) => {
                self.report(scope, key, ProblemKind::UnreadableFile { file: path, reason: e.to_string() });
                None
            }
        }
    }
}

pub fn invalid(value: &str, expected: &str) -> ProblemKind {
    ProblemKind::Invalid { value: value.to_string(), expected: expected.to_string() }
}
