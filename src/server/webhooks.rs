//! `POST /webhooks/<format>/<source>`: authenticate (401), read a capped
//! body (413), parse (400), map to jobs, queue (429 when full) and record
//! every accepted event as queued; then 202. A refused request starts
//! nothing. The sender's retry on 429 or 5xx is its own.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;

use super::{AppState, not_ready};
use crate::config::WebhookFormat;
use crate::events::auth::{self, Presented};
use crate::events::mapping;
use crate::events::queue::EventId;
use crate::metrics::Rejection;
use crate::store::{AcceptedEvent, EventOutcome};

pub(super) async fn receive(
    State(s): State<AppState>,
    Path((format, source)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(format) = WebhookFormat::parse(&format) else {
        return (
            StatusCode::NOT_FOUND,
            format!("unknown webhook format {format:?}\n"),
        )
            .into_response();
    };
    let label = format.as_str();
    s.metrics.events().received(label);
    let Some(live) = s.live.get() else {
        return not_ready();
    };
    let Some(src) = live
        .config
        .events
        .sources
        .get(&source)
        .filter(|c| c.format == format)
    else {
        return (
            StatusCode::NOT_FOUND,
            format!("no {format} webhook source {source:?} in [events.sources]\n"),
        )
            .into_response();
    };
    let reject = |reason: Rejection, status: StatusCode, message: String| {
        s.metrics.events().rejected(label, reason);
        tracing::warn!(source = %source, format = label, status = status.as_u16(), error = %message, "Webhook refused.");
        (status, format!("{message}\n")).into_response()
    };
    let limit = live.config.events.max_body_bytes;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return reject(
                Rejection::TooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "webhook source {source:?}: body over {limit} bytes (events.max_body_bytes)"
                ),
            );
        }
    };
    let query: HashMap<String, String> = query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let presented = Presented {
        authorization: header(header::AUTHORIZATION.as_str()),
        query_token: query.get("token").map(String::as_str),
        signature: header(auth::signature_header(format)),
    };
    if let Err(e) = auth::verify(src, &presented, &body) {
        return reject(
            Rejection::Unauthorized,
            StatusCode::UNAUTHORIZED,
            e.to_string(),
        );
    }
    let parsed = match crate::events::parse(format, &body, header("x-github-event")) {
        Ok(p) => p,
        Err(e) => {
            return reject(
                Rejection::Malformed,
                StatusCode::BAD_REQUEST,
                format!("webhook source {source:?}: {e}"),
            );
        }
    };
    let now = Utc::now();
    let mut ignored = parsed.ignored;
    let mut accepted = 0;
    let mut items = Vec::new();
    for push in &parsed.pushes {
        let works = mapping::map(&live.config.jobs, src.registry.as_deref(), push);
        if works.is_empty() {
            tracing::debug!(source = %source, repository = %push.repository, tag = ?push.tag, "Event concerns no job.");
            ignored += 1;
            continue;
        }
        accepted += 1;
        for work in works {
            let id = EventId {
                id: format!("{:032x}", rand::random::<u128>()),
                source: source.clone(),
            };
            items.push((work, id));
        }
    }
    let rows: Vec<AcceptedEvent> = items
        .iter()
        .map(|(w, id)| AcceptedEvent {
            id: id.id.clone(),
            source: id.source.clone(),
            job: w.job.clone(),
            item: crate::events::worker::item_of(w),
            received_at: now,
        })
        .collect();
    let keys: Vec<String> = items.iter().map(|(w, _)| w.key()).collect();
    if !items.is_empty()
        && let Err(full) = live.queue.push(items, now)
    {
        let mut r = reject(
            Rejection::QueueFull,
            StatusCode::TOO_MANY_REQUESTS,
            full.to_string(),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    }
    s.metrics.events().events(label, accepted, ignored);
    s.metrics.events().queue_depth(live.queue.depth());
    for row in &rows {
        if let Err(e) = live
            .store
            .record_event(row, &EventOutcome::Queued, now)
            .await
        {
            tracing::warn!(job = %row.job, error = %e, "Could not record an accepted event.");
        }
    }
    tracing::info!(source = %source, format = label, accepted, ignored, "Webhook accepted.");
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "accepted": accepted, "ignored": ignored, "items": keys })),
    )
        .into_response()
}
