//! The example configs in `config/` do what their comments say. Each one
//! passes `config check`; each job whose comment promises a behaviour
//! (referrer filters, platform lists, whole or filter) is run with its own
//! resolved settings against test registries holding an image with every
//! kind of attachment, and the target is read back directly: exactly the
//! promised manifests, tags and referrer listings, nothing else. The same
//! filters on `copy` and the filtered count in `once`'s summary are
//! checked through the binary.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ocimirror::copy::{Copier, CopyReport};
use ocimirror::oci::{Reference, RepoName, Tag};
use ocimirror::registry::Registry;
use ocimirror::registry::http::{HttpRegistry, HttpSettings};

use crate::support::cli::{ocimirror, text};
use crate::support::fixtures::{self, Fixture, Form, cosign_tag, fallback_tag, index_digests};
use crate::support::registry::{Personality, TestRegistry};

const REPO: &str = "team/app";
const NOTARY: &str = "application/vnd.cncf.notary.signature";
const COSIGN_SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const DSSE: &str = "application/vnd.dsse.envelope.v1+json";

/// A 2-platform index (tag `v1`) with every kind of attachment: on the
/// amd64 manifest an SPDX SBOM, a cosign OCI 1.1 signature, a cosign legacy
/// `.sig` and `.att`; on the SBOM a sigstore-bundle and a Notary signature;
/// on the index an in-toto attestation and a cosign legacy `.sig`.
struct Attached {
    f: Fixture,
    notation: String,
    cosign_sig: String,
    legacy_sig: String,
    legacy_att: String,
    index_sig: String,
}

impl Attached {
    /// Referrers with `subject` in `form`; cosign legacy tags always.
    fn new(form: Form, seed: &str) -> Attached {
        let mut f = fixtures::image(form, seed);
        let (amd, index, sbom) = (f.amd.clone(), f.index.clone(), f.sbom.clone());
        let mut add = |form, subject: &str, media_type, what: &str, suffix| {
            f.add_referrer(form, subject, media_type, &format!("{seed} {what}"), suffix)
                .digest
        };
        let notation = add(form, &sbom, NOTARY, "notation", "");
        let cosign_sig = add(form, &amd, COSIGN_SIG, "cosign signature", "");
        let legacy_sig = add(Form::Cosign, &amd, SIMPLESIGNING, "legacy sig", "sig");
        let legacy_att = add(Form::Cosign, &amd, DSSE, "legacy att", "att");
        let index_sig = add(Form::Cosign, &index, SIMPLESIGNING, "index sig", "sig");
        Attached {
            f,
            notation,
            cosign_sig,
            legacy_sig,
            legacy_att,
            index_sig,
        }
    }

    /// Every manifest but `left_out`.
    fn all_but(&self, left_out: &[&str]) -> Vec<String> {
        let mut all = self.f.digests();
        all.retain(|d| !left_out.contains(&d.as_str()));
        all
    }
}

