//! Injected faults, redirects, conditional requests, rate-limit headers,
//! large bodies and the seeding helpers.

use super::*;

#[tokio::test]
async fn status_and_rate_limit_faults() {
    let reg = TestRegistry::start(Options::default()).await;
    let c = client();
    let (_, d) = seed_image(&reg, "r", "t", b"l");
    let url = format!("{}/v2/r/manifests/{d}", reg.url());
    reg.push_fault(Fault {
        times: 2,
        ..Fault::once(Some("GET"), "/manifests/", FaultKind::Status(503))
    });
    reg.push_fault(Fault::once(
        None,
        "/manifests/",
        FaultKind::TooManyRequests(RetryAfter::Seconds(7)),
    ));
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    reg.push_fault(Fault::once(
        None,
        "/manifests/",
        FaultKind::TooManyRequests(RetryAfter::HttpDate(when)),
    ));
    reg.push_fault(Fault::once(
        None,
        "/manifests/",
        FaultKind::TooManyRequests(RetryAfter::None),
    ));
    reg.push_fault(Fault::once(
        None,
        "/manifests/",
        FaultKind::Delay(Duration::from_millis(20)),
    ));

    // HEAD does not match the GET-only 503 fault but takes the next one in order.
    let r = c.head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h(&r, "retry-after").unwrap(), "7");
    for _ in 0..2 {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error_codes(r).await, ["UNAVAILABLE"]);
    }
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        h(&r, "retry-after").unwrap(),
        "Fri, 15 Jan 2027 08:00:00 GMT"
    );
    assert_eq!(error_codes(r).await, ["TOOMANYREQUESTS"]);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(h(&r, "retry-after").is_none());
    assert_eq!(reg.pending_faults(), 1);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(reg.pending_faults(), 0);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let statuses: Vec<u16> = reg.log().iter().map(|l| l.status).collect();
    assert_eq!(statuses, [429, 503, 503, 429, 429, 200, 200]);
    assert_eq!(reg.count("GET", "/manifests/"), 6);
    assert_eq!(reg.count("HEAD", "/manifests/"), 1);
    assert_eq!(reg.count("*", "/r/"), 7);
    reg.clear_log();
    assert!(reg.log().is_empty());
}

#[tokio::test]
async fn body_faults_damage_the_body() {
    let reg = TestRegistry::start(Options::default()).await;
    let c = client();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let d = reg.put_blob("r", &data);
    let url = format!("{}/v2/r/blobs/{d}", reg.url());

    for kind in [FaultKind::TruncatedBody, FaultKind::ResetMidBody] {
        // HEAD has no body: the fault stays pending.
        reg.push_fault(Fault::once(None, "/blobs/", kind));
        assert_eq!(c.head(&url).send().await.unwrap().status(), StatusCode::OK);
        assert_eq!(reg.pending_faults(), 1);
        let mut r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.content_length(), Some(data.len() as u64));
        let mut received = 0;
        let failed = loop {
            match r.chunk().await {
                Ok(Some(c)) => received += c.len(),
                Ok(None) => break false,
                Err(_) => break true,
            }
        };
        assert!(failed, "the body read must fail");
        assert!(received <= data.len() / 2, "received {received}");
        assert_eq!(reg.pending_faults(), 0);
    }

    reg.push_fault(Fault::once(Some("GET"), "/blobs/", FaultKind::WrongBytes));
    let r = c.get(&url).send().await.unwrap();
    let got = r.bytes().await.unwrap();
    assert_eq!(got.len(), data.len());
    assert_ne!(got.to_vec(), data);
    assert_ne!(sha(&got), d);
    // Used up: the next read is intact.
    assert_eq!(
        c.get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec(),
        data
    );
}

