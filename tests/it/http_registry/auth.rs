//! Authentication (basic, bearer tokens, scopes) and request limits and counters.

use super::*;

// ---------- auth ----------

fn alice() -> Option<Credentials> {
    Some(Credentials::Basic {
        username: "alice".into(),
        password: Secret::new("wonderland-pw"),
    })
}

#[tokio::test]
async fn bearer_tokens_are_scoped_cached_and_reused() {
    let tr = TestRegistry::start(Options {
        auth: Some(Auth::bearer("alice", "wonderland-pw")),
        ..Options::default()
    })
    .await;
    let r = client_with(&tr, |s| s.credentials = alice());
    let name = repo("team/app");
    let m = push_image(&r, &name, "auth").await;
    for _ in 0..3 {
        r.manifest_head(&name, &m.digest().clone().into())
            .await
            .unwrap()
            .unwrap();
    }
    let d = tr.put_blob("other/src", b"mountable");
    assert!(
        r.blob_mount(&name, &d.parse().unwrap(), &repo("other/src"))
            .await
            .unwrap()
    );

    let log = tr.log();
    let token_queries: Vec<String> = log
        .iter()
        .filter(|l| l.path == "/token")
        .map(|l| l.query.clone().unwrap_or_default())
        .collect();
    // One ping, then one token per scope set: push, pull, push+mount source.
    assert_eq!(log.iter().filter(|l| l.path == "/v2/").count(), 1);
    assert_eq!(token_queries.len(), 3, "{token_queries:?}");
    let dec = |q: &str| {
        q.replace("%3A", ":")
            .replace("%2F", "/")
            .replace("%2C", ",")
    };
    assert!(dec(&token_queries[0]).contains("scope=repository:team/app:pull,push"));
    assert!(dec(&token_queries[0]).contains("service=test-registry"));
    assert!(dec(&token_queries[1]).contains("scope=repository:team/app:pull"));
    let mount = dec(&token_queries[2]);
    assert!(
        mount.contains("scope=repository:team/app:pull,push"),
        "{mount}"
    );
    assert!(mount.contains("scope=repository:other/src:pull"), "{mount}");
    // Every registry request after the ping carried a Bearer token.
    assert!(
        log.iter()
            .filter(|l| l.path.starts_with("/v2/") && l.path != "/v2/" && l.status != 401)
            .all(|l| l.auth_scheme.as_deref() == Some("Bearer"))
    );
    assert!(
        log.iter()
            .filter(|l| l.path == "/token")
            .all(|l| l.auth_scheme.as_deref() == Some("Basic"))
    );
    assert_eq!(r.stats().requests(Operation::Token), 3);
}

#[tokio::test]
async fn expired_token_is_refetched_once() {
    let tr = TestRegistry::start(Options {
        auth: Some(Auth {
            token_ttl: Duration::from_secs(1),
            ..Auth::bearer("alice", "wonderland-pw")
        }),
        ..Options::default()
    })
    .await;
    let r = client_with(&tr, |s| s.credentials = alice());
    let name = repo("app");
    let d = tr.put_blob("app", b"x");
    let digest: Digest = d.parse().unwrap();
    assert_eq!(r.blob_head(&name, &digest).await.unwrap(), Some(1));
    // Tokens shorter than 60 s are kept 60 s (as Docker does), so the client
    // still holds it when the server expires it: 401 invalid_token.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Five requests refused at once share one new token.
    let heads = (0..5).map(|_| r.blob_head(&name, &digest));
    for h in futures::future::join_all(heads).await {
        assert_eq!(h.unwrap(), Some(1));
    }
    assert_eq!(tr.count("GET", "/token"), 2);
    let unauthorized: Vec<_> = tr
        .log()
        .into_iter()
        .filter(|l| l.path.contains("/blobs/") && l.status == 401)
        .collect();
    assert_eq!(unauthorized.len(), 5);
}

#[tokio::test]
async fn insufficient_scope_refetches_once_then_fails() {
    let tr = TestRegistry::start(Options {
        auth: Some(Auth {
            anonymous_pull: true,
            ..Auth::bearer("alice", "wonderland-pw")
        }),
        ..Options::default()
    })
    .await;
    // Anonymous: pulls work, pushes get pull-only tokens.
    let r = client(&tr);
    let d = tr.put_blob("app", b"public");
    assert_eq!(
        r.blob_head(&repo("app"), &d.parse().unwrap())
            .await
            .unwrap(),
        Some(6)
    );
    let data = b"push me".to_vec();
    let desc = blob_desc(&data, OCI_LAYER_GZIP);
    tr.clear_log();
    let e = r
        .blob_put(&repo("app"), &desc, body_of(&data, 7))
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Unauthorized(_)), "{e}");
    assert_names(&e, &tr, "app", Operation::BlobPut, &desc.digest.to_string());
    assert_eq!(tr.count("GET", "/token"), 2, "initial token + one refetch");
    assert_eq!(tr.count("POST", "/blobs/uploads/"), 2);
    assert_eq!(tr.open_uploads(), 0);
}

