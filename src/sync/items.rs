//! What a run works on: the source repositories of a job (one, or the
//! registry's catalog filtered), their selected tags and digests, each
//! mapped to its target; and the pruning of checkpoints no longer selected.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::future::FutureExt;
use futures::{StreamExt, TryStreamExt, stream};

use super::{SyncError, Syncer};
use crate::config::{Job, Source};
use crate::oci::referrers::{is_cosign_tag, is_fallback_tag};
use crate::oci::{ImageReference, Location, Reference, RepoName, Tag};
use crate::registry::Registry;
use crate::store::Store;

/// Source repositories whose tags are listed at once.
const LISTINGS_AT_ONCE: usize = 16;

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
        // Listed LISTINGS_AT_ONCE at a time, in catalog order: a catalog of
        // a thousand repositories costs a thousand round trips, which must
        // not be paid one after the other.
        let listed: Vec<(Vec<Item>, Vec<String>)> = stream::iter(0..sources.len())
            .map(|i| self.source_items(job, &sources[i]))
            .buffered(LISTINGS_AT_ONCE)
            .try_collect()
            .await?;
        let mut items = Vec::new();
        let mut filtered = Vec::new();
        for (i, f) in listed {
            items.extend(i);
            filtered.extend(f);
        }
        Ok((sources.len() as u64, items, filtered))
    }

    /// One source repository's items (its selected tags, or the reference
    /// it names, and the job's digests) and the tags its rules left out.
    async fn source_items(
        &self,
        job: &Job,
        src: &ImageReference,
    ) -> Result<(Vec<Item>, Vec<String>), SyncError> {
        let mut items = Vec::new();
        let mut filtered = Vec::new();
        let dst = job
            .target_repository(&src.repo)
            .map_err(|e| SyncError::Reference {
                job: job.name.clone(),
                message: format!("target for {src}: {e}"),
            })?;
        let item = |reference: Reference, source_tags: Option<Arc<HashSet<String>>>| Item {
            name: item_name(src, &reference),
            src: src.clone(),
            dst: dst.clone(),
            reference,
            source_tags,
        };
        let mut source_tags = None;
        if let Some(r) = src.reference() {
            items.push(item(r, None));
        } else {
            let registry = self.open(job, &src.location)?;
            let tags = registry
                .tags(&src.repo)
                .await
                .map_err(|source| SyncError::Registry {
                    job: job.name.clone(),
                    source,
                })?;
            let listed = Arc::new(tags.iter().cloned().collect::<HashSet<_>>());
            let selected = job.tags.select(&tags);
            let chosen: HashSet<&str> = selected.iter().map(String::as_str).collect();
            filtered.extend(
                tags.iter()
                    .filter(|t| !chosen.contains(t.as_str()))
                    .filter(|t| !is_fallback_tag(t) && !is_cosign_tag(t))
                    .map(|t| format!("{}:{t}", repo_name(src))),
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

        Ok((items, filtered))
    }

    /// The items of `job` named by `picks` (source repository and
    /// reference), mapped to their targets as [`Syncer::items`] maps them.
    pub(super) fn picked_items(
        &self,
        job: &Job,
        picks: &[(RepoName, Reference)],
    ) -> Result<Vec<Item>, SyncError> {
        let location = match &job.source {
            Source::Repository(r) => r.location.clone(),
            Source::Catalog(c) => Location::Registry(c.registry.clone()),
        };
        picks
            .iter()
            .map(|(repo, reference)| {
                let src = ImageReference {
                    location: location.clone(),
                    repo: repo.clone(),
                    tag: None,
                    digest: None,
                };
                let dst = job
                    .target_repository(repo)
                    .map_err(|e| SyncError::Reference {
                        job: job.name.clone(),
                        message: format!("target for {src}: {e}"),
                    })?;
                Ok(Item {
                    name: item_name(&src, reference),
                    src,
                    dst,
                    reference: reference.clone(),
                    source_tags: None,
                })
            })
            .collect()
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

/// `host/repo:tag` or `host/repo@digest`: an item's name in reports,
/// failures and logs.
pub fn item_name(src: &ImageReference, reference: &Reference) -> String {
    match reference {
        Reference::Tag(t) => format!("{}:{t}", repo_name(src)),
        Reference::Digest(d) => format!("{}@{d}", repo_name(src)),
    }
}

/// The (target repository, tag) of every item that gets a tag: what the
/// source selects this run, for deletion sync.
pub(super) fn target_tags(items: &[Item]) -> HashSet<super::deletions::TargetTag> {
    items
        .iter()
        .filter_map(|i| Some((repo_name(&i.dst), i.dst_tag()?.to_string())))
        .collect()
}

/// `host/repo` or `oci:<dir>` of a reference, without tag or digest.
pub(super) fn repo_name(r: &ImageReference) -> String {
    ImageReference {
        tag: None,
        digest: None,
        ..r.clone()
    }
    .to_string()
}
