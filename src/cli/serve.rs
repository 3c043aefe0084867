//! `ocimirror serve`: binds the server listener, then runs the daemon core
//! ([`crate::app::serve`]) until SIGTERM or SIGINT.

use tokio_util::sync::CancellationToken;

use crate::app::{self, AppError};

use super::jobs::ConfigArg;

/// Arguments of `ocimirror serve`.
#[derive(Clone, Debug, clap::Args)]
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
    let result = app::serve(config, listener, shutdown.clone()).await;
    signals.abort();
    result
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
