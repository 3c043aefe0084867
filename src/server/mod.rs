//! The daemon's HTTP endpoints, on the `server.listen` listener:
//! `/metrics`, `/healthz` and `/readyz` here; the webhook receiver
//! ([`webhooks`], `POST /webhooks/<format>/<source>`), the JSON API
//! ([`api`], `/api/v1/...`) and the status page ([`page`], `/`).
//!
//! The listener is the operator's (metrics are never exposed publicly by
//! accident, as with atuin's `launch_metrics_server`): expose only the
//! webhook paths through a reverse proxy.
//!
//! Imports `metrics`, `events`, `store`, `config` and `scheduler` (types),
//! and `cli::status` for the job view `ocimirror status` prints.

mod api;
mod page;
mod webhooks;

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::events::queue::EventQueue;
use crate::metrics::{self, Metrics};
use crate::scheduler::RunningJobs;
use crate::store::Store;

/// What the webhook receiver, the API and the page read from the running
/// daemon. Replaced on every configuration reload.
pub struct LiveState {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// The state database.
    pub store: Store,
    /// The event queue (outlives reloads).
    pub queue: Arc<EventQueue>,
    /// "Run this job now": job names to the scheduler.
    pub trigger: mpsc::UnboundedSender<String>,
    /// Jobs with a run in progress.
    pub running: RunningJobs,
}

/// A shared slot for the [`LiveState`]: empty until the daemon has opened
/// its database (the endpoints answer 503 until then).
#[derive(Clone, Default)]
pub struct Live {
    inner: Arc<RwLock<Option<Arc<LiveState>>>>,
}

impl Live {
    /// An empty slot.
    pub fn new() -> Self {
        Live::default()
    }

    /// Puts `state` in force (start-up, reload).
    pub fn set(&self, state: LiveState) {
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(state));
    }

    /// The state in force, if any.
    pub fn get(&self) -> Option<Arc<LiveState>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Readiness of the daemon: a cheap clonable handle; every clone sees the
/// same state. Everything starts not ready.
#[derive(Clone, Debug, Default)]
pub struct Health {
    inner: Arc<HealthState>,
}

#[derive(Debug, Default)]
struct HealthState {
    config_loaded: AtomicBool,
    database_ready: AtomicBool,
    scheduler_running: AtomicBool,
}

impl Health {
    /// A handle on which nothing is ready yet.
    pub fn new() -> Health {
        Health::default()
    }

    /// The configuration was loaded and validated.
    pub fn set_config_loaded(&self, ready: bool) {
        self.inner.config_loaded.store(ready, Ordering::Relaxed);
    }

    /// The database is open and migrated.
    pub fn set_database_ready(&self, ready: bool) {
        self.inner.database_ready.store(ready, Ordering::Relaxed);
    }

    /// The scheduler runs (set back to false when it stops for shutdown).
    pub fn set_scheduler_running(&self, running: bool) {
        self.inner
            .scheduler_running
            .store(running, Ordering::Relaxed);
    }

    /// `Ok` when everything is ready, else the names of what is not.
    pub fn readiness(&self) -> Result<(), Vec<&'static str>> {
        let s = &self.inner;
        let missing: Vec<&'static str> = [
            (&s.config_loaded, "config not loaded"),
            (&s.database_ready, "database not ready"),
            (&s.scheduler_running, "scheduler not running"),
        ]
        .into_iter()
        .filter(|(flag, _)| !flag.load(Ordering::Relaxed))
        .map(|(_, what)| what)
        .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing)
        }
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Health,
    live: Live,
}

/// The router with every endpoint, for callers that bring their own server.
pub fn router(metrics: Arc<Metrics>, health: Health, live: Live) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .route("/webhooks/{format}/{source}", post(webhooks::receive))
        .route("/api/v1/jobs", get(api::jobs))
        .route("/api/v1/jobs/{job}", get(api::job))
        .route("/api/v1/jobs/{job}/runs", get(api::runs))
        .route("/api/v1/jobs/{job}/failures", get(api::failures))
        .route("/api/v1/jobs/{job}/events", get(api::events))
        .route("/api/v1/jobs/{job}/run", post(api::run_now))
        .route("/", get(page::status_page))
        .with_state(AppState {
            metrics,
            health,
            live,
        })
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` (the other
/// endpoints answer 503: no daemon state) until `shutdown` completes, then
/// finishes the requests in flight and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_live(listener, metrics, health, Live::new(), shutdown).await
}

/// [`serve`] with the daemon's [`Live`] state behind the webhook, API and
/// page endpoints.
pub async fn serve_live(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
    live: Live,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router(metrics, health, live))
        .with_graceful_shutdown(shutdown)
        .await
}

/// 503 while the daemon has no state yet (starting, or only metrics).
fn not_ready() -> axum::response::Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the daemon is starting: no state database yet\n",
    )
        .into_response()
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        s.metrics.render(),
    )
}

async fn ready_handler(State(s): State<AppState>) -> impl IntoResponse {
    match s.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(missing) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", missing.join(", ")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_what_is_missing() {
        let h = Health::new();
        assert_eq!(
            h.readiness(),
            Err(vec![
                "config not loaded",
                "database not ready",
                "scheduler not running"
            ])
        );
        let clone = h.clone();
        clone.set_config_loaded(true);
        clone.set_scheduler_running(true);
        assert_eq!(h.readiness(), Err(vec!["database not ready"]));
        h.set_database_ready(true);
        assert_eq!(clone.readiness(), Ok(()));
        h.set_scheduler_running(false);
        assert_eq!(clone.readiness(), Err(vec!["scheduler not running"]));
    }
}
