//! Bounded concurrency: one owner per (target repository, digest) whose
//! outcome, success or typed error, every waiter shares; and a bounded
//! runner for a phase's transfers.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::OnceCell;

use super::Copier;
use super::error::CopyError;
use super::report::Outcome;
use crate::oci::{Digest, RepoName};

/// The result of one transfer, shared by everyone who needed it.
pub(crate) type Shared = Result<Outcome, Arc<CopyError>>;

/// The shared outcome of one transfer in flight.
pub(crate) type Flight = Arc<OnceCell<Shared>>;

impl Copier {
    /// Runs `work` unless another task is already doing (or did) it for the
    /// same (repository, digest); then takes that task's outcome instead,
    /// with the original error when it failed. If the task doing it is
    /// cancelled, the next waiter does the work itself. Returns the outcome
    /// and whether this call did the work.
    pub(crate) async fn single_flight<F, Fut>(
        &self,
        repo: &RepoName,
        digest: &Digest,
        work: F,
    ) -> (Shared, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Outcome, CopyError>>,
    {
        let key = (repo.clone(), digest.clone());
        let cell: Flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let mut owner = false;
        let result = cell
            .get_or_init(|| {
                owner = true;
                async { work().await.map_err(Arc::new) }
            })
            .await
            .clone();
        // A success is remembered for the copier's lifetime (later images
        // sharing the digest skip it); a failure is forgotten so the next
        // attempt tries again.
        if owner && result.is_err() {
            self.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
        (result, owner)
    }
}

/// Runs `tasks` with at most `width` in flight; outputs in completion order.
/// The futures are built before the first await (no closure over borrowed
/// arguments is held across it), which keeps the copy future `Send` for
/// every lifetime, so scheduled runs can be spawned.
pub(crate) async fn bounded<F: std::future::Future>(tasks: Vec<F>, width: usize) -> Vec<F::Output> {
    let mut queue = tasks.into_iter();
    let mut in_flight = FuturesUnordered::new();
    let mut out = Vec::new();
    loop {
        while in_flight.len() < width.max(1) {
            match queue.next() {
                Some(f) => in_flight.push(f),
                None => break,
            }
        }
        match in_flight.next().await {
            Some(o) => out.push(o),
            None => break,
        }
    }
    out
}
