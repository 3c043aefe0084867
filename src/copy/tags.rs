//! Tags, last: cosign legacy tags (digest-exact), then the image tag, which
//! is withheld while any referrer of the image is not published, so a tag
//! on the target never announces an image whose signatures did not arrive.

use std::sync::Arc;

use super::Copier;
use super::error::CopyError;
use super::manifests::put_settled;
use super::report::{Action, NodeKind, Outcome, Representation};
use super::run::Run;
use crate::oci::{Digest, Manifest, Reference, RepoName, Tag};

impl Copier {
    /// Points `tag` at `manifest` on the target unless it already does.
    /// Returns whether it was (in a dry run: would be) written, and what
    /// the tag pointed at before.
    pub(crate) async fn put_tag(
        &self,
        dst_repo: &RepoName,
        tag: &Tag,
        manifest: &Manifest,
        dry_run: bool,
    ) -> Result<(bool, Option<Digest>), CopyError> {
        let d = manifest.digest();
        let _permit = self.permits.acquire().await;
        let current = self
            .target
            .manifest_head(dst_repo, &Reference::Tag(tag.clone()))
            .await
            .map_err(|e| CopyError::target("check tag", Some(d), e))?;
        let current = current.map(|c| c.digest);
        if current.as_ref() == Some(d) {
            return Ok((false, current));
        }
        if !dry_run {
            put_settled(
                self.target.as_ref(),
                dst_repo,
                &Reference::Tag(tag.clone()),
                manifest,
            )
            .await
            .map_err(|e| CopyError::target("write tag", Some(d), e))?;
        }
        Ok((true, current))
    }
}

/// Phase 4: cosign legacy tags, then the image tag.
pub(crate) async fn write_tags(run: &mut Run<'_>) {
    let graph = run.graph;
    for c in &graph.cosign {
        let Ok(t) = Tag::new(&c.tag) else { continue };
        if run.failed.contains(&c.digest) {
            run.unpublished.push(c.digest.clone());
            continue;
        }
        if !write_tag(run, &t, &c.digest, NodeKind::Cosign).await {
            run.unpublished.push(c.digest.clone());
        }
    }
    let Some(tag) = run.tag else { return };
    if run.failed.contains(&graph.root) {
        return;
    }
    if !run.unpublished.is_empty() {
        let mut referrers = std::mem::take(&mut run.unpublished);
        referrers.sort();
        referrers.dedup();
        let e = CopyError::ReferrersUnpublished {
            tag: tag.to_string(),
            referrers,
        };
        run.fail(Some(graph.root.clone()), NodeKind::Tag, Arc::new(e));
        return;
    }
    write_tag(run, tag, &graph.root, NodeKind::Tag).await;
}

/// Points `tag` at `d`; false when that failed (recorded).
async fn write_tag(run: &mut Run<'_>, tag: &Tag, d: &Digest, kind: NodeKind) -> bool {
    let Some(node) = run.graph.nodes.get(d) else {
        return true;
    };
    match run
        .copier
        .put_tag(run.dst_repo, tag, &node.manifest, run.dry)
        .await
    {
        Ok((written, before)) => {
            if written && !run.dry {
                run.report.tags += 1;
                if kind == NodeKind::Cosign
                    && matches!(run.outcomes.get(d), Some(Outcome::Put { .. }))
                {
                    *run.report
                        .referrers
                        .entry((Representation::CosignTag, Representation::CosignTag))
                        .or_default() += 1;
                }
            }
            let action = if written {
                Action::Write
            } else {
                Action::Exists
            };
            // A plan says what the tag points at now.
            let why = match (written && run.dry, before) {
                (false, _) => format!("tag {tag}"),
                (true, Some(b)) => format!("tag {tag} points at {b} on the target"),
                (true, None) => format!("tag {tag} is absent on the target"),
            };
            run.rec.note(Some(d.clone()), NodeKind::Tag, action, 0, why);
            true
        }
        Err(e) => {
            run.fail(Some(d.clone()), NodeKind::Tag, Arc::new(e));
            false
        }
    }
}
