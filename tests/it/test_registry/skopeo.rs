//! skopeo against the test registry, and its concurrency measurement.

use super::*;

/// Write a one-image OCI layout (tag `v1`) into `dir`; returns (manifest bytes, layer bytes).
fn write_layout(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
    let layer = b"not really a tarball, but skopeo does not look".to_vec();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let manifest = image(&config, &[&layer], None, None);
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    for b in [&layer, &config, &manifest] {
        let d = sha(b);
        std::fs::write(
            dir.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
            b,
        )
        .unwrap();
    }
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": sha(&manifest), "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "v1"},
    }]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    (manifest, layer)
}

async fn skopeo(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .await
        .unwrap()
}

/// A real client (containers/image via skopeo) pushes and pulls through the token flow.
#[tokio::test]
async fn skopeo_round_trip_with_token_auth() {
    let reg = TestRegistry::start(Options {
        auth: Some(Auth::bearer("u", "p")),
        ..Options::default()
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let (manifest, layer) = write_layout(&tmp.path().join("src"));
    let src = format!("oci:{}:v1", tmp.path().join("src").display());
    let dst = format!("docker://{}/skopeo/img:v1", reg.host());
    let out = skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        "u:p",
        &src,
        &dst,
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        reg.manifest("skopeo/img", "v1").unwrap(),
        (OCI_MANIFEST.to_string(), manifest.clone())
    );
    assert_eq!(reg.blob("skopeo/img", &sha(&layer)).unwrap(), layer);

    let back = format!("oci:{}:v1", tmp.path().join("back").display());
    let out = skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        "u:p",
        &dst,
        &back,
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copied = std::fs::read(
        tmp.path()
            .join("back/blobs/sha256")
            .join(sha(&layer).trim_start_matches("sha256:")),
    )
    .unwrap();
    assert_eq!(copied, layer);
    assert!(reg.count("GET", "/token") >= 2);
    assert!(
        reg.log()
            .iter()
            .any(|l| l.auth_scheme.as_deref() == Some("Bearer") && l.status == 201)
    );
    assert_eq!(reg.open_uploads(), 0);
}

#[tokio::test]
async fn concurrent_requests_are_measured() {
    let reg = TestRegistry::start(Options::default()).await;
    let c = client();
    let d = reg.put_blob("r", b"x");
    let url = format!("{}/v2/r/blobs/{d}", reg.url());
    let one = c.get(&url).send().await.unwrap();
    assert_eq!(one.status(), StatusCode::OK);
    assert_eq!(reg.max_concurrent_requests(), 1);
    // Three requests held by a delay overlap.
    reg.push_fault(Fault {
        times: 3,
        ..Fault::once(
            None,
            "/blobs/",
            FaultKind::Delay(Duration::from_millis(500)),
        )
    });
    let (a, b, e) = tokio::join!(c.get(&url).send(), c.get(&url).send(), c.get(&url).send());
    for r in [a, b, e] {
        assert_eq!(r.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(reg.max_concurrent_requests(), 3);
    reg.reset_max_concurrent_requests();
    assert_eq!(reg.max_concurrent_requests(), 0);
}
