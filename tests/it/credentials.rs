//! Credentials stay with their registry: URLs the registry hands back
//! (upload `Location`, `Link` pages, redirects) may name another origin,
//! which must never see an `Authorization` header; a disabled Docker config
//! is never read; an absurd token lifetime neither panics nor breaks auth.
//!
//! The registry here is a small purpose-built server on 127.0.0.1 whose
//! answers point at a second origin on 127.0.0.2 that records every
//! `Authorization` header it is sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::StreamExt;
use ocimirror::oci::Digest;
use ocimirror::registry::http::{
    Credentials, DockerConfigSource, HttpRegistry, HttpSettings, RetryPolicy, Secret,
};
use ocimirror::registry::{ErrorKind, Registry};
use tokio::task::JoinHandle;

use crate::support::cli::text;
use crate::support::registry::{Auth, Options, TestRegistry};
use crate::support::values::{body_of, desc, repo, tag};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pw";
const TOKEN: &str = "tok-123";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// `(method, path, Authorization)` of every request the other origin saw.
type Seen = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

/// How the main origin wants to be authenticated.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Basic,
    /// Bearer, with a token server answering `expires_in` = u64::MAX.
    BearerHugeExpiry,
}

struct MainState {
    mode: Mode,
    main: String,
    other: String,
}

