//! `HttpRegistry` against the in-process test registry: every feature of
//! the adapter and every injected fault kind.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, stream};
use serde_json::json;

use ocimirror::oci::media_type::{OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST};
use ocimirror::oci::{Descriptor, Digest, Manifest, Reference, RepoName};
use ocimirror::registry::http::{
    Credentials, DockerConfigSource, HttpRegistry, HttpSettings, RetryPolicy, Secret, UploadMode,
};
use ocimirror::registry::{
    BlobStream, ErrorKind, Operation, Precondition, ReferrersSupport, Registry, RegistryError,
};

use crate::support::registry::{Auth, Fault, FaultKind, Options, RetryAfter, TestRegistry};
use crate::support::values::{body_of, desc as blob_desc, repo, tag};

// ---------- fixtures ----------

fn settings() -> HttpSettings {
    HttpSettings {
        // Never read the developer's own Docker config.
        docker_config: DockerConfigSource::Off,
        retry: RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
        },
        ..HttpSettings::default()
    }
}

fn client(tr: &TestRegistry) -> HttpRegistry {
    HttpRegistry::new(&tr.host(), settings()).unwrap()
}

fn client_with(tr: &TestRegistry, f: impl FnOnce(&mut HttpSettings)) -> HttpRegistry {
    let mut s = settings();
    f(&mut s);
    HttpRegistry::new(&tr.host(), s).unwrap()
}

/// An OCI image manifest over `config` and `layers`, optionally a referrer.
fn image_manifest(config: &[u8], layers: &[&[u8]], subject: Option<&Descriptor>) -> Manifest {
    let mut v = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": blob_desc(config, OCI_CONFIG),
        "layers": layers.iter().map(|l| blob_desc(l, OCI_LAYER_GZIP)).collect::<Vec<_>>(),
    });
    if let Some(s) = subject {
        v["subject"] = serde_json::to_value(s).unwrap();
        v["artifactType"] = json!("application/vnd.example.sig");
    }
    Manifest::parse(Bytes::from(serde_json::to_vec(&v).unwrap()), None).unwrap()
}

fn index_manifest(children: &[&Manifest]) -> Manifest {
    let v = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children.iter().map(|m| m.descriptor()).collect::<Vec<_>>(),
    });
    Manifest::parse(Bytes::from(serde_json::to_vec(&v).unwrap()), None).unwrap()
}

async fn push_image(r: &HttpRegistry, name: &RepoName, seed: &str) -> Manifest {
    let config = format!("{{\"seed\":\"{seed}\"}}").into_bytes();
    let layer = format!("layer of {seed}").into_bytes();
    for (b, mt) in [(&config, OCI_CONFIG), (&layer, OCI_LAYER_GZIP)] {
        r.blob_put(name, &blob_desc(b, mt), body_of(b, 7))
            .await
            .unwrap();
    }
    let m = image_manifest(&config, &[&layer], None);
    r.manifest_put(name, &m.digest().clone().into(), &m, Precondition::None)
        .await
        .unwrap();
    m
}

async fn read_all(stream: BlobStream) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    let mut s = stream;
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

/// The error names registry, repository, operation and target.
fn assert_names(e: &RegistryError, tr: &TestRegistry, repo: &str, op: Operation, target: &str) {
    let s = e.to_string();
    assert_eq!(e.op, op, "{s}");
    for part in [tr.host().as_str(), repo, op.as_str(), target] {
        assert!(s.contains(part), "{s:?} lacks {part:?}");
    }
}

// ---------- manifests ----------

