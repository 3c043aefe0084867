//! The source repository as one walk sees it: its tag list, listed once per
//! copier (fallback and cosign tags are read only when listed).

use std::collections::HashSet;
use std::sync::Arc;

use super::Copier;
use crate::oci::RepoName;

/// A source repository's tags, listed once (`None`: listing failed).
pub(crate) type TagSet = Arc<tokio::sync::OnceCell<Option<Arc<HashSet<String>>>>>;

/// State shared by one walk of one source repository.
pub(crate) struct SourceRepo<'a> {
    pub copier: &'a Copier,
    pub repo: &'a RepoName,
    tags: TagSet,
}

impl<'a> SourceRepo<'a> {
    pub fn new(copier: &'a Copier, repo: &'a RepoName) -> Self {
        let tags = copier.source_tag_cell(repo);
        SourceRepo { copier, repo, tags }
    }

    /// `Some(true/false)` when the tag list is known, `None` to probe.
    pub async fn has_tag(&self, tag: &str) -> Option<bool> {
        let tags = self
            .tags
            .get_or_init(|| async {
                match self.copier.source.tags(self.repo).await {
                    Ok(t) => Some(Arc::new(t.into_iter().collect())),
                    Err(e) if e.is_not_found() => Some(Arc::default()),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list source tags; probing referrer tags one by one");
                        None
                    }
                }
            })
            .await;
        tags.as_ref().map(|t| t.contains(tag))
    }

    /// True when the source is an OCI layout directory.
    pub fn is_layout(&self) -> bool {
        self.copier.source.is_layout()
    }
}
