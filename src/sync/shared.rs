//! A run shared by replicas on PostgreSQL: each replica lists the job's
//! items, adds them to the job's shared run, and copies the items its
//! workers claim (one replica per item at a time), renewing its leases
//! while it works. A replica that loses a lease (it stalled past the TTL and another
//! took the item over) stops working on the run: its late writes are
//! fenced by the claim's token. A replica killed outright loses its claims
//! after the TTL and the others finish them. Each replica returns once
//! every item of the run is done, so `once` with N processes ends together.
//!
//! Tags are still pushed last by the copy engine, so an item taken over
//! half-copied shows no tag pointing at incomplete content.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::FutureExt;
use tokio_util::sync::CancellationToken;

use super::items::Item;
use super::{JobReport, SyncOptions, Syncer};
use crate::config::Job;
use crate::metrics::ReplicaMetrics;
use crate::store::{ClaimedItem, RunOwner, SharedRun, Store};

/// How often a replica with nothing to claim looks again (for claims that
/// expire, and for the end of the run).
const POLL: Duration = Duration::from_millis(100);

impl Syncer {
    /// Runs this replica's share of `job`'s shared run: `items` are what
    /// this replica listed.
    pub(super) async fn run_shared(
        &self,
        job: &Job,
        items: Vec<Item>,
        options: &SyncOptions,
        store: &Store,
        cancel: &CancellationToken,
        report: &mut JobReport,
    ) {
        let me = RunOwner::current().to_string();
        let ttl = self.lease_ttl;
        let run = match store
            .join_shared_run(&job.name, &me, self.clock.now(), ttl)
            .await
        {
            Ok(run) => run,
            Err(e) => {
                report.fatal = Some(format!("cannot join the shared run of the job: {e}"));
                return;
            }
        };
        tracing::info!(job = %job.name, run = run.id, leader = run.leader_token.is_some(), "Joined the shared run.");
        let metrics = self
            .metrics
            .as_ref()
            .filter(|_| !options.dry_run)
            .map(|m| m.replicas().clone());
        if let Some(m) = &metrics {
            m.joined(&job.name, run.leader_token.is_some());
        }
        let names: Vec<String> = items.iter().map(|i| i.name.clone()).collect();
        if let Err(e) = store.add_run_items(run.id, &names).await {
            report.fatal = Some(format!("cannot add items to shared run {}: {e}", run.id));
            return;
        }
        let listed: HashMap<String, Item> =
            items.into_iter().map(|i| (i.name.clone(), i)).collect();

        // Cancelled on shutdown, or when a lease is lost: no new claims,
        // the item in hand is finished.
        let stop = cancel.child_token();
        // Cancelled when the database is lost: the leases can no longer be
        // renewed, so others may hold our items already; the item in hand
        // is dropped as a killed replica's would be (tags are pushed last).
        let lost = Lost::default();
        let held = Arc::new(Mutex::new(Vec::<ClaimedItem>::new()));
        let leader = Arc::new(Mutex::new(run.leader_token));
        let renewer = tokio::spawn(renew(
            Renewal {
                store: store.clone(),
                clock: self.clock.clone(),
                me: me.clone(),
                job: job.name.clone(),
                run: run.clone(),
                held: held.clone(),
                leader: leader.clone(),
                metrics: metrics.clone(),
                ttl,
                lost: lost.clone(),
            },
            stop.clone(),
        ));
        // `concurrency` workers, each claiming one item when it is free:
        // no replica waits for the slowest image of a batch, and the items
        // spread evenly over the replicas to the last one.
        let listed = Mutex::new(listed);
        let worker = Worker {
            job,
            run: &run,
            me: &me,
            listed: &listed,
            held: &held,
            leader: &leader,
            options,
            store,
            stop: &stop,
            lost: &lost,
            metrics: metrics.as_ref(),
        };
        let workers: Vec<_> = (0..job.concurrency.max(1))
            .map(|_| self.work(&worker).boxed())
            .collect();
        for (part, fatal) in futures::future::join_all(workers).await {
            absorb(report, part);
            if fatal.is_some() && report.fatal.is_none() {
                report.fatal = fatal;
            }
        }
        renewer.abort();
        if let Some(why) = lost.reason()
            && report.fatal.is_none()
        {
            report.fatal = Some(why);
        }
        // On shutdown, hand back what was claimed but not done, so the
        // others take it now rather than after the TTL.
        // (Not when the database is gone: that would wait for it again.)
        let unfinished = std::mem::take(&mut *lock(&held));
        if !unfinished.is_empty()
            && lost.reason().is_none()
            && let Err(e) = store.release_run_items(run.id, &unfinished).await
        {
            tracing::warn!(job = %job.name, error = %e, "Could not release claimed items.");
        }
        if let Some(m) = &metrics {
            m.held(&job.name, 0);
            m.leading(&job.name, false);
        }
    }

