//! Tags, last: cosign legacy tags (digest-exact), then the image tag, which
//! is withheld while any referrer of the image is not published, so a tag
//! on the target never announces an image whose signatures did not arrive.
//! A root manifest new to the target is written only here, by its tag.

use std::sync::Arc;

use super::Copier;
use super::error::CopyError;
use super::manifests::put_settled;
use super::report::{Action, NodeKind, Outcome, Representation};
use super::run::Run;
use crate::oci::{Digest, Manifest, Reference, RepoName, Tag};

impl Copier {
    /// Points `tag` at `manifest` on the target unless it already does
    /// (asked only when `check`: a manifest that was not on the target
    /// cannot be tagged there yet). Returns whether it was (in a dry run:
    /// would be) written, and what the tag pointed at before, when asked.
    pub(crate) async fn put_tag(
        &self,
        dst_repo: &RepoName,
        tag: &Tag,
        manifest: &Manifest,
        dry_run: bool,
        check: bool,
    ) -> Result<(bool, Option<Digest>), CopyError> {
        let d = manifest.digest();
        let _permit = self.permits.acquire().await;
        let mut before = None;
        if check {
            before = self
                .target
                .manifest_head(dst_repo, &Reference::Tag(tag.clone()))
                .await
                .map_err(|e| CopyError::target("check tag", Some(d), e))?
                .map(|c| c.digest);
            if before.as_ref() == Some(d) {
                return Ok((false, before));
            }
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
        Ok((true, before))
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
        if !write_tag(run, &t, &c.digest, Some(c.via)).await {
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
        keep_root(run).await;
        return;
    }
    write_tag(run, tag, &graph.root, None).await;
}

/// The tag is withheld: the root waiting for it is stored by digest like
/// every other manifest of the image, so what was written stays usable.
async fn keep_root(run: &mut Run<'_>) {
    let (copier, dst_repo, root) = (run.copier, run.dst_repo, &run.graph.root);
    let Some(node) = run.graph.nodes.get(root) else {
        return;
    };
    if !run.root_by_tag() {
        return;
    }
    let fresh = run.fresh.as_deref();
    let (r, owner) = copier
        .single_flight(dst_repo, root, || {
            copier.copy_manifest(dst_repo, &node.manifest, false, fresh)
        })
        .await;
    match r {
        Ok(Outcome::Put { size, .. }) if owner => run.root_written(root, node.kind, size),
        Ok(_) => {}
        Err(e) => run.fail(Some(root.clone()), node.kind, e),
    }
}

/// Points `tag` at `d`; false when that failed (recorded). The root of an
/// image new to the target is written here, once, by tag. A cosign tag
/// (`cosign_via`: how the source held what it points at) counts as a
/// referrer.
async fn write_tag(
    run: &mut Run<'_>,
    tag: &Tag,
    d: &Digest,
    cosign_via: Option<Representation>,
) -> bool {
    let kind = match cosign_via {
        Some(_) => NodeKind::Cosign,
        None => NodeKind::Tag,
    };
    let Some(node) = run.graph.nodes.get(d) else {
        return true;
    };
    let (copier, dst_repo, dry) = (run.copier, run.dst_repo, run.dry);
    let first_write = kind == NodeKind::Tag && *d == run.graph.root && run.root_by_tag();
    let result = if first_write {
        // One writer per root digest: an image sharing this root (another
        // tag, or the same one copied twice at once) waits for it, then
        // points its own tag, checking first.
        let size = node.manifest.bytes().len() as u64;
        let (r, owner) = copier
            .single_flight(dst_repo, d, || async move {
                copier
                    .put_tag(dst_repo, tag, &node.manifest, dry, false)
                    .await?;
                Ok(Outcome::Put {
                    subject_indexed: false,
                    size,
                })
            })
            .await;
        match r {
            Ok(_) if owner => Ok((true, true, None)),
            Ok(_) => copier
                .put_tag(dst_repo, tag, &node.manifest, dry, true)
                .await
                .map(|(w, before)| (w, false, before))
                .map_err(Arc::new),
            Err(e) => Err(e),
        }
    } else {
        // A manifest written by this run was not there: no tag points at
        // it. A plan asks anyway, to say what the tag points at now.
        let check = dry || !matches!(run.outcomes.get(d), Some(Outcome::Put { .. }));
        copier
            .put_tag(dst_repo, tag, &node.manifest, dry, check)
            .await
            .map(|(w, before)| (w, false, before))
            .map_err(Arc::new)
    };
    match result {
        Ok((written, root_written, before)) => {
            if root_written {
                let size = node.manifest.bytes().len() as u64;
                run.root_written(d, node.kind, size);
                run.outcomes.insert(
                    d.clone(),
                    Outcome::Put {
                        subject_indexed: false,
                        size,
                    },
                );
                run.holds(d);
            }
            if written && !run.dry {
                run.report.tags += 1;
                if kind == NodeKind::Tag {
                    run.report.image_tags += 1;
                }
                if let Some(via) = cosign_via
                    && matches!(run.outcomes.get(d), Some(Outcome::Put { .. }))
                {
                    *run.report
                        .referrers
                        .entry((via, Representation::CosignTag))
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
            run.fail(Some(d.clone()), NodeKind::Tag, e);
            false
        }
    }
}
