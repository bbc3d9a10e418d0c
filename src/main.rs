//! The `depot` binary: parses the command line and calls the library.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "depot",
    version,
    about = "Call-recording ingestion server (SFTP in, conversations out)"
)]
struct Cli {
    /// Server settings file.
    #[arg(long, global = true, default_value = "config/depot.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the SFTP server and the ingestion pipeline.
    Serve,
    /// Validate every configuration file; print host-key fingerprints.
    CheckConfig {
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Read a password on stdin and print its argon2id hash.
    HashPassword,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => depot::cli::serve::run(&cli.config).map(|_| true),
        Command::CheckConfig { json } => depot::cli::check_config::run(&cli.config, json),
        Command::HashPassword => depot::cli::hash_password::run().map(|_| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
