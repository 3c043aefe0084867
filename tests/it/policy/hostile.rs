//! Hostile signatures: oversized or lying blobs and malformed signature
//! manifests. Each time the image is refused with a reason naming the
//! signature, nothing of it reaches the target, and the other image of
//! the job is still copied.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use super::signing::{BUNDLE, KeyKind, SIMPLE_SIGNING, Signer, legacy_sig, payload};
use super::{mirror, policy};
use crate::support::fixtures::{
    Fixture, OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, cosign_tag, fallback_tag, sha256,
};
use crate::support::registry::{Fault, FaultKind, Options, TestRegistry};
use crate::sync_jobs::{REPO, assert_mirrored, seed_tags};
use ocimirror::sync::SyncOptions;

/// `MAX_SIGNATURE_BYTES` of the gate.
const CAP: usize = 256 * 1024;

#[derive(Clone, Copy, Debug)]
enum Case {
    /// The descriptor announces more than the cap.
    OversizeAnnounced,
    /// The descriptor announces a few bytes; the blob is 8 MiB, trickled.
    LongerThanAnnounced,
    NoAnnotation,
    NotBase64,
    PayloadNotJson,
    NoCritical,
    /// Listed in the image's fallback index, but its `subject` is another.
    SubjectElsewhere,
    BundleGarbage,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn put(reg: &TestRegistry, reference: Option<&str>, v: &Value) -> String {
    let bytes = serde_json::to_vec(v).unwrap();
    let digest = sha256(&bytes);
    reg.put_manifest(REPO, reference.unwrap_or(&digest), OCI_MANIFEST, &bytes)
}

/// A legacy `.sig` manifest of `image` with exactly `layer`.
fn sig_tag(reg: &TestRegistry, image: &str, layer: Value) -> String {
    let config = br#"{"architecture":"","config":{},"os":""}"#;
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": reg.put_blob(REPO, config), "size": config.len()},
        "layers": [layer]});
    put(reg, Some(&cosign_tag(image, "sig")), &m)
}

/// A simple-signing layer descriptor with `annotations`.
fn layer(digest: &str, size: usize, annotations: Value) -> Value {
    json!({"mediaType": SIMPLE_SIGNING, "digest": digest, "size": size, "annotations": annotations})
}

fn signed_layer(reg: &TestRegistry, key: &Signer, bytes: &[u8]) -> Value {
    let d = reg.put_blob(REPO, bytes);
    layer(
        &d,
        bytes.len(),
        json!({"dev.cosignproject.cosign/signature": b64(&key.sign(bytes))}),
    )
}

/// Stores the hostile signature of `case` for `bad`; returns the
/// signature manifest's digest and the reason the refusal must give.
fn hostile(src: &TestRegistry, bad: &Fixture, key: &Signer, case: Case) -> (String, String) {
    use Case::*;
    let image = &bad.index;
    match case {
        OversizeAnnounced => {
            let p = payload(image, json!({}));
            let mut l = signed_layer(src, key, &p);
            l["size"] = json!(CAP + 1);
            let sig = sig_tag(src, image, l.clone());
            let d = l["digest"].as_str().unwrap().to_string();
            let reason = format!(
                "signature blob {d} is {} bytes, over the {CAP}-byte cap",
                CAP + 1
            );
            (sig, reason)
        }
        LongerThanAnnounced => {
            let big = vec![b'x'; 8 << 20];
            let d = src.put_blob(REPO, &big);
            // 32 KiB every 50 ms: reading it all takes 12.8 s.
            src.push_fault(Fault::once(
                Some("GET"),
                &format!("/blobs/{d}"),
                FaultKind::Trickle {
                    chunk: 32 * 1024,
                    every: Duration::from_millis(50),
                },
            ));
            let sig = sig_tag(
                src,
                image,
                layer(
                    &d,
                    300,
                    json!({"dev.cosignproject.cosign/signature": b64(b"sig")}),
                ),
            );
            (
                sig,
                format!("signature blob {d} is over the {CAP}-byte cap"),
            )
        }
        NoAnnotation => {
            let p = payload(image, json!({}));
            let d = src.put_blob(REPO, &p);
            let sig = sig_tag(src, image, layer(&d, p.len(), json!({})));
            (
                sig,
                "no dev.cosignproject.cosign/signature annotation".into(),
            )
        }
        NotBase64 => {
            let p = payload(image, json!({}));
            let d = src.put_blob(REPO, &p);
            let l = layer(
                &d,
                p.len(),
                json!({"dev.cosignproject.cosign/signature": "%%% not base64 %%%"}),
            );
            (sig_tag(src, image, l), "signature is not base64".into())
        }
        PayloadNotJson => {
            let l = signed_layer(src, key, b"<payload>not JSON</payload>");
            (
                sig_tag(src, image, l),
                "signed payload is not a cosign image signature: not JSON".into(),
            )
        }
        NoCritical => {
            let l = signed_layer(src, key, br#"{"optional":{"env":"prod"}}"#);
            (
                sig_tag(src, image, l),
                "critical.type is not a cosign container image signature".into(),
            )
        }
        SubjectElsewhere => {
            // A valid signature for the image, in a referrer whose subject
            // is another manifest, listed in the image's fallback index:
            // the walk skips it (its subject differs), so it is no
            // signature of this image.
            let p = payload(image, json!({}));
            let elsewhere = bad.amd.clone();
            let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
                "config": {"mediaType": OCI_EMPTY, "digest": src.put_blob(REPO, b"{}"), "size": 2},
                "layers": [signed_layer(src, key, &p)],
                "subject": bad.manifest(&elsewhere).desc()});
            let bytes = serde_json::to_vec(&m).unwrap();
            let sig = put(src, None, &m);
            let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": sig, "size": bytes.len(),
                 "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json"}]});
            let index = serde_json::to_vec(&index).unwrap();
            src.put_manifest(REPO, &fallback_tag(image), OCI_INDEX, &index);
            (sig, "no signature found for this digest".into())
        }
        BundleGarbage => {
            let garbage = b"{\"dsseEnvelope\": [not json";
            let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE,
                "config": {"mediaType": OCI_EMPTY, "digest": src.put_blob(REPO, b"{}"), "size": 2},
                "layers": [{"mediaType": BUNDLE, "digest": src.put_blob(REPO, garbage), "size": garbage.len()}],
                "subject": bad.manifest(image).desc()});
            (put(src, None, &m), "bundle is not valid JSON".into())
        }
    }
}

