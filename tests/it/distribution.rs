//! `HttpRegistry` against a real CNCF distribution 2.8 (Debian's
//! `docker-registry`): no referrers API, `n` ignored on tags, strict index
//! children, `_state`-signed upload Locations.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;

use ocimirror::oci::media_type::{
    DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST,
};
use ocimirror::oci::{Descriptor, Digest, Manifest, RepoName};
use ocimirror::registry::http::{
    DockerConfigSource, HttpRegistry, HttpSettings, RetryPolicy, UploadMode,
};
use ocimirror::registry::{ErrorKind, Precondition, ReferrersSupport, Registry};

use crate::support::distribution::Distribution;
use crate::support::values::{body_of, desc, repo, tag};

pub(crate) fn client(d: &Distribution, upload: UploadMode) -> HttpRegistry {
    HttpRegistry::new(
        &d.host(),
        HttpSettings {
            docker_config: DockerConfigSource::Off,
            upload,
            retry: RetryPolicy {
                max_attempts: 3,
                min_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(50),
            },
            ..HttpSettings::default()
        },
    )
    .unwrap()
}

pub(crate) fn manifest(v: serde_json::Value) -> Manifest {
    Manifest::parse(Bytes::from(serde_json::to_vec(&v).unwrap()), None).unwrap()
}

pub(crate) async fn push_image(
    r: &HttpRegistry,
    name: &RepoName,
    seed: &str,
    media_type: &str,
) -> Manifest {
    let config = format!("{{\"seed\":\"{seed}\"}}").into_bytes();
    let layer: Vec<u8> = format!("layer {seed} ").repeat(3000).into_bytes();
    for (b, mt) in [(&config, OCI_CONFIG), (&layer, OCI_LAYER_GZIP)] {
        if r.blob_head(name, &Digest::sha256(b))
            .await
            .unwrap()
            .is_none()
        {
            r.blob_put(name, &desc(b, mt), body_of(b, 1000))
                .await
                .unwrap();
        }
    }
    let m = manifest(json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": desc(&config, OCI_CONFIG),
        "layers": [desc(&layer, OCI_LAYER_GZIP)],
    }));
    r.manifest_put(name, &m.digest().clone().into(), &m, Precondition::None)
        .await
        .unwrap();
    m
}

