//! Finds the PostgreSQL and MariaDB server programs, or says which package to install.

use std::path::{Path, PathBuf};

use crate::error::{Result, SandboxError};

/// The PostgreSQL programs the sandbox runs, all from one bin folder.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    pub bin_dir: PathBuf,
}

impl PgBinaries {
    /// `$HAPOOL_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else the folder of `postgres` on PATH.
    pub fn find() -> Result<PgBinaries> {
        let has_server = |dir: &Path| dir.join("postgres").is_file() && dir.join("initdb").is_file();
        if let Some(dir) = std::env::var_os("HAPOOL_PG_BIN").map(PathBuf::from) {
            if has_server(&dir) {
                return Ok(PgBinaries { bin_dir: dir });
            }
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                has_server(&bin).then_some((version, bin))
            })
            .collect();
        versions.sort();
        if let Some((_, bin_dir)) = versions.pop() {
            return Ok(PgBinaries { bin_dir });
        }
        if let Some(dir) = on_path("postgres").and_then(|p| p.parent().map(Path::to_path_buf)) {
            if has_server(&dir) {
                return Ok(PgBinaries { bin_dir: dir });
            }
        }
        Err(SandboxError::MissingBinary {
            program: "postgres and initdb".into(),
            searched: "$HAPOOL_PG_BIN, /usr/lib/postgresql/*/bin, PATH".into(),
            package: "postgresql".into(),
        })
    }

    pub fn program(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

/// The MariaDB programs the sandbox runs.
#[derive(Debug, Clone)]
pub struct MariaDbBinaries {
    pub server: PathBuf,
    pub install_db: PathBuf,
    pub client: PathBuf,
}

impl MariaDbBinaries {
    pub fn find() -> Result<MariaDbBinaries> {
        let find = |names: &[&str], package: &str| -> Result<PathBuf> {
            names
                .iter()
                .find_map(|n| on_path(n).or_else(|| Some(Path::new("/usr/sbin").join(n)).filter(|p| p.is_file())))
                .ok_or_else(|| SandboxError::MissingBinary {
                    program: names.join(" or "),
                    searched: "PATH and /usr/sbin".into(),
                    package: package.into(),
                })
        };
        Ok(MariaDbBinaries {
            server: find(&["mariadbd", "mysqld"], "mariadb-server")?,
            install_db: find(&["mariadb-install-db", "mysql_install_db"], "mariadb-server")?,
            client: find(&["mariadb", "mysql"], "mariadb-client")?,
        })
    }
}

/// The first executable file called `name` in a PATH folder.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}
