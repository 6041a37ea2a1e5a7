//! The `hapool` binary: command line, wiring and signals. The only code that knows every part.

mod check;
mod cli;
mod run;
mod sandbox_cmd;
mod signals;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, SandboxAction};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Check(args) => return check::run(&args.config),
        Command::Run(args) => run::run(&args.config),
        Command::Sandbox { action } => match action {
            SandboxAction::Up(args) => sandbox_cmd::up(&args, false),
            SandboxAction::Down(args) => sandbox_cmd::down(&args.state),
            SandboxAction::Status(args) => sandbox_cmd::status(&args.state),
        },
        Command::Demo(args) => sandbox_cmd::up(&args, true),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hapool: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HAPOOL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Human => builder.init(),
        cli::LogFormat::Json => builder.json().init(),
    }
}
