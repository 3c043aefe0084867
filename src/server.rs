//! The operator endpoints: `/metrics`, `/healthz` and `/readyz`.
//!
//! They are served on their own listener, separate from anything else the
//! daemon might serve, so that metrics are never exposed publicly by
//! accident (atuin's `launch_metrics_server` does the same).
//!
//! Imports only [`crate::metrics`].

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::{self, Metrics};

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
}

/// The router with `/metrics`, `/healthz` and `/readyz`, for callers that
/// bring their own server.
pub fn router(metrics: Arc<Metrics>, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(AppState { metrics, health })
}

/// Serves the endpoints on `listener` until `shutdown` completes, then
/// finishes the requests in flight and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router(metrics, health))
        .with_graceful_shutdown(shutdown)
        .await
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