#[tokio::test]
async fn manifest_roundtrip_head_fetch_and_exact_bytes() {
    let tr = TestRegistry::start(Options::default()).await;
    let r = client(&tr);
    let name = repo("team/app");
    let m = push_image(&r, &name, "a").await;
    let idx = index_manifest(&[&m]);
    r.manifest_put(&name, &tag("v1"), &idx, Precondition::None)
        .await
        .unwrap();
    let (mt, bytes) = tr.manifest("team/app", "v1").unwrap();
    assert_eq!(mt, OCI_INDEX);
    assert_eq!(bytes, idx.bytes().as_ref());

    let head = r.manifest_head(&name, &tag("v1")).await.unwrap().unwrap();
    assert_eq!(
        head,
        Descriptor::new(OCI_INDEX, idx.digest().clone(), idx.bytes().len() as u64)
    );
    // The OCI index is served only because Accept lists it (like distribution).
    let fetched = r.manifest_fetch(&name, &tag("v1")).await.unwrap().unwrap();
    assert_eq!(fetched.manifest.bytes(), idx.bytes());
    assert!(fetched.etag.is_some());
    let by_digest = r
        .manifest_get(&name, &m.digest().clone().into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_digest.digest(), m.digest());
    assert_eq!(by_digest.media_type(), OCI_MANIFEST);

    assert!(
        r.manifest_head(&name, &tag("nope"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        r.manifest_fetch(&name, &tag("nope"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        r.manifest_get(&repo("absent/repo"), &tag("x"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn index_with_missing_child_is_refused_with_context() {
    let tr = TestRegistry::start(Options::default()).await;
    let r = client(&tr);
    let name = repo("app");
    let child = image_manifest(b"{}", &[], None);
    let idx = index_manifest(&[&child]);
    let e = r
        .manifest_put(&name, &tag("v1"), &idx, Precondition::None)
        .await
        .unwrap_err();
    assert_names(&e, &tr, "app", Operation::ManifestPut, "v1");
    assert!(
        matches!(&e.kind, ErrorKind::Status { status: 400, codes, .. } if codes.contains(&"MANIFEST_BLOB_UNKNOWN".to_string())),
        "{e}"
    );
}

#[tokio::test]
async fn manifest_digest_mismatch_is_detected() {
    let tr = TestRegistry::start(Options::default()).await;
    let r = client(&tr);
    let name = repo("app");
    let m = push_image(&r, &name, "x").await;
    r.manifest_put(&name, &tag("t"), &m, Precondition::None)
        .await
        .unwrap();
    for reference in [m.digest().clone().into(), tag("t")] {
        // Read three times (two re-reads of corrupted bytes), then given up.
        for _ in 0..3 {
            tr.push_fault(Fault::once(
                Some("GET"),
                "/manifests/",
                FaultKind::WrongBytes,
            ));
        }
        let e = r.manifest_fetch(&name, &reference).await.unwrap_err();
        assert_eq!(tr.pending_faults(), 0);
        assert!(matches!(e.kind, ErrorKind::DigestMismatch { .. }), "{e}");
        assert_names(
            &e,
            &tr,
            "app",
            Operation::ManifestGet,
            &reference.to_string(),
        );
        assert!(e.to_string().contains(&m.digest().to_string()));
        // Corrupted once, then intact: the re-read returns the right bytes.
        tr.push_fault(Fault::once(
            Some("GET"),
            "/manifests/",
            FaultKind::WrongBytes,
        ));
        let fetched = r.manifest_fetch(&name, &reference).await.unwrap().unwrap();
        assert_eq!(fetched.manifest.bytes(), m.bytes());
        assert_eq!(tr.pending_faults(), 0);
    }
}

#[tokio::test]
async fn oversized_manifest_is_refused_before_buffering_it_all() {
    let tr = TestRegistry::start(Options::default()).await;
    let r = client(&tr);
    let big = vec![b' '; 5 * 1024 * 1024];
    tr.put_manifest("app", "big", OCI_MANIFEST, &big);
    let e = r
        .manifest_fetch(&repo("app"), &tag("big"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Manifest(ocimirror::oci::ManifestError::TooLarge { .. })
        ),
        "{e}"
    );
}

#[tokio::test]
async fn manifest_put_preconditions() {
    let tr = TestRegistry::start(Options::default()).await;
    let r = client(&tr);
    let name = repo("app");
    let a = push_image(&r, &name, "a").await;
    let b = push_image(&r, &name, "b").await;
    r.manifest_put(&name, &tag("t"), &a, Precondition::IfNoneMatch)
        .await
        .unwrap();
    let e = r
        .manifest_put(&name, &tag("t"), &b, Precondition::IfNoneMatch)
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::PreconditionFailed), "{e}");
    let etag = r
        .manifest_fetch(&name, &tag("t"))
        .await
        .unwrap()
        .unwrap()
        .etag
        .unwrap();
    r.manifest_put(&name, &tag("t"), &b, Precondition::IfMatch(etag.clone()))
        .await
        .unwrap();
    // The old ETag no longer matches.
    let e = r
        .manifest_put(&name, &tag("t"), &a, Precondition::IfMatch(etag))
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::PreconditionFailed), "{e}");
    assert_eq!(tr.manifest("app", "t").unwrap().1, b.bytes().as_ref());
}

#[tokio::test]
async fn put_with_subject_reports_indexing_and_caches_support() {
    let tr = TestRegistry::start(Options::default()).await;
    let r = client(&tr);
    let name = repo("app");
    let subject = push_image(&r, &name, "s").await;
    let cfg = b"{}".to_vec();
    r.blob_put(&name, &blob_desc(&cfg, OCI_CONFIG), body_of(&cfg, 7))
        .await
        .unwrap();
    let sig = image_manifest(&cfg, &[], Some(&subject.descriptor()));
    let out = r
        .manifest_put(
            &name,
            &sig.digest().clone().into(),
            &sig,
            Precondition::None,
        )
        .await
        .unwrap();
    assert!(out.subject_indexed);
    tr.clear_log();
    assert_eq!(
        r.referrers_support(&name).await.unwrap(),
        ReferrersSupport::Supported
    );
    assert_eq!(
        tr.count("GET", "/referrers/"),
        0,
        "verdict came from OCI-Subject"
    );

    // Without the API: no OCI-Subject, so not indexed.
    let tr2 = TestRegistry::start(Options {
        referrers_api: false,
        ..Options::default()
    })
    .await;
    let r2 = client(&tr2);
    let subject = push_image(&r2, &name, "s").await;
    r2.blob_put(&name, &blob_desc(&cfg, OCI_CONFIG), body_of(&cfg, 7))
        .await
        .unwrap();
    let sig = image_manifest(&cfg, &[], Some(&subject.descriptor()));
    let out = r2
        .manifest_put(
            &name,
            &sig.digest().clone().into(),
            &sig,
            Precondition::None,
        )
        .await
        .unwrap();
    assert!(!out.subject_indexed);
}

// ---------- blobs ----------

#[tokio::test]
async fn blob_roundtrip_is_streamed_and_verified() {
    let tr = TestRegistry::start(Options::default()).await;
    let r = client(&tr);
    let name = repo("app");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let desc = blob_desc(&data, OCI_LAYER_GZIP);
    assert_eq!(r.blob_head(&name, &desc.digest).await.unwrap(), None);
    r.blob_put(&name, &desc, body_of(&data, 7)).await.unwrap();
    assert_eq!(tr.blob("app", &desc.digest.to_string()).unwrap(), data);
    assert_eq!(
        r.blob_head(&name, &desc.digest).await.unwrap(),
        Some(100_000)
    );
    let blob = r.blob_get(&name, &desc.digest).await.unwrap();
    assert_eq!(blob.size, 100_000);
    assert_eq!(read_all(blob.stream).await.unwrap(), data);
    // One POST and one PUT.
    assert_eq!(tr.count("POST", "/blobs/uploads/"), 1);
    assert_eq!(tr.count("PUT", "/blobs/uploads/"), 1);
    assert_eq!(tr.open_uploads(), 0);

    let e = r
        .blob_get(&name, &Digest::sha256(b"absent"))
        .await
        .unwrap_err();
    assert!(e.is_not_found());
    assert_names(
        &e,
        &tr,
        "app",
        Operation::BlobGet,
        &Digest::sha256(b"absent").to_string(),
    );
}

#[tokio::test]
async fn blob_body_faults_end_in_named_stream_errors_or_resume() {
    let tr = TestRegistry::start(Options::default()).await;
    let r = client(&tr);
    let data = vec![7u8; 64 * 1024];
    let d = tr.put_blob("app", &data);
    let digest: Digest = d.parse().unwrap();
    tr.push_fault(Fault::once(Some("GET"), "/blobs/", FaultKind::WrongBytes));
    let blob = r.blob_get(&repo("app"), &digest).await.unwrap();
    let e = read_all(blob.stream).await.unwrap_err();
    assert_names(&e, &tr, "app", Operation::BlobGet, &d);
    assert!(matches!(e.kind, ErrorKind::DigestMismatch { .. }), "{e}");
    // A connection cut mid-body is resumed from where it stopped.
    for kind in [FaultKind::ResetMidBody, FaultKind::TruncatedBody] {
        tr.clear_log();
        tr.push_fault(Fault::once(Some("GET"), "/blobs/", kind.clone()));
        let blob = r.blob_get(&repo("app"), &digest).await.unwrap();
        assert_eq!(read_all(blob.stream).await.unwrap(), data, "{kind:?}");
        assert_eq!(tr.count("GET", "/blobs/"), 2, "{kind:?}: one resume");
    }
    // And after the faults, a clean read.
    let blob = r.blob_get(&repo("app"), &digest).await.unwrap();
    assert_eq!(read_all(blob.stream).await.unwrap(), data);
}

#[tokio::test]
async fn failed_uploads_leave_nothing_visible() {
    let tr = TestRegistry::start(Options::default()).await;
    let r = client(&tr);
    let name = repo("app");
    let data = vec![3u8; 10_000];
    let desc = blob_desc(&data, OCI_LAYER_GZIP);
    let d = desc.digest.to_string();

    // 1. The registry fails the PUT: not replayed, session cancelled.
    tr.push_fault(Fault::once(
        Some("PUT"),
        "/blobs/uploads/",
        FaultKind::Status(500),
    ));
    let e = r
        .blob_put(&name, &desc, body_of(&data, 7))
        .await
        .unwrap_err();
    assert_names(&e, &tr, "app", Operation::BlobPut, &d);
    assert!(e.is_retryable(), "the caller may re-open its source: {e}");
    assert_eq!(tr.count("PUT", "/blobs/uploads/"), 1);
    assert_eq!(tr.count("DELETE", "/blobs/uploads/"), 1);
    assert!(tr.blob("app", &d).is_none());
    assert_eq!(tr.open_uploads(), 0);

    // 2. The source stream fails half-way: its error is returned.
    let half: Vec<Result<Bytes, RegistryError>> = vec![
        Ok(Bytes::from(vec![3u8; 5000])),
        Err(RegistryError::new(
            "source.example",
            "src/repo",
            Operation::BlobGet,
            Some(d.clone()),
            ErrorKind::Transport {
                message: "connection reset".into(),
                retryable: true,
            },
        )),
    ];
    let e = r
        .blob_put(&name, &desc, Box::pin(stream::iter(half)))
        .await
        .unwrap_err();
    assert_eq!(e.registry, "source.example", "{e}");
    assert!(e.is_retryable());
    assert!(tr.blob("app", &d).is_none());
    assert_eq!(tr.open_uploads(), 0);

    // 3. Content that does not match the descriptor never completes.
    let wrong = vec![4u8; 10_000];
    let e = r
        .blob_put(&name, &desc, body_of(&wrong, 7))
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::DigestMismatch { .. }), "{e}");
    assert_names(&e, &tr, "app", Operation::BlobPut, &d);
    assert!(tr.blob("app", &d).is_none());
    assert_eq!(tr.open_uploads(), 0);

    // 4. Too short a body.
    let e = r
        .blob_put(&name, &desc, body_of(&data[..9000], 7))
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::SizeMismatch { .. }), "{e}");
    assert!(tr.blob("app", &d).is_none());
    assert_eq!(tr.open_uploads(), 0);

    // 5. Then it works.
    r.blob_put(&name, &desc, body_of(&data, 7)).await.unwrap();
    assert_eq!(tr.blob("app", &d).unwrap(), data);
}

