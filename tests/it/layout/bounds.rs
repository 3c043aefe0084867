//! Layouts are bounded: a FIFO cannot hang a copy, a symbolic link cannot
//! lead reads or writes out of the layout, a damaged blob file does not
//! count as present, and temp files of killed writers go away.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use ocimirror::oci::{Digest, RepoName};
use ocimirror::registry::Registry;
use ocimirror::registry::layout::LayoutRegistry;
use serde_json::{Value, json};

use super::{chunked, noise, temp_files};
use crate::support::cli::{ocimirror_measured, text};
use crate::support::fixtures::{self, Fixture, Form, LayoutView, OCI_INDEX, REF_NAME};

/// Runs the real binary with a deadline: a hang fails the test instead of
/// stalling the suite.
async fn ocimirror(args: &[&str], limit: Duration) -> Output {
    let run = crate::support::cli::ocimirror(Path::new("."), args);
    tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("ocimirror {args:?} still running after {limit:?}"))
}

/// Writes fixtures into one layout, each image tagged with its own name.
fn write_images(dir: &Path, images: &[(&str, &Fixture)]) {
    let mut all: Vec<Value> = Vec::new();
    for (name, f) in images {
        fixtures::write_layout(dir, f);
        for mut e in LayoutView::read(dir).index["manifests"]
            .as_array()
            .unwrap()
            .clone()
        {
            if e["annotations"][REF_NAME] == json!("v1") {
                e["annotations"][REF_NAME] = json!(name);
            }
            all.push(e);
        }
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": all});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(&digest[7..])
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn oci(dir: &Path) -> String {
    format!("oci:{}", dir.display())
}

#[tokio::test]
async fn a_fifo_blob_fails_its_image_at_once_and_the_other_image_is_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    let (one, two) = (
        fixtures::image(Form::Api, "one"),
        fixtures::image(Form::Api, "two"),
    );
    write_images(&src, &[("one", &one), ("two", &two)]);
    let fifo = blob_path(&src, &fixtures::sha256(b"one layer for amd64"));
    mkfifo(&fifo);

    let (s, d) = (oci(&src), oci(&dst));
    let out = tokio::task::spawn_blocking(move || {
        ocimirror_measured(
            Path::new("."),
            &["copy", "--all-tags", &s, &d],
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.code, Some(1), "{all}");
    assert!(
        all.contains(&format!("{} is a FIFO, not a regular file", fifo.display())),
        "{all}"
    );
    // Generous for a loaded machine; a blocking open never returns.
    assert!(
        out.elapsed < Duration::from_secs(20),
        "took {:?}",
        out.elapsed
    );
    assert!(out.peak_rss < 256 << 20, "peak RSS {} bytes", out.peak_rss);
    eprintln!(
        "FIFO blob: failed by name in {:?}, peak RSS {} KiB",
        out.elapsed,
        out.peak_rss >> 10
    );
    let view = LayoutView::read(&dst);
    assert_eq!(view.tags().get("two"), Some(&two.index));
    assert_eq!(view.tags().get("one"), None);
    for b in &two.blobs {
        assert!(view.blob(&fixtures::sha256(b)).is_some());
    }
}

#[tokio::test]
async fn special_files_in_a_layout_are_refused_by_name_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures::image(Form::Api, "special");
    fixtures::write_layout(tmp.path(), &f);
    let reg = LayoutRegistry::open(tmp.path());
    let layer = fixtures::sha256(b"special layer for arm64");
    mkfifo(&blob_path(tmp.path(), &layer));
    let d: Digest = layer.parse().unwrap();
    let limit = Duration::from_secs(10);
    for err in [
        tokio::time::timeout(limit, reg.blob_get(&RepoName::root(), &d))
            .await
            .unwrap()
            .unwrap_err(),
        tokio::time::timeout(limit, reg.blob_head(&RepoName::root(), &d))
            .await
            .unwrap()
            .unwrap_err(),
    ] {
        assert!(
            err.to_string().contains("is a FIFO, not a regular file"),
            "{err}"
        );
        assert!(err.to_string().contains(&layer[7..]), "{err}");
    }
    // A listed manifest that is a FIFO is skipped by the subject scan; the
    // other referrers are still found.
    mkfifo(&blob_path(tmp.path(), &f.sig));
    let amd: Digest = f.amd.parse().unwrap();
    let listed = tokio::time::timeout(limit, reg.referrers_api(&RepoName::root(), &amd))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let listed: Vec<String> = listed.iter().map(|d| d.digest.to_string()).collect();
    assert_eq!(listed, vec![f.sbom.clone()]);
    // index.json itself.
    mkfifo(&tmp.path().join("index.json"));
    let err = tokio::time::timeout(limit, reg.tags(&RepoName::root()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("index.json is a FIFO"), "{err}");
}

#[tokio::test]
async fn blobs_linked_out_of_a_layout_are_neither_read_nor_written() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixtures::image(Form::Api, "escape");
    let good = tmp.path().join("good");
    fixtures::write_layout(&good, &f);

    // Target: blobs/sha256 leads to an empty directory outside.
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let dst = tmp.path().join("dst");
    std::fs::create_dir_all(dst.join("blobs")).unwrap();
    std::os::unix::fs::symlink(&outside, dst.join("blobs/sha256")).unwrap();
    let out = ocimirror(
        &["copy", &format!("{}:v1", oci(&good)), &oci(&dst)],
        Duration::from_secs(60),
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "{} is a symbolic link leading out of the layout",
            dst.join("blobs/sha256").display()
        )),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!dst.join("index.json").exists());

    // Source: its blobs live outside, behind a link; they are not read.
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("blobs")).unwrap();
    std::fs::copy(good.join("index.json"), src.join("index.json")).unwrap();
    std::fs::copy(good.join("oci-layout"), src.join("oci-layout")).unwrap();
    std::os::unix::fs::symlink(good.join("blobs/sha256"), src.join("blobs/sha256")).unwrap();
    let dst2 = tmp.path().join("dst2");
    let out = ocimirror(
        &["copy", &format!("{}:v1", oci(&src)), &oci(&dst2)],
        Duration::from_secs(60),
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("is a symbolic link leading out of the layout"),
        "{}",
        text(&out)
    );

    // A linked root, as given by the user, is fine; so are links inside.
    let linked_root = tmp.path().join("linked");
    std::os::unix::fs::symlink(&good, &linked_root).unwrap();
    let inner = tmp.path().join("inner");
    std::fs::create_dir_all(inner.join("store")).unwrap();
    std::fs::rename(good.join("blobs"), inner.join("store/blobs")).unwrap();
    std::fs::rename(&inner, good.join("inner")).unwrap();
    std::os::unix::fs::symlink("inner/store/blobs", good.join("blobs")).unwrap();
    let dst3 = tmp.path().join("dst3");
    let out = ocimirror(
        &["copy", &format!("{}:v1", oci(&linked_root)), &oci(&dst3)],
        Duration::from_secs(60),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(LayoutView::read(&dst3).tags().get("v1"), Some(&f.index));
}

