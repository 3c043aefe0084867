//! The `ocimirror` command line: parses arguments, sets up logging (human
//! text on a terminal, JSON lines otherwise) and runs a command from
//! [`ocimirror::cli`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ocimirror::logging::{self, LogFormat};

/// Mirrors OCI images between registries together with their signatures,
/// SBOMs, attestations and other referrers.
#[derive(Parser)]
#[command(name = "ocimirror", version, about)]
struct Cli {
    /// Log format: auto (text on a terminal, JSON otherwise), text or json.
    #[arg(long, global = true, default_value = "auto")]
    log_format: LogFormat,
    /// Log level or filter (`RUST_LOG` wins when set).
    #[arg(long, global = true, env = "OCIMIRROR_LOG", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copy one image (or every tag with --all-tags) with its referrers.
    Copy(ocimirror::cli::copy::CopyArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format, &cli.log_level) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Copy(args) => {
            let outcome = ocimirror::cli::copy::run(&args).await?;
            println!("{}", ocimirror::cli::copy::summary(&outcome));
            Ok(if outcome.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