#[tokio::test]
async fn upload_post_is_retried() {
    let tr = TestRegistry::start(Options::default()).await;
    let r = client(&tr);
    let data = b"retried upload".to_vec();
    let desc = blob_desc(&data, OCI_LAYER_GZIP);
    tr.push_fault(Fault {
        times: 2,
        ..Fault::once(Some("POST"), "/blobs/uploads/", FaultKind::Status(503))
    });
    r.blob_put(&repo("app"), &desc, body_of(&data, 7))
        .await
        .unwrap();
    assert_eq!(tr.count("POST", "/blobs/uploads/"), 3);
    assert_eq!(r.stats().retries, 2);
    assert_eq!(tr.open_uploads(), 0);
}

#[tokio::test]
async fn chunked_upload_with_absolute_and_relative_locations() {
    for relative in [true, false] {
        let tr = TestRegistry::start(Options {
            relative_locations: relative,
            ..Options::default()
        })
        .await;
        let r = client_with(&tr, |s| s.upload = UploadMode::Chunked { chunk_size: 4 });
        let data = b"0123456789".to_vec();
        let desc = blob_desc(&data, OCI_LAYER_GZIP);
        r.blob_put(&repo("app"), &desc, body_of(&data, 7))
            .await
            .unwrap();
        assert_eq!(tr.blob("app", &desc.digest.to_string()).unwrap(), data);
        assert_eq!(tr.count("PATCH", "/blobs/uploads/"), 3);
        assert_eq!(tr.count("PUT", "/blobs/uploads/"), 1);
        assert_eq!(tr.open_uploads(), 0);

        // A failing PATCH cancels the session.
        tr.push_fault(Fault::once(
            Some("PATCH"),
            "/blobs/uploads/",
            FaultKind::Status(500),
        ));
        let other = b"abcdefghij".to_vec();
        let desc = blob_desc(&other, OCI_LAYER_GZIP);
        let e = r
            .blob_put(&repo("app"), &desc, body_of(&other, 7))
            .await
            .unwrap_err();
        assert_names(&e, &tr, "app", Operation::BlobPut, &desc.digest.to_string());
        assert!(tr.blob("app", &desc.digest.to_string()).is_none());
        assert_eq!(tr.open_uploads(), 0);
    }
}