/// What the target must hold, exactly.
struct Expect {
    /// Manifests on the target (every other manifest of the fixture absent).
    copied: Vec<String>,
    /// Tag -> digest: the image tag and cosign tags (fallback tags are
    /// implied by `listed` on a target without the referrers API).
    tags: Vec<(String, String)>,
    /// Subject -> its referrers on the target.
    listed: Vec<(String, Vec<String>)>,
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn v1() -> Reference {
    Reference::Tag(Tag::new("v1").unwrap())
}

fn adapter(r: &TestRegistry) -> Arc<dyn Registry> {
    Arc::new(HttpRegistry::new(&r.host(), HttpSettings::default()).unwrap())
}

/// Copies `a` from a fresh `src` registry to a fresh `dst` registry with
/// the resolved settings of job `job` of example `file`.
async fn run_job(
    file: &str,
    job: &str,
    a: &Attached,
    src: Personality,
    dst: Personality,
) -> (TestRegistry, CopyReport) {
    let config = ocimirror::config::load_with_env(&examples().join(file), []).unwrap();
    let job = config.job(job).unwrap();
    let options = ocimirror::app::copy_options(job, &config.limits);
    let src = TestRegistry::start_as(src).await;
    fixtures::seed_registry(&src, REPO, &a.f);
    let dst = TestRegistry::start_as(dst).await;
    let repo = RepoName::new(REPO).unwrap();
    let report = Copier::new(adapter(&src), adapter(&dst), options)
        .copy_image(&repo, &v1(), &repo, None)
        .await
        .unwrap();
    assert!(report.is_success(), "{file} {}: {report}", job.name);
    (dst, report)
}

/// Reads the target directly and compares it with `want`.
fn assert_target(dst: &TestRegistry, a: &Attached, want: &Expect) {
    for m in &a.f.manifests {
        let got = dst.manifest(REPO, &m.digest).map(|(_, b)| b);
        if want.copied.contains(&m.digest) {
            assert_eq!(got.as_deref(), Some(&m.bytes[..]), "{} copied", m.digest);
        } else {
            assert_eq!(got, None, "{} must not be copied", m.digest);
        }
    }
    let mut tags: BTreeSet<String> = want.tags.iter().map(|(t, _)| t.clone()).collect();
    for (tag, digest) in &want.tags {
        let bytes = dst.manifest(REPO, tag).map(|(_, b)| b);
        assert_eq!(
            bytes.as_deref(),
            Some(&a.f.manifest(digest).bytes[..]),
            "tag {tag}"
        );
    }
    let api = dst.personality().has_api();
    for (subject, referrers) in &want.listed {
        let mut referrers = referrers.clone();
        referrers.sort();
        assert_eq!(dst.referrers(REPO, subject), referrers, "of {subject}");
        if !api {
            let (_, index) = dst.manifest(REPO, &fallback_tag(subject)).unwrap();
            assert_eq!(index_digests(&index), referrers, "fallback of {subject}");
            tags.insert(fallback_tag(subject));
        }
    }
    let got: BTreeSet<String> = dst.tags(REPO).into_iter().collect();
    assert_eq!(got, tags);
}

/// Whole copies: every manifest, every referrer, the index digest-exact.
fn everything(a: &Attached) -> Expect {
    let f = &a.f;
    Expect {
        copied: a.all_but(&[]),
        tags: vec![
            ("v1".into(), f.index.clone()),
            (cosign_tag(&f.amd, "sig"), a.legacy_sig.clone()),
            (cosign_tag(&f.amd, "att"), a.legacy_att.clone()),
            (cosign_tag(&f.index, "sig"), a.index_sig.clone()),
        ],
        listed: vec![
            (f.index.clone(), vec![f.att.clone()]),
            (f.amd.clone(), vec![f.sbom.clone(), a.cosign_sig.clone()]),
            (f.sbom.clone(), vec![f.sig.clone(), a.notation.clone()]),
        ],
    }
}

#[tokio::test]
async fn every_example_passes_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        // REFERENCE.md documents the keys; the rest are configs.
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let out = ocimirror(
            dir.path(),
            &["config", "check", "-c", path.to_str().unwrap()],
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(": OK ("), "{}", text(&out));
        assert!(!stdout.contains("warning"), "{}", text(&out));
        checked += 1;
    }
    assert_eq!(checked, 3, "daemon.toml, migration.yaml, demo.toml");
}

/// `config/daemon.toml`: with `platforms` listed in `[defaults]` and the
/// default `platform_mode = "whole"`, the index is copied whole with all
/// its referrers (depth 2 reaches the signatures on the SBOM). So are the
/// demo's defaults.
#[tokio::test]
async fn whole_jobs_copy_the_index_and_every_referrer() {
    for (file, job) in [
        ("daemon.toml", "alpine"),
        ("daemon.toml", "distroless-static"),
        ("demo.toml", "demo"),
    ] {
        let a = Attached::new(Form::Api, &format!("{file} {job}"));
        let (dst, report) = run_job(
            file,
            job,
            &a,
            Personality::FullApi,
            Personality::Distribution28,
        )
        .await;
        assert_target(&dst, &a, &everything(&a));
        assert_eq!((report.filtered, report.dropped), (0, 0), "{job}: {report}");
    }
}