/// Asserts that nothing of `f` (its tag `tag`, manifests, blobs not
/// shared with `copied`, like the empty config) is on `dst`.
fn assert_absent(dst: &TestRegistry, tag: &str, f: &Fixture, copied: &Fixture) {
    assert!(dst.manifest(REPO, tag).is_none(), "tag {tag} written");
    for m in &f.manifests {
        assert!(
            dst.manifest(REPO, &m.digest).is_none(),
            "{} written",
            m.digest
        );
    }
    for b in f.blobs.iter().filter(|b| !copied.blobs.contains(b)) {
        let d = sha256(b);
        assert!(dst.blob(REPO, &d).is_none(), "blob {d} written");
    }
}

#[tokio::test]
async fn hostile_signatures_are_refused_by_name_and_the_other_image_is_copied() {
    use Case::*;
    for case in [
        OversizeAnnounced,
        LongerThanAnnounced,
        NoAnnotation,
        NotBase64,
        PayloadNotJson,
        NoCritical,
        SubjectElsewhere,
        BundleGarbage,
    ] {
        let src = TestRegistry::start(Options::default()).await;
        let dst = TestRegistry::start(Options::default()).await;
        let mut images = seed_tags(&src, REPO, &format!("{case:?}"), 2);
        let (bad_tag, bad) = images.pop().unwrap();
        let (good_tag, good) = images.pop().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = Signer::new(dir.path(), "release", KeyKind::P256);
        let p = payload(&good.index, json!({}));
        legacy_sig(&src, &good.index, &p, &key.sign(&p));
        let (sig, reason) = hostile(&src, &bad, &key, case);

        let policy = policy("enforce", "any", &[&key]);
        let started = Instant::now();
        let r = mirror(dir.path(), &src, &dst, &policy, SyncOptions::default()).await;
        let took = started.elapsed();

        assert_eq!(r.failures.len(), 1, "{case:?}: {:?}", r.failures);
        let f = &r.failures[0];
        assert_eq!(f.kind, "unverified", "{case:?}: {f:?}");
        assert!(f.item.ends_with(&format!(":{bad_tag}")), "{case:?}: {f:?}");
        assert!(
            f.error.contains(&reason),
            "{case:?}: {reason:?} not in {}",
            f.error
        );
        if !matches!(case, SubjectElsewhere) {
            assert!(
                f.error.contains(&sig),
                "{case:?}: {sig} not named in {}",
                f.error
            );
        }
        assert_eq!(r.counts.images_copied, 1, "{case:?}");
        assert_mirrored(&dst, REPO, &good);
        assert!(dst.manifest(REPO, &good_tag).is_some());
        assert_absent(&dst, &bad_tag, &bad, &good);
        assert!(
            dst.manifest(REPO, &sig).is_none(),
            "{case:?}: signature written"
        );
        match case {
            OversizeAnnounced => {
                let d = reason.split(' ').nth(2).unwrap();
                assert_eq!(src.count("GET", &format!("/blobs/{d}")), 0, "read anyway");
            }
            // Stopped at the cap: the whole trickled body would take 12.8 s.
            LongerThanAnnounced => assert!(took < Duration::from_secs(8), "took {took:?}"),
            _ => {}
        }
    }
}
