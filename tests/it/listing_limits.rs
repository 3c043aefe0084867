//! Hostile listings: a `Link` chain whose URLs never repeat but whose pages
//! bring nothing new, and names that fail the tag or repository grammar.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use ocimirror::registry::http::{DockerConfigSource, HttpRegistry, HttpSettings};
use ocimirror::registry::{ErrorKind, Operation, Registry};
use serde_json::json;

use crate::support::values::repo;

/// A registry whose tags of `loop` page for ever with ever new URLs, whose
/// tags of `bad` and whose catalog hold names no registry may hold.
async fn start() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let app = Router::new()
        .route("/v2/", get(|| async { "{}" }))
        .route(
            "/v2/loop/tags/list",
            get(
                |State(host): State<String>, RawQuery(q): RawQuery| async move {
                    let n: u64 = q
                        .as_deref()
                        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("page=")))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    let mut h = HeaderMap::new();
                    let link = format!(
                        "<http://{host}/v2/loop/tags/list?page={}>; rel=\"next\"",
                        n + 1
                    );
                    h.insert(header::LINK, link.parse().unwrap());
                    (h, axum::Json(json!({"name":"loop","tags":["a","b"]}))).into_response()
                },
            ),
        )
        .route(
            "/v2/bad/tags/list",
            get(|| async {
                axum::Json(json!({"name":"bad","tags":[
                    "v1", "bad tag", "../../etc", "-x", "\u{1b}[31mred", "v2"
                ]}))
            }),
        )
        .route(
            "/v2/_catalog",
            get(|| async {
                axum::Json(json!({"repositories":[
                    "team/app", "UPPER/case", "a//b", "../escape", "team/app"
                ]}))
            }),
        )
        .with_state(host.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (host, task)
}

fn client(host: &str) -> HttpRegistry {
    HttpRegistry::new(
        host,
        HttpSettings {
            docker_config: DockerConfigSource::Off,
            ..HttpSettings::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn a_link_chain_that_brings_nothing_new_is_a_named_loop() {
    let (host, task) = start().await;
    let r = client(&host);
    let e = r.tags(&repo("loop")).await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::InvalidResponse(_)), "{e}");
    assert!(e.to_string().contains("no progress"), "{e}");
    assert!(e.to_string().contains("loop"), "{e}");
    // Page 1 brought a and b, page 2 nothing new: two requests, not 10 000.
    assert_eq!(r.stats().requests(Operation::TagList), 2);
    task.abort();
}

#[tokio::test]
async fn names_that_fail_the_grammar_are_dropped_at_parse_time() {
    let (host, task) = start().await;
    let r = client(&host);
    assert_eq!(r.tags(&repo("bad")).await.unwrap(), ["v1", "v2"]);
    // Duplicates and invalid repository names are gone too.
    assert_eq!(r.catalog().await.unwrap(), ["team/app"]);
    task.abort();
}
