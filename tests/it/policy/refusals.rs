//! Every way a signature fails to count: the image is refused by name,
//! the reason says why, and the target receives no write.

use serde_json::json;

use super::signing::{
    KeyKind, Signer, bundle_sig, legacy_sig, pae, payload, referrer_sig, statement,
};
use super::{assert_refused, mirror, policy, setup};
use crate::support::fixtures::{self, Form};
use ocimirror::sync::SyncOptions;

#[derive(Clone, Copy, Debug)]
enum Case {
    WrongKey,
    TamperedPayload,
    PlatformManifestOnly,
    OtherImagesSignature,
    Unsigned,
    BundleByWrongKey,
    AllNeedsEveryVerifier,
    AnnotationMismatch,
}

#[tokio::test]
async fn an_image_without_a_trusted_signature_for_its_digest_is_refused_and_nothing_written() {
    use Case::*;
    for case in [
        WrongKey,
        TamperedPayload,
        PlatformManifestOnly,
        OtherImagesSignature,
        Unsigned,
        BundleByWrongKey,
        AllNeedsEveryVerifier,
        AnnotationMismatch,
    ] {
        let (src, dst, f) = setup(&format!("{case:?}")).await;
        let dir = tempfile::tempdir().unwrap();
        let release = Signer::new(dir.path(), "release", KeyKind::P256);
        let index = f.manifest(&f.index).desc();
        let mut text = policy("enforce", "any", &[&release]);
        let expected: String = match case {
            WrongKey => {
                let other = Signer::new(dir.path(), "other", KeyKind::P256);
                let p = payload(&f.index, json!({}));
                legacy_sig(&src, &f.index, &p, &other.sign(&p));
                "(cosign .sig tag): signature does not verify with any configured key".into()
            }
            TamperedPayload => {
                let p = payload(&f.index, json!({"env": "prod"}));
                let sig = release.sign(&p);
                let tampered = payload(&f.index, json!({"env": "prod", "x": "added"}));
                referrer_sig(&src, &index, &tampered, &sig);
                "(cosign referrer): signature does not verify with any configured key".into()
            }
            PlatformManifestOnly => {
                // Signing one platform manifest says nothing about the index.
                let p = payload(&f.amd, json!({}));
                legacy_sig(&src, &f.index, &p, &release.sign(&p));
                format!("signed payload names {}, not this image", f.amd)
            }
            OtherImagesSignature => {
                let other = fixtures::image(Form::Api, "another image");
                let p = payload(&other.index, json!({}));
                referrer_sig(&src, &index, &p, &release.sign(&p));
                format!("signed payload names {}, not this image", other.index)
            }
            Unsigned => {
                "no signature found for this digest (policy requires any of: release)".into()
            }
            BundleByWrongKey => {
                let other = Signer::new(dir.path(), "other", KeyKind::Rsa);
                let s = statement(&f.index);
                bundle_sig(&src, &index, &s, &other.sign(&pae(&s)));
                "(sigstore bundle): signature does not verify with any configured key".into()
            }
            AllNeedsEveryVerifier => {
                let ci = Signer::new(dir.path(), "ci", KeyKind::Ed25519);
                text = policy("enforce", "all", &[&release, &ci]);
                let p = payload(&f.index, json!({}));
                legacy_sig(&src, &f.index, &p, &release.sign(&p));
                "verifier ci accepted no signature (policy requires all)".into()
            }
            AnnotationMismatch => {
                text.push_str("annotations = { env = \"prod\" }\n");
                let p = payload(&f.index, json!({"env": "staging"}));
                legacy_sig(&src, &f.index, &p, &release.sign(&p));
                "verifier release: payload annotation env is staging, expected \"prod\"".into()
            }
        };
        let r = mirror(dir.path(), &src, &dst, &text, SyncOptions::default()).await;
        assert_refused(&r, &dst, &expected);
    }
}

#[tokio::test]
async fn a_key_file_that_is_not_a_public_key_is_a_config_problem_naming_it() {
    let (src, dst, _) = setup("badkey").await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("release.pub");
    std::fs::write(
        &bad,
        "-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let text = format!(
        "[jobs.policy]\nmode = \"enforce\"\n[[jobs.policy.cosign]]\nname = \"release\"\nkey = \"{}\"\n",
        bad.display()
    );
    let path = crate::sync_jobs::write_config(dir.path(), &src, &dst, "", &text);
    let err = ocimirror::config::load(&path).unwrap_err().to_string();
    assert!(err.contains("jobs[0].policy.cosign[0].key"), "{err}");
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert!(err.contains("not a PEM public key"), "{err}");
}