#[tokio::test]
async fn mount_created_or_declined() {
    let tr = TestRegistry::start(Options::default()).await;
    let r = client(&tr);
    let d = tr.put_blob("src/repo", b"shared layer");
    let digest: Digest = d.parse().unwrap();
    assert!(
        r.blob_mount(&repo("dst/repo"), &digest, &repo("src/repo"))
            .await
            .unwrap()
    );
    assert_eq!(tr.blob("dst/repo", &d).unwrap(), b"shared layer");
    let log = tr.log();
    let post = log.iter().find(|l| l.method == "POST").unwrap();
    let q = post.query.clone().unwrap();
    assert!(
        q.contains("mount=sha256%3A") || q.contains("mount=sha256:"),
        "{q}"
    );
    assert!(
        q.contains("from=src%2Frepo") || q.contains("from=src/repo"),
        "{q}"
    );

    tr.set_mount(false);
    let d2 = tr.put_blob("src/repo", b"another layer");
    let mounted = r
        .blob_mount(&repo("dst/repo"), &d2.parse().unwrap(), &repo("src/repo"))
        .await
        .unwrap();
    assert!(!mounted);
    assert!(tr.blob("dst/repo", &d2).is_none());
    assert_eq!(tr.open_uploads(), 0, "the 202 session was cancelled");
    assert_eq!(tr.count("DELETE", "/blobs/uploads/"), 1);
}

