//! `ocimirror verify` (alias `diff`) through the real binary: after a
//! mirror it finds nothing; after the target is changed behind its back (a
//! referrer deleted, a blob deleted under a manifest that stays, a tag
//! moved) it exits 1 and names each difference; it writes nothing.

use std::path::Path;

use crate::support::cli::{ocimirror, text};
use crate::support::fixtures::{self, Fixture, Form, OCI_MANIFEST, SIG};
use crate::support::registry::{Options, TestRegistry};
use crate::sync_jobs::{REPO, write_config, writes};

async fn registry(api: bool) -> TestRegistry {
    TestRegistry::start(Options {
        referrers_api: api,
        ..Options::default()
    })
    .await
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Deletes blob `digest` of `repo` on `reg` through its HTTP API.
async fn delete_blob(reg: &TestRegistry, repo: &str, digest: &str) {
    let url = format!("{}/v2/{repo}/blobs/{digest}", reg.url());
    let status = reqwest::Client::new()
        .delete(url)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 202, "DELETE blob {digest}");
}

/// The arm64 layer of fixture `f` seeded with `seed`.
fn arm_layer(seed: &str) -> String {
    fixtures::sha256(format!("{seed} layer for arm64").as_bytes())
}

/// Seeds `f` into `src` and mirrors it with `once`.
async fn mirrored(dir: &Path, src: &TestRegistry, dst: &TestRegistry, f: &Fixture) -> String {
    fixtures::seed_registry(src, REPO, f);
    let config = write_config(dir, src, dst, "", "");
    let config = config.display().to_string();
    let out = ocimirror(dir, &["once", "-c", &config]).await;
    assert!(out.status.success(), "{}", text(&out));
    config
}

