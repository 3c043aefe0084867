//! Layouts and skopeo, and a generated corpus read back: skopeo reads what
//! we write and we read what it writes.

use super::*;

// ---------------------------------------------------------------- interop

/// skopeo, which `tests/run` installs: a missing one fails the test (as a
/// missing docker-registry does), never skips it quietly.
fn skopeo() -> PathBuf {
    let p = PathBuf::from("/usr/bin/skopeo");
    if p.exists() {
        return p;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("skopeo"))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| {
            panic!("skopeo not found: tests/run installs it (apt-get install skopeo)")
        })
}

fn run_skopeo(bin: &Path, home: &Path, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new(bin)
        .args(args)
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", home)
        .env("XDG_CONFIG_HOME", home)
        .env("XDG_DATA_HOME", home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test]
async fn skopeo_reads_what_we_write_and_we_read_what_it_writes() {
    let bin = skopeo();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let reg = LayoutRegistry::open(&src);
    let m = image(&reg, &root(), "interop").await;
    reg.manifest_put(&root(), &tag("v1"), &m, Precondition::None)
        .await
        .unwrap();

    let raw = run_skopeo(
        &bin,
        &home,
        &["inspect", "--raw", &format!("oci:{}:v1", src.display())],
    );
    assert_eq!(raw, m.bytes().as_ref());

    run_skopeo(
        &bin,
        &home,
        &[
            "--insecure-policy",
            "copy",
            "--quiet",
            // Keep the uncompressed layer as is, so digests must match.
            "--preserve-digests",
            &format!("oci:{}:v1", src.display()),
            &format!("oci:{}:v1", dst.display()),
        ],
    );
    let back = LayoutRegistry::open(&dst);
    let got = back
        .manifest_get(&root(), &tag("v1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.digest(), m.digest());
    assert_eq!(got.bytes(), m.bytes());
    for b in m.blobs() {
        assert_eq!(
            read_blob(&back, &root(), &b.digest).await,
            read_blob(&reg, &root(), &b.digest).await
        );
    }
    assert_eq!(back.tags(&root()).await.unwrap(), vec!["v1"]);
    // And we can add to skopeo's layout without breaking it for skopeo.
    let m2 = image(&back, &root(), "second").await;
    back.manifest_put(&root(), &tag("v2"), &m2, Precondition::None)
        .await
        .unwrap();
    let raw = run_skopeo(
        &bin,
        &home,
        &["inspect", "--raw", &format!("oci:{}:v2", dst.display())],
    );
    assert_eq!(raw, m2.bytes().as_ref());
    let raw = run_skopeo(
        &bin,
        &home,
        &["inspect", "--raw", &format!("oci:{}:v1", dst.display())],
    );
    assert_eq!(raw, m.bytes().as_ref());
    // skopeo rewrites index.json behind our back: our cached view follows.
    run_skopeo(
        &bin,
        &home,
        &[
            "--insecure-policy",
            "copy",
            "--quiet",
            "--preserve-digests",
            &format!("oci:{}:v1", src.display()),
            &format!("oci:{}:v3", dst.display()),
        ],
    );
    assert_eq!(back.tags(&root()).await.unwrap(), vec!["v1", "v2", "v3"]);
    let v3 = back
        .manifest_get(&root(), &tag("v3"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v3.digest(), m.digest());
}

// ---------------------------------------------------------------- corpus

/// Every manifest reachable from `root_digest` through index children, with
/// every blob read back (verified) by the adapter.
async fn walk(reg: &LayoutRegistry, repo: &RepoName, root_digest: &Digest) -> usize {
    let mut todo = vec![root_digest.clone()];
    let mut seen = BTreeSet::new();
    while let Some(d) = todo.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        let m = reg
            .manifest_get(repo, &Reference::Digest(d.clone()))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{d} missing"));
        for b in m.blobs() {
            assert_eq!(read_blob(reg, repo, &b.digest).await.len() as u64, b.size);
        }
        todo.extend(m.child_manifests().iter().map(|c| c.digest.clone()));
        if let Some(s) = m.subject() {
            todo.push(s.digest.clone());
        }
    }
    seen.len()
}

#[tokio::test]
async fn a_generated_corpus_reads_back_and_fallback_tags_agree_with_the_scan() {
    use ocimirror::corpus::{CorpusSpec, ReferrerForm, generate};
    let tmp = tempfile::tempdir().unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let spec = CorpusSpec {
        repo_prefix: String::new(),
        tags: 2,
        layer_size: 2048,
        base_layer_size: 4096,
        referrer_form: ReferrerForm::FallbackTag,
        ..CorpusSpec::default()
    };
    let report = generate(&reg, &spec).await.unwrap();
    assert_eq!(report.images.len(), 2);
    let tags = reg.tags(&root()).await.unwrap();
    for (repo, t, digest) in &report.images {
        assert!(repo.is_root());
        assert!(tags.contains(&t.to_string()), "{tags:?}");
        let m = reg
            .manifest_get(&root(), &Reference::Tag(t.clone()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.digest(), digest);
        assert!(walk(&reg, &root(), digest).await > 1);
    }
    // Every fallback tag lists exactly the referrers a subject scan finds.
    let fallback: Vec<&String> = tags
        .iter()
        .filter(|t| ocimirror::oci::referrers::is_fallback_tag(t))
        .collect();
    assert!(!fallback.is_empty());
    for ft in fallback {
        let idx = reg.manifest_get(&root(), &tag(ft)).await.unwrap().unwrap();
        let hex = ft.strip_prefix("sha256-").unwrap();
        let subject: Digest = format!("sha256:{hex}").parse().unwrap();
        let mut listed: Vec<Descriptor> = idx.child_manifests().to_vec();
        listed.sort_by(|a, b| a.digest.cmp(&b.digest));
        let mut scanned = reg.referrers_by_scan(&root(), &subject).await.unwrap();
        scanned.sort_by(|a, b| a.digest.cmp(&b.digest));
        assert_eq!(listed, scanned, "{ft}");
    }
}

#[tokio::test]
async fn skopeo_copies_a_multi_platform_index_out_of_our_layout() {
    use ocimirror::corpus::{CorpusSpec, generate};
    let bin = skopeo();
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, home) = (
        tmp.path().join("src"),
        tmp.path().join("dst"),
        tmp.path().join("home"),
    );
    std::fs::create_dir(&home).unwrap();
    let reg = LayoutRegistry::open(&src);
    let spec = CorpusSpec {
        repo_prefix: String::new(),
        referrer_depth: 0,
        ..CorpusSpec::default()
    };
    let report = generate(&reg, &spec).await.unwrap();
    let (_, t, digest) = &report.images[0];
    run_skopeo(
        &bin,
        &home,
        &[
            "--insecure-policy",
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            &format!("oci:{}:{t}", src.display()),
            &format!("oci:{}:{t}", dst.display()),
        ],
    );
    let back = LayoutRegistry::open(&dst);
    let got = back
        .manifest_get(&root(), &Reference::Tag(t.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.digest(), digest);
    assert_eq!(
        walk(&back, &root(), digest).await,
        walk(&reg, &root(), digest).await
    );
}
