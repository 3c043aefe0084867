//! All wiring, in one place: the config becomes adapters (one factory,
//! [`crate::registry::open::Registries`]), the copy engine's options, the
//! state store, the metrics, the scheduler and the server. The commands in
//! [`crate::cli`] and the tests call these functions; nothing else builds
//! the pieces, so every command sees a source the same way.

mod serve;
mod settings;

use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigErrors, Job};
use crate::copy::CopyEvent;
use crate::metrics::MetricsError;
use crate::registry::http::{RequestObserver, RequestStats};
use crate::registry::open::Registries;
use crate::scheduler::Clock;
use crate::store::{Store, StoreError, redact_url};
use crate::sync::{JobReport, SyncOptions, Syncer};

pub use serve::{serve, serve_with_reloads};
pub use settings::{copy_options, http_settings};

/// Why the application could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The configuration is invalid (every problem listed).
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// A job name that is not in the config.
    #[error("no job named {name:?} in {path} (jobs: {known})")]
    UnknownJob {
        /// The name given.
        name: String,
        /// Config file.
        path: String,
        /// The names there are.
        known: String,
    },
    /// The state database could not be opened or read.
    #[error("state database {path}: {source}")]
    Store {
        /// Database file.
        path: String,
        /// Cause.
        source: StoreError,
    },
    /// The server listener failed.
    #[error("server listener {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The metrics registry could not be built.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// Loads the config and picks the named jobs (all when none are named).
pub fn load_jobs(path: &Path, names: &[String]) -> Result<(Config, Vec<Job>), AppError> {
    let config = config::load(path)?;
    let mut jobs = Vec::new();
    for name in names {
        match config.job(name) {
            Some(j) => jobs.push(j.clone()),
            None => {
                return Err(AppError::UnknownJob {
                    name: name.clone(),
                    path: path.display().to_string(),
                    known: config
                        .jobs
                        .iter()
                        .map(|j| j.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    }
    if names.is_empty() {
        jobs = config.jobs.clone();
    }
    Ok((config, jobs))
}

/// The adapters of every registry the config names, one per host, with the
/// config's per-registry settings.
pub fn registries(config: &Config, observer: Option<Arc<dyn RequestObserver>>) -> Registries {
    let config = config.clone();
    let registries = Registries::new(move |host| http_settings(&config.registry(host)));
    match observer {
        Some(o) => registries.with_observer(o),
        None => registries,
    }
}

/// The state database as messages name it: the sqlite path, or the
/// PostgreSQL URL without its password.
pub fn database_name(config: &Config) -> String {
    match &config.state.postgres {
        Some(url) => redact_url(url.expose()),
        None => config.state.database.display().to_string(),
    }
}

/// Opens the state database named by the config: the PostgreSQL database
/// of its URL, or the sqlite file (creating it and its directory).
pub async fn open_store(config: &Config) -> Result<Store, AppError> {
    if let Some(url) = &config.state.postgres {
        return Store::open_postgres(url.expose())
            .await
            .map_err(|source| AppError::Store {
                path: database_name(config),
                source,
            });
    }
    if let Some(dir) = config.state.database.parent()
        && !dir.as_os_str().is_empty()
    {
        // A missing directory is reported by the open below, with the path.
        let _ = std::fs::create_dir_all(dir);
    }
    Store::open(&config.state.database)
        .await
        .map_err(|source| AppError::Store {
            path: config.state.database.display().to_string(),
            source,
        })
}

/// What a run of jobs did: the job reports, and the HTTP requests sent to
/// each registry. Derefs to the reports.
#[derive(Debug, Default)]
pub struct RunOutput {
    /// One report per job run, in run order.
    pub reports: Vec<JobReport>,
    /// Per registry host, the adapter's request counters for the whole run.
    pub requests: Vec<(String, RequestStats)>,
}

impl std::ops::Deref for RunOutput {
    type Target = [JobReport];

    fn deref(&self) -> &[JobReport] {
        &self.reports
    }
}

/// How [`run_once`] runs.
pub struct RunOnce<'a> {
    /// The jobs to run, one after another (each bounds its own concurrency;
    /// transfers are bounded globally).
    pub jobs: &'a [Job],
    /// Checkpoint use and dry run.
    pub options: SyncOptions,
    /// Every copy event, tagged with its job (progress display).
    pub events: Option<mpsc::UnboundedSender<(String, CopyEvent)>>,
    /// Stops starting new images when cancelled.
    pub cancel: CancellationToken,
    /// The clock of the checkpoints and backoff.
    pub clock: Arc<dyn Clock>,
}

/// Runs jobs once (`once`, `plan`, tests): opens the store (a plan only
/// reads an existing one, for its reasons), runs every job and closes it.
pub async fn run_once(config: &Config, run: RunOnce<'_>) -> Result<RunOutput, AppError> {
    let store = if run.options.dry_run
        && config.state.postgres.is_none()
        && !config.state.database.exists()
    {
        None
    } else {
        Some(open_store(config).await?)
    };
    let registries = Arc::new(registries(config, None));
    let mut syncer = Syncer::new(config, registries.clone(), store.clone(), run.clock);
    if let Some(tx) = run.events {
        syncer = syncer.with_events(tx);
    }
    let mut reports = Vec::new();
    for job in run.jobs {
        if run.cancel.is_cancelled() {
            break;
        }
        reports.push(syncer.run_job(job, &run.options, &run.cancel).await);
    }
    drop(syncer);
    if let Some(s) = store {
        s.close().await;
    }
    Ok(RunOutput {
        reports,
        requests: registries.request_stats(),
    })
}
