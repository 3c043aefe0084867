//! Interoperability with registries that answer the referrers endpoint in
//! the documented non-standard ways (the personalities of the test
//! registry): the adapter's verdicts, one by one, and mirror jobs run by the
//! real binary (`ocimirror once`) from and to each kind of "no API".
//! The copy matrix over every personality is in `copy_matrix.rs`.

use std::time::Duration;

use bytes::Bytes;
use ocimirror::oci::{Digest, Manifest, Reference};
use ocimirror::registry::http::{Credentials, HttpRegistry, HttpSettings, Secret};
use ocimirror::registry::{Precondition, ReferrersSupport, Registry};

use crate::interop_places::{
    Dst, Place, Src, assert_copied, assert_no_web_page_visited, assert_tag_written_last, form,
    run_concurrently, source, target,
};
use crate::support::cli::{ocimirror, text};
use crate::support::fixtures::{self, OCI_MANIFEST, SIG};
use crate::support::registry::{Personality, TestRegistry};
use crate::support::values::repo;

const REPO: &str = "team/app";

fn client(tr: &TestRegistry, f: impl FnOnce(&mut HttpSettings)) -> HttpRegistry {
    let mut s = HttpSettings {
        credentials: tr
            .personality()
            .needs_credentials()
            .then(|| Credentials::Basic {
                username: Personality::USER.into(),
                password: Secret::new(Personality::PASSWORD),
            }),
        docker_config: ocimirror::registry::http::DockerConfigSource::Off,
        ..HttpSettings::default()
    };
    f(&mut s);
    HttpRegistry::new(&tr.host(), s).unwrap()
}

/// A registry of personality `p` holding an image in `REPO`; its digest.
async fn with_image(p: Personality) -> (TestRegistry, Digest) {
    let tr = TestRegistry::start_as(p).await;
    let d = tr.seed_image(REPO, "v1", &[b"layer"]);
    (tr, d.parse().unwrap())
}

/// Every kind of "no API" reads as "no API" (`None`, then `Unsupported`),
/// once per repository, without following GHCR's redirect.
#[tokio::test]
async fn every_no_api_answer_is_the_unsupported_verdict_and_is_cached() {
    for p in Personality::ALL.into_iter().filter(|p| !p.has_api()) {
        let (tr, subject) = with_image(p).await;
        let r = client(&tr, |_| {});
        let name = repo(REPO);
        assert_eq!(
            r.referrers_api(&name, &subject).await.unwrap(),
            None,
            "{p:?}"
        );
        assert_eq!(
            r.referrers_support(&name).await.unwrap(),
            ReferrersSupport::Unsupported,
            "{p:?}"
        );
        assert_eq!(r.referrers_api(&name, &subject).await.unwrap(), None);
        // One call (a 401 is retried once with a fresh token).
        let one_call = if p == Personality::Referrers401 { 2 } else { 1 };
        assert_eq!(
            tr.count("GET", "/referrers/"),
            one_call,
            "{p:?}: {:#?}",
            tr.log()
        );
        assert_eq!(
            tr.count("", "/orgs/test/packages"),
            0,
            "{p:?}: redirect followed"
        );
    }
}

/// The verdict expires: with a zero TTL every call asks again.
#[tokio::test]
async fn the_verdict_is_cached_for_the_configured_ttl_only() {
    let (tr, subject) = with_image(Personality::ApiOff405).await;
    let r = client(&tr, |s| s.referrers_cache_ttl = Duration::ZERO);
    let name = repo(REPO);
    for _ in 0..3 {
        assert_eq!(r.referrers_api(&name, &subject).await.unwrap(), None);
    }
    assert_eq!(tr.count("GET", "/referrers/"), 3);
}

/// A registry forced to "api" that answers "no API" fails, and the message
/// names the answer, the registry, the repository and the digest.
#[tokio::test]
async fn forced_api_against_a_registry_without_it_names_the_answer() {
    let (tr, subject) = with_image(Personality::ApiOff405).await;
    let r = client(&tr, |s| s.referrers = Some(ReferrersSupport::Supported));
    let e = r
        .referrers_api(&repo(REPO), &subject)
        .await
        .unwrap_err()
        .to_string();
    for part in [
        "HTTP 405 UNSUPPORTED",
        tr.host().as_str(),
        REPO,
        &subject.to_string(),
        "\"api\"",
    ] {
        assert!(e.contains(part), "{part:?} missing from: {e}");
    }
    // A 303 names where it led (the origin only).
    let (tr, subject) = with_image(Personality::Ghcr303).await;
    let r = client(&tr, |s| s.referrers = Some(ReferrersSupport::Supported));
    let e = r
        .referrers_api(&repo(REPO), &subject)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("HTTP 303 (redirect to http://127.0.0.2:"), "{e}");
    assert!(!e.contains("/orgs/test"), "{e}");
}