/// The two origins; the listeners stop when this is dropped.
struct Origins {
    main: SocketAddr,
    seen_by_other: Seen,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Origins {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Origins {
    async fn start(mode: Mode) -> Origins {
        let main_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other_l = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let main = main_l.local_addr().unwrap();
        let state = Arc::new(MainState {
            mode,
            main: main.to_string(),
            other: other_l.local_addr().unwrap().to_string(),
        });
        let seen: Seen = Arc::default();
        let main_app = Router::new().fallback(main_handler).with_state(state);
        let other_app = Router::new()
            .fallback(other_handler)
            .with_state(seen.clone());
        let tasks = vec![
            tokio::spawn(async move {
                let _ = axum::serve(main_l, main_app).await;
            }),
            tokio::spawn(async move {
                let _ = axum::serve(other_l, other_app).await;
            }),
        ];
        Origins {
            main,
            seen_by_other: seen,
            tasks,
        }
    }

    fn client(&self) -> HttpRegistry {
        HttpRegistry::new(
            &self.main.to_string(),
            HttpSettings {
                credentials: Some(Credentials::Basic {
                    username: USER.into(),
                    password: Secret::new(PASSWORD),
                }),
                docker_config: DockerConfigSource::Off,
                retry: RetryPolicy {
                    max_attempts: 2,
                    min_delay: Duration::from_millis(1),
                    max_delay: Duration::from_millis(5),
                },
                ..HttpSettings::default()
            },
        )
        .unwrap()
    }

    /// What the other origin saw, asserting it saw something and never an
    /// `Authorization` header.
    fn assert_other_saw_no_credentials(&self, method: &str, path_prefix: &str) {
        let seen = self.seen_by_other.lock().unwrap().clone();
        assert!(
            seen.iter()
                .any(|(m, p, _)| m == method && p.starts_with(path_prefix)),
            "the other origin never saw {method} {path_prefix}: {seen:?}"
        );
        let leaked: Vec<_> = seen.iter().filter(|(_, _, a)| a.is_some()).collect();
        assert!(
            leaked.is_empty(),
            "credentials went to another origin: {leaked:?}"
        );
    }
}

/// The `Host` a request was sent to.
fn uri_host(headers: &HeaderMap) -> String {
    headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn basic_value() -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    format!("Basic {enc}")
}

fn authorized(st: &MainState, headers: &HeaderMap) -> bool {
    let got = headers.get("authorization").and_then(|v| v.to_str().ok());
    match st.mode {
        Mode::Basic => got == Some(basic_value().as_str()),
        Mode::BearerHugeExpiry => got == Some(format!("Bearer {TOKEN}").as_str()),
    }
}

fn challenge(st: &MainState) -> Response {
    let value = match st.mode {
        Mode::Basic => r#"Basic realm="test""#.to_string(),
        Mode::BearerHugeExpiry => {
            format!(r#"Bearer realm="http://{}/token",service="test""#, st.main)
        }
    };
    (StatusCode::UNAUTHORIZED, [("www-authenticate", value)]).into_response()
}

async fn main_handler(State(st): State<Arc<MainState>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if path == "/token" {
        // The lifetime that used to overflow `Instant + Duration`.
        let body = format!(r#"{{"token":"{TOKEN}","expires_in":18446744073709551615}}"#);
        return ([("content-type", "application/json")], body).into_response();
    }
    if !authorized(&st, req.headers()) {
        return challenge(&st);
    }
    let other = &st.other;
    match (method, path.as_str()) {
        (Method::GET, "/v2/") => StatusCode::OK.into_response(),
        (Method::POST, "/v2/r/blobs/uploads/") => (
            StatusCode::ACCEPTED,
            [("location", format!("http://{other}/upload/1"))],
        )
            .into_response(),
        (Method::GET, "/v2/r/tags/list") => (
            [
                ("content-type", "application/json".to_string()),
                (
                    "link",
                    format!(r#"<http://{other}/v2/r/tags/list?last=a>; rel="next""#),
                ),
            ],
            r#"{"name":"r","tags":["a"]}"#,
        )
            .into_response(),
        (Method::GET, p) if p.starts_with("/v2/r/referrers/") => (
            [
                ("content-type", OCI_INDEX.to_string()),
                (
                    "link",
                    format!(r#"<http://{other}/v2/r/referrers/next>; rel="next""#),
                ),
            ],
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#),
        )
            .into_response(),
        (Method::GET, "/v2/r/manifests/elsewhere") => (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", format!("http://{other}/challenge"))],
        )
            .into_response(),
        (Method::GET, p) if p.starts_with("/v2/r/blobs/") => (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", format!("http://{other}/blob"))],
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn other_handler(
    State(seen): State<Seen>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    _body: Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap_or("<binary>").to_string());
    seen.lock()
        .unwrap()
        .push((method.to_string(), uri.path().to_string(), auth));
    match (method, uri.path()) {
        (Method::PUT, "/upload/1") => {
            let digest = uri
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("digest=")))
                .unwrap_or_default()
                .replace("%3A", ":");
            (StatusCode::CREATED, [("docker-content-digest", digest)]).into_response()
        }
        (Method::GET, "/v2/r/tags/list") => (
            [("content-type", "application/json")],
            r#"{"name":"r","tags":["b"]}"#,
        )
            .into_response(),
        (Method::GET, "/v2/r/referrers/next") => (
            [("content-type", OCI_INDEX)],
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#),
        )
            .into_response(),
        (Method::GET, "/blob") => b"hello".to_vec().into_response(),
        // A challenge naming a token server of its own: answering it would
        // hand our credentials to that server.
        (Method::GET, "/challenge") => (
            StatusCode::UNAUTHORIZED,
            [(
                "www-authenticate",
                format!(
                    r#"Bearer realm="http://{}/token",service="x""#,
                    uri_host(&headers)
                ),
            )],
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

#[tokio::test]
async fn upload_location_on_another_origin_gets_no_credentials() {
    let o = Origins::start(Mode::Basic).await;
    let r = o.client();
    let desc = desc(b"hello", "application/octet-stream");
    r.blob_put(&repo("r"), &desc, body_of(b"hello", 5))
        .await
        .unwrap();
    o.assert_other_saw_no_credentials("PUT", "/upload/1");
}

#[tokio::test]
async fn tags_link_to_another_origin_gets_no_credentials() {
    let o = Origins::start(Mode::Basic).await;
    let tags = o.client().tags(&repo("r")).await.unwrap();
    assert_eq!(tags, ["a", "b"]);
    o.assert_other_saw_no_credentials("GET", "/v2/r/tags/list");
}

#[tokio::test]
async fn referrers_link_to_another_origin_gets_no_credentials() {
    let o = Origins::start(Mode::Basic).await;
    let got = o
        .client()
        .referrers_api(&repo("r"), &Digest::sha256(b"subject"))
        .await
        .unwrap();
    assert_eq!(got.map(|v| v.len()), Some(0));
    o.assert_other_saw_no_credentials("GET", "/v2/r/referrers/next");
}

#[tokio::test]
async fn redirect_to_another_origin_gets_no_credentials() {
    let o = Origins::start(Mode::Basic).await;
    let blob = o
        .client()
        .blob_get(&repo("r"), &Digest::sha256(b"hello"))
        .await
        .unwrap();
    let mut bytes = Vec::new();
    let mut body = blob.stream;
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(bytes, b"hello");
    o.assert_other_saw_no_credentials("GET", "/blob");
}

#[tokio::test]
async fn a_challenge_from_another_origin_is_not_answered() {
    let o = Origins::start(Mode::Basic).await;
    let e = o
        .client()
        .manifest_fetch(&repo("r"), &tag("elsewhere"))
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Unauthorized(_)), "{e}");
    o.assert_other_saw_no_credentials("GET", "/challenge");
    let seen = o.seen_by_other.lock().unwrap().clone();
    assert!(
        !seen.iter().any(|(_, p, _)| p == "/token"),
        "a token was asked for at the other origin's realm: {seen:?}"
    );
}

#[tokio::test]
async fn a_huge_token_lifetime_does_not_panic_and_the_token_works() {
    let o = Origins::start(Mode::BearerHugeExpiry).await;
    let r = o.client();
    // Twice: the second call must reuse the cached (clamped) token.
    for _ in 0..2 {
        let tags = r.tags(&repo("r")).await.unwrap();
        assert_eq!(tags, ["a", "b"]);
    }
    o.assert_other_saw_no_credentials("GET", "/v2/r/tags/list");
}

/// Runs `ocimirror once` over a job reading from `src` (Basic auth) with
/// `$HOME` holding a Docker config that has `src`'s credentials, the job's
/// registry entry saying `docker_config = <setting>`. Returns whether any
/// request to `src` carried credentials.
async fn once_with_home_docker_config(setting: &str) -> bool {
    let src = TestRegistry::start(Options {
        auth: Some(Auth::basic(USER, PASSWORD)),
        ..Options::default()
    })
    .await;
    let dst = TestRegistry::start(Options::default()).await;
    src.seed_image("team/app", "v1", &[b"layer"]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(
        home.join(".docker/config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, src.host()),
    )
    .unwrap();
    let config = crate::sync_jobs::write_config(
        dir.path(),
        &src,
        &dst,
        "",
        &format!(
            "\n[registries.\"{}\"]\ndocker_config = {setting}\n",
            src.host()
        ),
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ocimirror"))
        .args(["once", "-c", config.to_str().unwrap()])
        .current_dir(dir.path())
        .env("HOME", &home)
        .env("OCIMIRROR_LOG", "warn")
        .env_remove("DOCKER_CONFIG")
        .env_remove("OCIMIRROR_CONFIG")
        .output()
        .await
        .unwrap();
    let log = src.log();
    assert!(
        !log.is_empty(),
        "the job never reached the source: {}",
        text(&out)
    );
    log.iter().any(|r| r.auth_scheme.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_docker_config_is_never_read() {
    // The control: the same setup with the Docker config on does send them,
    // so the `false` run proves the file was not read, not that it was missed.
    assert!(
        once_with_home_docker_config("true").await,
        "docker_config = true did not pick up $HOME/.docker/config.json"
    );
    assert!(
        !once_with_home_docker_config("false").await,
        "docker_config = false still sent the credentials of $HOME/.docker/config.json"
    );
}
