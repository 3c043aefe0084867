//! Moved tags (`[jobs.overwrite]`): a tag the job wrote that the source
//! moves is first kept under a backup tag (pruned to `keep`, never taken
//! for a deleted tag by deletion sync), or refused in `immutable` mode.

use crate::deletions::{DAY, HOUR, Job, deletes, pair, seed};
use crate::support::fixtures::sha256;
use crate::sync_jobs::REPO;

fn digest_of(reg: &crate::support::registry::TestRegistry, tag: &str) -> Option<String> {
    reg.manifest(REPO, tag).map(|(_, b)| sha256(&b))
}

#[tokio::test]
async fn a_moved_tag_keeps_its_old_digest_under_a_backup_tag_pruned_to_keep() {
    let (src, dst) = pair().await;
    seed(&src, 3);
    let job = Job::new(
        &src,
        &dst,
        "[jobs.overwrite]\nmode = \"backup\"\nkeep = 1\n[jobs.delete]\nenabled = true\n",
    );
    job.run(false).await;
    let d0 = digest_of(&dst, "t0").unwrap();

    let d1 = src.seed_image(REPO, "t0", &[b"second"]);
    job.clock.advance(HOUR);
    let r = job.run(false).await;
    assert!(r.is_success(), "{:?}", r.failures);
    assert_eq!(digest_of(&dst, "t0"), Some(d1.clone()));
    assert_eq!(digest_of(&dst, "t0-prev-20261130-070000"), Some(d0));

    let d2 = src.seed_image(REPO, "t0", &[b"third"]);
    job.clock.advance(HOUR);
    let r = job.run(false).await;
    assert!(r.is_success(), "{:?}", r.failures);
    assert_eq!(digest_of(&dst, "t0"), Some(d2));
    assert_eq!(digest_of(&dst, "t0-prev-20261130-080000"), Some(d1));
    assert_eq!(digest_of(&dst, "t0-prev-20261130-070000"), None, "keep = 1");
    assert_eq!(
        deletes(&dst),
        [format!("/v2/{REPO}/manifests/t0-prev-20261130-070000")]
    );

    // The source never had the backup tag; deletion sync leaves it alone.
    job.clock.advance(3 * DAY);
    let r = job.run(false).await;
    assert!(r.deletions.pending.is_empty(), "{:?}", r.deletions.pending);
    assert!(
        dst.tags(REPO)
            .contains(&"t0-prev-20261130-080000".to_string())
    );
}

#[tokio::test]
async fn an_immutable_tag_is_not_moved_and_fails_by_name() {
    let (src, dst) = pair().await;
    seed(&src, 3);
    let job = Job::new(&src, &dst, "[jobs.overwrite]\nmode = \"immutable\"\n");
    job.run(false).await;
    let d0 = digest_of(&dst, "t0").unwrap();
    let d1 = src.seed_image(REPO, "t0", &[b"second"]);
    job.clock.advance(HOUR);
    let r = job.run(false).await;
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
    let f = &r.failures[0];
    assert_eq!(f.kind, "immutable_tag");
    assert!(f.item.ends_with(":t0"), "{}", f.item);
    assert!(
        f.error.contains(&format!(
            "t0 is immutable (jobs.overwrite.mode = \"immutable\"): it holds {d0}"
        )),
        "{}",
        f.error
    );
    assert!(f.error.contains(&d1));
    assert_eq!(digest_of(&dst, "t0"), Some(d0));
    // The other tags are mirrored as usual.
    assert_eq!(r.counts.images_failed, 1);
}

#[tokio::test]
async fn a_tag_someone_else_wrote_moves_even_when_immutable() {
    let (src, dst) = pair().await;
    seed(&src, 2);
    // t0 is on the target already, with other content: not the job's.
    dst.seed_image(REPO, "t0", &[b"theirs"]);
    let job = Job::new(&src, &dst, "[jobs.overwrite]\nmode = \"immutable\"\n");
    let r = job.run(false).await;
    assert!(r.is_success(), "{:?}", r.failures);
    assert_eq!(digest_of(&dst, "t0"), digest_of(&src, "t0"));
}
