//! The admission port: after an image's graph is walked and before anything
//! of it is written, a [`Gate`] (the signature policy, `crate::policy`)
//! sees the image's signatures and decides whether the image may be
//! copied. The engine only collects the candidates and obeys the decision;
//! what counts as a valid signature is the gate's business.

use std::sync::Arc;

use async_trait::async_trait;

use super::graph::Graph;
use super::report::{CopyEvent, NodeKind};
use crate::oci::referrers::cosign_tag;
use crate::oci::{Descriptor, Digest, Manifest, RepoName};
use crate::registry::Registry;

/// How a candidate signature manifest was found on the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// A referrer of the image (referrers API or `<alg>-<hex>` fallback tag).
    Referrer,
    /// cosign's legacy `sha256-<hex>.sig` tag.
    CosignTag,
}

/// A manifest of the image's graph that may carry signatures of the image.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The manifest (exact bytes; its blobs are still on the source).
    pub manifest: Manifest,
    /// Where it was found.
    pub found: Found,
}

/// The image to decide on: its digest, where it is on the source, and every
/// manifest the walk found attached to it directly.
pub struct ImageToCheck<'a> {
    /// The source registry (signature blobs are read from there).
    pub source: &'a dyn Registry,
    /// The source repository.
    pub repo: &'a RepoName,
    /// The digest the image tag points at (index or manifest).
    pub digest: &'a Digest,
    /// What that is ([`NodeKind::Index`] or [`NodeKind::Manifest`]).
    pub kind: NodeKind,
    /// Its descriptor (media type and size, which a signed payload may
    /// state too), when the walk holds it.
    pub descriptor: Option<Descriptor>,
    /// Referrers of the image and its cosign `.sig` manifest, if any.
    pub candidates: Vec<Candidate>,
    /// A plan: decide and explain, count nothing.
    pub dry_run: bool,
}

impl<'a> ImageToCheck<'a> {
    /// The candidates of `graph`'s root: only manifests attached to the
    /// root itself, since the image tag resolves to the root and the root's
    /// digest covers every platform manifest it lists.
    pub(crate) fn from_graph(
        source: &'a dyn Registry,
        repo: &'a RepoName,
        graph: &'a Graph,
        dry_run: bool,
    ) -> Self {
        let root = &graph.root;
        let sig_tag = cosign_tag(root, "sig");
        let referrers = graph
            .referrers
            .iter()
            .filter(|e| &e.subject == root)
            .map(|e| (&e.referrer, Found::Referrer));
        let cosign = graph
            .cosign
            .iter()
            .filter(|e| e.tag == sig_tag)
            .map(|e| (&e.digest, Found::CosignTag));
        let mut candidates: Vec<Candidate> = Vec::new();
        for (d, found) in referrers.chain(cosign) {
            if let Some(node) = graph.nodes.get(d)
                && !candidates.iter().any(|c| c.manifest.digest() == d)
            {
                candidates.push(Candidate {
                    manifest: node.manifest.clone(),
                    found,
                });
            }
        }
        ImageToCheck {
            source,
            repo,
            digest: root,
            kind: graph.nodes.get(root).map_or(NodeKind::Manifest, |n| n.kind),
            descriptor: graph.nodes.get(root).map(|n| n.manifest.descriptor()),
            candidates,
            dry_run,
        }
    }
}

/// What the gate decided about one image.
#[derive(Debug, Default)]
pub struct Decision {
    /// Lines for the plan and the event stream: per signature what was
    /// verified, and for the image which rule admitted or refused it.
    pub steps: Vec<CopyEvent>,
    /// Set when the image must not be copied: why.
    pub refusal: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// Decides whether an image may be copied, from its signatures.
#[async_trait]
pub trait Gate: Send + Sync {
    /// Checks `image`; never fails: an unreadable signature is a reason to
    /// refuse, given in the decision.
    async fn check(&self, image: ImageToCheck<'_>) -> Decision;
}
