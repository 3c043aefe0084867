//! The signature policy end to end: keys and signatures made by Debian's
//! `openssl` (independent of the verifier's RustCrypto code), signatures
//! stored on an in-process source registry in every form the walk
//! discovers (cosign legacy `.sig` tags, OCI 1.1 referrers, Sigstore
//! bundles), jobs run through `app::run_once`. Valid → copied; anything
//! else → refused by name with the reason and nothing written; warn mode
//! copies and says so; a second run verifies nothing (cache).

mod copy_cli;
mod hostile;
mod notation;
mod notation_trust_policy;
mod real;
mod refusals;
mod rotation;
mod signing;

use std::path::Path;

use ocimirror::sync::{JobReport, SyncOptions};

use crate::support::fixtures::{self, Fixture, Form};
use crate::support::registry::{Options, TestRegistry};
use crate::sync_jobs::{REPO, assert_mirrored, run_once, write_config, writes};
use signing::{KeyKind, Signer, bundle_sig, legacy_sig, payload, referrer_sig, statement};

/// A source holding one signed-or-not image (`v1`, a 2-platform index with
/// an SBOM and an attestation) and an empty target.
async fn setup(seed: &str) -> (TestRegistry, TestRegistry, Fixture) {
    let src = TestRegistry::start(Options::default()).await;
    let dst = TestRegistry::start(Options::default()).await;
    let f = fixtures::image(Form::Api, seed);
    fixtures::seed_registry(&src, REPO, &f);
    (src, dst, f)
}

/// `[jobs.policy]` in `mode` with one cosign verifier per signer.
fn policy(mode: &str, require: &str, signers: &[&Signer]) -> String {
    let mut s = format!("[jobs.policy]\nmode = \"{mode}\"\nrequire = \"{require}\"\n");
    for k in signers {
        s.push_str(&format!(
            "[[jobs.policy.cosign]]\nname = \"{}\"\nkey = \"{}\"\n",
            k.name,
            k.public_key().display()
        ));
    }
    s
}

/// Runs the one job of a config mirroring `src/REPO` to `dst/REPO` with
/// `policy` appended to the job.
async fn mirror(
    dir: &Path,
    src: &TestRegistry,
    dst: &TestRegistry,
    policy: &str,
    options: SyncOptions,
) -> JobReport {
    let path = write_config(dir, src, dst, "", policy);
    let config = ocimirror::config::load(&path).unwrap();
    let mut reports = run_once(&config, &options).await;
    assert_eq!(reports.len(), 1);
    reports.remove(0)
}

/// Asserts the image was refused by name with `reason`, and that the
/// target received no write at all.
fn assert_refused(r: &JobReport, dst: &TestRegistry, reason: &str) {
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
    let f = &r.failures[0];
    assert_eq!(f.kind, "unverified", "{f:?}");
    assert!(f.error.starts_with("unverified: "), "{}", f.error);
    assert!(f.error.contains(REPO), "names the repository: {}", f.error);
    assert!(
        f.error.contains(reason),
        "expected {reason:?} in {}",
        f.error
    );
    assert_eq!(writes(dst), Vec::<String>::new(), "nothing written");
    assert!(dst.repositories().is_empty());
}

fn assert_copied(r: &JobReport, dst: &TestRegistry, f: &Fixture) {
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(r.counts.images_copied, 1);
    assert_mirrored(dst, REPO, f);
}

#[tokio::test]
async fn a_valid_signature_admits_the_image_in_every_form() {
    for (form, kind) in [
        ("legacy .sig tag", KeyKind::P256),
        ("OCI 1.1 referrer", KeyKind::Ed25519),
        ("sigstore bundle", KeyKind::Rsa),
    ] {
        let (src, dst, f) = setup(form).await;
        let dir = tempfile::tempdir().unwrap();
        let key = Signer::new(dir.path(), "release", kind);
        let index = f.manifest(&f.index).desc();
        match form {
            "legacy .sig tag" => {
                let p = payload(&f.index, serde_json::json!({}));
                legacy_sig(&src, &f.index, &p, &key.sign(&p));
            }
            "OCI 1.1 referrer" => {
                let p = payload(&f.index, serde_json::json!({}));
                referrer_sig(&src, &index, &p, &key.sign(&p));
            }
            _ => {
                let s = statement(&f.index);
                bundle_sig(&src, &index, &s, &key.sign(&signing::pae(&s)));
            }
        }
        let r = mirror(
            dir.path(),
            &src,
            &dst,
            &policy("enforce", "any", &[&key]),
            SyncOptions::default(),
        )
        .await;
        assert_copied(&r, &dst, &f);
        // The signature itself comes along.
        assert!(
            dst.tags(REPO).iter().any(|t| t.ends_with(".sig"))
                || !dst.referrers(REPO, &f.index).is_empty(),
            "{form}: signature not mirrored"
        );
    }
}