/// Listing referrers in a repository that does not exist is an error naming
/// it; probing a target repository that does not exist yet says "unknown"
/// and caches nothing.
#[tokio::test]
async fn a_missing_repository_is_an_error_when_listing_and_unknown_when_probing() {
    let (tr, subject) = with_image(Personality::FullApi).await;
    let r = client(&tr, |_| {});
    let missing = repo("missing/repo");
    let e = r.referrers_api(&missing, &subject).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("missing/repo") && msg.contains("NAME_UNKNOWN"),
        "{msg}"
    );
    for _ in 0..2 {
        assert_eq!(
            r.referrers_support(&missing).await.unwrap(),
            ReferrersSupport::Unknown
        );
    }
    assert_eq!(tr.count("GET", "/referrers/"), 3, "nothing cached");
}

/// 401 on the referrers path means "no API" only when the repository
/// accepts the credentials; with wrong ones it is the auth error.
#[tokio::test]
async fn referrers_401_is_no_api_only_when_auth_works_for_the_repository() {
    let (tr, subject) = with_image(Personality::Referrers401).await;
    let r = client(&tr, |s| {
        s.credentials = Some(Credentials::Basic {
            username: Personality::USER.into(),
            password: Secret::new("wrong"),
        })
    });
    let e = r.referrers_api(&repo(REPO), &subject).await.unwrap_err();
    assert!(e.to_string().contains("unauthorized"), "{e}");
    let r = client(&tr, |_| {});
    assert_eq!(r.referrers_api(&repo(REPO), &subject).await.unwrap(), None);
}

/// Docker Hub 2024: `OCI-Subject` on the PUT, no endpoint. One GET of the
/// endpoint tells, so the engine keeps the fallback tag up to date.
#[tokio::test]
async fn oci_subject_without_an_endpoint_is_confirmed_and_not_trusted() {
    for (p, indexed) in [
        (Personality::DockerHub2024, false),
        (Personality::FullApi, true),
    ] {
        let (tr, subject) = with_image(p).await;
        let (subject_type, subject_bytes) = tr.manifest(REPO, &subject.to_string()).unwrap();
        let empty = tr.put_blob(REPO, b"{}");
        let bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SIG,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
            "subject": {"mediaType": subject_type, "digest": subject.to_string(), "size": subject_bytes.len()},
        }))
        .unwrap();
        let m = Manifest::parse(Bytes::from(bytes), Some(OCI_MANIFEST)).unwrap();
        let r = client(&tr, |_| {});
        let name = repo(REPO);
        for _ in 0..2 {
            let out = r
                .manifest_put(
                    &name,
                    &Reference::from(m.digest().clone()),
                    &m,
                    Precondition::None,
                )
                .await
                .unwrap();
            assert_eq!(out.subject_indexed, indexed, "{p:?}");
        }
        assert_eq!(tr.count("GET", "/referrers/"), 1, "{p:?}: confirmed once");
    }
}

/// The cells run as jobs of the real binary: each "no API" kind as a
/// source (into an API registry) and as a target (from one), plus
/// distribution 2.8 both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_jobs_from_and_to_every_kind_of_registry_without_the_api() {
    let mut cells = Vec::new();
    for p in Personality::ALL.into_iter().filter(|p| !p.has_api()) {
        cells.push((Src::Reg(p), Dst::Api));
        cells.push((Src::Api, Dst::Reg(p)));
    }
    cells.push((Src::Distribution, Dst::Api));
    cells.push((Src::Api, Dst::Distribution));
    let cells = cells
        .into_iter()
        .map(|(s, d)| (format!("{s:?} -> {d:?}"), job_cell(s, d)))
        .collect();
    run_concurrently(cells).await;
}

async fn job_cell(src_kind: Src, dst_kind: Dst) {
    let f = fixtures::image(form(src_kind), &format!("job {src_kind:?} {dst_kind:?}"));
    let src = source(src_kind, &f, None).await;
    let dst = target(dst_kind, None).await;
    let dir = tempfile::tempdir().unwrap();
    let mut registries = String::new();
    for p in [&src, &dst] {
        if let Place::Reg(r) = p
            && r.personality().needs_credentials()
        {
            registries.push_str(&format!(
                "[registries.\"{}\"]\nusername = \"{}\"\npassword = \"{}\"\n\n",
                r.host(),
                Personality::USER,
                Personality::PASSWORD
            ));
        }
    }
    let config = dir.path().join("ocimirror.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 1
[state]
database = "{db}"

{registries}[[jobs]]
name = "interop"
source = "{src}"
target = "{dst}"
schedule = {{ interval = "1h", jitter = "0s" }}
"#,
            db = dir.path().join("state.db").display(),
            src = src.reference(),
            dst = dst.reference(),
        ),
    )
    .unwrap();
    dst.clear_log();
    let out = ocimirror(dir.path(), &["once", "-c", config.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_copied(&dst, dst_kind, &f).await;
    assert_tag_written_last(&dst, &f);
    assert_no_web_page_visited(&src);
    assert_no_web_page_visited(&dst);
}
