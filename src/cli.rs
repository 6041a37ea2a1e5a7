//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "hapool",
    version,
    about = "High-availability proxy and replication manager for PostgreSQL and MySQL/MariaDB"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy for every cluster in the config, until SIGTERM or Ctrl-C.
    Run(CheckArgs),
    /// Validate a config file and print it normalized (exit 0), or print every error (exit 2).
    Check(CheckArgs),
    /// Throwaway PostgreSQL and MariaDB replication clusters on loopback.
    Sandbox {
        #[command(subcommand)]
        action: SandboxAction,
    },
    /// Start the demo: local PostgreSQL and MariaDB clusters with hapool's proxy in front; stays up until Ctrl-C.
    Demo(UpArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file.
    #[arg(short, long, default_value = "hapool.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum SandboxAction {
    /// Start the clusters and stay in the foreground until Ctrl-C, SIGTERM or `hapool sandbox down`.
    Up(UpArgs),
    /// Stop the clusters started by `hapool sandbox up`.
    Down(StateArgs),
    /// Show the running clusters.
    Status(StateArgs),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// PostgreSQL replicas (0 for a lone primary).
    #[arg(long, default_value_t = 2)]
    pub pg_replicas: usize,
    /// MariaDB replicas (0 for a lone primary).
    #[arg(long, default_value_t = 1)]
    pub mariadb_replicas: usize,
    /// Do not start PostgreSQL.
    #[arg(long)]
    pub no_postgres: bool,
    /// Do not start MariaDB.
    #[arg(long)]
    pub no_mariadb: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct StateArgs {
    /// Where `up` records what it started, for `status` and `down`.
    #[arg(long = "state", default_value_os_t = default_state_file())]
    pub state: PathBuf,
}

fn default_state_file() -> PathBuf {
    std::env::temp_dir().join("hapool-sandbox.json")
}
