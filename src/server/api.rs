//! The JSON API, `/api/v1`: the jobs with their state (what `ocimirror
//! status` prints, from the same rows), a job's recent runs, failing items
//! and webhook events, and "run this job now" (a write: it needs
//! `server.api_token` as a bearer token).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AppState, LiveState, not_ready};
use crate::cli::output::JobStatusDoc;
use crate::cli::status::{job_doc, run_doc};
use crate::config::Job;

/// A job as the API and the page show it: `status`'s view, whether a run
/// is in progress now, and where to read more.
#[derive(Debug, Serialize)]
pub(super) struct JobView {
    #[serde(flatten)]
    pub(super) status: JobStatusDoc,
    pub(super) running: bool,
    pub(super) links: Links,
}

#[derive(Debug, Serialize)]
pub(super) struct Links {
    pub(super) runs: String,
    pub(super) failures: String,
    pub(super) events: String,
    pub(super) run_now: String,
}

/// The error document of every non-2xx answer.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn store_error(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("state database: {e}"),
    )
}

/// The view of one job, from the database rows `status` reads.
pub(super) async fn job_view(live: &LiveState, job: &Job) -> Result<JobView, Response> {
    let s = live
        .store
        .job_status(&job.name)
        .await
        .map_err(store_error)?;
    let failing = live
        .store
        .failures_for_job(&job.name)
        .await
        .map_err(store_error)?;
    let base = format!("/api/v1/jobs/{}", job.name);
    Ok(JobView {
        status: job_doc(job, &s, failing, Utc::now()),
        running: live.running.is_running(&job.name),
        links: Links {
            runs: format!("{base}/runs"),
            failures: format!("{base}/failures"),
            events: format!("{base}/events"),
            run_now: format!("{base}/run"),
        },
    })
}

fn live_job(s: &AppState, name: &str) -> Result<(Arc<LiveState>, Job), Response> {
    let live = s.live.get().ok_or_else(not_ready)?;
    let job = live.config.job(name).cloned().ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("no job named {name:?} in the configuration"),
        )
    })?;
    Ok((live, job))
}

/// `GET /api/v1/jobs`: every job.
pub(super) async fn jobs(State(s): State<AppState>) -> Response {
    let Some(live) = s.live.get() else {
        return not_ready();
    };
    let mut out = Vec::new();
    for job in &live.config.jobs {
        match job_view(&live, job).await {
            Ok(v) => out.push(v),
            Err(r) => return r,
        }
    }
    Json(json!({ "jobs": out })).into_response()
}

/// `GET /api/v1/jobs/<job>`.
pub(super) async fn job(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    let (live, job) = match live_job(&s, &name) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match job_view(&live, &job).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub(super) struct Limit {
    limit: Option<u32>,
}

/// `GET /api/v1/jobs/<job>/runs?limit=N` (default 20, at most 500).
pub(super) async fn runs(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<Limit>,
) -> Response {
    let (live, job) = match live_job(&s, &name) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let limit = q.limit.unwrap_or(20).clamp(1, 500);
    match live.store.last_runs(Some(&job.name), limit).await {
        Ok(runs) => {
            let runs: Vec<_> = runs.iter().map(run_doc).collect();
            Json(json!({ "job": job.name, "runs": runs })).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// `GET /api/v1/jobs/<job>/failures`: the items failing now, with errors.
pub(super) async fn failures(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    let (live, job) = match live_job(&s, &name) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match job_view(&live, &job).await {
        Ok(v) => Json(json!({ "job": job.name, "failing": v.status.failing })).into_response(),
        Err(r) => r,
    }
}

/// `GET /api/v1/jobs/<job>/events?limit=N`: recent webhook events and
/// what became of them.
pub(super) async fn events(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<Limit>,
) -> Response {
    let (live, job) = match live_job(&s, &name) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    match live.store.recent_events(&job.name, limit).await {
        Ok(rows) => {
            let events: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({
                        "id": r.event.id,
                        "source": r.event.source,
                        "item": r.event.item,
                        "received_at": r.event.received_at.to_rfc3339(),
                        "status": r.status,
                        "error": r.error,
                        "finished_at": r.finished_at.map(|t| t.to_rfc3339()),
                    })
                })
                .collect();
            Json(json!({ "job": job.name, "events": events })).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// `POST /api/v1/jobs/<job>/run`: starts a run now, unless one is going.
pub(super) async fn run_now(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(live) = s.live.get() else {
        return not_ready();
    };
    let Some(expected) = &live.config.server.api_token else {
        return error(
            StatusCode::FORBIDDEN,
            "the API is read-only: set server.api_token to allow writes",
        );
    };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !sent.is_some_and(|t| crate::events::auth::same_secret(t, expected.expose())) {
        return error(
            StatusCode::UNAUTHORIZED,
            "POST needs Authorization: Bearer <server.api_token>",
        );
    }
    let (live, job) = match live_job(&s, &name) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if live.running.is_running(&job.name) {
        return error(
            StatusCode::CONFLICT,
            format!("job {} is running already", job.name),
        );
    }
    if live.trigger.send(job.name.clone()).is_err() {
        return not_ready();
    }
    tracing::info!(job = %job.name, "Run requested through the API.");
    (
        StatusCode::ACCEPTED,
        Json(json!({ "job": job.name, "requested": true, "status": format!("/api/v1/jobs/{}", job.name) })),
    )
        .into_response()
}
