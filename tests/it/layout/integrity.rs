//! Layout repositories, integrity, atomicity and safety: repositories are
//! layouts under the root, damaged files are digest mismatches, failed or
//! concurrent writes leave a valid layout, and hostile `index.json` entries
//! or names never reach outside the root.

use super::*;

// ---------------------------------------------------------------- repos

#[tokio::test]
async fn repositories_are_layouts_under_the_root_and_mount_between_them() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let app = RepoName::new("team/app").unwrap();
    let other = RepoName::new("other/app").unwrap();
    let m = image(&reg, &app, "x").await;
    reg.manifest_put(&app, &tag("v1"), &m, Precondition::None)
        .await
        .unwrap();
    let dir = tmp.path().join("team/app");
    assert!(dir.join("oci-layout").is_file());
    assert_eq!(entries(&dir).len(), 1);
    assert!(!tmp.path().join("index.json").exists());
    assert!(
        reg.manifest_get(&root(), &tag("v1"))
            .await
            .unwrap()
            .is_none()
    );

    let layer = &m.blobs()[1].digest;
    assert!(reg.blob_mount(&other, layer, &app).await.unwrap());
    assert_eq!(read_blob(&reg, &other, layer).await, empty_tar());
    assert!(tmp.path().join("other/app/index.json").is_file());
    let absent = Digest::sha256(b"absent");
    assert!(!reg.blob_mount(&other, &absent, &app).await.unwrap());
    // Missing repository: tags is NotFound, reads are absent.
    let ghost = RepoName::new("ghost").unwrap();
    assert!(reg.tags(&ghost).await.unwrap_err().is_not_found());
    assert!(!tmp.path().join("ghost").exists());
}

#[tokio::test]
async fn a_missing_root_reads_as_empty_and_is_not_created_by_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("does-not-exist");
    let reg = LayoutRegistry::open(&path);
    let d = Digest::sha256(b"x");
    assert!(
        reg.manifest_fetch(&root(), &tag("v1"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        reg.manifest_head(&root(), &Reference::Digest(d.clone()))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(reg.blob_head(&root(), &d).await.unwrap(), None);
    let err = reg.blob_get(&root(), &d).await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.registry, format!("oci:{}", path.display()));
    assert!(reg.tags(&root()).await.unwrap_err().is_not_found());
    assert!(reg.referrers_by_scan(&root(), &d).await.unwrap().is_empty());
    assert!(!path.exists());
}

// ---------------------------------------------------------------- integrity

#[tokio::test]
async fn corrupted_files_are_digest_mismatches() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let m = image(&reg, &root(), "x").await;
    reg.manifest_put(&root(), &tag("v1"), &m, Precondition::None)
        .await
        .unwrap();
    // Same length, different content.
    let mpath = blob_file(tmp.path(), m.digest());
    let mut bytes = std::fs::read(&mpath).unwrap();
    let last = bytes.len() - 2;
    bytes[last] = b' ';
    std::fs::write(&mpath, &bytes).unwrap();
    let err = reg.manifest_fetch(&root(), &tag("v1")).await.unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::DigestMismatch { .. }),
        "{err}"
    );
    assert_eq!(err.target.as_deref(), Some(m.digest().to_string().as_str()));

    let config = m.blobs()[0].digest.clone();
    let cpath = blob_file(tmp.path(), &config);
    let mut cbytes = std::fs::read(&cpath).unwrap();
    cbytes[0] = b' ';
    std::fs::write(&cpath, &cbytes).unwrap();
    let blob = reg.blob_get(&root(), &config).await.unwrap();
    let items: Vec<_> = blob.stream.collect().await;
    let err = items.last().unwrap().as_ref().unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::DigestMismatch { .. }),
        "{err}"
    );
    // The verifier never released the (only) chunk.
    assert!(items.iter().all(|i| i.is_err()));
}

