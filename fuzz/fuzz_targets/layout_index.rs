//! A layout's `index.json` with any content, as the layout adapter lists
//! tags and scans for referrers from it. Never panics; every tag listed is
//! a valid tag; nothing is written.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use ocimirror::oci::{Digest, RepoName, Tag};
use ocimirror::registry::Registry;
use ocimirror::registry::layout::LayoutRegistry;

/// One scratch layout per fuzzing process.
static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("ocimirror-fuzz-layout-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("blobs/sha256")).expect("scratch layout");
    dir
});

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
});

fuzz_target!(|input: &[u8]| {
    if std::fs::write(DIR.join("index.json"), input).is_err() {
        return;
    }
    let reg = LayoutRegistry::open(&*DIR);
    let root = RepoName::root();
    RUNTIME.block_on(async {
        if let Ok(tags) = reg.tags(&root).await {
            for t in &tags {
                assert!(Tag::new(t).is_ok(), "{t:?} listed as a tag");
            }
        }
        let _ = reg.referrers_api(&root, &Digest::sha256(b"subject")).await;
    });
});
