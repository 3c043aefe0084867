//! The policy and the cosign conversion on real software and across
//! origins: Debian's distribution 2.8 (no referrers API: signatures live in
//! fallback and `.sig` tags) as source and as target; and a source with
//! credentials whose blobs are served from another origin, where the
//! signature reads must not carry the source's credentials.

use std::path::Path;

use serde_json::json;

use ocimirror::registry::Registry;
use ocimirror::registry::http::{HttpRegistry, UploadMode};
use ocimirror::sync::SyncOptions;

use super::signing::{KeyKind, Signer, legacy_sig, payload, referrer_sig};
use super::{mirror, policy};
use crate::distribution::client;
use crate::support::cli::{ocimirror, text};
use crate::support::distribution::Distribution;
use crate::support::fixtures::{cosign_tag, fallback_tag};
use crate::support::registry::{Auth, Options, TestRegistry};
use crate::support::values::{repo, tag};
use crate::sync_jobs::{REPO, assert_mirrored, seed_tags};

async fn has(r: &HttpRegistry, reference: &str) -> bool {
    r.manifest_head(&repo(REPO), &tag(reference))
        .await
        .unwrap()
        .is_some()
}

async fn copy(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["copy"];
    all.extend_from_slice(args);
    ocimirror(dir, &all).await
}

#[tokio::test]
async fn distribution_as_source_and_target_enforce_and_convert() {
    let seed = TestRegistry::start(Options::default()).await;
    let images = seed_tags(&seed, REPO, "distribution policy", 2);
    let (good, bad) = (&images[0].1, &images[1].1);
    let dir = tempfile::tempdir().unwrap();
    let key = Signer::new(dir.path(), "release", KeyKind::P256);
    let stranger = Signer::new(dir.path(), "stranger", KeyKind::Ed25519);
    let p = payload(&good.index, json!({}));
    legacy_sig(&seed, &good.index, &p, &key.sign(&p));
    let p = payload(&bad.index, json!({}));
    referrer_sig(
        &seed,
        &bad.manifest(&bad.index).desc(),
        &p,
        &stranger.sign(&p),
    );
    std::fs::write(
        dir.path().join("policy.toml"),
        "mode = \"enforce\"\n[[cosign]]\nname = \"release\"\nkey = \"release.pub\"\n",
    )
    .unwrap();
    let policy_file = dir.path().join("policy.toml").display().to_string();

    // The source: distribution holding the referrer in its fallback tag.
    let src = Distribution::start();
    let out = copy(
        dir.path(),
        &[
            "--all-tags",
            &format!("{}/{REPO}", seed.host()),
            &format!("{}/{REPO}", src.host()),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let src_client = client(&src, UploadMode::Monolithic);
    assert!(has(&src_client, &fallback_tag(&bad.index)).await);

    // distribution to distribution under enforce: the signed image with
    // its .sig tag, the other refused by name and not written at all.
    let dst = Distribution::start();
    let out = copy(
        dir.path(),
        &[
            "--all-tags",
            "--policy",
            &policy_file,
            &format!("{}/{REPO}", src.host()),
            &format!("{}/{REPO}", dst.host()),
        ],
    )
    .await;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!("{}/{REPO}:t1: unverified: ", src.host())),
        "{all}"
    );
    assert!(
        all.contains("(cosign referrer): signature does not verify with any configured key"),
        "{all}"
    );
    let dst_client = client(&dst, UploadMode::Monolithic);
    assert!(has(&dst_client, "t0").await);
    assert!(has(&dst_client, &cosign_tag(&good.index, "sig")).await);
    assert!(!has(&dst_client, "t1").await);
    assert!(!has(&dst_client, &fallback_tag(&bad.index)).await);
    // Nor any referrer tag of it.
    let written = dst_client.tags(&repo(REPO)).await.unwrap();
    for d in bad.digests() {
        assert!(!written.contains(&fallback_tag(&d)), "{d}: {written:?}");
        assert!(
            !written.contains(&cosign_tag(&d, "sig")),
            "{d}: {written:?}"
        );
    }

    // Conversion with distribution as the target: the .sig tag becomes a
    // referrer, listed in a fallback tag.
    let converted = Distribution::start();
    let out = copy(
        dir.path(),
        &[
            "--cosign",
            "to-referrers",
            &format!("{}/{REPO}:t0", src.host()),
            &format!("{}/{REPO}:t0", converted.host()),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let conv = client(&converted, UploadMode::Monolithic);
    assert!(has(&conv, &fallback_tag(&good.index)).await);
    assert!(!has(&conv, &cosign_tag(&good.index, "sig")).await);
    // And back: distribution's fallback-tag referrer becomes a .sig tag.
    let tags_target = TestRegistry::start(Options::default()).await;
    let out = copy(
        dir.path(),
        &[
            "--cosign",
            "to-tags",
            &format!("{}/{REPO}:t0", converted.host()),
            &format!("{}/{REPO}:t0", tags_target.host()),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("cosign converted: 0 to referrers, 1 to tags"),
        "{}",
        text(&out)
    );
    let sig = tags_target.manifest(REPO, &cosign_tag(&good.index, "sig"));
    let (_, sig) = sig.expect("no .sig tag on the target");
    let sig: serde_json::Value = serde_json::from_slice(&sig).unwrap();
    assert!(sig.get("subject").is_none(), "{sig}");
}

#[tokio::test]
async fn signature_reads_carry_the_source_credentials_only_to_the_source() {
    // Blobs of the source are served from another origin that refuses an
    // Authorization header, as object stores behind registries do.
    let src = TestRegistry::start(Options {
        auth: Some(Auth::basic("mirror", "source-secret")),
        redirect_blobs: true,
        ..Options::default()
    })
    .await;
    let dst = TestRegistry::start(Options::default()).await;
    let f = crate::support::fixtures::image(crate::support::fixtures::Form::Api, "cross host");
    crate::support::fixtures::seed_registry(&src, REPO, &f);
    let dir = tempfile::tempdir().unwrap();
    let key = Signer::new(dir.path(), "release", KeyKind::P256);
    let p = payload(&f.index, json!({}));
    let (_, layer) = legacy_sig(&src, &f.index, &p, &key.sign(&p));
    let text = format!(
        "{}\n[registries.\"{}\"]\nusername = \"mirror\"\npassword = \"source-secret\"\n",
        policy("enforce", "any", &[&key]),
        src.host()
    );
    let r = mirror(dir.path(), &src, &dst, &text, SyncOptions::default()).await;
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_mirrored(&dst, REPO, &f);

    let log = src.log();
    // The signature blob was read (to verify, then to copy) from the other
    // origin, without the source's credentials.
    let hops: Vec<_> = log
        .iter()
        .filter(|l| l.path == format!("/_blobstore/{layer}"))
        .collect();
    assert_eq!(hops.len(), 2, "{log:#?}");
    assert!(
        hops.iter()
            .all(|l| l.auth_scheme.is_none() && l.status == 200),
        "{hops:#?}"
    );
    // The source itself was asked with them; the target never saw any.
    assert!(
        log.iter()
            .any(|l| l.auth_scheme.as_deref() == Some("Basic"))
    );
    assert!(
        dst.log().iter().all(|l| l.auth_scheme.is_none()),
        "{:#?}",
        dst.log()
    );
}