#[tokio::test]
async fn redirected_blob_get_drops_authorization() {
    let tr = TestRegistry::start(Options {
        redirect_blobs: true,
        auth: Some(Auth::bearer("alice", "s3cret")),
        ..Options::default()
    })
    .await;
    let r = client_with(&tr, |s| {
        s.credentials = Some(Credentials::Basic {
            username: "alice".into(),
            password: Secret::new("s3cret"),
        })
    });
    let data = vec![9u8; 5000];
    let d = tr.put_blob("app", &data);
    let blob = r.blob_get(&repo("app"), &d.parse().unwrap()).await.unwrap();
    assert_eq!(read_all(blob.stream).await.unwrap(), data);
    let log = tr.log();
    let hop = log
        .iter()
        .find(|l| l.path.contains("/_blobstore/"))
        .unwrap();
    assert_eq!(hop.status, 200);
    assert_eq!(hop.auth_scheme, None);
    let first = log
        .iter()
        .find(|l| l.path.contains("/blobs/") && l.status == 307)
        .unwrap();
    assert_eq!(first.auth_scheme.as_deref(), Some("Bearer"));
}

// ---------- retries ----------

#[tokio::test]
async fn server_errors_and_resets_are_retried_to_success() {
    let tr = TestRegistry::start(Options::default()).await;
    let r = client(&tr);
    let name = repo("app");
    let m = push_image(&r, &name, "r").await;
    r.manifest_put(&name, &tag("t"), &m, Precondition::None)
        .await
        .unwrap();
    let before = r.stats();
    for kind in [
        FaultKind::Status(500),
        FaultKind::Status(502),
        FaultKind::Status(503),
        FaultKind::ResetMidBody,
        FaultKind::TruncatedBody,
        FaultKind::Delay(Duration::from_millis(20)),
        FaultKind::TooManyRequests(RetryAfter::None),
        FaultKind::TooManyRequests(RetryAfter::Seconds(0)),
        FaultKind::TooManyRequests(RetryAfter::HttpDate(SystemTime::now())),
    ] {
        tr.push_fault(Fault::once(Some("GET"), "/manifests/", kind.clone()));
        let got = r.manifest_get(&name, &tag("t")).await;
        assert_eq!(got.unwrap().unwrap().bytes(), m.bytes(), "{kind:?}");
    }
    let after = r.stats();
    assert_eq!(
        after.retries - before.retries,
        8,
        "every fault but Delay cost one retry"
    );
    let get = &after.operations[&Operation::ManifestGet];
    assert_eq!(get.requests, 9 + 8);
    assert_eq!(get.class(5), 3);
    assert_eq!(get.class(4), 3);
    assert_eq!(tr.pending_faults(), 0);
}

