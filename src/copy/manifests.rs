//! Manifests, bottom-up with their exact bytes: which the target already
//! has, then every missing one once everything it needs (index children,
//! a referrer's subject, its blobs) is there, wave by wave.

use std::sync::Arc;

use super::Copier;
use super::error::CopyError;
use super::flight::bounded;
use super::fresh::Written;
use super::report::{Action, Outcome};
use super::run::Run;
use crate::oci::{Digest, Manifest, Reference, RepoName};

impl Copier {
    /// Whether the target has manifest `d` (a failed check counts as absent:
    /// the write that follows reports the real problem).
    async fn has_manifest(&self, dst_repo: &RepoName, d: &Digest) -> bool {
        let _permit = self.permits.acquire().await;
        match self
            .target
            .manifest_head(dst_repo, &Reference::Digest(d.clone()))
            .await
        {
            Ok(found) => found.is_some(),
            Err(e) => {
                tracing::debug!(error = %e, "manifest check failed; treating as absent");
                false
            }
        }
    }

    pub(crate) async fn copy_manifest(
        &self,
        dst_repo: &RepoName,
        manifest: &Manifest,
        dry_run: bool,
        fresh: Option<&Written>,
    ) -> Result<Outcome, CopyError> {
        // The caller checked that the target lacks it (in a new repository:
        // another image of this run may have written it since).
        let d = manifest.digest();
        if fresh.is_some_and(|w| w.contains(d)) {
            return Ok(Outcome::Exists);
        }
        let _permit = self.permits.acquire().await;
        if dry_run {
            return Ok(Outcome::Planned { mount: false });
        }
        let reference = Reference::Digest(d.clone());
        let out = put_settled(self.target.as_ref(), dst_repo, &reference, manifest)
            .await
            .map_err(|e| CopyError::target("write manifest", Some(d), e))?;
        if let Some(w) = fresh {
            w.add(d);
        }
        Ok(Outcome::Put {
            subject_indexed: out.subject_indexed,
            size: manifest.bytes().len() as u64,
        })
    }
}

