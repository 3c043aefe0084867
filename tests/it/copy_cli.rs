//! `ocimirror copy` end to end: the real binary against test registries and
//! layout directories.

use std::process::Output;

use crate::support::cli::text;
use crate::support::fixtures::{self, Form, LayoutView, fallback_tag};
use crate::support::registry::{Fault, FaultKind, Options, TestRegistry};

const REPO: &str = "team/app";

async fn ocimirror(args: &[&str]) -> Output {
    crate::support::cli::ocimirror(std::path::Path::new("."), args).await
}

async fn registry(api: bool) -> TestRegistry {
    TestRegistry::start(Options {
        referrers_api: api,
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn copy_to_a_layout_then_plan_a_noop() {
    let f = fixtures::image(Form::Api, "cli");
    let src = registry(true).await;
    fixtures::seed_registry(&src, REPO, &f);
    let dir = tempfile::tempdir().unwrap();
    let from = format!("{}/{REPO}:v1", src.host());
    let to = format!("oci:{}", dir.path().display());
    let out = ocimirror(&["copy", &from, &to]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 image:"), "{}", text(&out));
    assert!(stdout.contains("manifests: 6 copied"), "{}", text(&out));
    let view = LayoutView::read(dir.path());
    assert_eq!(view.tags().get("v1"), Some(&f.index));
    assert!(view.tags().contains_key(&fallback_tag(&f.index)));

    // The plan of a second copy: everything exists, nothing to write.
    let before = std::fs::read(dir.path().join("index.json")).unwrap();
    let out = ocimirror(&["copy", "--plan", &from, &to]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("exists  index          {}", f.index)),
        "{}",
        text(&out)
    );
    assert!(
        !stdout.lines().any(|l| l.trim_start().starts_with("copy ")),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(dir.path().join("index.json")).unwrap(),
        before
    );
}

#[tokio::test]
async fn plan_says_what_would_be_copied_and_converted_and_writes_nothing() {
    let f = fixtures::image(Form::Api, "plan");
    let src = registry(true).await;
    fixtures::seed_registry(&src, REPO, &f);
    let dst = registry(false).await;
    let out = ocimirror(&[
        "copy",
        "--plan",
        &format!("{}/{REPO}:v1", src.host()),
        &format!("{}/{REPO}", dst.host()),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("copy    index          {}", f.index)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "convert referrer       {}  (api -> fallback-tag)",
            f.att
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&fallback_tag(&f.amd)), "{stdout}");
    assert_eq!(
        dst.count("PUT", "") + dst.count("POST", "") + dst.count("PATCH", ""),
        0
    );
}

#[tokio::test]
async fn all_tags_skips_referrer_tags_and_one_broken_image_fails_alone() {
    let src = registry(false).await;
    let good = fixtures::image(Form::Tags, "good");
    fixtures::seed_registry(&src, REPO, &good);
    // v2: an image whose layer the source lost.
    let mut broken = fixtures::image(Form::Api, "broken");
    let lost = broken.blobs.remove(1);
    let v2 = broken.tags.remove("v1").unwrap();
    broken.tags.insert("v2".into(), v2);
    fixtures::seed_registry(&src, REPO, &broken);
    let cosign = fixtures::image(Form::Cosign, "cosign");
    let mut cosign_tags = cosign.tags.clone();
    let v3 = cosign_tags.remove("v1").unwrap();
    cosign_tags.insert("v3".into(), v3);
    fixtures::seed_registry(
        &src,
        REPO,
        &fixtures::Fixture {
            tags: cosign_tags,
            ..cosign.clone()
        },
    );
    let dst = registry(true).await;
    let out = ocimirror(&[
        "copy",
        "--all-tags",
        &format!("{}/{REPO}", src.host()),
        &format!("{}/{REPO}", dst.host()),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("3 images:"), "{}", text(&out));
    assert!(stdout.contains(&fixtures::sha256(&lost)), "{}", text(&out));
    // v1 and v3 arrived with their referrers; v2 did not; referrer tags
    // were not copied as images, and no fallback tag reached the API target.
    let tags = dst.tags(REPO);
    let mut want = vec!["v1".to_string(), "v3".to_string()];
    want.extend(cosign.cosign_tags.iter().map(|(t, _)| t.clone()));
    want.sort();
    assert_eq!(tags, want);
    assert_eq!(dst.referrers(REPO, &good.index), vec![good.att.clone()]);
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let layout = concat!(
        "oci:",
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/demo-layout"
    );
    let out = ocimirror(&["copy", layout, "oci:/tmp/x"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs a tag or digest"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn platform_filter_and_referrer_flags() {
    let f = fixtures::image(Form::Api, "flags");
    let src = registry(true).await;
    fixtures::seed_registry(&src, REPO, &f);
    let dst = registry(true).await;
    let from = format!("{}/{REPO}:v1", src.host());
    // One platform: the tag points at the amd64 manifest itself; the SBOM
    // on it comes along, the attestation on the index does not.
    let out = ocimirror(&[
        "copy",
        "--platform",
        "linux/x86_64",
        "--platform-mode",
        "filter",
        &from,
        &format!("{}/{REPO}:amd64", dst.host()),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let tagged = dst
        .manifest(REPO, "amd64")
        .map(|(_, b)| fixtures::sha256(&b));
    assert_eq!(tagged, Some(f.amd.clone()));
    assert_eq!(dst.referrers(REPO, &f.amd), vec![f.sbom.clone()]);
    assert!(dst.manifest(REPO, &f.att).is_none());
    assert!(dst.manifest(REPO, &f.index).is_none());
    // Without referrers, and with a referrer type excluded.
    let out = ocimirror(&[
        "copy",
        "--no-referrers",
        &from,
        &format!("{}/other:v1", dst.host()),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(dst.referrers("other", &f.amd).is_empty());
    assert!(dst.manifest("other", &f.index).is_some());
    let out = ocimirror(&[
        "copy",
        "--exclude-artifact-type",
        fixtures::SBOM,
        &from,
        &format!("{}/third:v1", dst.host()),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(dst.referrers("third", &f.amd).is_empty());
    assert_eq!(dst.referrers("third", &f.index), vec![f.att.clone()]);
}

/// An image whose signature cannot be read is copied only in part: the log
/// says so at ERROR with the digest that failed (never "Image copied." at
/// INFO), the summary lists it and the exit status is 1.
#[tokio::test]
async fn a_partly_copied_image_is_logged_as_a_failure() {
    let f = fixtures::image(Form::Api, "partial");
    let src = registry(true).await;
    fixtures::seed_registry(&src, REPO, &f);
    src.push_fault(Fault {
        method: Some("GET".into()),
        path_contains: format!("/manifests/{}", f.sig),
        // Denied: not retried, and not "absent" either.
        kind: FaultKind::Status(403),
        times: 1_000,
    });
    let dir = tempfile::tempdir().unwrap();
    let out = ocimirror(&[
        "--log-format",
        "json",
        "copy",
        &format!("{}/{REPO}:v1", src.host()),
        &format!("oci:{}", dir.path().display()),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let message = |l: &serde_json::Value| l["message"].as_str().unwrap_or("").to_string();
    assert!(!lines.is_empty(), "{stderr}");
    assert!(
        !lines.iter().any(|l| message(l) == "Image copied."),
        "{stderr}"
    );
    // Off a terminal, per-object steps are debug detail: none at info.
    assert!(
        !lines.iter().any(|l| message(l) == "Copy step."),
        "{stderr}"
    );
    let failed = lines
        .iter()
        .find(|l| message(l) == "Image copied only in part.")
        .unwrap_or_else(|| panic!("no failure line in\n{stderr}"));
    assert_eq!(failed["level"], "ERROR", "{failed}");
    assert!(failed.to_string().contains(&f.sig), "{failed}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&f.sig),
        "{}",
        text(&out)
    );
}

/// Mistakes a regsync or skopeo user makes are refused with exit 2 and a
/// message that points the right way, instead of being accepted silently.
#[tokio::test]
async fn usage_mistakes_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let dst = format!("oci:{}", dir.path().display());
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "copy",
                "--all-tags",
                "oci:tests/fixtures/demo-layout:v1.0.0",
                &dst,
            ],
            "give SRC without a tag",
        ),
        (
            &[
                "copy",
                "--platform-mode",
                "filter",
                "oci:tests/fixtures/demo-layout:v1.0.0",
                &dst,
            ],
            "needs --platform",
        ),
        (
            &["copy", "docker://docker.io/library/alpine:3.20", &dst],
            "transports like \"docker://\" are not used",
        ),
        (
            &[
                "copy",
                "--concurrency",
                "0",
                "oci:tests/fixtures/demo-layout:v1.0.0",
                &dst,
            ],
            "--concurrency",
        ),
        (
            &[
                "--log-level",
                "bogus",
                "copy",
                "oci:tests/fixtures/demo-layout:v1.0.0",
                &dst,
            ],
            "\"bogus\" is not a level",
        ),
    ];
    for (args, want) in cases {
        let out = ocimirror(args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: {}", text(&out));
    }
    // Nothing was written for any of them.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A copy between two repositories of one registry goes through one
/// adapter: one ping, one token cache and one rate limit, not two.
#[tokio::test]
async fn a_copy_within_one_registry_uses_one_adapter() {
    let f = fixtures::image(Form::Api, "same-host");
    let reg = registry(true).await;
    fixtures::seed_registry(&reg, REPO, &f);
    reg.clear_log();
    let out = ocimirror(&[
        "copy",
        &format!("{}/{REPO}:v1", reg.host()),
        &format!("{}/mirror/app:v1", reg.host()),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let pings = reg
        .log()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/v2/")
        .count();
    assert_eq!(
        pings,
        1,
        "{:?}",
        reg.log().iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert_eq!(
        reg.manifest("mirror/app", "v1")
            .map(|(_, b)| fixtures::sha256(&b)),
        Some(f.index.clone())
    );
}