#[tokio::test]
async fn push_pull_blobs_and_manifests() {
    let d = Distribution::start();
    for (mode, name) in [
        (UploadMode::Monolithic, "mono/app"),
        (UploadMode::Chunked { chunk_size: 4096 }, "chunked/app"),
    ] {
        let r = client(&d, mode);
        let name = repo(name);
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
        let bd = desc(&data, OCI_LAYER_GZIP);
        r.blob_put(&name, &bd, body_of(&data, 1000)).await.unwrap();
        assert_eq!(r.blob_head(&name, &bd.digest).await.unwrap(), Some(50_000));
        let blob = r.blob_get(&name, &bd.digest).await.unwrap();
        let mut got = Vec::new();
        let mut s = blob.stream;
        while let Some(c) = s.next().await {
            got.extend_from_slice(&c.unwrap());
        }
        assert_eq!(got, data);

        for mt in [OCI_MANIFEST, DOCKER_MANIFEST] {
            let m = push_image(&r, &name, mt, mt).await;
            r.manifest_put(&name, &tag("latest"), &m, Precondition::None)
                .await
                .unwrap();
            let head = r
                .manifest_head(&name, &tag("latest"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(head.digest, *m.digest());
            assert_eq!(head.media_type, mt);
            let f = r
                .manifest_fetch(&name, &tag("latest"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(f.manifest.bytes(), m.bytes());
        }
        // A wrong blob is refused and leaves nothing behind.
        let e = r
            .blob_put(
                &name,
                &desc(b"right", OCI_LAYER_GZIP),
                body_of(b"wrong", 1000),
            )
            .await
            .unwrap_err();
        assert!(matches!(e.kind, ErrorKind::DigestMismatch { .. }), "{e}");
        assert_eq!(
            r.blob_head(&name, &Digest::sha256(b"right")).await.unwrap(),
            None
        );
    }
    // Mount between repositories of the same registry.
    let r = client(&d, UploadMode::Monolithic);
    let layer = Digest::sha256(format!("layer {OCI_MANIFEST} ").repeat(3000).as_bytes());
    assert!(
        r.blob_mount(&repo("mounted/app"), &layer, &repo("mono/app"))
            .await
            .unwrap()
    );
    assert!(
        r.blob_head(&repo("mounted/app"), &layer)
            .await
            .unwrap()
            .is_some()
    );
    // distribution answers 202 (an upload session) when the source lacks it.
    assert!(
        !r.blob_mount(
            &repo("mounted/app"),
            &Digest::sha256(b"nowhere"),
            &repo("mono/app")
        )
        .await
        .unwrap()
    );
}

#[tokio::test]
async fn tags_ignore_n_and_referrers_api_is_unsupported() {
    let d = Distribution::start();
    let r = client(&d, UploadMode::Monolithic);
    let name = repo("team/app");
    let m = push_image(&r, &name, "t", OCI_MANIFEST).await;
    let mut want: Vec<String> = (0..30).map(|i| format!("t{i:02}")).collect();
    for t in &want {
        r.manifest_put(&name, &tag(t), &m, Precondition::None)
            .await
            .unwrap();
    }
    let mut tags = r.tags(&name).await.unwrap();
    tags.sort();
    want.sort();
    assert_eq!(tags, want);
    assert_eq!(r.catalog().await.unwrap(), ["team/app"]);

    assert_eq!(r.referrers_api(&name, m.digest()).await.unwrap(), None);
    assert_eq!(
        r.referrers_support(&name).await.unwrap(),
        ReferrersSupport::Unsupported
    );
    let fresh = client(&d, UploadMode::Monolithic);
    assert_eq!(
        fresh.referrers_support(&name).await.unwrap(),
        ReferrersSupport::Unsupported
    );

    // A referrer is stored, but distribution does not index it.
    let empty = b"{}".to_vec();
    r.blob_put(
        &name,
        &desc(&empty, "application/vnd.oci.empty.v1+json"),
        body_of(&empty, 1000),
    )
    .await
    .unwrap();
    let sig = manifest(json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": desc(&empty, "application/vnd.oci.empty.v1+json"),
        "layers": [],
        "subject": m.descriptor(),
    }));
    let out = r
        .manifest_put(
            &name,
            &sig.digest().clone().into(),
            &sig,
            Precondition::None,
        )
        .await
        .unwrap();
    assert!(!out.subject_indexed);
    let back = r
        .manifest_get(&name, &sig.digest().clone().into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.subject().unwrap().digest, *m.digest());
}

#[tokio::test]
async fn index_with_missing_child_is_rejected() {
    let d = Distribution::start();
    let r = client(&d, UploadMode::Monolithic);
    let name = repo("app");
    let present = push_image(&r, &name, "p", OCI_MANIFEST).await;
    let missing = Descriptor::new(OCI_MANIFEST, Digest::sha256(b"not pushed"), 10);
    let idx = manifest(json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [present.descriptor(), missing],
    }));
    let e = r
        .manifest_put(&name, &tag("multi"), &idx, Precondition::None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e.kind, ErrorKind::Status { status: 400, codes, .. } if codes.iter().any(|c| c == "MANIFEST_BLOB_UNKNOWN")),
        "{e}"
    );
    assert!(e.to_string().contains(&d.host()) && e.to_string().contains("manifest_put"));
    let ok = manifest(json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [present.descriptor()],
    }));
    r.manifest_put(&name, &tag("multi"), &ok, Precondition::None)
        .await
        .unwrap();
    let got = r.manifest_get(&name, &tag("multi")).await.unwrap().unwrap();
    assert_eq!(got.bytes(), ok.bytes());
    assert!(
        r.manifest_get(&name, &tag("absent"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn tls_by_default_with_custom_ca() {
    let d = Distribution::start_tls();
    let name = repo("tls/app");
    let settings = |f: &dyn Fn(&mut HttpSettings)| {
        let mut s = HttpSettings {
            docker_config: DockerConfigSource::Off,
            // Loopback would default to plain HTTP; this registry speaks TLS.
            plain_http: Some(false),
            retry: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            ..HttpSettings::default()
        };
        f(&mut s);
        s
    };
    // Unknown CA: refused.
    let r = HttpRegistry::new(&d.host(), settings(&|_| {})).unwrap();
    assert!(r.base_url().starts_with("https://"));
    let e = r.tags(&name).await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Transport { .. }), "{e}");
    // With the test CA: works.
    let r = HttpRegistry::new(
        &d.host(),
        settings(&|s| s.ca_certificates = vec![Distribution::test_ca()]),
    )
    .unwrap();
    let m = push_image(&r, &name, "tls", OCI_MANIFEST).await;
    assert_eq!(
        r.manifest_get(&name, &m.digest().clone().into())
            .await
            .unwrap()
            .unwrap()
            .bytes(),
        m.bytes()
    );
    // HTTP/2, negotiated by ALPN: distribution offers it over TLS.
    let log = d.log();
    let requests: Vec<&str> = log.lines().filter(|l| l.contains("\"GET /v2/")).collect();
    assert!(!requests.is_empty(), "no access log: {log}");
    assert!(
        requests.iter().all(|l| l.contains(" HTTP/2.0\"")),
        "{requests:#?}"
    );
    // Verification off: works without the CA.
    let r = HttpRegistry::new(&d.host(), settings(&|s| s.tls_verify = false)).unwrap();
    assert!(
        r.manifest_head(&name, &m.digest().clone().into())
            .await
            .unwrap()
            .is_some()
    );
    // A CA file that is not PEM is a configuration error.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "not a certificate").unwrap();
    let e = HttpRegistry::new(
        &d.host(),
        settings(&|s| s.ca_certificates = vec![bad.path().into()]),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("PEM") || e.to_string().contains("CA"),
        "{e}"
    );
}
