//! What a run works on: the source repositories of a job (one, or the
//! registry's catalog filtered), their selected tags and digests, each
//! mapped to its target; and the pruning of checkpoints no longer selected.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::future::FutureExt;
use futures::stream::StreamExt;

use super::{SyncError, Syncer};
use crate::config::{Job, Source};
use crate::oci::referrers::{is_cosign_tag, is_fallback_tag};
use crate::oci::{ImageReference, Location, Reference, RepoName, Tag};
use crate::registry::Registry;
use crate::store::Store;

/// Repositories whose tags are listed at once.
const LISTINGS_AT_ONCE: usize = 8;

/// One image of a run.
pub(super) struct Item {
    pub(super) src: ImageReference,
    pub(super) dst: ImageReference,
    pub(super) reference: Reference,
    pub(super) name: String,
    /// The source repository's tags, when the job listed them: referrer
    /// tags absent from it need no request.
    pub(super) source_tags: Option<Arc<HashSet<String>>>,
}

impl Item {
    /// The tag the item gets on the target: the job's, else the source's.
    pub(super) fn dst_tag(&self) -> Option<Tag> {
        match &self.reference {
            _ if self.dst.tag.is_some() => self.dst.tag.clone(),
            Reference::Tag(t) => Some(t.clone()),
            Reference::Digest(_) => None,
        }
    }

    /// Where the item goes, as a reference (`host/prefix/repo:tag`).
    pub(super) fn target_name(&self) -> String {
        let mut target = self.dst.clone();
        target.tag = self.dst_tag();
        if target.tag.is_none()
            && let Reference::Digest(d) = &self.reference
        {
            target.digest = Some(d.clone());
        }
        target.to_string()
    }
}

impl Syncer {
    /// The repositories and items of `job`, and the listed tags its tag
    /// rules left out (`repo:tag`; referrer tags are not images).
    pub(super) async fn items(
        &self,
        job: &Job,
    ) -> Result<(u64, Vec<Item>, Vec<String>), SyncError> {
        let sources: Vec<ImageReference> = match &job.source {
            Source::Repository(r) => vec![r.clone()],
            Source::Catalog(c) => {
                let repos = self
                    .registries
                    .catalog(&c.registry)
                    .await
                    .map_err(|source| SyncError::Registry {
                        job: job.name.clone(),
                        source,
                    })?;
                let mut out = Vec::new();
                for repo in repos.into_iter().filter(|r| c.matches(r)) {
                    match RepoName::new(&repo) {
                        Ok(name) => out.push(ImageReference {
                            location: Location::Registry(c.registry.clone()),
                            repo: name,
                            tag: None,
                            digest: None,
                        }),
                        Err(e) => {
                            tracing::warn!(job = %job.name, repository = %repo, error = %e, "Skipped a catalog entry.")
                        }
                    }
                }
                out
            }
        };
        if let Some(message) = sources
            .iter()
            .find_map(|s| crate::registry::open::missing_source_layout(&s.location))
        {
            return Err(SyncError::Reference {
                job: job.name.clone(),
                message,
            });
        }
        // Tags of several repositories listed at once: on a catalog of many
        // repositories behind a slow link, listing one after another would
        // take longer than copying what changed. `buffered` keeps the order.
        // Futures built by a method and boxed, so the run future stays
        // `Send` for the scheduler's spawned tasks.
        let listings: Vec<_> = sources
            .iter()
            .map(|src| self.listing(job, src).boxed())
            .collect();
        let listings: Vec<Result<Option<Vec<String>>, SyncError>> = futures::stream::iter(listings)
            .buffered(LISTINGS_AT_ONCE)
            .collect()
            .await;
        let mut items = Vec::new();
        let mut filtered = Vec::new();
        for (src, listing) in sources.iter().zip(listings) {
            let dst = job
                .target_repository(&src.repo)
                .map_err(|e| SyncError::Reference {
                    job: job.name.clone(),
                    message: format!("target for {src}: {e}"),
                })?;
            let item = |reference: Reference, source_tags: Option<Arc<HashSet<String>>>| Item {
                name: match &reference {
                    Reference::Tag(t) => format!("{}:{t}", src_name(src)),
                    Reference::Digest(d) => format!("{}@{d}", src_name(src)),
                },
                src: src.clone(),
                dst: dst.clone(),
                reference,
                source_tags,
            };
            let mut source_tags = None;
            if let Some(r) = src.reference() {
                items.push(item(r, None));
            } else if let Some(tags) = listing? {
                let listed = Arc::new(tags.iter().cloned().collect::<HashSet<_>>());
                let selected = job.tags.select(&tags);
                let chosen: HashSet<&str> = selected.iter().map(String::as_str).collect();
                filtered.extend(
                    tags.iter()
                        .filter(|t| !chosen.contains(t.as_str()))
                        .filter(|t| !is_fallback_tag(t) && !is_cosign_tag(t))
                        .map(|t| format!("{}:{t}", src_name(src))),
                );
                for tag in selected {
                    match Tag::new(&tag) {
                        Ok(t) => items.push(item(Reference::Tag(t), Some(Arc::clone(&listed)))),
                        Err(e) => {
                            tracing::warn!(job = %job.name, tag = %tag, error = %e, "Skipped an invalid tag.")
                        }
                    }
                }
                source_tags = Some(listed);
            }
            for d in &job.tags.digests {
                items.push(item(Reference::Digest(d.clone()), source_tags.clone()));
            }
        }
        Ok((sources.len() as u64, items, filtered))
    }

    /// The tags of `src`, or `None` when it names one image.
    async fn listing(
        &self,
        job: &Job,
        src: &ImageReference,
    ) -> Result<Option<Vec<String>>, SyncError> {
        if src.reference().is_some() {
            return Ok(None);
        }
        let registry = self.open(job, &src.location)?;
        registry
            .tags(&src.repo)
            .await
            .map(Some)
            .map_err(|source| SyncError::Registry {
                job: job.name.clone(),
                source,
            })
    }

    pub(super) fn open(
        &self,
        job: &Job,
        location: &Location,
    ) -> Result<Arc<dyn Registry>, SyncError> {
        self.registries
            .open(location)
            .map_err(|source| SyncError::Registry {
                job: job.name.clone(),
                source,
            })
    }
}

/// Drops the checkpoints of tags no longer selected (deleted at the source
/// or filtered out now), so `status` counts only what the job mirrors.
pub(super) async fn forget_unselected(store: &Store, job: &Job, items: &[Item]) {
    let mut by_repo: HashMap<&str, Vec<String>> = HashMap::new();
    for item in items {
        by_repo
            .entry(item.src.repo.as_str())
            .or_default()
            .push(item.reference.to_string());
    }
    for (repo, keep) in by_repo {
        if let Err(e) = store
            .forget_tags_except(&job.name, repo, &keep)
            .boxed()
            .await
        {
            tracing::warn!(job = %job.name, repository = %repo, error = %e, "Could not prune old checkpoints.");
        }
    }
}

/// `host/repo` or `oci:<dir>` of a reference, without tag or digest.
fn src_name(r: &ImageReference) -> String {
    ImageReference {
        tag: None,
        digest: None,
        ..r.clone()
    }
    .to_string()
}
