//! `jsrv`: the jsync daemon's command line.
//!
//! `jsrv init` makes the keys a server and its clients need (like `ssh-keygen`,
//! with a private CA). Serving a root directory arrives with the sync engine.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes, documented in the README.
mod exit {
    /// The command failed (keys could not be made or read, ...).
    pub const FAILURE: u8 = 1;
}

#[derive(Debug, Parser)]
#[command(name = "jsrv", version, about = "The jsync daemon")]
struct Cli {
    /// Where keys, certificates and known-keys files live
    /// [default: $JSYNC_CONFIG_DIR, else ~/.config/jsync]
    #[arg(long, global = true, value_name = "DIR")]
    config_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a private CA plus server and client key pairs signed by it. Existing
    /// keys are kept, never overwritten.
    Init,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let dir = cli
        .config_dir
        .unwrap_or_else(jsync::identity::default_config_dir);
    match cli.command {
        Command::Init => match jsync::identity::init(&dir) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("jsrv: {e}");
                ExitCode::from(exit::FAILURE)
            }
        },
    }
}