/// `config/daemon.toml` job `app`: "only the linux/amd64 image" (the tag
/// points at the platform manifest, digest-exact) and "only signatures and
/// SBOMs": every form of signature on it and on its SBOM comes along
/// (cosign OCI 1.1, cosign legacy `.sig`, sigstore bundle, Notary), the
/// legacy `.att` attestation is filtered, and the index's own referrers are
/// dropped with the index. (The example's former list of artifact types
/// lost the legacy `.sig` and the Notary signature.)
#[tokio::test]
async fn the_app_job_keeps_every_signature_and_sbom_of_its_platform() {
    let a = Attached::new(Form::Api, "daemon app");
    let (dst, report) = run_job(
        "daemon.toml",
        "app",
        &a,
        Personality::FullApi,
        Personality::Distribution28,
    )
    .await;
    let f = &a.f;
    let want = Expect {
        copied: vec![
            f.amd.clone(),
            f.sbom.clone(),
            f.sig.clone(),
            a.notation.clone(),
            a.cosign_sig.clone(),
            a.legacy_sig.clone(),
        ],
        tags: vec![
            ("v1".into(), f.amd.clone()),
            (cosign_tag(&f.amd, "sig"), a.legacy_sig.clone()),
        ],
        listed: vec![
            (f.amd.clone(), vec![f.sbom.clone(), a.cosign_sig.clone()]),
            (f.sbom.clone(), vec![f.sig.clone(), a.notation.clone()]),
        ],
    };
    assert_target(&dst, &a, &want);
    // Left out on purpose is counted, apart from failures: the `.att` by
    // the kind filter, the index's attestation and `.sig` with the index.
    assert_eq!(report.filtered, 1, "{report}");
    assert_eq!(report.dropped, 2, "{report}");
    assert!(report.failures.is_empty(), "{report}");
}

/// `config/migration.yaml`: every platform byte for byte, referrers read
/// from the old registry's fallback tags and pushed to the new one's
/// referrers API with `subject` only (no fallback tag written).
#[tokio::test]
async fn the_migration_reads_fallback_tags_and_writes_the_api() {
    let a = Attached::new(Form::Tags, "migration");
    let (dst, report) = run_job(
        "migration.yaml",
        "team-migration",
        &a,
        Personality::Distribution28,
        Personality::FullApi,
    )
    .await;
    assert_target(&dst, &a, &everything(&a));
    assert_eq!(report.fallback_indexes_written, 0, "{report}");
    assert_eq!((report.filtered, report.dropped), (0, 0), "{report}");
}

