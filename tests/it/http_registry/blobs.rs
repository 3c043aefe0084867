//! Blob uploads and reads, and retries of failed requests.

use super::*;

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