#[tokio::test]
async fn blob_redirect_refuses_forwarded_authorization() {
    let reg = TestRegistry::start(Options {
        redirect_blobs: true,
        ..Options::default()
    })
    .await;
    let c = client();
    let d = reg.put_blob("r", b"redirected");
    let r = c
        .get(format!("{}/v2/r/blobs/{d}", reg.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let loc = h(&r, "location").unwrap();
    assert!(loc.starts_with("http://localhost:"));
    assert!(!loc.contains(&reg.host()));
    let r = c.get(&loc).bearer_auth("leaked").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"redirected");
    // HEAD is answered directly.
    let r = c
        .head(format!("{}/v2/r/blobs/{d}", reg.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn conditional_manifest_put_and_ratelimit_headers() {
    let reg = TestRegistry::start(Options {
        ratelimit: Some((100, 42)),
        ..Options::default()
    })
    .await;
    let c = client();
    let (m, d) = seed_image(&reg, "r", "t", b"l");
    let url = format!("{}/v2/r/manifests/t", reg.url());
    let r = c.head(&url).send().await.unwrap();
    assert_eq!(h(&r, "ratelimit-limit").unwrap(), "100;w=21600");
    assert_eq!(h(&r, "ratelimit-remaining").unwrap(), "42;w=21600");
    let r = c
        .put(&url)
        .header("content-type", OCI_MANIFEST)
        .header("if-none-match", "*")
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = c
        .put(&url)
        .header("content-type", OCI_MANIFEST)
        .header("if-match", "\"sha256:0\"")
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = c
        .put(&url)
        .header("content-type", OCI_MANIFEST)
        .header("if-match", format!("\"{d}\""))
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .put(format!("{}/v2/r/manifests/new", reg.url()))
        .header("content-type", OCI_MANIFEST)
        .header("if-none-match", "*")
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .get(&url)
        .header("if-none-match", format!("\"{d}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn single_post_upload_and_catalog() {
    let reg = TestRegistry::start(Options::default()).await;
    let c = client();
    let data = b"single post".to_vec();
    let r = c
        .post(format!(
            "{}/v2/x/y/blobs/uploads/?digest={}",
            reg.url(),
            sha(&data)
        ))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(reg.blob("x/y", &sha(&data)).unwrap(), data);
    let r = c
        .post(format!(
            "{}/v2/x/y/blobs/uploads/?digest={}",
            reg.url(),
            sha(b"other")
        ))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(reg.blob("x/y", &sha(b"other")).is_none());
    // A body without digest is refused; an invalid name too.
    let r = c
        .post(format!("{}/v2/x/y/blobs/uploads/", reg.url()))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = post_upload(&c, &reg, "Bad", "").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_codes(r).await, ["NAME_INVALID"]);
    assert_eq!(reg.open_uploads(), 0);

    reg.put_blob("a", b"1");
    let r = c
        .get(format!("{}/v2/_catalog", reg.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await["repositories"], json!(["a", "x/y"]));
    let r = c.get(format!("{}/v2/", reg.url())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        h(&r, "docker-distribution-api-version").unwrap(),
        "registry/2.0"
    );
}

#[tokio::test]
async fn large_bodies_and_docker_manifests() {
    let reg = TestRegistry::start(Options::default()).await;
    let c = client();
    // Larger than axum's default 2 MiB body limit, both monolithic and streamed PATCH.
    let data: Vec<u8> = (0..((2u32 << 20) + 4096))
        .map(|i| (i % 253) as u8)
        .collect();
    let r = post_upload(&c, &reg, "r", "").await;
    let loc = h(&r, "location").unwrap();
    let r = c
        .put(format!("{}{loc}?digest={}", reg.url(), sha(&data)))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = post_upload(&c, &reg, "r2", "").await;
    let loc = h(&r, "location").unwrap();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(1 << 20).map(|c| Ok(c.to_vec())).collect();
    let r = c
        .patch(format!("{}{loc}", reg.url()))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(h(&r, "range").unwrap(), format!("0-{}", data.len() - 1));
    let loc = h(&r, "location").unwrap();
    let r = c
        .put(format!("{}{loc}?digest={}", reg.url(), sha(&data)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(reg.blob("r2", &sha(&data)).unwrap().len(), data.len());

    const DOCKER: &str = "application/vnd.docker.distribution.manifest.v2+json";
    const LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    let config = reg.put_blob("r", b"{}");
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sha(&data), "size": data.len()}],
    }))
    .unwrap();
    let r = put_manifest(&c, &reg, "r", "d", DOCKER, &m).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": LIST,
        "manifests": [{"mediaType": DOCKER, "digest": sha(&m), "size": m.len(), "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .unwrap();
    // Docker types need their mediaType in the body.
    let mut no_mt: Value = serde_json::from_slice(&list).unwrap();
    no_mt.as_object_mut().unwrap().remove("mediaType");
    let r = put_manifest(
        &c,
        &reg,
        "r",
        "l",
        LIST,
        &serde_json::to_vec(&no_mt).unwrap(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = put_manifest(&c, &reg, "r", "l", LIST, &list).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .get(format!("{}/v2/r/manifests/l", reg.url()))
        .header("accept", format!("{OCI_INDEX}, {LIST}"))
        .send()
        .await
        .unwrap();
    assert_eq!(h(&r, "content-type").unwrap(), LIST);
    assert_eq!(r.bytes().await.unwrap().to_vec(), list);
}

#[tokio::test]
async fn seeding_helpers_build_valid_content() {
    let reg = TestRegistry::start(Options::default()).await;
    let c = client();
    let amd = reg.seed_image("r", "amd", &[b"a1", b"a2"]);
    let arm = reg.seed_image("r", "arm", &[b"b1"]);
    let idx = reg.seed_index(
        "r",
        "multi",
        &[(&amd, "linux/amd64"), (&arm, "linux/arm64")],
    );
    let sig = reg.seed_referrer("r", &idx, "application/vnd.example.sig", b"signature");
    assert_eq!(reg.tags("r"), ["amd", "arm", "multi"]);
    assert_eq!(reg.referrers("r", &idx), vec![sig.clone()]);
    // Everything the helpers stored passes the registry's own PUT validation.
    for d in [&amd, &arm, &idx, &sig] {
        let (mt, bytes) = reg.manifest("r", d).unwrap();
        let r = put_manifest(&c, &reg, "r", d, &mt, &bytes).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{d}");
        assert_eq!(sha(&bytes), **d);
    }
    let r = c
        .get(format!("{}/v2/r/referrers/{idx}", reg.url()))
        .send()
        .await
        .unwrap();
    let v = json_of(r).await;
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
}

#[tokio::test]
async fn early_answers_to_large_bodies_arrive_as_statuses() {
    let reg = TestRegistry::start(Options {
        auth: Some(Auth::basic("u", "p")),
        ..Options::default()
    })
    .await;
    let c = client();
    let data = vec![1u8; 4 << 20];
    let r = c
        .post(format!("{}/v2/r/blobs/uploads/", reg.url()))
        .basic_auth("u", Some("p"))
        .send()
        .await
        .unwrap();
    let loc = format!(
        "{}{}?digest={}",
        reg.url(),
        h(&r, "location").unwrap(),
        sha(&data)
    );
    // No credentials: the 401 arrives although the body is not wanted.
    let r = c.put(&loc).body(data.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // An injected 500 happens before the handler: the session survives.
    reg.push_fault(Fault::once(
        Some("PUT"),
        "/blobs/uploads/",
        FaultKind::Status(500),
    ));
    let r = c
        .put(&loc)
        .basic_auth("u", Some("p"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reg.open_uploads(), 1);
    let r = c
        .put(&loc)
        .basic_auth("u", Some("p"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(reg.open_uploads(), 0);
    assert_eq!(
        reg.log().iter().map(|l| l.status).collect::<Vec<_>>(),
        [202, 401, 500, 201]
    );
}