/// The daemon example's filter said on `copy`'s command line copies the
/// same, and `--exclude-referrer-kind` leaves attestations out in every
/// form; the summary counts what was filtered.
#[tokio::test]
async fn copy_filters_by_referrer_kind() {
    let a = Attached::new(Form::Api, "copy kinds");
    let src = TestRegistry::start_as(Personality::FullApi).await;
    fixtures::seed_registry(&src, REPO, &a.f);
    let from = format!("{}/{REPO}:v1", src.host());
    let here = Path::new(".");

    let dst = TestRegistry::start_as(Personality::FullApi).await;
    let to = format!("{}/{REPO}:v1", dst.host());
    let args = [
        "copy",
        "--no-progress",
        "--exclude-referrer-kind",
        "attestation",
        &from,
        &to,
    ];
    let out = ocimirror(here, &args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 referrers filtered"), "{}", text(&out));
    let f = &a.f;
    let mut want = everything(&a);
    want.copied = a.all_but(&[&f.att, &a.legacy_att]);
    want.tags.retain(|(_, d)| *d != a.legacy_att);
    want.listed[0].1.clear();
    assert_target(&dst, &a, &want);

    let dst = TestRegistry::start_as(Personality::FullApi).await;
    let to = format!("{}/{REPO}:v1", dst.host());
    let args = [
        "copy",
        "--no-progress",
        "--platform-mode",
        "filter",
        "--platform",
        "linux/amd64",
        "--referrer-kind",
        "signature,sbom",
        &from,
        &to,
    ];
    let out = ocimirror(here, &args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 referrers filtered"),
        "{}",
        text(&out)
    );
    for d in [
        &f.amd,
        &f.sbom,
        &f.sig,
        &a.notation,
        &a.cosign_sig,
        &a.legacy_sig,
    ] {
        assert!(dst.manifest(REPO, d).is_some(), "{d}: {}", text(&out));
    }
    for d in [&f.index, &f.att, &a.legacy_att, &a.index_sig] {
        assert!(dst.manifest(REPO, d).is_none(), "{d}: {}", text(&out));
    }

    let out = ocimirror(here, &["copy", "--referrer-kind", "signatures", &from, &to]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown referrer kind \"signatures\"")
            && stderr.contains("signature, attestation, sbom or other"),
        "{}",
        text(&out)
    );
}

/// `once` says how many referrers its filters left out, as such and not as
/// failures; the run succeeds and the image tag is written.
#[tokio::test]
async fn once_counts_filtered_referrers_apart_from_failures() {
    let a = Attached::new(Form::Api, "once kinds");
    let src = TestRegistry::start_as(Personality::FullApi).await;
    fixtures::seed_registry(&src, REPO, &a.f);
    let dst = TestRegistry::start_as(Personality::FullApi).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ocimirror.toml");
    let text_config = format!(
        r#"version = 1
[state]
database = "state.db"

[[jobs]]
name = "signed"
source = "{}/{REPO}"
target = "{}/{REPO}"

[jobs.referrers]
include_kinds = ["signature", "sbom"]
"#,
        src.host(),
        dst.host()
    );
    std::fs::write(&config, text_config).unwrap();
    let out = ocimirror(dir.path(), &["once", "-c", config.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("job signed: success"), "{}", text(&out));
    assert!(stdout.contains("0 failed"), "{}", text(&out));
    assert!(
        stdout.contains("referrers filtered out: 2 (by the job's referrer filters; not failures)"),
        "{}",
        text(&out)
    );
    let f = &a.f;
    assert_eq!(
        dst.manifest(REPO, "v1").map(|(_, b)| b),
        Some(f.manifest(&f.index).bytes.clone())
    );
    assert!(dst.manifest(REPO, &f.att).is_none());
    assert!(dst.manifest(REPO, &a.legacy_att).is_none());
    assert!(dst.manifest(REPO, &a.legacy_sig).is_some());
}

/// An unknown kind is a config problem naming its key, listed with the
/// others by `config check` (exit 78).
#[tokio::test]
async fn an_unknown_referrer_kind_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        r#"version = 1
[defaults.referrers]
exclude_kinds = ["provenance"]

[[jobs]]
name = "a"
source = "ghcr.io/org/a"
target = "localhost:5000/mirror/a"
referrers = { include_kinds = ["signature", "signatures"] }
"#,
    )
    .unwrap();
    let out = ocimirror(
        dir.path(),
        &["config", "check", "-c", config.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let all = text(&out);
    for want in [
        "defaults.referrers.exclude_kinds[0]: unknown referrer kind \"provenance\"",
        "jobs[0].referrers.include_kinds[1]: unknown referrer kind \"signatures\"",
        "expected signature, attestation, sbom or other",
    ] {
        assert!(all.contains(want), "{want}: {all}");
    }
}
