//! Work sharing on PostgreSQL: leases, fencing tokens, batch claims.

use std::time::Duration;

use super::*;

const TTL: Duration = Duration::from_secs(10);

async fn pg_store() -> Option<(Db, Store)> {
    store_on(Backend::Postgres).await
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("r/img:{i:03}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_replica_leads_the_others_join_the_same_run() {
    let Some((_db, store)) = pg_store().await else {
        return;
    };
    let a = store.join_shared_run("j", "a:1", t(0), TTL).await.unwrap();
    let b = store.join_shared_run("j", "b:2", t(1), TTL).await.unwrap();
    assert_eq!(a.leader_token, Some(1));
    assert_eq!((b.id, b.leader_token), (a.id, None));
    // Another job has its own run.
    let other = store.join_shared_run("k", "b:2", t(1), TTL).await.unwrap();
    assert_ne!(other.id, a.id);
    assert!(other.leader_token.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_disjoint_batches_and_finish_the_run() {
    let Some((_db, store)) = pg_store().await else {
        return;
    };
    let run = store.join_shared_run("j", "a:1", t(0), TTL).await.unwrap();
    store.add_run_items(run.id, &names(10)).await.unwrap();
    // A second listing adds nothing twice.
    store.add_run_items(run.id, &names(10)).await.unwrap();
    assert_eq!(store.open_run_items(run.id).await.unwrap(), 10);
    let a = store
        .claim_run_items(run.id, "a:1", t(1), TTL, 4)
        .await
        .unwrap();
    let b = store
        .claim_run_items(run.id, "b:2", t(1), TTL, 100)
        .await
        .unwrap();
    assert_eq!((a.len(), b.len()), (4, 6));
    assert!(a.iter().all(|c| !b.iter().any(|d| d.item == c.item)));
    // Nothing left to claim while the leases hold.
    assert!(
        store
            .claim_run_items(run.id, "c:3", t(2), TTL, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let token = run.leader_token.unwrap();
    for c in a.iter().chain(&b) {
        // Not finished while items are open.
        assert!(!store.finish_shared_run(run.id, token, t(2)).await.unwrap());
        assert!(store.finish_run_item(run.id, c, "x", t(3)).await.unwrap());
    }
    assert_eq!(store.open_run_items(run.id).await.unwrap(), 0);
    assert!(store.finish_shared_run(run.id, token, t(4)).await.unwrap());
    // The next tick starts a new run.
    let next = store.join_shared_run("j", "b:2", t(5), TTL).await.unwrap();
    assert_ne!(next.id, run.id);
    assert!(next.leader_token.is_some());
}

/// Many replicas claiming at once never get the same item.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_never_overlap() {
    let Some((_db, store)) = pg_store().await else {
        return;
    };
    let run = store.join_shared_run("j", "a:1", t(0), TTL).await.unwrap();
    store.add_run_items(run.id, &names(200)).await.unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|r| {
            let store = store.clone();
            tokio::spawn(async move {
                let me = format!("r:{r}");
                let mut mine = Vec::new();
                loop {
                    let batch = store
                        .claim_run_items(run.id, &me, t(1), TTL, 7)
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|c| c.item));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    assert_eq!(all, names(200), "every item claimed exactly once");
}

/// A killed replica's claims expire; the next claim gets a new token, and
/// the old holder's late writes fail (fencing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_claims_move_on_and_fence_the_old_holder() {
    let Some((_db, store)) = pg_store().await else {
        return;
    };
    let run = store.join_shared_run("j", "a:1", t(0), TTL).await.unwrap();
    store.add_run_items(run.id, &names(2)).await.unwrap();
    let old = store
        .claim_run_items(run.id, "dead:1", t(0), TTL, 1)
        .await
        .unwrap();
    // Renewed in time: still held.
    assert!(
        store
            .renew_run_items(run.id, &old, t(5), TTL)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .claim_run_items(run.id, "b:2", t(14), TTL, 10)
            .await
            .unwrap()
            .len(),
        1,
        "only the unclaimed item"
    );
    // Past the renewed lease, another replica takes it over.
    let new = store
        .claim_run_items(run.id, "c:3", t(16), TTL, 10)
        .await
        .unwrap();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].item, old[0].item);
    assert!(new[0].token > old[0].token);
    assert_eq!(
        store
            .renew_run_items(run.id, &old, t(17), TTL)
            .await
            .unwrap(),
        old
    );
    assert!(
        !store
            .finish_run_item(run.id, &old[0], "dead:1", t(17))
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_run_item(run.id, &new[0], "c:3", t(18))
            .await
            .unwrap()
    );
    // A claim finished while its renewal was on its way is not lost.
    assert!(
        store
            .renew_run_items(run.id, &new, t(18), TTL)
            .await
            .unwrap()
            .is_empty()
    );
    // The other item is b:2's until t(24); released claims are free at once.
    assert!(
        store
            .claim_run_items(run.id, "c:3", t(18), TTL, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let b_claim = store
        .claim_run_items(run.id, "c:3", t(25), TTL, 10)
        .await
        .unwrap();
    store.release_run_items(run.id, &b_claim).await.unwrap();
    let again = store
        .claim_run_items(run.id, "d:4", t(25), TTL, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
}

/// A leader that stopped renewing loses the run to the next replica, whose
/// token fences the old leader out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_leader_is_replaced_and_fenced() {
    let Some((_db, store)) = pg_store().await else {
        return;
    };
    let first = store.join_shared_run("j", "a:1", t(0), TTL).await.unwrap();
    let old_token = first.leader_token.unwrap();
    assert!(
        store
            .renew_shared_run(first.id, old_token, t(5), TTL)
            .await
            .unwrap()
    );
    // Within the lease: b joins as a worker.
    let b = store.join_shared_run("j", "b:2", t(14), TTL).await.unwrap();
    assert_eq!(b.leader_token, None);
    assert_eq!(
        store
            .take_over_shared_run(first.id, "b:2", t(14), TTL)
            .await
            .unwrap(),
        None
    );
    // Past it: b takes the lead of the same run.
    let token = store
        .take_over_shared_run(first.id, "b:2", t(16), TTL)
        .await
        .unwrap()
        .unwrap();
    assert!(token > old_token);
    assert!(
        !store
            .renew_shared_run(first.id, old_token, t(17), TTL)
            .await
            .unwrap()
    );
    store.add_run_items(first.id, &names(1)).await.unwrap();
    let c = store
        .claim_run_items(first.id, "b:2", t(17), TTL, 1)
        .await
        .unwrap();
    store
        .finish_run_item(first.id, &c[0], "b:2", t(18))
        .await
        .unwrap();
    assert!(
        !store
            .finish_shared_run(first.id, old_token, t(18))
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_shared_run(first.id, token, t(18))
            .await
            .unwrap()
    );
}

/// A leader killed after the last item: the next join finishes that run and
/// starts a new one, rather than joining a run with nothing left to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_run_of_a_dead_leader_is_finished_by_the_next_join() {
    let Some((_db, store)) = pg_store().await else {
        return;
    };
    let run = store
        .join_shared_run("j", "dead:1", t(0), TTL)
        .await
        .unwrap();
    store.add_run_items(run.id, &names(1)).await.unwrap();
    let c = store
        .claim_run_items(run.id, "dead:1", t(0), TTL, 1)
        .await
        .unwrap();
    store
        .finish_run_item(run.id, &c[0], "dead:1", t(1))
        .await
        .unwrap();
    let next = store.join_shared_run("j", "b:2", t(20), TTL).await.unwrap();
    assert_ne!(next.id, run.id);
    assert_eq!(store.open_run_items(next.id).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_show_what_they_lead_hold_and_did() {
    let Some((_db, store)) = pg_store().await else {
        return;
    };
    let run = store.join_shared_run("j", "a:1", t(0), TTL).await.unwrap();
    store.join_shared_run("j", "b:2", t(0), TTL).await.unwrap();
    store.add_run_items(run.id, &names(5)).await.unwrap();
    let a = store
        .claim_run_items(run.id, "a:1", t(1), TTL, 2)
        .await
        .unwrap();
    let b = store
        .claim_run_items(run.id, "b:2", t(1), TTL, 3)
        .await
        .unwrap();
    store
        .finish_run_item(run.id, &b[0], "b:2", t(2))
        .await
        .unwrap();
    let seen = store.replicas(t(0), t(2)).await.unwrap();
    let summary: Vec<_> = seen
        .iter()
        .map(|r| (r.id.as_str(), r.leading.clone(), r.items_held, r.items_done))
        .collect();
    assert_eq!(
        summary,
        [("a:1", vec!["j".to_string()], 2, 0), ("b:2", vec![], 2, 1),]
    );
    assert_eq!(a.len(), 2);
    // Only replicas seen since the given time.
    assert!(store.replicas(t(1), t(2)).await.unwrap().is_empty());
}
