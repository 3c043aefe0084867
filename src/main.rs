//! The `ocimirror` command line: parses arguments, sets up logging (human
//! text on a terminal, JSON lines otherwise) and runs a command from
//! [`ocimirror::cli`].

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use ocimirror::cli::exit;
use ocimirror::cli::output::{Output, OutputFormat, RunDoc};
use ocimirror::logging::{self, LogFormat};

/// `ocimirror --version`: the release, the commit and the build date (see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("OCIMIRROR_COMMIT"),
    " ",
    env!("OCIMIRROR_BUILD_DATE"),
    ")"
);

/// Mirrors OCI images between registries together with their signatures,
/// SBOMs, attestations and other referrers.
#[derive(Parser)]
#[command(
    name = "ocimirror",
    version = VERSION,
    about,
    after_help = "\
Exit status:
  0   everything asked for is on the target (or the command succeeded)
  1   partial failure: some images failed or are still backing off; the rest were copied
  2   usage error: bad arguments or flags
  3   fatal: the command could not run (database, listener, registry unreachable at start)
  78  invalid configuration (every problem is listed), or a job name it does not have"
)]
struct Cli {
    /// Log format: auto (text on a terminal, JSON otherwise), text or json
    /// [default: the config's log.format, else auto].
    #[arg(long, global = true)]
    log_format: Option<LogFormat>,
    /// Log level or filter (`RUST_LOG` wins when set) [default: the config's
    /// log.level, else info].
    #[arg(long, global = true, env = "OCIMIRROR_LOG")]
    log_level: Option<String>,
    /// Result format on stdout for copy, once, plan and status: text, or
    /// json (one document; fields in the README).
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
    /// Print no result when the command succeeds (and log only errors,
    /// unless --log-level says otherwise); the exit status is unchanged.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copy one image (or every tag with --all-tags) with its referrers.
    Copy(Box<ocimirror::cli::copy::CopyArgs>),
    /// Run every job of a config file on its schedule, with /metrics, /healthz and /readyz.
    Serve(ocimirror::cli::serve::ServeArgs),
    /// Run the jobs of a config file once, then exit (non-zero if anything failed).
    Once(ocimirror::cli::jobs::RunArgs),
    /// Show what the jobs would copy, skip or convert, and why; writes nothing.
    Plan(ocimirror::cli::jobs::RunArgs),
    /// Per job: last run, result, counts, failures and next retry.
    Status(ocimirror::cli::status::StatusArgs),
    /// Check or show the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write a seeded corpus of images with referrers (demo, benchmarks).
    Generate(ocimirror::cli::generate::GenerateArgs),
    /// Compare target and source without trusting the checkpoint; list what differs (exit 1 if anything).
    #[command(visible_alias = "diff")]
    Verify(Box<ocimirror::cli::verify::VerifyArgs>),
    /// Print a shell completion script (e.g. `ocimirror completions bash > /etc/bash_completion.d/ocimirror`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page ocimirror(1) in roff (`ocimirror man | man -l -`), or write it
    /// and one page per subcommand to a directory.
    Man {
        /// Write ocimirror.1, ocimirror-copy.1, ... into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration; every problem is listed.
    Check(ocimirror::cli::jobs::ConfigArg),
    /// Print the resolved configuration with secrets redacted.
    Show(ocimirror::cli::jobs::ConfigArg),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that read a config take its log settings unless flags say otherwise.
    let configured = config_path(&cli.command)
        .and_then(|p| ocimirror::config::load(p).ok())
        .map(|c| (c.log.format, c.log.level));
    let format = cli
        .log_format
        .or(configured.as_ref().map(|c| c.0))
        .unwrap_or(LogFormat::Auto);
    let level = cli
        .log_level
        .clone()
        .or_else(|| cli.quiet.then(|| "error".to_string()))
        .or(configured.map(|c| c.1))
        .unwrap_or_else(|| "info".to_string());
    if let Err(e) = logging::init_with(format, &level, ocimirror::cli::progress::LogWriter) {
        eprintln!("error: {e}");
        return ExitCode::from(exit::USAGE);
    }
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            // Our errors carry their causes in their own message: print it
            // once, not once more per source in the chain.
            eprintln!("error: {e}");
            ExitCode::from(exit::for_error(&e))
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let output = Output {
        format: cli.output,
        quiet: cli.quiet,
    };
    match cli.command {
        Command::Copy(mut args) => {
            args.no_progress |= cli.quiet;
            let outcome = ocimirror::cli::copy::run(&args).await?;
            let ok = outcome.is_success();
            print!(
                "{}",
                output.render(
                    ok,
                    || ocimirror::cli::copy::document(&outcome),
                    || format!("{}\n", ocimirror::cli::copy::summary(&outcome)),
                )
            );
            Ok(exit_code(ok))
        }
        Command::Serve(args) => {
            ocimirror::cli::serve::run(&args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Once(mut args) => {
            args.no_progress |= cli.quiet;
            let reports = ocimirror::cli::jobs::run(&args, false).await?;
            let ok = ocimirror::cli::jobs::all_succeeded(&reports);
            print!(
                "{}",
                output.render(
                    ok,
                    || RunDoc::new(&reports, false),
                    || ocimirror::cli::jobs::summary(&reports),
                )
            );
            Ok(exit_code(ok))
        }
        Command::Plan(args) => {
            let reports = ocimirror::cli::jobs::run(&args, true).await?;
            let ok = ocimirror::cli::jobs::all_succeeded(&reports);
            print!(
                "{}",
                output.render(
                    ok,
                    || RunDoc::new(&reports, true),
                    || ocimirror::cli::jobs::plan_text(&reports),
                )
            );
            Ok(exit_code(ok))
        }
        Command::Status(args) => {
            let doc = ocimirror::cli::status::status(&args).await?;
            print!(
                "{}",
                output.render(true, || &doc, || ocimirror::cli::status::status_text(&doc))
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check(args)) => {
            let report = ocimirror::config::check(&args.config);
            println!("{}", report.text.trim_end());
            Ok(ExitCode::from(report.exit_code))
        }
        Command::Config(ConfigCommand::Show(args)) => {
            print!("{}", ocimirror::config::show(&args.config)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(args) => {
            let report = ocimirror::cli::verify::run(&args).await?;
            print!("{}", report.text());
            Ok(exit_code(report.is_complete()))
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "ocimirror",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir: Some(dir) } => {
            clap_mangen::generate_to(Cli::command(), &dir)
                .map_err(|e| anyhow::anyhow!("cannot write man pages to {}: {e}", dir.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir: None } => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) if args.add_signature => {
            let digest = ocimirror::cli::generate::add_signature(&args).await?;
            println!("Signed {} with {digest}.", args.dest);
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => {
            let r = ocimirror::cli::generate::run(&args).await?;
            println!(
                "Generated {} images: {} manifests ({} referrers), {} blobs, {} bytes.",
                r.images.len(),
                r.manifests,
                r.referrers,
                r.blobs,
                r.bytes
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn exit_code(ok: bool) -> ExitCode {
    ExitCode::from(if ok { exit::SUCCESS } else { exit::PARTIAL })
}

fn config_path(command: &Command) -> Option<&std::path::Path> {
    match command {
        Command::Serve(a) => Some(&a.config.config),
        Command::Once(a) | Command::Plan(a) => Some(&a.config.config),
        Command::Status(a) => Some(&a.config.config),
        Command::Verify(a) => a.config.as_deref(),
        Command::Copy(a) => a.access.config.as_deref(),
        _ => None,
    }
}
