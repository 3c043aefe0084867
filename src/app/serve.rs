//! The daemon core behind `ocimirror serve`: every job on its schedule
//! (never two runs of one job at once), the webhook receiver and its
//! worker (event-driven syncs), the API, the status page, `/metrics`,
//! `/healthz` and `/readyz` on the given listener, a drain of the runs in
//! flight (bounded by `limits.drain_timeout`) once `shutdown` is
//! cancelled, and a switch to a new configuration when one is handed in
//! (SIGHUP).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Timing};
use crate::events::queue::EventQueue;
use crate::events::worker::Worker;
use crate::metrics::Metrics;
use crate::observe::feed_events;
use crate::scheduler::{Clock, Scheduler, SystemClock};
use crate::server::{self, Health, Live, LiveState};
use crate::store::Store;
use crate::sync::{SyncOptions, Syncer};

use super::{AppError, open_store, registries};

/// Serves `config` on `listener` until `shutdown` is cancelled, then drains
/// and returns. The caller binds the listener (tests bind port 0 and read
/// the address), as in mini-redis' `run(listener, shutdown)`.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    serve_with_reloads(config, listener, shutdown, mpsc::unbounded_channel().1).await
}

/// [`serve`], switching to each configuration received on `reloads`: the
/// runs in progress drain as on shutdown (the checkpoint resumes them) and
/// the new jobs and schedules start, as after a restart, while the
/// listener, the state database and the metrics stay.
pub async fn serve_with_reloads(
    mut config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    mut reloads: mpsc::UnboundedReceiver<Config>,
) -> Result<(), AppError> {
    let health = Health::new();
    health.set_config_loaded(true);
    let metrics = Arc::new(Metrics::new()?);
    let addr = listener.local_addr().map_err(|source| AppError::Listen {
        addr: config.server.listen.to_string(),
        source,
    })?;
    tracing::info!(address = %addr, "Serving the status page, /api/v1, /webhooks, /metrics, /healthz and /readyz.");
    let live = Live::new();
    let server = tokio::spawn(server::serve_live(
        listener,
        metrics.clone(),
        health.clone(),
        live.clone(),
        shutdown.clone().cancelled_owned(),
    ));

    let store = open_store(&config).await?;
    // Events a stopped daemon left queued are failed, not forgotten: the
    // scheduled runs pick their items up.
    match store
        .fail_queued_events(
            "the daemon stopped before it was synced; the scheduled run syncs it",
            chrono::Utc::now(),
        )
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            events = n,
            "Webhook events left queued by a stopped daemon marked failed."
        ),
        Err(e) => tracing::warn!(error = %e, "Could not check for webhook events left queued."),
    }
    // The queue outlives reloads; its bounds are read once.
    let queue = Arc::new(EventQueue::new(
        config.events.queue_capacity,
        config.events.debounce,
    ));
    health.set_database_ready(true);
    health.set_scheduler_running(true);
    loop {
        let generation = shutdown.child_token();
        let mut next = None;
        {
            let run = run_jobs(&config, &metrics, &store, &queue, &live, generation.clone());
            tokio::pin!(run);
            loop {
                tokio::select! {
                    _ = &mut run => break,
                    Some(new) = reloads.recv(), if next.is_none() => {
                        next = Some(new);
                        generation.cancel();
                    }
                }
            }
        }
        match next {
            Some(new) if !shutdown.is_cancelled() => {
                config = adopt(&config, new);
                tracing::info!(jobs = config.jobs.len(), "Configuration reloaded.");
            }
            _ => break,
        }
    }
    health.set_scheduler_running(false);
    tracing::info!("Scheduler drained; stopping.");
    // The server stops on the same token; a join error only means it ended.
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    store.close().await;
    Ok(())
}

/// `new`, keeping what cannot change while running: the listener and the
/// state database (saying so when they differ).
fn adopt(old: &Config, mut new: Config) -> Config {
    if new.server.listen != old.server.listen {
        tracing::warn!(
            kept = %old.server.listen,
            "server.listen changed: it takes effect on restart."
        );
        new.server.listen = old.server.listen;
    }
    if new.state.database != old.state.database || new.state.postgres != old.state.postgres {
        tracing::warn!(
            kept = %old.state.database.display(),
            "state.database changed: it takes effect on restart."
        );
        new.state.database = old.state.database.clone();
        new.state.postgres = old.state.postgres.clone();
    }
    new
}

/// Runs the jobs of `config` on their schedules, and the event worker,
/// until `stop`, then drains; puts this generation's state in `live`.
async fn run_jobs(
    config: &Config,
    metrics: &Arc<Metrics>,
    store: &Store,
    queue: &Arc<EventQueue>,
    live: &Live,
    stop: CancellationToken,
) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    for job in &config.jobs {
        metrics.job_configured(
            &job.name,
            interval_seconds(&job.schedule.timing, clock.as_ref()),
        );
    }
    let registries = Arc::new(registries(config, Some(metrics.clone())));
    let (tx, rx) = mpsc::unbounded_channel();
    let syncer = Arc::new(
        Syncer::new(config, registries, Some(store.clone()), clock.clone())
            .with_events(tx)
            .with_metrics(metrics.clone()),
    );
    let feeder = {
        let (metrics, config) = (metrics.clone(), config.clone());
        tokio::spawn(async move { feed_events(metrics, &config, rx).await })
    };

    let (trigger, requests) = mpsc::unbounded_channel();
    let scheduler = Scheduler::from_config(clock, config)
        .with_store(store.clone())
        .with_trigger(requests);
    let jobs = Arc::new(config.jobs.clone());
    let run_token = stop.clone();
    let verify_after = config.state.verify_after;
    live.set(LiveState {
        config: Arc::new(config.clone()),
        store: store.clone(),
        queue: queue.clone(),
        trigger,
        running: scheduler.running(),
    });
    let worker = tokio::spawn(
        Worker {
            queue: queue.clone(),
            syncer: syncer.clone(),
            jobs: jobs.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            options: SyncOptions {
                verify_after,
                ..SyncOptions::default()
            },
        }
        .run(stop.clone()),
    );
    scheduler
        .run(
            move |name: String| {
                let (syncer, jobs, token) = (syncer.clone(), jobs.clone(), run_token.clone());
                let options = SyncOptions {
                    verify_after,
                    ..SyncOptions::default()
                };
                async move {
                    let Some(job) = jobs.iter().find(|j| j.name == name) else {
                        return;
                    };
                    let report = syncer.run_job(job, &options, &token).await;
                    tracing::info!(
                        job = %name,
                        result = %report.result(),
                        copied = report.counts.images_copied,
                        unchanged = report.counts.images_skipped,
                        failed = report.counts.images_failed,
                        "Job run finished."
                    );
                }
            },
            stop,
        )
        .await;
    // The worker stops on the same token, with the same grace as runs.
    let abort = worker.abort_handle();
    if tokio::time::timeout(config.limits.drain_timeout, worker)
        .await
        .is_err()
    {
        abort.abort();
    }
    feeder.abort();
}

/// The nominal interval of a schedule, for staleness alerts.
fn interval_seconds(timing: &Timing, clock: &dyn Clock) -> f64 {
    match timing {
        Timing::Interval(d) => d.as_secs_f64(),
        Timing::Cron(c) => {
            let now = clock.now();
            match c
                .next_after(now)
                .and_then(|a| c.next_after(a).map(|b| (a, b)))
            {
                Some((a, b)) => b.signed_duration_since(a).num_seconds().max(0) as f64,
                None => 0.0,
            }
        }
    }
}