#[tokio::test]
async fn damaged_blob_files_in_the_target_are_rewritten() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    let f = fixtures::image(Form::Api, "damage");
    fixtures::write_layout(&src, &f);
    // Left by an earlier, broken writer: one layer truncated, another
    // damaged at the same size (no manifest refers to them yet).
    std::fs::create_dir_all(dst.join("blobs/sha256")).unwrap();
    let truncated = b"damage layer for amd64";
    let garbled = b"damage layer for arm64";
    let (t, g) = (
        blob_path(&dst, &fixtures::sha256(truncated)),
        blob_path(&dst, &fixtures::sha256(garbled)),
    );
    std::fs::write(&t, &truncated[..5]).unwrap();
    std::fs::write(&g, vec![b'x'; garbled.len()]).unwrap();
    let out = ocimirror(
        &["copy", &format!("{}:v1", oci(&src)), &oci(&dst)],
        Duration::from_secs(60),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(&t).unwrap(), truncated);
    assert_eq!(std::fs::read(&g).unwrap(), garbled);

    // Above the size that is hashed, the size alone decides.
    let reg = LayoutRegistry::open(&dst);
    let big = noise(6 * 1024 * 1024, 7);
    let cut = 5 * 1024 * 1024;
    let desc = ocimirror::oci::Descriptor::new(
        "application/octet-stream",
        Digest::sha256(&big),
        big.len() as u64,
    );
    let path = blob_path(&dst, &desc.digest.to_string());
    std::fs::write(&path, &big[..cut]).unwrap();
    assert_eq!(
        reg.blob_head(&RepoName::root(), &desc.digest)
            .await
            .unwrap(),
        Some(cut as u64)
    );
    reg.blob_put(&RepoName::root(), &desc, chunked(big.clone(), 64 * 1024))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), big);
}

#[tokio::test]
async fn temp_files_of_killed_writers_are_removed_and_fresh_ones_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::create_dir_all(dir.join("blobs/sha512")).unwrap();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    let stale = [
        dir.join(".tmp-00000000000000aa"),
        dir.join("blobs/sha256/.tmp-00000000000000bb"),
        dir.join("blobs/sha512/.tmp-00000000000000cc"),
    ];
    for p in &stale {
        let f = std::fs::File::create(p).unwrap();
        f.set_modified(two_hours_ago).unwrap();
    }
    // A writer that is still busy, and an old file that is not ours.
    let fresh = dir.join("blobs/sha256/.tmp-00000000000000dd");
    std::fs::write(&fresh, b"in progress").unwrap();
    let foreign = dir.join("blobs/sha256/notes.txt");
    std::fs::File::create(&foreign)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();

    let reg = LayoutRegistry::open(dir);
    let bytes = b"first write".to_vec();
    let desc = ocimirror::oci::Descriptor::new(
        "application/octet-stream",
        Digest::sha256(&bytes),
        bytes.len() as u64,
    );
    reg.blob_put(&RepoName::root(), &desc, chunked(bytes, 4))
        .await
        .unwrap();
    assert_eq!(
        temp_files(dir),
        vec![PathBuf::from("blobs/sha256/.tmp-00000000000000dd")]
    );
    assert!(fresh.exists() && foreign.exists());
}
