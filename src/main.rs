//! The `ocimirror` command line: parses arguments, sets up logging (human
//! text on a terminal, JSON lines otherwise) and runs a command from
//! [`ocimirror::cli`].

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Mirrors OCI images between registries together with their signatures,
/// SBOMs, attestations and other referrers.
#[derive(Parser)]
#[command(name = "ocimirror", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copy one image (or every tag with --all-tags) with its referrers.
    Copy(ocimirror::cli::copy::CopyArgs),
}

fn init_tracing() {
    let filter = EnvFilter::try_from_env("OCIMIRROR_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
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