#[tokio::test]
async fn verify_finds_nothing_after_a_mirror_and_names_each_tampering() {
    let (src, dst) = (registry(true).await, registry(false).await);
    let dir = tempfile::tempdir().unwrap();
    let f = fixtures::image(Form::Api, "verify");
    let config = mirrored(dir.path(), &src, &dst, &f).await;

    dst.clear_log();
    let out = ocimirror(dir.path(), &["verify", "-c", &config]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("team/app:v1: complete"),
        "{}",
        text(&out)
    );

    // Behind ocimirror's back: a signature gone, a layer gone under a
    // manifest that stays, the tag moved to a platform manifest.
    assert!(dst.delete_manifest(REPO, &f.sig));
    delete_blob(&dst, REPO, &arm_layer("verify")).await;
    let amd = f.manifest(&f.amd).bytes.clone();
    dst.put_manifest(REPO, "v1", OCI_MANIFEST, &amd);
    dst.clear_log();

    let out = ocimirror(dir.path(), &["verify", "-c", &config]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s = stdout(&out);
    for line in [
        "team/app:v1: 3 differences".to_string(),
        format!(
            "missing manifest {} (referrer of {REPO}@{}, artifactType {SIG})",
            f.sig, f.sbom
        ),
        format!("missing blob {}", arm_layer("verify")),
        format!(
            "tag v1 points at {} on the target, source {}",
            f.amd, f.index
        ),
        "verified 1 image: 0 complete, 1 with differences, 0 failed".to_string(),
    ] {
        assert!(s.contains(&line), "{line:?} not in\n{}", text(&out));
    }
    assert_eq!(writes(&dst), Vec::<String>::new(), "verify wrote");

    // `once --full` trusts nothing on the target either: it repairs all three.
    let out = ocimirror(dir.path(), &["once", "--full", "-c", &config]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(dst.blob(REPO, &arm_layer("verify")).is_some());
    let out = ocimirror(dir.path(), &["diff", "-c", &config]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test]
async fn verify_runs_each_job_with_its_own_target_and_names_the_job() {
    let (src, dst) = (registry(true).await, registry(true).await);
    let dir = tempfile::tempdir().unwrap();
    let a = fixtures::image(Form::Api, "job-a");
    let b = fixtures::image(Form::Api, "job-b");
    fixtures::seed_registry(&src, "team/a", &a);
    fixtures::seed_registry(&src, "team/b", &b);
    let db = dir.path().join("state.db");
    let config = dir.path().join("two.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 1
[state]
database = "{db}"

[[jobs]]
name = "a"
source = "{src}/team/a"
target = "{dst}/mirror/a"

[[jobs]]
name = "b"
source = "{src}/team/b"
target = "{dst}/mirror/b"
referrers = {{ exclude_artifact_types = ["{SIG}"] }}
"#,
            db = db.display(),
            src = src.host(),
            dst = dst.host(),
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    // Mirror by hand, so no state database exists: verify must not make one.
    for (job, from, to) in [("a", "team/a", "mirror/a"), ("b", "team/b", "mirror/b")] {
        let mut args = vec![
            "copy".to_string(),
            format!("{}/{from}:v1", src.host()),
            format!("{}/{to}:v1", dst.host()),
        ];
        if job == "b" {
            args.extend(["--exclude-artifact-type".into(), SIG.into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ocimirror(dir.path(), &args).await;
        assert!(out.status.success(), "{}", text(&out));
    }

    // Job b excludes signatures: their absence is not a difference.
    let out = ocimirror(dir.path(), &["verify", "-c", &config]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!db.exists(), "verify created the state database");

    assert!(dst.delete_manifest("mirror/b", &b.att));
    let out = ocimirror(dir.path(), &["verify", "-c", &config]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s = stdout(&out);
    let expected = format!(
        "job a\n  {h}/team/a:v1: complete\njob b\n  {h}/team/b:v1: 1 difference\n",
        h = src.host()
    );
    assert!(s.contains(&expected), "{}", text(&out));
    assert!(
        s.contains(&format!(
            "missing manifest {} (referrer of mirror/b@{}",
            b.att, b.index
        )),
        "{}",
        text(&out)
    );

    let out = ocimirror(dir.path(), &["verify", "-c", &config, "a"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // An unknown job is a configuration mistake, as for once/plan/status.
    let out = ocimirror(dir.path(), &["verify", "-c", &config, "nope"]).await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(!db.exists(), "verify created the state database");
}

#[tokio::test]
async fn verify_src_dst_compares_one_image_or_every_tag() {
    let (src, dst) = (registry(false).await, registry(false).await);
    let dir = tempfile::tempdir().unwrap();
    let f = fixtures::image(Form::Tags, "pair");
    fixtures::seed_registry(&src, REPO, &f);
    let from = format!("{}/{REPO}:v1", src.host());
    let to = format!("{}/{REPO}:v1", dst.host());
    let out = ocimirror(dir.path(), &["copy", &from, &to]).await;
    assert!(out.status.success(), "{}", text(&out));

    dst.clear_log();
    let out = ocimirror(dir.path(), &["verify", &from, &to]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains(&format!("{from} -> {to}\n  {from}: complete\n")),
        "{}",
        text(&out)
    );

    // The target's fallback index loses its entry together with the manifest.
    assert!(dst.delete_manifest(REPO, &f.att));
    let repo_src = format!("{}/{REPO}", src.host());
    let repo_dst = format!("{}/{REPO}", dst.host());
    let out = ocimirror(dir.path(), &["verify", "--all-tags", &repo_src, &repo_dst]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s = stdout(&out);
    assert!(
        s.contains(&format!("missing manifest {} (referrer of", f.att)),
        "{}",
        text(&out)
    );
    // Fallback and cosign tags are not images of their own.
    assert!(s.contains("verified 1 image:"), "{}", text(&out));
    assert_eq!(writes(&dst), Vec::<String>::new(), "verify wrote");

    for bad in [
        vec!["verify", from.as_str()],
        vec!["verify", "--all-tags", &from, &to],
    ] {
        let out = ocimirror(dir.path(), &bad).await;
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    }
}

#[tokio::test]
async fn a_referrer_the_target_api_no_longer_lists_is_a_difference_until_the_fallback_tag_serves() {
    let (src, dst) = (registry(true).await, registry(true).await);
    let dir = tempfile::tempdir().unwrap();
    let f = fixtures::image(Form::Api, "unlisted");
    let config = mirrored(dir.path(), &src, &dst, &f).await;
    assert!(
        dst.tags(REPO).iter().all(|t| t == "v1"),
        "{:?}",
        dst.tags(REPO)
    );

    // The manifest stays on the target; its API stops listing it.
    assert!(dst.unlist_referrer(REPO, &f.amd, &f.sbom));
    let out = ocimirror(dir.path(), &["verify", "-c", &config]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let line = format!(
        "fallback tag {} does not list every referrer of {}",
        fixtures::fallback_tag(&f.amd),
        f.amd
    );
    assert!(stdout(&out).contains(&line), "{}", text(&out));

    // `once --full` publishes it where the target can serve it: the fallback tag.
    let out = ocimirror(dir.path(), &["once", "--full", "-c", &config]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(dst.tags(REPO).contains(&fixtures::fallback_tag(&f.amd)));
    let out = ocimirror(dir.path(), &["verify", "-c", &config]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test]
async fn verify_against_a_layout_before_and_after_a_copy() {
    let src = registry(true).await;
    let f = fixtures::image(Form::Api, "layout");
    fixtures::seed_registry(&src, REPO, &f);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("mirror");
    let from = format!("{}/{REPO}:v1", src.host());
    let to = format!("oci:{}:v1", layout.display());

    // Nothing there yet: the tag and every manifest are missing.
    let out = ocimirror(dir.path(), &["verify", &from, &to]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s = stdout(&out);
    assert!(
        s.contains(&format!(
            "tag v1 is absent on the target, source {}",
            f.index
        )),
        "{}",
        text(&out)
    );
    assert!(
        s.contains(&format!("missing manifest {}", f.index)),
        "{}",
        text(&out)
    );
    assert!(
        !layout.join("index.json").exists(),
        "verify wrote the layout"
    );

    let out = ocimirror(dir.path(), &["copy", &from, &to]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = ocimirror(dir.path(), &["verify", &from, &to]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let layer = arm_layer("layout");
    let hex = layer.trim_start_matches("sha256:");
    std::fs::remove_file(layout.join("blobs/sha256").join(hex)).unwrap();
    let out = ocimirror(dir.path(), &["verify", &from, &to]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout(&out).contains(&format!("missing blob {layer}")),
        "{}",
        text(&out)
    );

    // An image the source does not have is named, and the rest goes on.
    let gone = format!("{}/{REPO}:gone", src.host());
    let out = ocimirror(dir.path(), &["verify", &gone, &to]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout(&out).contains(&format!("{gone}: FAILED: ")),
        "{}",
        text(&out)
    );
}