#[tokio::test]
async fn persistent_faults_end_in_named_errors() {
    let tr = TestRegistry::start(Options::default()).await;
    let r = client(&tr);
    let name = repo("app");
    let m = push_image(&r, &name, "p").await;
    let dref: Reference = m.digest().clone().into();
    let d = m.digest().to_string();
    let cases: Vec<(&str, FaultKind, Operation)> = vec![
        (
            "/manifests/",
            FaultKind::Status(503),
            Operation::ManifestGet,
        ),
        (
            "/manifests/",
            FaultKind::TooManyRequests(RetryAfter::Seconds(0)),
            Operation::ManifestGet,
        ),
        (
            "/manifests/",
            FaultKind::ResetMidBody,
            Operation::ManifestGet,
        ),
        (
            "/manifests/",
            FaultKind::TruncatedBody,
            Operation::ManifestGet,
        ),
        ("/blobs/", FaultKind::Status(500), Operation::BlobHead),
    ];
    for (path, kind, op) in cases {
        tr.push_fault(Fault {
            times: 4,
            ..Fault::once(None, path, kind.clone())
        });
        let e = match op {
            Operation::BlobHead => r
                .blob_head(&name, m.digest())
                .await
                .map(|_| ())
                .unwrap_err(),
            _ => r
                .manifest_fetch(&name, &dref)
                .await
                .map(|_| ())
                .unwrap_err(),
        };
        assert!(e.is_retryable(), "{kind:?}: {e}");
        assert_names(&e, &tr, "app", op, &d);
        assert_eq!(tr.pending_faults(), 0, "{kind:?}: 4 attempts made");
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let tr = TestRegistry::start(Options::default()).await;
    let r = client_with(&tr, |s| s.retry.max_delay = Duration::from_secs(5));
    let name = repo("app");
    let m = push_image(&r, &name, "w").await;
    tr.push_fault(Fault::once(
        Some("HEAD"),
        "/manifests/",
        FaultKind::TooManyRequests(RetryAfter::Seconds(1)),
    ));
    let before = r.stats().retry_wait;
    r.manifest_head(&name, &m.digest().clone().into())
        .await
        .unwrap()
        .unwrap();
    let waited = r.stats().retry_wait - before;
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    // Capped by max_delay.
    let r2 = client(&tr);
    tr.push_fault(Fault::once(
        Some("HEAD"),
        "/manifests/",
        FaultKind::TooManyRequests(RetryAfter::HttpDate(
            SystemTime::now() + Duration::from_secs(3600),
        )),
    ));
    r2.manifest_head(&name, &m.digest().clone().into())
        .await
        .unwrap()
        .unwrap();
    assert!(r2.stats().retry_wait <= Duration::from_millis(20));
}

// ---------- tags, catalog, referrers ----------

#[tokio::test]
async fn tags_and_catalog_follow_link_pages() {
    let tr = TestRegistry::start(Options {
        tag_page_size: Some(2),
        ..Options::default()
    })
    .await;
    let r = client(&tr);
    let name = repo("app");
    let m = push_image(&r, &name, "t").await;
    for t in ["a", "b", "c", "d", "e"] {
        r.manifest_put(&name, &tag(t), &m, Precondition::None)
            .await
            .unwrap();
    }
    tr.clear_log();
    let mut tags = r.tags(&name).await.unwrap();
    tags.sort();
    assert_eq!(tags, ["a", "b", "c", "d", "e"]);
    assert_eq!(tr.count("GET", "/tags/list"), 3);
    let e = r.tags(&repo("absent")).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_names(&e, &tr, "absent", Operation::TagList, "");

    push_image(&r, &repo("other"), "o").await;
    let mut repos = r.catalog().await.unwrap();
    repos.sort();
    assert_eq!(repos, ["app", "other"]);
}

#[tokio::test]
async fn referrers_api_pages_and_support_detection() {
    let tr = TestRegistry::start(Options {
        referrers_page_size: Some(2),
        ..Options::default()
    })
    .await;
    let r = client(&tr);
    let name = repo("app");
    let subject = push_image(&r, &name, "subj").await;
    let mut expected = Vec::new();
    for i in 0..5 {
        let cfg = format!("{{\"sig\":{i}}}").into_bytes();
        r.blob_put(&name, &blob_desc(&cfg, OCI_CONFIG), body_of(&cfg, 7))
            .await
            .unwrap();
        let sig = image_manifest(&cfg, &[], Some(&subject.descriptor()));
        r.manifest_put(
            &name,
            &sig.digest().clone().into(),
            &sig,
            Precondition::None,
        )
        .await
        .unwrap();
        expected.push(sig.digest().clone());
    }
    tr.clear_log();
    let got = r
        .referrers_api(&name, subject.digest())
        .await
        .unwrap()
        .unwrap();
    let mut digests: Vec<Digest> = got.iter().map(|d| d.digest.clone()).collect();
    digests.sort_by_key(|d| d.to_string());
    expected.sort_by_key(|d| d.to_string());
    assert_eq!(digests, expected);
    assert!(
        got.iter()
            .all(|d| d.artifact_type.as_deref() == Some("application/vnd.example.sig"))
    );
    assert_eq!(tr.count("GET", "/referrers/"), 3);
    // Unfiltered: no artifactType query.
    assert!(
        tr.log()
            .iter()
            .all(|l| !l.query.clone().unwrap_or_default().contains("artifactType"))
    );
    assert_eq!(
        r.referrers_support(&name).await.unwrap(),
        ReferrersSupport::Supported
    );

    // Fresh client, unknown subject: empty list, and the probe says Supported.
    let r2 = client(&tr);
    assert_eq!(
        r2.referrers_api(&name, &Digest::sha256(b"nothing"))
            .await
            .unwrap(),
        Some(vec![])
    );
    let r3 = client(&tr);
    assert_eq!(
        r3.referrers_support(&name).await.unwrap(),
        ReferrersSupport::Supported
    );
}

#[tokio::test]
async fn referrers_unsupported_missing_repo_and_override() {
    let tr = TestRegistry::start(Options {
        referrers_api: false,
        ..Options::default()
    })
    .await;
    let r = client(&tr);
    let name = repo("app");
    let subject = push_image(&r, &name, "u").await;
    assert_eq!(
        r.referrers_api(&name, subject.digest()).await.unwrap(),
        None
    );
    assert_eq!(
        r.referrers_support(&name).await.unwrap(),
        ReferrersSupport::Unsupported
    );
    tr.clear_log();
    // Cached: no more requests.
    assert_eq!(
        r.referrers_api(&name, subject.digest()).await.unwrap(),
        None
    );
    assert_eq!(tr.count("GET", "/referrers/"), 0);

    // With the API on, a missing repository answers 404 NAME_UNKNOWN: an
    // error when listing; no verdict is cached, so the next call asks again.
    let tr2 = TestRegistry::start(Options::default()).await;
    let r2 = client(&tr2);
    let missing = repo("missing/repo");
    assert!(r2.referrers_api(&missing, subject.digest()).await.is_err());
    assert_eq!(
        r2.referrers_support(&missing).await.unwrap(),
        ReferrersSupport::Unknown
    );
    assert_eq!(tr2.count("GET", "/referrers/"), 2);

    // The override wins without a request.
    let r3 = client_with(&tr2, |s| s.referrers = Some(ReferrersSupport::Unsupported));
    tr2.clear_log();
    assert_eq!(
        r3.referrers_support(&name).await.unwrap(),
        ReferrersSupport::Unsupported
    );
    assert_eq!(
        r3.referrers_api(&name, subject.digest()).await.unwrap(),
        None
    );
    assert_eq!(tr2.count("GET", "/referrers/"), 0);
}

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

// ---------- a registry with quirks (hand-written fake) ----------

mod quirks {
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
                    (
                        [(header::CONTENT_TYPE, OCI_MANIFEST)],
                        m.bytes().clone(),
                    )
                        .into_response()
                })
                .head(|| async { StatusCode::OK })
                .put(|| async {
                    (StatusCode::CREATED, [("docker-content-digest", ZERO)]).into_response()
                }),
            )
            .route(
                "/v2/app/tags/list",
                get(|State(host): State<String>, RawQuery(q): RawQuery| async move {
                    let q = q.unwrap_or_default();
                    if q.contains("page=2") {
                        return axum::Json(json!({"name":"app","tags":["c"]})).into_response();
                    }
                    let mut h = HeaderMap::new();
                    let link = format!("<http://{host}/v2/app/tags/list?page=2>; rel=\"next\"");
                    h.insert(header::LINK, link.parse().unwrap());
                    (h, axum::Json(json!({"name":"app","tags":["a","b"]}))).into_response()
                }),
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
                                .body(axum::body::Body::from("{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"later\"}]}"))
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
                            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, c)])
                                .into_response()
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
                        while max.load(Ordering::SeqCst) < 3 && std::time::Instant::now() < deadline
                        {
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
}