    /// One worker: claims an item, copies it, marks it done, until the run
    /// is over or `stop`. Returns what it did, and why it gave up if so.
    async fn work(&self, w: &Worker<'_>) -> (JobReport, Option<String>) {
        let mut part = JobReport {
            job: w.job.name.clone(),
            ..JobReport::default()
        };
        let ttl = self.lease_ttl;
        while !w.stop.is_cancelled() {
            let claimed = match w
                .store
                .claim_run_items(w.run.id, w.me, self.clock.now(), ttl, 1)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    let fatal = format!("cannot claim items of shared run {}: {e}", w.run.id);
                    w.lost.declare(&fatal);
                    return (part, Some(fatal));
                }
            };
            let Some(claim) = claimed.into_iter().next() else {
                if self.shared_run_over(w).await {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = w.stop.cancelled() => {}
                }
                continue;
            };
            w.hold(|held| held.push(claim.clone()));
            let item = lock(w.listed).remove(&claim.item);
            match item {
                Some(item) => {
                    let copy = self.run_items(
                        w.job,
                        vec![item],
                        w.options,
                        Some(w.store),
                        w.stop,
                        &mut part,
                    );
                    tokio::select! {
                        biased;
                        _ = w.lost.token.cancelled() => break,
                        _ = copy => {}
                    }
                }
                // Listed by another replica only (the source changed
                // between the listings): the next run sees it.
                None => {
                    tracing::warn!(job = %w.job.name, item = %claim.item, "Not in this replica's listing of the source; left to the next run.")
                }
            }
            if w.stop.is_cancelled() {
                break;
            }
            match w
                .store
                .finish_run_item(w.run.id, &claim, w.me, self.clock.now())
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(job = %w.job.name, item = %claim.item, "Lost the lease of an item: another replica owns it now.")
                }
                Err(e) => {
                    let fatal = format!(
                        "cannot mark item {} of shared run {} done: {e}",
                        claim.item, w.run.id
                    );
                    w.lost.declare(&fatal);
                    return (part, Some(fatal));
                }
            }
            w.hold(|held| held.retain(|c| c != &claim));
        }
        (part, None)
    }

    /// True when every item of the run is done (finishing the run when
    /// this replica leads it); takes over the lead of a run whose leader
    /// stopped renewing.
    async fn shared_run_over(&self, w: &Worker<'_>) -> bool {
        let (store, run, me, leader) = (w.store, w.run, w.me, w.leader);
        let now = self.clock.now();
        let token = *leader.lock().unwrap_or_else(|e| e.into_inner());
        let token = match token {
            Some(t) => Some(t),
            None => match store
                .take_over_shared_run(run.id, me, now, self.lease_ttl)
                .await
            {
                Ok(Some(t)) => {
                    tracing::info!(run = run.id, "Took over the lead of the shared run.");
                    if let Some(m) = w.metrics {
                        m.leading(&w.job.name, true);
                    }
                    *leader.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
                    Some(t)
                }
                _ => None,
            },
        };
        match store.open_run_items(run.id).await {
            Ok(0) => {
                if let Some(t) = token
                    && let Err(e) = store.finish_shared_run(run.id, t, now).await
                {
                    tracing::warn!(run = run.id, error = %e, "Could not finish the shared run.");
                }
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(run = run.id, error = %e, "Could not count the open items.");
                false
            }
        }
    }
}

/// What the workers of one replica share.
struct Worker<'a> {
    job: &'a Job,
    run: &'a SharedRun,
    me: &'a str,
    /// This replica's listing, by item name, until claimed.
    listed: &'a Mutex<HashMap<String, Item>>,
    /// Claims not done yet (renewed; handed back on shutdown).
    held: &'a Mutex<Vec<ClaimedItem>>,
    leader: &'a Mutex<Option<i64>>,
    options: &'a SyncOptions,
    store: &'a Store,
    stop: &'a CancellationToken,
    lost: &'a Lost,
    metrics: Option<&'a ReplicaMetrics>,
}