#[tokio::test]
async fn warn_mode_copies_an_unverified_image_and_says_so_in_the_plan() {
    let (src, dst, f) = setup("warn").await;
    let dir = tempfile::tempdir().unwrap();
    let trusted = Signer::new(dir.path(), "release", KeyKind::P256);
    let other = Signer::new(dir.path(), "other", KeyKind::P256);
    let p = payload(&f.index, serde_json::json!({}));
    legacy_sig(&src, &f.index, &p, &other.sign(&p));
    let policy = policy("warn", "any", &[&trusted]);

    let plan = mirror(
        dir.path(),
        &src,
        &dst,
        &policy,
        SyncOptions {
            dry_run: true,
            ..SyncOptions::default()
        },
    )
    .await;
    let steps: Vec<String> = plan.plan[0].steps.iter().map(ToString::to_string).collect();
    let verify: Vec<&String> = steps.iter().filter(|s| s.starts_with("verify")).collect();
    assert_eq!(verify.len(), 2, "{steps:#?}");
    assert!(
        verify[0].contains(
            "cosign .sig tag: rejected: signature does not verify with any configured key"
        )
    );
    assert!(
        verify[1].contains(&f.index) && verify[1].contains("not verified, copied anyway (warn)")
    );
    // The rest of the plan is still there: the image would be copied.
    assert!(steps.iter().any(|s| s.starts_with("copy")), "{steps:#?}");

    let r = mirror(dir.path(), &src, &dst, &policy, SyncOptions::default()).await;
    assert_copied(&r, &dst, &f);
}

#[tokio::test]
async fn the_second_run_verifies_nothing_until_the_policy_changes() {
    let (src, dst, f) = setup("cache").await;
    let dir = tempfile::tempdir().unwrap();
    let key = Signer::new(dir.path(), "release", KeyKind::P256);
    let p = payload(&f.index, serde_json::json!({}));
    let (_, layer) = legacy_sig(&src, &f.index, &p, &key.sign(&p));
    // A second signature, by a key nobody trusts: rejected, and that
    // verdict is remembered too.
    let stranger = Signer::new(dir.path(), "stranger", KeyKind::Ed25519);
    let bad = payload(&f.index, serde_json::json!({"by": "stranger"}));
    referrer_sig(
        &src,
        &f.manifest(&f.index).desc(),
        &bad,
        &stranger.sign(&bad),
    );
    let bad_layer = fixtures::sha256(&bad);
    let reads = |src: &TestRegistry| {
        src.count("GET", &format!("/blobs/{layer}"))
            + src.count("GET", &format!("/blobs/{bad_layer}"))
    };
    let enforce = policy("enforce", "any", &[&key]);

    let first = mirror(dir.path(), &src, &dst, &enforce, SyncOptions::default()).await;
    assert_copied(&first, &dst, &f);
    let after_first = reads(&src);
    // Each read once to verify, once to copy.
    assert_eq!(after_first, 4);

    // `--full` walks and checks the image again: the verification is cached.
    let full = SyncOptions {
        full: true,
        ..SyncOptions::default()
    };
    let second = mirror(dir.path(), &src, &dst, &enforce, full.clone()).await;
    assert!(second.failures.is_empty(), "{:?}", second.failures);
    assert_eq!(
        reads(&src),
        after_first,
        "the second run read the signature"
    );
    let plan = mirror(
        dir.path(),
        &src,
        &dst,
        &enforce,
        SyncOptions {
            dry_run: true,
            full: true,
            ..SyncOptions::default()
        },
    )
    .await;
    let reasons = plan_reasons(&plan);
    assert!(
        reasons.contains(&"cosign .sig tag: verified by release (cached)"),
        "{reasons:#?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("cosign referrer: rejected (cached): ")),
        "{reasons:#?}"
    );

    // Another key set is another policy: verified again.
    let ci = Signer::new(dir.path(), "ci", KeyKind::Ed25519);
    let third = mirror(
        dir.path(),
        &src,
        &dst,
        &policy("enforce", "any", &[&key, &ci]),
        full,
    )
    .await;
    assert!(third.failures.is_empty(), "{:?}", third.failures);
    assert_eq!(reads(&src), after_first + 2);
}

/// The reasons of the first image's plan steps.
fn plan_reasons(plan: &JobReport) -> Vec<&str> {
    plan.plan[0]
        .steps
        .iter()
        .map(|s| s.reason.as_str())
        .collect()
}
