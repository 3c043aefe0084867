//! A registry with quirks (a hand-written fake).

use super::*;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

const ZERO: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fn the_manifest() -> Manifest {
    image_manifest(b"{\"quirk\":1}", &[b"quirky layer"], None)
}

/// A registry that rewrites manifests (wrong Docker-Content-Digest on
/// PUT), answers HEAD without type or digest, pages tags with absolute
/// Links, errors with HTML, and throttles with an HTTP-date Retry-After.
async fn start() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let throttled = Arc::new(Mutex::new(false));
    let app = Router::new()
        .route("/v2/", get(|| async { StatusCode::OK }))
        .route(
            "/v2/app/manifests/{reference}",
            get(|| async {
                let m = the_manifest();
                ([(header::CONTENT_TYPE, OCI_MANIFEST)], m.bytes().clone()).into_response()
            })
            .head(|| async { StatusCode::OK })
            .put(|| async {
                (StatusCode::CREATED, [("docker-content-digest", ZERO)]).into_response()
            }),
        )
        .route(
            "/v2/app/tags/list",
            get(
                |State(host): State<String>, RawQuery(q): RawQuery| async move {
                    let q = q.unwrap_or_default();
                    if q.contains("page=2") {
                        return axum::Json(json!({"name":"app","tags":["c"]})).into_response();
                    }
                    let mut h = HeaderMap::new();
                    let link = format!("<http://{host}/v2/app/tags/list?page=2>; rel=\"next\"");
                    h.insert(header::LINK, link.parse().unwrap());
                    (h, axum::Json(json!({"name":"app","tags":["a","b"]}))).into_response()
                },
            ),
        )
        .route(
            "/v2/html/tags/list",
            get(|| async {
                (
                    StatusCode::BAD_GATEWAY,
                    Html("<html><body>upstream token=abc bad gateway</body></html>"),
                )
            }),
        )
        .route(
            "/v2/slow/tags/list",
            get(move || {
                let throttled = throttled.clone();
                async move {
                    let mut t = throttled.lock().unwrap();
                    if !*t {
                        *t = true;
                        let when = httpdate::fmt_http_date(SystemTime::now());
                        return Response::builder()
                            .status(503)
                            .header("retry-after", when)
                            .body(axum::body::Body::from(
                                "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"later\"}]}",
                            ))
                            .unwrap();
                    }
                    axum::Json(json!({"name":"slow","tags":["x"]})).into_response()
                }
            }),
        )
        .with_state(host.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (host, task)
}

fn client_for(host: &str) -> HttpRegistry {
    HttpRegistry::new(host, settings()).unwrap()
}

#[tokio::test]
async fn rewritten_manifest_fails_loudly() {
    let (host, task) = start().await;
    let r = client_for(&host);
    let m = the_manifest();
    let e = r
        .manifest_put(&repo("app"), &tag("v1"), &m, Precondition::None)
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::InvalidResponse(_)), "{e}");
    assert!(e.to_string().contains(ZERO) && e.to_string().contains(&m.digest().to_string()));
    task.abort();
}

#[tokio::test]
async fn incomplete_head_falls_back_to_a_verified_get() {
    let (host, task) = start().await;
    let r = client_for(&host);
    let m = the_manifest();
    let d = r
        .manifest_head(&repo("app"), &tag("v1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d, m.descriptor());
    assert_eq!(r.stats().requests(Operation::ManifestGet), 1);
    task.abort();
}

#[tokio::test]
async fn absolute_links_html_errors_and_http_date_retry_after() {
    let (host, task) = start().await;
    let r = client_for(&host);
    assert_eq!(r.tags(&repo("app")).await.unwrap(), ["a", "b", "c"]);
    let e = r.tags(&repo("html")).await.unwrap_err();
    match &e.kind {
        ErrorKind::Status {
            status,
            codes,
            message,
            ..
        } => {
            assert_eq!(*status, 502);
            assert!(
                codes.is_empty() && message.is_empty(),
                "HTML is not echoed: {e}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!e.to_string().contains("token=abc"));
    assert_eq!(r.tags(&repo("slow")).await.unwrap(), ["x"]);
    assert!(r.stats().retries >= 2, "502 retried, 503 retried");
    task.abort();
}

/// An OAuth2 token server: identity tokens are exchanged with the
/// refresh_token grant (POST form), never sent to the registry itself.
#[tokio::test]
async fn identity_token_uses_the_oauth2_refresh_grant() {
    use axum::routing::post;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let challenge = format!("Bearer realm=\"http://{host}/oauth\",service=\"svc\"");
    let ch2 = challenge.clone();
    let seen2 = seen.clone();
    let app = Router::new()
        .route(
            "/v2/",
            get(move || {
                let c = challenge.clone();
                async move { (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, c)]) }
            }),
        )
        .route(
            "/v2/idt/tags/list",
            get(move |h: HeaderMap| {
                let c = ch2.clone();
                async move {
                    if h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
                        == Some("Bearer access-1")
                    {
                        axum::Json(json!({"name":"idt","tags":["ok"]})).into_response()
                    } else {
                        (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, c)]).into_response()
                    }
                }
            }),
        )
        .route(
            "/oauth",
            post(move |body: String| {
                seen2.lock().unwrap().push(body);
                async { axum::Json(json!({"access_token":"access-1","expires_in":300})) }
            }),
        );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let r = HttpRegistry::new(
        &host,
        HttpSettings {
            credentials: Some(Credentials::IdentityToken(Secret::new("idt-secret"))),
            ..settings()
        },
    )
    .unwrap();
    assert_eq!(r.tags(&repo("idt")).await.unwrap(), ["ok"]);
    let forms = seen.lock().unwrap().clone();
    assert_eq!(forms.len(), 1);
    let form = forms[0].replace("%3A", ":").replace("%2F", "/");
    for part in [
        "grant_type=refresh_token",
        "refresh_token=idt-secret",
        "service=svc",
        "scope=repository:idt:pull",
    ] {
        assert!(form.contains(part), "{form} lacks {part}");
    }
    task.abort();
}

/// At most `max_in_flight` requests reach the server at once: each
/// handler waits until three are inside (or gives up after 5 s).
#[tokio::test]
async fn in_flight_cap_is_respected() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let inside = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let (i2, m2) = (inside.clone(), max.clone());
    let app = Router::new()
        .route("/v2/", get(|| async { StatusCode::OK }))
        .route(
            "/v2/c/tags/list",
            get(move || {
                let (inside, max) = (i2.clone(), m2.clone());
                async move {
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    let deadline = std::time::Instant::now() + Duration::from_secs(5);
                    while max.load(Ordering::SeqCst) < 3 && std::time::Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    inside.fetch_sub(1, Ordering::SeqCst);
                    axum::Json(json!({"name":"c","tags":[]}))
                }
            }),
        );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let r = HttpRegistry::new(
        &host,
        HttpSettings {
            max_in_flight: 3,
            ..settings()
        },
    )
    .unwrap();
    let name = repo("c");
    let calls = (0..12).map(|_| r.tags(&name));
    for t in futures::future::join_all(calls).await {
        assert!(t.unwrap().is_empty());
    }
    assert_eq!(max.load(Ordering::SeqCst), 3);
    task.abort();
}