/// Set once this replica has lost the shared run's state (the database is
/// unreachable, or a lease could not be renewed within the TTL), with why.
#[derive(Clone, Default)]
struct Lost {
    token: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

impl Lost {
    /// Stops every worker now; the first reason is kept.
    fn declare(&self, why: &str) {
        lock(&self.reason).get_or_insert_with(|| why.to_string());
        self.token.cancel();
    }

    fn reason(&self) -> Option<String> {
        lock(&self.reason).clone()
    }
}

impl Worker<'_> {
    /// Changes the held claims (a claim pushed counts as claimed), keeping
    /// the held-items gauge in step.
    fn hold(&self, change: impl FnOnce(&mut Vec<ClaimedItem>)) {
        let mut held = lock(self.held);
        let before = held.len();
        change(&mut held);
        if let Some(m) = self.metrics {
            if held.len() > before {
                m.claimed(&self.job.name);
            }
            m.held(&self.job.name, held.len());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds a worker's part of the run to the replica's report.
fn absorb(report: &mut JobReport, part: JobReport) {
    report.counts.add(&part.counts);
    report.copy.merge(part.copy);
    report.failures.extend(part.failures);
    report.deferred.extend(part.deferred);
    report.plan.extend(part.plan);
}

/// What the renewer of one replica's part in a shared run works with.
struct Renewal {
    store: Store,
    clock: Arc<dyn crate::scheduler::Clock>,
    me: String,
    job: String,
    run: SharedRun,
    held: Arc<Mutex<Vec<ClaimedItem>>>,
    leader: Arc<Mutex<Option<i64>>>,
    metrics: Option<ReplicaMetrics>,
    ttl: Duration,
    lost: Lost,
}

/// Renews the run's lease (while leading) and the held claims every third
/// of the TTL, with this replica's heartbeat; cancels `stop` when a claim
/// was lost, and stops leading when the run's lease was.
async fn renew(r: Renewal, stop: CancellationToken) {
    let Renewal {
        store,
        clock,
        me,
        job,
        run,
        held,
        leader,
        metrics,
        ttl,
        lost,
    } = r;
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ttl / 3) => {}
            _ = stop.cancelled() => return,
        }
        let now = clock.now();
        heartbeat(&store, &me, now, ttl, metrics.as_ref()).await;
        let token = *lock(&leader);
        if let Some(t) = token
            && !store
                .renew_shared_run(run.id, t, now, ttl)
                .await
                .unwrap_or(true)
        {
            tracing::warn!(
                run = run.id,
                "Lost the lead of the shared run to another replica."
            );
            *lock(&leader) = None;
            if let Some(m) = &metrics {
                m.leading(&job, false);
            }
        }
        let claims = lock(&held).clone();
        match store.renew_run_items(run.id, &claims, now, ttl).await {
            Ok(gone) if !gone.is_empty() => {
                tracing::warn!(
                    run = run.id,
                    lost = gone.len(),
                    "Lost item leases: this replica stops working on the run."
                );
                stop.cancel();
                return;
            }
            Ok(_) => renewed = tokio::time::Instant::now(),
            // Past the TTL the others may have taken our items over: stop
            // rather than copy on without a lease.
            Err(e) if renewed.elapsed() >= ttl => {
                lost.declare(&format!(
                    "the state database is unreachable: leases of shared run {} \
                     not renewed for {}: {e}",
                    run.id,
                    humantime::format_duration(ttl)
                ));
                stop.cancel();
                return;
            }
            Err(e) => tracing::warn!(run = run.id, error = %e, "Could not renew leases."),
        }
    }
}

/// Records that this replica is alive (for `status`) and counts the
/// replicas alive within the TTL (for the metrics).
async fn heartbeat(
    store: &Store,
    me: &str,
    now: chrono::DateTime<chrono::Utc>,
    ttl: Duration,
    metrics: Option<&ReplicaMetrics>,
) {
    if let Err(e) = store.replica_heartbeat(me, now).await {
        tracing::warn!(error = %e, "Could not record this replica's heartbeat.");
    }
    let Some(m) = metrics else { return };
    let since = chrono::Duration::from_std(ttl)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(now);
    match store.replicas(since, now).await {
        Ok(live) => m.live(live.len()),
        Err(e) => tracing::warn!(error = %e, "Could not count the live replicas."),
    }
}
