//! `hapool check`: validate a config and print it normalized, or print every problem.

use std::path::Path;
use std::process::ExitCode;

/// Exit 0 with the normalized config on stdout; exit 2 with one `file:line:col: …` line per problem on stderr.
pub fn run(path: &Path) -> ExitCode {
    match hapool_config::load(path) {
        Ok(config) => {
            print!("{}", config.to_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            let count = e.problems().len();
            if count > 1 {
                eprintln!("{count} problems in {}", path.display());
            }
            ExitCode::from(2)
        }
    }
}