#[tokio::test]
async fn wrong_password_and_basic_auth() {
    let tr = TestRegistry::start(Options {
        auth: Some(Auth::bearer("alice", "wonderland-pw")),
        ..Options::default()
    })
    .await;
    let r = client_with(&tr, |s| {
        s.credentials = Some(Credentials::Basic {
            username: "alice".into(),
            password: Secret::new("wrong"),
        })
    });
    let e = r.tags(&repo("app")).await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Unauthorized(_)), "{e}");
    assert_eq!(e.op, Operation::Token);

    let tr = TestRegistry::start(Options {
        auth: Some(Auth::basic("alice", "wonderland-pw")),
        ..Options::default()
    })
    .await;
    let r = client_with(&tr, |s| s.credentials = alice());
    let m = push_image(&r, &repo("app"), "basic").await;
    assert!(
        r.manifest_head(&repo("app"), &m.digest().clone().into())
            .await
            .unwrap()
            .is_some()
    );
    let log = tr.log();
    assert!(
        log.iter()
            .filter(|l| l.path != "/v2/")
            .all(|l| l.auth_scheme.as_deref() == Some("Basic") && l.status != 401),
        "{log:?}"
    );
    let anon = client(&tr);
    let e = anon.tags(&repo("app")).await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Unauthorized(_)), "{e}");
}

/// A `MakeWriter` appending to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn no_secret_in_logs_errors_or_debug_output() {
    let tr = TestRegistry::start(Options {
        auth: Some(Auth::bearer("alice", "wonderland-pw")),
        ..Options::default()
    })
    .await;
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    // A second live dispatcher keeps tracing from deciding callsite
    // interest through the registering thread's default alone (its "just
    // one dispatcher" shortcut): otherwise a callsite first hit by another
    // test's thread meanwhile is cached as disabled, for us too.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let _guard = tracing::subscriber::set_default(subscriber);

    let s = HttpSettings {
        credentials: alice(),
        ..settings()
    };
    let settings_debug = format!("{s:?}");
    let r = HttpRegistry::new(&tr.host(), s).unwrap();
    let name = repo("app");
    let m = push_image(&r, &name, "secret").await;
    r.manifest_get(&name, &m.digest().clone().into())
        .await
        .unwrap()
        .unwrap();
    // A failure with a body error, and a digest mismatch.
    tr.push_fault(Fault {
        times: 4,
        ..Fault::once(Some("GET"), "/manifests/", FaultKind::Status(500))
    });
    let e1 = r.manifest_get(&name, &tag("x")).await.unwrap_err();
    let data = b"y".to_vec();
    let e2 = r
        .blob_put(&name, &blob_desc(b"z", OCI_LAYER_GZIP), body_of(&data, 7))
        .await
        .unwrap_err();
    let bad = client_with(&tr, |s| {
        s.credentials = Some(Credentials::Basic {
            username: "alice".into(),
            password: Secret::new("wonderland-pw-wrong"),
        })
    });
    let e3 = bad.tags(&name).await.unwrap_err();
    drop(_guard);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        // Any adapter event will do: which callsites a thread-local
        // subscriber sees can vary when other tests register them first.
        logs.contains("ocimirror::registry::http"),
        "the subscriber captured the adapter's logs"
    );
    let tokens = tr.issued_tokens();
    assert!(tokens.len() >= 2, "{tokens:?}");
    let mut haystacks = vec![logs, settings_debug, format!("{r:?}")];
    for e in [&e1, &e2, &e3] {
        haystacks.push(e.to_string());
        haystacks.push(format!("{e:?}"));
    }
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode("alice:wonderland-pw")
    };
    for h in &haystacks {
        assert!(!h.contains("wonderland-pw"), "password leaked: {h}");
        assert!(!h.contains(&basic), "basic credential leaked");
        for t in &tokens {
            assert!(!h.contains(t.as_str()), "token leaked: {h}");
        }
    }
}

// ---------- limits and counters ----------

#[tokio::test]
async fn docker_hub_ratelimit_headers_are_exposed() {
    let tr = TestRegistry::start(Options {
        ratelimit: Some((100, 42)),
        ..Options::default()
    })
    .await;
    let r = client(&tr);
    assert_eq!(r.docker_hub_ratelimit(), None);
    let name = repo("app");
    let m = push_image(&r, &name, "rl").await;
    r.manifest_head(&name, &m.digest().clone().into())
        .await
        .unwrap();
    let rl = r.docker_hub_ratelimit().unwrap();
    assert_eq!((rl.limit, rl.remaining), (100, 42));
    assert_eq!(rl.window, Some(Duration::from_secs(21600)));
}

#[tokio::test]
async fn every_request_is_counted_once_and_rate_limit_wait_is_exposed() {
    let tr = TestRegistry::start(Options {
        redirect_blobs: true,
        auth: Some(Auth::bearer("alice", "wonderland-pw")),
        ..Options::default()
    })
    .await;
    let r = client_with(&tr, |s| {
        s.credentials = alice();
        s.requests_per_second = std::num::NonZeroU32::new(50);
        s.max_in_flight = 2;
    });
    let name = repo("app");
    let m = push_image(&r, &name, "count").await;
    tr.push_fault(Fault::once(
        Some("GET"),
        "/manifests/",
        FaultKind::Status(503),
    ));
    r.manifest_get(&name, &m.digest().clone().into())
        .await
        .unwrap();
    let blob = r
        .blob_get(&name, &Digest::sha256(b"layer of count"))
        .await
        .unwrap();
    read_all(blob.stream).await.unwrap();
    // Concurrency through the in-flight cap.
    let absent = tag("absent");
    let heads = (0..60).map(|_| r.manifest_head(&name, &absent));
    for h in futures::future::join_all(heads).await {
        assert!(h.unwrap().is_none());
    }
    let stats = r.stats();
    assert_eq!(stats.total_requests(), tr.log().len() as u64);
    assert_eq!(stats.requests(Operation::Ping), 1);
    assert_eq!(stats.requests(Operation::ManifestHead), 60);
    assert_eq!(
        stats.requests(Operation::BlobGet),
        2,
        "redirect hop counted"
    );
    assert_eq!(stats.retries, 1);
    // 60+ requests at 50/s: the limiter made callers wait.
    assert!(stats.rate_limit_wait > Duration::ZERO);
}
