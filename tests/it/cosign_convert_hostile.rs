//! `copy --cosign to-referrers` against hostile legacy `.sig` tags: an
//! index, something that is not a manifest, a manifest over the size cap,
//! one whose `subject` names another image, one served with bytes that do
//! not match its digest. Each is a failure naming the tag or its digest,
//! nothing half-written reaches the target, and the other image's
//! signature is still converted.

use serde_json::json;

use crate::cosign_convert::{
    Key, REPO, cosign_manifest, manifest_json, ocimirror, registry, signature_layer, verify_on,
};
use crate::support::cli::text;
use crate::support::fixtures::{OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, cosign_tag};
use crate::support::registry::{Fault, FaultKind, TestRegistry};
use crate::sync_jobs::incomplete_tags;

const COSIGN_SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

#[derive(Clone, Copy, Debug)]
enum Case {
    Index,
    NotAManifest,
    Huge,
    OtherSubject,
    DigestMismatch,
}

/// Stores the hostile `.sig` of `image` for `case` (`other` is another
/// image of the repository); returns its tag.
fn hostile(src: &TestRegistry, key: &Key, image: &str, other: &str, case: Case) -> String {
    let tag = cosign_tag(image, "sig");
    let good = cosign_manifest(
        src,
        &[signature_layer(key, image, "hostile")],
        OCI_CONFIG,
        None,
    );
    match case {
        Case::Index => {
            let (_, other_bytes) = src.manifest(REPO, other).unwrap();
            let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": other, "size": other_bytes.len()}]});
            let bytes = serde_json::to_vec(&index).unwrap();
            src.put_manifest(REPO, &tag, OCI_INDEX, &bytes);
        }
        Case::NotAManifest => {
            let bytes = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":"none"}"#;
            src.put_manifest(REPO, &tag, OCI_MANIFEST, bytes);
        }
        Case::Huge => {
            let mut m: serde_json::Value = serde_json::from_slice(&good).unwrap();
            m["annotations"] = json!({"padding": "x".repeat(5 << 20)});
            let bytes = serde_json::to_vec(&m).unwrap();
            src.put_manifest(REPO, &tag, OCI_MANIFEST, &bytes);
        }
        Case::OtherSubject => {
            let (_, other_bytes) = src.manifest(REPO, other).unwrap();
            let with_subject = cosign_manifest(
                src,
                &[signature_layer(key, image, "hostile")],
                OCI_CONFIG,
                Some((OCI_MANIFEST, other, other_bytes.len())),
            );
            src.put_manifest(REPO, &tag, OCI_MANIFEST, &with_subject);
        }
        Case::DigestMismatch => {
            src.put_manifest(REPO, &tag, OCI_MANIFEST, &good);
            for _ in 0..8 {
                src.push_fault(Fault::once(
                    Some("GET"),
                    &format!("/manifests/{tag}"),
                    FaultKind::WrongBytes,
                ));
            }
        }
    }
    tag
}

#[tokio::test]
async fn hostile_sig_tags_fail_by_name_and_the_other_image_is_still_converted() {
    for case in [
        Case::Index,
        Case::NotAManifest,
        Case::Huge,
        Case::OtherSubject,
        Case::DigestMismatch,
    ] {
        let key = Key::new();
        let src = registry(true).await;
        let dst = registry(true).await;
        let bad = src.seed_image(REPO, "v1", &[format!("{case:?} bad").as_bytes()]);
        let good = src.seed_image(REPO, "v2", &[format!("{case:?} good").as_bytes()]);
        let sig = cosign_manifest(
            &src,
            &[signature_layer(&key, &good, "good")],
            OCI_CONFIG,
            None,
        );
        src.put_manifest(REPO, &cosign_tag(&good, "sig"), OCI_MANIFEST, &sig);
        let tag = hostile(&src, &key, &bad, &good, case);

        let out = ocimirror(&[
            "copy",
            "--all-tags",
            "--cosign",
            "to-referrers",
            &format!("{}/{REPO}", src.host()),
            &format!("{}/{REPO}", dst.host()),
        ])
        .await;
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{case:?}: {all}");
        assert!(
            all.contains(&format!("FAILED {}/{REPO}:v1: ", src.host())),
            "{case:?}: {all}"
        );
        assert!(all.contains(&tag), "{case:?}: the tag is not named: {all}");
        let why = match case {
            Case::Index => {
                "media type is application/vnd.oci.image.index.v1+json, not an OCI image manifest"
            }
            Case::NotAManifest => "manifest is not valid JSON of a known shape",
            Case::Huge => "over the 4194304-byte limit",
            Case::OtherSubject => "cannot be converted: it already has a subject",
            Case::DigestMismatch => "digest mismatch",
        };
        assert!(all.contains(why), "{case:?}: {why:?} not in {all}");
        // The good image arrived with its signature converted to a
        // referrer that verifies (the OtherSubject manifest is a referrer
        // of it on the source too, and is mirrored as one).
        assert!(dst.manifest(REPO, "v2").is_some(), "{case:?}");
        let converted: Vec<String> = dst
            .referrers(REPO, &good)
            .into_iter()
            .filter(|r| manifest_json(&dst, r)["config"]["mediaType"] == COSIGN_SIG)
            .collect();
        assert_eq!(converted.len(), 1, "{case:?}: {converted:?}");
        let m = manifest_json(&dst, &converted[0]);
        assert_eq!(verify_on(&dst, &m, "sig", &good, &key), 1, "{case:?}");
        // Nothing half-written: every tag on the target is complete, and
        // nothing of the hostile tag was converted.
        assert_eq!(
            incomplete_tags(&dst, REPO),
            Vec::<String>::new(),
            "{case:?}"
        );
        assert!(dst.referrers(REPO, &bad).is_empty(), "{case:?}");
    }
}
