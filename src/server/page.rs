//! The status page at `/`: one server-rendered HTML document (no script,
//! no front-end build), readable on a phone, refreshing itself every
//! [`REFRESH_SECONDS`]: every job with its last run, result, lag, next run
//! and failing items, and links to the API.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::api::{JobView, job_view};
use super::{AppState, not_ready};

/// How often the page reloads itself.
pub const REFRESH_SECONDS: u32 = 10;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;padding:1rem;background:#f6f7f9;color:#1d2430}\
h1{font-size:1.3rem;margin:0 0 .25rem}.meta{color:#5b6575;font-size:.85rem;margin-bottom:1rem}\
.job{background:#fff;border:1px solid #dde2ea;border-radius:8px;padding:.75rem 1rem;margin-bottom:1rem;max-width:60rem}\
.job h2{font-size:1.1rem;margin:0 0 .5rem;display:flex;gap:.5rem;align-items:center;flex-wrap:wrap}\
.badge{font-size:.75rem;padding:.1rem .5rem;border-radius:99px;color:#fff;background:#6b7280}\
.success{background:#15803d}.partial{background:#b45309}.failed,.interrupted{background:#b91c1c}.running{background:#1d4ed8}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .75rem;margin:0;font-size:.9rem}dt{color:#5b6575}dd{margin:0;overflow-wrap:anywhere}\
ul.failing{margin:.5rem 0 0;padding-left:1.2rem;font-size:.85rem}ul.failing li{margin-bottom:.3rem;overflow-wrap:anywhere}\
.err{color:#b91c1c}nav a{margin-right:.75rem;font-size:.85rem}";

/// `GET /`.
pub(super) async fn status_page(State(s): State<AppState>) -> Response {
    let Some(live) = s.live.get() else {
        return not_ready();
    };
    let mut views = Vec::new();
    for job in &live.config.jobs {
        match job_view(&live, job).await {
            Ok(v) => views.push(v),
            Err(_) => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the state database could not be read\n",
                )
                    .into_response();
            }
        }
    }
    let html = render(&views, live.queue.depth(), Utc::now());
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// The page for `jobs` at `now`.
fn render(jobs: &[JobView], queued: usize, now: DateTime<Utc>) -> String {
    let mut h = String::with_capacity(4096);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>ocimirror status</title><style>{STYLE}</style></head><body>\
         <h1>ocimirror</h1><div class=\"meta\">{} jobs · {queued} webhook items queued · \
         updated {} · refreshes every {REFRESH_SECONDS} s · \
         <a href=\"/api/v1/jobs\">API</a> · <a href=\"/metrics\">metrics</a></div>",
        jobs.len(),
        now.format("%Y-%m-%d %H:%M:%S UTC"),
    );
    for j in jobs {
        job_section(&mut h, j, now);
    }
    h.push_str("</body></html>\n");
    h
}

fn job_section(h: &mut String, j: &JobView, now: DateTime<Utc>) {
    let s = &j.status;
    let result = if j.running {
        "running".to_string()
    } else {
        s.last_run
            .as_ref()
            .map_or_else(|| "never run".to_string(), |r| r.result.clone())
    };
    let class = result.split_whitespace().next().unwrap_or("");
    let _ = write!(
        h,
        "<section class=\"job\" id=\"job-{name}\"><h2>{name} <span class=\"badge {class}\">{result}</span></h2><dl>",
        name = esc(&s.name),
        class = esc(class),
        result = esc(&result),
    );
    let row = |h: &mut String, k: &str, v: &str| {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    };
    match &s.last_run {
        Some(r) => {
            row(
                h,
                "last run",
                &format!("#{} started {}", r.id, ago(&r.started_at, now)),
            );
            let c = &r.counts;
            row(
                h,
                "result",
                &format!(
                    "{} · {} copied, {} unchanged, {} failed",
                    r.result, c.images_copied, c.images_unchanged, c.images_failed
                ),
            );
            if let Some(e) = &r.error {
                let _ = write!(h, "<dt>last error</dt><dd class=\"err\">{}</dd>", esc(e));
            }
        }
        None => row(h, "last run", "never"),
    }
    row(
        h,
        "last success",
        &s.last_success
            .as_deref()
            .map_or_else(|| "never".to_string(), |t| ago(t, now)),
    );
    row(h, "lag", &lag(j, now));
    row(h, "tags synced", &s.tags_synced.to_string());
    row(h, "next run", &s.next_run);
    row(h, "failing", &s.failing.len().to_string());
    h.push_str("</dl>");
    if !s.failing.is_empty() {
        h.push_str("<ul class=\"failing\">");
        for f in &s.failing {
            let _ = write!(
                h,
                "<li><b>{}</b>: <span class=\"err\">{}</span> ({} attempts)</li>",
                esc(&f.item),
                esc(&f.error),
                f.attempts
            );
        }
        h.push_str("</ul>");
    }
    let l = &j.links;
    let _ = write!(
        h,
        "<nav><a href=\"{}\">runs</a><a href=\"{}\">failures</a><a href=\"{}\">events</a></nav></section>",
        esc(&l.runs),
        esc(&l.failures),
        esc(&l.events)
    );
}

/// Mirror lag: how long the oldest failing item has been behind.
fn lag(j: &JobView, now: DateTime<Utc>) -> String {
    j.status
        .failing
        .iter()
        .filter_map(|f| DateTime::parse_from_rfc3339(&f.first_failed_at).ok())
        .min()
        .map_or_else(
            || "none (up to date)".to_string(),
            |t| format!("behind since {}", ago(&t.to_rfc3339(), now)),
        )
}

/// `3 min ago (2026-11-30 06:00:00 UTC)`.
fn ago(rfc3339: &str, now: DateTime<Utc>) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(rfc3339) else {
        return rfc3339.to_string();
    };
    let t = t.with_timezone(&Utc);
    let secs = now.signed_duration_since(t).num_seconds().max(0);
    let rel = match secs {
        0..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86400 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86400),
    };
    format!("{rel} ({})", t.format("%Y-%m-%d %H:%M:%S UTC"))
}

/// HTML-escapes text (job names, items and errors come from config and
/// registries).
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_registries_is_escaped() {
        assert_eq!(esc("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
    }
}
