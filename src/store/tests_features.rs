//! The store methods of deletion sync, webhook events and the signature
//! policy, on both backends (registered in `tests.rs`).

use chrono::TimeZone;

use super::*;

// -- deletions -------------------------------------------------------------
fn at(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(s, 0).unwrap()
}

pub(super) async fn ownership_is_recorded_marked_absent_and_forgotten(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
    store
        .record_owned_tag("j", "r/x", "v1", &d, at(10))
        .await
        .unwrap();
    store
        .record_owned_tag("other", "r/x", "v1", &d, at(10))
        .await
        .unwrap();
    store
        .set_tag_absent_since("j", "r/x", "v1", Some(at(20)))
        .await
        .unwrap();
    let owned = store.owned_tags("j").await.unwrap();
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].absent_since, Some(at(20)));
    assert_eq!(owned[0].digest, d);
    // Writing it again means the source has it again.
    store
        .record_owned_tag("j", "r/x", "v1", &d, at(30))
        .await
        .unwrap();
    let owned = store.owned_tags("j").await.unwrap();
    assert_eq!((owned[0].absent_since, owned[0].written_at), (None, at(30)));
    store.forget_owned_tag("j", "r/x", "v1").await.unwrap();
    assert!(store.owned_tags("j").await.unwrap().is_empty());
    assert_eq!(store.owned_tags("other").await.unwrap().len(), 1);
    assert_eq!(
        store
            .owned_tag("other", "r/x", "v1")
            .await
            .unwrap()
            .map(|o| o.digest),
        Some(d)
    );
    assert_eq!(store.owned_tag("j", "r/x", "v1").await.unwrap(), None);
}

pub(super) async fn backups_list_newest_first_and_are_forgotten(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let d: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
    for (name, t) in [("v1-old", 10), ("v1-new", 20)] {
        let b = TagBackup {
            backup_tag: name.into(),
            digest: d.clone(),
            created_at: at(t),
        };
        store.record_backup("j", "r/x", "v1", &b).await.unwrap();
    }
    let names = |v: Vec<TagBackup>| v.into_iter().map(|b| b.backup_tag).collect::<Vec<_>>();
    assert_eq!(
        names(store.backups("j", "r/x", "v1").await.unwrap()),
        ["v1-new", "v1-old"]
    );
    assert!(store.backups("j", "r/x", "v2").await.unwrap().is_empty());
    store.forget_backup("j", "r/x", "v1-new").await.unwrap();
    assert_eq!(
        names(store.backups("j", "r/x", "v1").await.unwrap()),
        ["v1-old"]
    );
}

// -- events ----------------------------------------------------------------
fn event(id: &str, at: i64) -> AcceptedEvent {
    AcceptedEvent {
        id: id.into(),
        source: "dist".into(),
        job: "j".into(),
        item: "a/b:v1".into(),
        received_at: from_ms(at).unwrap(),
    }
}

pub(super) async fn events_go_from_queued_to_an_outcome_and_leftovers_fail(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let now = from_ms(10_000).unwrap();
    let (a, b) = (event("a", 1000), event("b", 2000));
    store
        .record_event(&a, &EventOutcome::Queued, now)
        .await
        .unwrap();
    store
        .record_event(&b, &EventOutcome::Queued, now)
        .await
        .unwrap();
    store
        .record_event(&a, &EventOutcome::Synced, now)
        .await
        .unwrap();
    // A late `queued` write does not undo the outcome.
    store
        .record_event(&a, &EventOutcome::Queued, now)
        .await
        .unwrap();
    assert_eq!(store.fail_queued_events("stopped", now).await.unwrap(), 1);
    let rows = store.recent_events("j", 10).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].event.id.as_str(), rows[0].status.as_str()),
        ("b", "failed")
    );
    assert_eq!(rows[0].error.as_deref(), Some("stopped"));
    assert_eq!(
        (rows[1].event.id.as_str(), rows[1].status.as_str()),
        ("a", "synced")
    );
    assert_eq!(rows[1].finished_at, Some(now));
    assert!(store.recent_events("other", 10).await.unwrap().is_empty());
}

// -- policy ----------------------------------------------------------------
pub(super) async fn a_verdict_is_found_only_for_its_image_and_policy_hash(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let (image, sig) = (Digest::sha256(b"image"), Digest::sha256(b"sig"));
    assert_eq!(
        store.signature_verdict(&image, &sig, "h1").await.unwrap(),
        None
    );
    let accepted = SignatureVerdict::Accepted(vec!["release".into(), "ci".into()]);
    store
        .record_signature_verdict(&image, &sig, "h1", &accepted, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        store.signature_verdict(&image, &sig, "h1").await.unwrap(),
        Some(accepted)
    );
    assert_eq!(
        store.signature_verdict(&image, &sig, "h2").await.unwrap(),
        None
    );
    let other = Digest::sha256(b"other image");
    assert_eq!(
        store.signature_verdict(&other, &sig, "h1").await.unwrap(),
        None
    );
    let rejected = SignatureVerdict::Rejected("wrong key".into());
    store
        .record_signature_verdict(&image, &sig, "h2", &rejected, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        store.signature_verdict(&image, &sig, "h2").await.unwrap(),
        Some(rejected)
    );
}
