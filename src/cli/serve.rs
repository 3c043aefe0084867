//! `ocimirror serve`: binds the server listener, then runs the daemon core
//! ([`crate::app::serve_with_reloads`]) until SIGTERM or SIGINT, re-reading
//! the configuration on SIGHUP.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

use crate::app::{self, AppError};

use super::jobs::ConfigArg;

/// Arguments of `ocimirror serve`.
#[derive(Clone, Debug, clap::Args)]
#[command(after_help = "\
Signals: SIGTERM and SIGINT drain the runs in progress (up to limits.drain_timeout) and
exit 0. SIGHUP re-reads and validates the config file: an invalid one is logged at ERROR
with every problem and the running one is kept; a valid one drains the runs in progress
(the checkpoint resumes them) and starts the new jobs and schedules, as a restart would,
keeping the listener, metrics and state database (server.listen and state.database
changes need a restart).")]
pub struct ServeArgs {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Address for /metrics, /healthz and /readyz, overriding the config's server.listen.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
}

/// Runs until SIGTERM or SIGINT, then drains and returns.
pub async fn run(args: &ServeArgs) -> Result<(), AppError> {
    let (mut config, _) = app::load_jobs(&args.config.config, &[])?;
    let origin = match args.listen {
        Some(addr) => {
            config.server.listen = addr;
            "--listen"
        }
        None => "server.listen",
    };
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| AppError::Listen {
            addr: format!("{} ({origin})", config.server.listen),
            source,
        })?;
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(wait_for_signal(shutdown.clone()));
    let (tx, rx) = mpsc::unbounded_channel();
    let reloads = tokio::spawn(reload_on_sighup(args.clone(), tx));
    let result = app::serve_with_reloads(config, listener, shutdown.clone(), rx).await;
    signals.abort();
    reloads.abort();
    result
}

/// On every SIGHUP, re-reads the config file and hands a valid config to
/// `tx` (with `--listen` applied again); an invalid one is logged and the
/// running one kept.
async fn reload_on_sighup(args: ServeArgs, tx: mpsc::UnboundedSender<Config>) {
    let path = &args.config.config;
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("Cannot install a SIGHUP handler; restart to apply config changes.");
            return;
        };
        while hup.recv().await.is_some() {
            match app::load_jobs(path, &[]) {
                Ok((mut config, _)) => {
                    if let Some(addr) = args.listen {
                        config.server.listen = addr;
                    }
                    tracing::info!(path = %path.display(), "SIGHUP: configuration valid; switching to it.");
                    if tx.send(config).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::error!(
                    path = %path.display(),
                    error = %e,
                    "SIGHUP: configuration invalid; keeping the running one."
                ),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, tx, args.listen);
    }
}

async fn wait_for_signal(token: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("Cannot install signal handlers; stop with SIGKILL.");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received: draining."),
            _ = int.recv() => tracing::info!("SIGINT received: draining."),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    token.cancel();
}
