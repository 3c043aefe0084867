//! Referrers that a layout lists only in `index.json` (as oras-go writes
//! layouts: no fallback tags) are found by every reader: the adapter itself
//! and a job run by the real binary.

use std::path::Path;

use ocimirror::oci::{Digest, RepoName};
use ocimirror::registry::Registry;
use ocimirror::registry::layout::LayoutRegistry;
use serde_json::{Value, json};

use crate::support::cli::{ocimirror, text};
use crate::support::fixtures::{self, Fixture, Form, LayoutView, REF_NAME, SIG, fallback_tag};

/// The standard image (3 referrers) plus a signature on the index: 4
/// referrers on 3 subjects, all listed untagged in `index.json` only.
fn oras_style(dir: &Path) -> Fixture {
    let mut f = fixtures::image(Form::Api, "oras");
    let index = f.index.clone();
    f.add_referrer(Form::Api, &index, SIG, "oras index signature", "sig");
    fixtures::write_layout(dir, &f);
    let tags = LayoutView::read(dir).tags();
    assert!(
        tags.keys().all(|t| !t.starts_with("sha256-")),
        "no fallback tags: {tags:?}"
    );
    f
}

fn referrers_of(f: &Fixture, subject: &str) -> Vec<String> {
    let mut want: Vec<String> = f
        .edges
        .iter()
        .filter(|e| e.subject == subject)
        .map(|e| e.referrer.clone())
        .collect();
    want.sort();
    want
}

#[tokio::test]
async fn the_adapter_lists_referrers_found_only_in_index_json() {
    let tmp = tempfile::tempdir().unwrap();
    let f = oras_style(tmp.path());
    assert_eq!(f.edges.len(), 4);
    let reg = LayoutRegistry::open(tmp.path());
    for subject in [&f.index, &f.amd, &f.sbom] {
        let d: Digest = subject.parse().unwrap();
        let mut listed: Vec<String> = reg
            .referrers_api(&RepoName::root(), &d)
            .await
            .unwrap()
            .expect("a layout answers the referrers listing")
            .into_iter()
            .map(|d| d.digest.to_string())
            .collect();
        listed.sort();
        assert_eq!(listed, referrers_of(&f, subject), "referrers of {subject}");
    }
}

#[tokio::test]
async fn the_listing_merges_the_scan_with_fallback_only_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures::image(Form::Tags, "merge");
    fixtures::write_layout(tmp.path(), &f);
    // The attestation is reachable only through the index's fallback tag.
    let path = tmp.path().join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["digest"] != json!(f.att) || e["annotations"][REF_NAME].is_string());
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let subject: Digest = f.index.parse().unwrap();
    let scanned = reg
        .referrers_by_scan(&RepoName::root(), &subject)
        .await
        .unwrap();
    assert!(scanned.is_empty(), "{scanned:?}");
    let listed = reg
        .referrers_api(&RepoName::root(), &subject)
        .await
        .unwrap()
        .unwrap();
    let listed: Vec<String> = listed.iter().map(|d| d.digest.to_string()).collect();
    assert_eq!(listed, vec![f.att.clone()]);
}

/// A job (`ocimirror once`) reads such a layout exactly like `copy` does.
#[tokio::test]
async fn a_job_copies_every_referrer_of_an_oras_style_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    let f = oras_style(&src);
    let config = tmp.path().join("ocimirror.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[state]\ndatabase = \"{}\"\n[[jobs]]\nname = \"oras\"\nsource = \"oci:{}\"\ntarget = \"oci:{}\"\n",
            tmp.path().join("state.db").display(),
            src.display(),
            dst.display()
        ),
    )
    .unwrap();
    let out = ocimirror(tmp.path(), &["once", "-c", config.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
    let view = LayoutView::read(&dst);
    assert_eq!(view.tags().get("v1"), Some(&f.index));
    for edge in &f.edges {
        let m = f.manifest(&edge.referrer);
        assert_eq!(
            view.blob(&edge.referrer).as_deref(),
            Some(&m.bytes[..]),
            "referrer {}",
            edge.referrer
        );
    }
    // The target keeps fallback tags, listing exactly the source's referrers.
    for subject in [&f.index, &f.amd, &f.sbom] {
        let tag = fallback_tag(subject);
        let digest = view
            .tags()
            .get(&tag)
            .cloned()
            .unwrap_or_else(|| panic!("no fallback tag {tag}"));
        let bytes = view.blob(&digest).unwrap();
        assert_eq!(
            fixtures::index_digests(&bytes),
            referrers_of(&f, subject),
            "fallback index of {subject}"
        );
    }
}