#[tokio::test]
async fn an_invalid_index_json_is_reported_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("index.json"), b"{not json").unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let err = reg.manifest_fetch(&root(), &tag("v1")).await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::InvalidResponse(_)), "{err}");
    assert!(err.to_string().contains("index.json"), "{err}");
    let err = reg.tags(&root()).await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::InvalidResponse(_)), "{err}");
    // A write does not overwrite what it cannot parse.
    let m = Manifest::parse(Bytes::from_static(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#), None).unwrap();
    assert!(
        reg.manifest_put(&root(), &tag("v1"), &m, Precondition::None)
            .await
            .is_err()
    );
    assert_eq!(
        std::fs::read(tmp.path().join("index.json")).unwrap(),
        b"{not json"
    );
}

// ---------------------------------------------------------------- atomicity

#[tokio::test]
async fn failed_blob_uploads_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = LayoutRegistry::open(tmp.path());
    let bytes = noise(300_000, 3);
    let desc = Descriptor::new(
        mt::OCI_LAYER_GZIP,
        Digest::sha256(&bytes),
        bytes.len() as u64,
    );

    // The source fails mid-way.
    let half = Bytes::copy_from_slice(&bytes[..150_000]);
    let failing: BlobStream = Box::pin(stream::iter(vec![
        Ok(half),
        Err(RegistryError::new(
            "src",
            "r",
            Operation::BlobGet,
            None,
            ErrorKind::Transport {
                message: "connection reset".into(),
                retryable: true,
            },
        )),
    ]));
    let err = reg.blob_put(&root(), &desc, failing).await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Transport { .. }), "{err}");

    // Same size, wrong bytes.
    let mut wrong = bytes.clone();
    wrong[299_999] ^= 1;
    let err = reg
        .blob_put(&root(), &desc, chunked(wrong, 4096))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::DigestMismatch { .. }),
        "{err}"
    );
    assert_eq!(err.registry, reg.name());

    // Too long and too short.
    let mut long = bytes.clone();
    long.push(0);
    let err = reg
        .blob_put(&root(), &desc, chunked(long, 4096))
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::SizeMismatch { .. }), "{err}");
    let err = reg
        .blob_put(&root(), &desc, chunked(bytes[..1000].to_vec(), 4096))
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::SizeMismatch { .. }), "{err}");

    // A dropped (cancelled) upload also cleans up: the stream signals once
    // its first chunk was taken (and written), then never ends.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stalled: BlobStream = Box::pin(
        stream::iter(vec![Ok(Bytes::copy_from_slice(&bytes[..10]))]).chain(stream::once(
            async move {
                let _ = tx.send(());
                futures::future::pending::<Result<Bytes, RegistryError>>().await
            },
        )),
    );
    {
        let r = root();
        let fut = reg.blob_put(&r, &desc, stalled);
        tokio::pin!(fut);
        tokio::select! {
            _ = &mut fut => panic!("upload of a stalled stream finished"),
            _ = rx => {}
        }
        assert_eq!(
            temp_files(tmp.path()).len(),
            1,
            "the upload should be in progress"
        );
    }

    assert!(!blob_file(tmp.path(), &desc.digest).exists());
    assert_eq!(reg.blob_head(&root(), &desc.digest).await.unwrap(), None);
    assert!(
        temp_files(tmp.path()).is_empty(),
        "{:?}",
        temp_files(tmp.path())
    );
    // And a good upload afterwards works.
    reg.blob_put(&root(), &desc, chunked(bytes.clone(), 4096))
        .await
        .unwrap();
    assert_eq!(read_blob(&reg, &root(), &desc.digest).await, bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tag_puts_all_land_in_a_valid_index() {
    let tmp = tempfile::tempdir().unwrap();
    // Two instances on one directory share the index lock.
    let regs = [
        Arc::new(LayoutRegistry::open(tmp.path())),
        Arc::new(LayoutRegistry::open(tmp.path().join("."))),
    ];
    let mut manifests = Vec::new();
    for i in 0..20 {
        manifests.push(image(&regs[0], &root(), &format!("m{i}")).await);
    }
    let mut tasks = Vec::new();
    for (i, m) in manifests.iter().cloned().enumerate() {
        let reg = regs[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            reg.manifest_put(&root(), &tag(&format!("t{i:02}")), &m, Precondition::None)
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let es = entries(tmp.path());
    assert_eq!(es.len(), 20);
    let want: Vec<String> = (0..20).map(|i| format!("t{i:02}")).collect();
    assert_eq!(regs[1].tags(&root()).await.unwrap(), want);
    for (i, m) in manifests.iter().enumerate() {
        let got = regs[0]
            .manifest_get(&root(), &tag(&format!("t{i:02}")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.digest(), m.digest());
    }
    assert!(temp_files(tmp.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_if_none_match_puts_on_one_tag_have_exactly_one_winner() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Arc::new(LayoutRegistry::open(tmp.path()));
    let mut manifests = Vec::new();
    for i in 0..10 {
        manifests.push(image(&reg, &root(), &format!("c{i}")).await);
    }
    let mut tasks = Vec::new();
    for m in manifests {
        let reg = reg.clone();
        tasks.push(tokio::spawn(async move {
            reg.manifest_put(&root(), &tag("race"), &m, Precondition::IfNoneMatch)
                .await
                .map(|_| m.digest().clone())
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(d) => winners.push(d),
            Err(e) => assert!(matches!(e.kind, ErrorKind::PreconditionFailed), "{e}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let got = reg
        .manifest_get(&root(), &tag("race"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.digest(), &winners[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_updates_wait_for_another_process_holding_the_lock_file() {
    use ocimirror::registry::layout::LOCK_FILE;
    let tmp = tempfile::tempdir().unwrap();
    let reg = Arc::new(LayoutRegistry::open(tmp.path()));
    let a = image(&reg, &root(), "a").await;
    // A separate open file stands for another process: flock locks conflict
    // between open file descriptions even inside one process.
    let other = std::fs::File::open(tmp.path().join(LOCK_FILE)).unwrap();
    other.lock().unwrap();
    let put = {
        let reg = reg.clone();
        tokio::spawn(async move {
            reg.manifest_put(&root(), &tag("v1"), &a, Precondition::None)
                .await
                .unwrap();
        })
    };
    // Showing that something does not happen needs a bound. It cannot make
    // the test flaky: with the lock held the put never finishes; without a
    // lock it finishes in milliseconds.
    let mut put = put;
    let early = tokio::time::timeout(std::time::Duration::from_millis(500), &mut put).await;
    assert!(early.is_err(), "manifest_put ignored the held lock file");
    assert!(
        reg.manifest_get(&root(), &tag("v1"))
            .await
            .unwrap()
            .is_none()
    );
    other.unlock().unwrap();
    put.await.unwrap();
    assert!(
        reg.manifest_get(&root(), &tag("v1"))
            .await
            .unwrap()
            .is_some()
    );
}

// ---------------------------------------------------------------- safety

#[tokio::test]
async fn a_hostile_index_json_never_reaches_outside_the_root() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("layout");
    std::fs::create_dir(&dir).unwrap();
    let reg = LayoutRegistry::open(&dir);
    let m = image(&reg, &root(), "x").await;
    // A manifest outside the root that a traversal would find.
    std::fs::write(parent.path().join("x"), m.bytes()).unwrap();
    let hostile = json!({
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": mt::OCI_MANIFEST, "digest": m.digest().to_string(), "size": m.bytes().len(),
             "annotations": {REF_NAME: "../../x"}},
            {"mediaType": mt::OCI_MANIFEST, "digest": "sha256:../../../x", "size": 1,
             "annotations": {REF_NAME: "y"}},
            {"mediaType": mt::OCI_MANIFEST, "digest": "../x", "size": 1,
             "annotations": {REF_NAME: "/etc/passwd"}},
            {"mediaType": "application/vnd.unknown", "digest": "blake3:abcd", "size": 1},
        ],
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&hostile).unwrap(),
    )
    .unwrap();
    let before = listing(parent.path());

    assert!(
        reg.manifest_get(&root(), &tag("x"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        reg.manifest_get(&root(), &tag("y"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(reg.tags(&root()).await.unwrap(), Vec::<String>::new());
    assert!(
        reg.referrers_by_scan(&root(), m.digest())
            .await
            .unwrap()
            .is_empty()
    );
    // Writes keep entries they do not understand, and stay inside.
    reg.manifest_put(&root(), &tag("x"), &m, Precondition::None)
        .await
        .unwrap();
    assert_eq!(
        reg.manifest_get(&root(), &tag("x"))
            .await
            .unwrap()
            .unwrap()
            .digest(),
        m.digest()
    );
    let es = entries(&dir);
    assert_eq!(es.len(), 5);
    assert!(es.iter().any(|e| e["digest"] == "blake3:abcd"));
    let after = listing(parent.path());
    let outside = |l: &BTreeSet<PathBuf>| -> BTreeSet<PathBuf> {
        l.iter()
            .filter(|p| !p.starts_with("layout"))
            .cloned()
            .collect()
    };
    assert_eq!(outside(&before), outside(&after));
    assert_eq!(
        std::fs::read(parent.path().join("x")).unwrap(),
        m.bytes().as_ref()
    );
}

#[tokio::test]
async fn writes_with_any_valid_names_stay_inside_the_root() {
    let parent = tempfile::tempdir().unwrap();
    std::fs::write(parent.path().join("sentinel"), b"s").unwrap();
    let dir = parent.path().join("layout");
    let reg = LayoutRegistry::open(&dir);
    let before = listing(parent.path());
    // The validated types refuse anything path-like.
    for bad in ["..", "../x", "a/../b", "/abs", "a//b", ".hidden"] {
        assert!(RepoName::new(bad).is_err(), "{bad}");
    }
    for bad in ["..", "../x", "a/b", ".x", ""] {
        assert!(Tag::new(bad).is_err(), "{bad}");
    }
    assert!("sha256:../../x".parse::<Digest>().is_err());
    for repo in ["a", "a/b/c", "a.b/c_d--e"] {
        let repo = RepoName::new(repo).unwrap();
        let m = image(&reg, &repo, repo.as_str()).await;
        for t in ["_", "a.b", "A-z_9", "sha256-00"] {
            reg.manifest_put(&repo, &tag(t), &m, Precondition::None)
                .await
                .unwrap();
        }
        reg.blob_mount(&repo, &m.blobs()[0].digest, &root())
            .await
            .unwrap();
    }
    let after = listing(parent.path());
    let new: Vec<&PathBuf> = after.difference(&before).collect();
    assert!(!new.is_empty());
    assert!(new.iter().all(|p| p.starts_with("layout")), "{new:?}");
    assert_eq!(std::fs::read(parent.path().join("sentinel")).unwrap(), b"s");
}
