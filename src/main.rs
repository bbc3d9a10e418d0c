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
    /// Show what a file name would yield for an account, or why it is rejected.
    CheckName {
        #[arg(long)]
        account: String,
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List conversations.
    Conversations {
        #[arg(long)]
        account: Option<String>,
        /// Received on or after (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        picked: Option<bool>,
        /// ingested, awaiting_metadata or superseded.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        limit: Option<u64>,
        #[command(flatten)]
        out: Out,
    },
    /// Show one conversation, whole (JSON).
    Conversation { id: i64 },
    /// List advisors.
    Advisors {
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        out: Out,
    },
    /// List CRM snapshots (the latest is the one calls are joined with).
    Crm {
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        out: Out,
    },
    /// List open rejections.
    Rejections {
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        out: Out,
    },
    /// Ingest local files or directory trees as if they had been uploaded.
    Import {
        #[arg(long)]
        account: String,
        /// Directory in the account's jail (default: its audio.dir).
        #[arg(long)]
        to: Option<String>,
        /// Files or directories; paths under a directory are kept.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Run the pipeline again over deposits already received.
    Reprocess {
        #[arg(long)]
        account: Option<String>,
        /// Every deposit whose latest rejection is still open.
        #[arg(long, required_unless_present = "ids")]
        rejected: bool,
        /// Take picking decisions again (with conversation IDs).
        #[arg(long)]
        repick: bool,
        /// Conversation ids: run each again with the account's current settings.
        ids: Vec<i64>,
    },
    /// API tokens for the HTTP server.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Webhook endpoints: delivery state, and re-delivery of parked events.
    Webhooks {
        #[command(subcommand)]
        command: Option<WebhooksCommand>,
        #[arg(long)]
        json: bool,
    },
    /// Counters: sessions, bytes, completions, conversations, rejections by stage.
    Stats {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Deliver the endpoint's parked events again.
    Retry { name: String },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a random token; print it once and its tokens-file entry.
    New {
        /// Who uses it (shown in the log).
        #[arg(long)]
        name: String,
        /// read or admin.
        #[arg(long, default_value = "read")]
        scope: String,
        /// The only account it sees (read tokens).
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct Out {
    /// One JSON document.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// CSV with a header row.
    #[arg(long)]
    csv: bool,
}

impl Out {
    fn format(&self) -> depot::cli::output::Format {
        depot::cli::output::Format::from_flags(self.json, self.csv)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => depot::cli::serve::run(&cli.config).map(|_| true),
        Command::CheckConfig { json } => depot::cli::check_config::run(&cli.config, json),
        Command::HashPassword => depot::cli::hash_password::run().map(|_| true),
        Command::CheckName {
            account,
            name,
            json,
        } => depot::cli::check_name::run(&cli.config, &account, &name, json),
        Command::Conversations {
            account,
            since,
            picked,
            status,
            limit,
            out,
        } => {
            let filter = depot::store::queries::ConversationFilter {
                account,
                since,
                picked,
                status,
                limit,
            };
            depot::cli::listings::conversations(&cli.config, &filter, out.format()).map(|_| true)
        }
        Command::Conversation { id } => depot::cli::listings::conversation(&cli.config, id),
        Command::Advisors { account, out } => {
            depot::cli::listings::advisors(&cli.config, account.as_deref(), out.format())
                .map(|_| true)
        }
        Command::Import { account, to, paths } => {
            depot::cli::import::run(&cli.config, &account, to.as_deref(), &paths)
        }
        Command::Reprocess {
            account,
            rejected,
            repick,
            ids,
        } => depot::cli::reprocess::run(&cli.config, account.as_deref(), rejected, repick, &ids),
        Command::Token {
            command:
                TokenCommand::New {
                    name,
                    scope,
                    account,
                    json,
                },
        } => depot::cli::token::new(&name, &scope, account.as_deref(), json).map(|_| true),
        Command::Webhooks { command, json } => match command {
            None => depot::cli::webhooks::list(&cli.config, json).map(|_| true),
            Some(WebhooksCommand::Retry { name }) => {
                depot::cli::webhooks::retry(&cli.config, &name).map(|_| true)
            }
        },
        Command::Stats { json } => depot::cli::stats::run(&cli.config, json).map(|_| true),
        Command::Crm { account, out } => {
            depot::cli::listings::crm(&cli.config, account.as_deref(), out.format()).map(|_| true)
        }
        Command::Rejections {
            account,
            since,
            out,
        } => depot::cli::listings::rejections(
            &cli.config,
            account.as_deref(),
            since.as_deref(),
            out.format(),
        )
        .map(|_| true),
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
