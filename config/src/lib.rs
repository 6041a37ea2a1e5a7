//! hapool's configuration: TOML → raw serde mirror → validation → typed model.
//!
//! Every problem is reported at once, each as `file:line:col: context: message`; secrets never print.

mod error;
mod locate;
mod model;
mod password;
mod raw;
mod secret;
mod units;
mod validate;

use std::path::Path;

pub use error::{ConfigError, KeyPath, Located, Problem, ProblemKind, Seg};
pub use model::*;
pub use password::{password_kind, scram_parts, PasswordKind, ScramParts};
pub use secret::Secret;
pub use units::ByteSize;
pub use validate::EnvLookup;

use locate::{line_col, Locator};

/// Reads, validates and types the config at `path`, expanding `${VAR}` from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    parse(&source, &file, &|name| std::env::var(name).ok(), base_dir)
}

/// Validates config text. `file` names it in errors; relative `password_file`s resolve against `base_dir`.
pub fn parse(source: &str, file: &str, env: EnvLookup<'_>, base_dir: &Path) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = toml::from_str(source).map_err(|e| {
        let (line, column) = line_col(source, e.span().map(|s| s.start).unwrap_or(0));
        ConfigError::Invalid(vec![Located {
            file: file.to_string(),
            line,
            column,
            problem: Problem {
                path: KeyPath::default(),
                context: String::new(),
                kind: ProblemKind::Syntax { message: e.message().trim_end().to_string() },
            },
        }])
    })?;
    validate::validate(&raw, env, base_dir).map_err(|problems| {
        let locator = Locator::new(source);
        let mut located: Vec<Located> = problems
            .into_iter()
            .map(|problem| {
                let (line, column) = locator.locate(&problem.path);
                Located { file: file.to_string(), line, column, problem }
            })
            .collect();
        located.sort_by_key(|l| (l.line, l.column));
        ConfigError::Invalid(located)
    })
}

#[cfg(test)]
mod tests;
