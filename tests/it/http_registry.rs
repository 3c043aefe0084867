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

mod auth;
mod blobs;
mod listing;
mod quirks;

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