/// Pushes a manifest whose children are all on the target, retrying a few
/// times when the registry says a child is unknown or invalid. distribution
/// (filesystem storage) writes a blob's link file in place, so while another
/// process or copier commits the same shared blob, a manifest PUT can read
/// a half-written link and answer MANIFEST_BLOB_UNKNOWN or DIGEST_INVALID
/// (our own digest was computed from the bytes, so it is not the manifest's).
pub(crate) async fn put_settled(
    target: &dyn crate::registry::Registry,
    repo: &RepoName,
    reference: &Reference,
    manifest: &Manifest,
) -> Result<crate::registry::PutManifestOutcome, crate::registry::RegistryError> {
    const SETTLE: [u64; 3] = [100, 300, 900];
    let mut attempt = 0;
    loop {
        let result = target
            .manifest_put(
                repo,
                reference,
                manifest,
                crate::registry::Precondition::None,
            )
            .await;
        match result {
            Err(e) if attempt < SETTLE.len() && child_not_settled(&e) => {
                tracing::debug!(error = %e, "Manifest children not visible yet; retrying.");
                tokio::time::sleep(std::time::Duration::from_millis(SETTLE[attempt])).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn child_not_settled(e: &crate::registry::RegistryError) -> bool {
    matches!(&e.kind, crate::registry::ErrorKind::Status { status: 400, codes, .. }
        if codes.iter().any(|c| c == "MANIFEST_BLOB_UNKNOWN" || c == "DIGEST_INVALID"))
}

/// Phase 0: the manifests the target already has. A registry stores a
/// manifest only once its blobs are there, so their blobs need no check
/// (this makes a no-op re-copy one HEAD per manifest). A new repository
/// holds what this copier wrote there: no HEADs.
pub(crate) async fn probe_present(run: &mut Run<'_>) {
    if let Some(w) = &run.fresh {
        run.present = run
            .graph
            .order
            .iter()
            .filter(|d| w.contains(d))
            .cloned()
            .collect();
        return;
    }
    let (copier, dst_repo) = (run.copier, run.dst_repo);
    let probes: Vec<_> = run
        .graph
        .order
        .iter()
        .map(|d| async move { copier.has_manifest(dst_repo, d).await.then(|| d.clone()) })
        .collect();
    run.present = bounded(probes, run.width)
        .await
        .into_iter()
        .flatten()
        .collect();
}

/// Phase 2: the manifests, in waves from [`super::graph::Graph::waves`].
pub(crate) async fn copy_manifests(run: &mut Run<'_>) {
    let graph = run.graph;
    let (copier, dst_repo, dry) = (run.copier, run.dst_repo, run.dry);
    for wave in graph.waves() {
        let mut batch = Vec::new();
        for d in wave {
            let Some(node) = graph.nodes.get(d) else {
                continue;
            };
            let needs = graph
                .dependencies(d)
                .chain(node.manifest.blobs().into_iter().map(|b| &b.digest))
                .find(|n| run.failed.contains(*n))
                .cloned();
            if let Some(needs) = needs {
                run.failed.insert(d.clone());
                let e = CopyError::Dependency {
                    digest: d.clone(),
                    needs,
                };
                run.fail(Some(d.clone()), node.kind, Arc::new(e));
                continue;
            }
            if run.present.contains(d) {
                run.report.manifests_skipped += 1;
                run.outcomes.insert(d.clone(), Outcome::Exists);
                run.rec.note(
                    Some(d.clone()),
                    node.kind,
                    Action::Exists,
                    node.manifest.bytes().len() as u64,
                    String::new(),
                );
                continue;
            }
            if *d == graph.root && run.root_by_tag() {
                // Written by tag in the tag phase, after its referrers.
                continue;
            }
            batch.push((d, node));
        }
        let fresh = run.fresh.as_deref();
        let tasks: Vec<_> = batch
            .into_iter()
            .map(|(d, node)| async move {
                let (r, owner) = copier
                    .single_flight(dst_repo, d, || {
                        copier.copy_manifest(dst_repo, &node.manifest, dry, fresh)
                    })
                    .await;
                (d, node, r, owner)
            })
            .collect();
        for (d, node, r, owner) in bounded(tasks, run.width).await {
            let size = node.manifest.bytes().len() as u64;
            match r {
                Ok(o) => {
                    let action = match &o {
                        Outcome::Put { size, .. } if owner => {
                            run.report.manifests_copied += 1;
                            run.report.bytes += size;
                            Action::Copy
                        }
                        Outcome::Planned { .. } => Action::Copy,
                        _ => {
                            run.report.manifests_skipped += 1;
                            Action::Exists
                        }
                    };
                    let why = match action {
                        Action::Copy => role(graph, run.dst_repo, d),
                        _ => String::new(),
                    };
                    run.rec.note(Some(d.clone()), node.kind, action, size, why);
                    // A waiter did not write it: it is "present" for its report.
                    let o = if owner { o } else { Outcome::Exists };
                    run.outcomes.insert(d.clone(), o);
                }
                Err(e) => {
                    run.failed.insert(d.clone());
                    run.fail(Some(d.clone()), node.kind, e);
                }
            }
        }
    }
}

/// What manifest `d` is to the image, for plans and `verify`: the subject
/// and artifactType of a referrer, the tag of a cosign attachment.
fn role(graph: &super::graph::Graph, dst_repo: &RepoName, d: &Digest) -> String {
    if let Some(e) = graph.referrers.iter().find(|e| &e.referrer == d) {
        let artifact_type = graph
            .nodes
            .get(d)
            .and_then(|n| n.manifest.referrer_descriptor().artifact_type)
            .unwrap_or_default();
        return format!(
            "referrer of {dst_repo}@{}, artifactType {artifact_type}",
            e.subject
        );
    }
    match graph.cosign.iter().find(|c| &c.digest == d) {
        Some(c) => format!("cosign attachment, tag {}", c.tag),
        None => String::new(),
    }
}
