//! Target repositories found new: no tags when this copier first looked.
//! What such a repository holds afterwards is what this copier wrote there
//! (a copier lives for one run), so "is it there already?" is answered from
//! memory instead of one HEAD per blob and manifest. Someone else writing
//! there meanwhile costs at most a redundant upload (writes are idempotent
//! and verified); a repository with tags, or whose listing fails, is checked
//! object by object as before.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::Copier;
use crate::oci::{Digest, RepoName};

/// The blobs and manifests a new target repository holds: those this
/// copier wrote, mounted or found there.
#[derive(Default)]
pub(crate) struct Written(Mutex<HashSet<Digest>>);

impl Written {
    pub fn contains(&self, d: &Digest) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).contains(d)
    }

    pub fn add(&self, d: &Digest) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(d.clone());
    }
}

type Verdict = Arc<OnceCell<Option<Arc<Written>>>>;

/// Per target repository: new (with what it holds since) or not known to be.
#[derive(Default)]
pub(crate) struct FreshRepos(Mutex<HashMap<RepoName, Verdict>>);

impl Copier {
    /// What target repository `repo` holds, if it had no tags when this
    /// copier first asked (one tag listing per repository and copier);
    /// `None` when it is not known to be new. Layouts are local: a check
    /// there costs a file lookup, not a round trip.
    pub(crate) async fn fresh_target(&self, repo: &RepoName) -> Option<Arc<Written>> {
        if self.target.is_layout() {
            return None;
        }
        let verdict = self
            .fresh
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(repo.clone())
            .or_default()
            .clone();
        verdict
            .get_or_init(|| async {
                match self.target.tags(repo).await {
                    Ok(tags) if tags.is_empty() => Some(Arc::default()),
                    Ok(_) => None,
                    Err(e) if e.is_not_found() => Some(Arc::default()),
                    Err(e) => {
                        tracing::debug!(error = %e, "Target tag listing failed; checking each object.");
                        None
                    }
                }
            })
            .await
            .clone()
    }
}
