//! The copy engine: walks an image's graph on a source registry (index,
//! platform manifests, config and layers, and the referrers of every manifest,
//! recursively) and recreates it digest-exact on a target, converting the
//! referrers' representation (referrers API, `<alg>-<hex>` fallback tag,
//! cosign legacy tags, OCI layout) to what the target supports.
//!
//! ```text
//! mod.rs        Copier: copy_image (walk_image, then write_image: the gate
//!               and the phases) / plan_image
//! options.rs    CopyOptions, ReferrersMode, PlatformMode, graph limits
//! platform.rs   PlatformSpec: parse, normalise, match index entries
//! filter.rs     referrer filters: artifact types, kinds, annotations
//! report.rs     CopyReport, NodeFailure, CopyEvent, Recorder
//! error.rs      CopyError (typed, with a kind() label), Limit, Side
//!
//! read the source              write the target (phases, in order)
//!   source.rs   tag listing      run.rs        state shared by the phases
//!   walk.rs     work queue       manifests.rs  0. what is there; 2. manifests
//!   discover.rs referrers        blobs.rs      1. blobs (HEAD, mount, stream)
//!   cosign.rs   legacy tags <->
//!               OCI 1.1 referrers
//!   narrow.rs   platform filter
//!   graph.rs    the graph and    publish.rs    3. referrers: API or fallback
//!               its order                      tag
//!                                tags.rs       4. cosign tags, image tag
//!   flight.rs   one transfer per digest, bounded concurrency
//!   fresh.rs    new target repositories: no per-object HEADs there
//!   gate.rs     admission port: the signature policy decides between
//!               the walk and the first write
//! ```
//!
//! Order on the target: blobs, then manifests bottom-up (children before
//! indexes, every referrer after its subject; Kahn's algorithm, linear),
//! then fallback indexes (one read-modify-write per subject), then cosign
//! tags, then the image tag, which is withheld when a referrer of the image
//! could not be published. Manifest bytes are never re-serialised, so every
//! digest on the target is the source's (the one exception is the new index
//! written by `--platform-mode filter` when several, not all, platforms
//! match).
//!
//! Imports only [`crate::registry`] (the port) and [`crate::oci`].
//!
//! References: spec notes §2–§5 and §9; oras-go `copy.go`/`extendedcopy.go`
//! (bounded concurrency, one owner per digest); regclient `image.go`.

mod blobs;
mod cosign;
mod discover;
pub mod error;
mod filter;
mod flight;
mod fresh;
pub mod gate;
mod graph;
mod manifests;
mod narrow;
pub mod options;
pub mod platform;
mod publish;
pub mod report;
mod run;
mod source;
mod tags;
mod walk;

#[cfg(test)]
mod memory;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, mpsc};

use crate::oci::{Digest, Reference, RepoName, Tag};
use crate::registry::{ReferrersSupport, Registry};

pub use error::{CopyError, Limit, Side};
pub use gate::{Candidate, Decision, Found, Gate, ImageToCheck};
pub use options::{AnnotationMatch, CopyOptions, CosignMode, PlatformMode, ReferrersMode};
pub use platform::{PlatformError, PlatformSpec};
pub use report::{
    Action, CopyEvent, CopyReport, NodeFailure, NodeKind, PlanItem, PublishedReferrer,
    Representation,
};

use flight::Flight;
use graph::Graph;
use report::Recorder;
use run::Run;
use source::TagSet;

/// An image walked on the source by [`Copier::walk_image`], not written
/// yet: its manifests, in memory, within the graph limits.
pub struct WalkedImage {
    graph: Graph,
    src_repo: RepoName,
    reference: Reference,
}

/// Copies images with their referrer graphs from one registry to another.
/// Use one `Copier` for the images of one run: blobs and manifests shared
/// between them are copied (and checked) once, and each source repository's
/// tags are listed once. It remembers what it copied and saw, so build a
/// new one for the next run.
pub struct Copier {
    source: Arc<dyn Registry>,
    target: Arc<dyn Registry>,
    options: CopyOptions,
    /// Bounds transfers in flight across the whole graph (and across images
    /// copied concurrently through this copier). A permit is held only for
    /// one transfer, never while waiting on other nodes.
    permits: Arc<Semaphore>,
    /// One owner per (target repository, digest); the others wait for its
    /// outcome instead of transferring again. Successes stay for the
    /// copier's lifetime, so build one copier per run (or per sync tick):
    /// a later run must look at the target afresh.
    in_flight: Mutex<HashMap<(RepoName, Digest), Flight>>,
    /// Tags of source repositories, listed once per copier: they tell
    /// which fallback and cosign tags exist without probing each one.
    source_tags: Mutex<HashMap<RepoName, TagSet>>,
    /// Referrers support of target repositories, asked once per repository.
    target_support: Mutex<HashMap<RepoName, ReferrersSupport>>,
    /// A target repository known to hold each blob (found, uploaded or
    /// mounted by this copier): a blob needed in another target repository
    /// is mounted from there instead of transferred again (shared base
    /// layers across repositories).
    target_blobs: Mutex<HashMap<Digest, RepoName>>,
    fresh: fresh::FreshRepos,
    events: Option<mpsc::UnboundedSender<CopyEvent>>,
    /// Decides, per image, whether it may be copied (signature policy).
    gate: Option<Arc<dyn Gate>>,
}

impl Copier {
    /// A copier from `source` to `target`.
    pub fn new(source: Arc<dyn Registry>, target: Arc<dyn Registry>, options: CopyOptions) -> Self {
        let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
        Copier {
            source,
            target,
            options,
            permits,
            in_flight: Mutex::new(HashMap::new()),
            source_tags: Mutex::new(HashMap::new()),
            target_support: Mutex::new(HashMap::new()),
            target_blobs: Mutex::new(HashMap::new()),
            fresh: fresh::FreshRepos::default(),
            events: None,
            gate: None,
        }
    }

    /// Gives the copier the tags of source repository `repo`, already listed
    /// by the caller, so the walk does not list them again.
    pub fn know_source_tags(&self, repo: &RepoName, tags: Arc<std::collections::HashSet<String>>) {
        // Already known (listed or given): keep the first.
        let _ = self.source_tag_cell(repo).set(Some(tags));
    }

    /// The once-filled tag listing of source repository `repo`.
    fn source_tag_cell(&self, repo: &RepoName) -> TagSet {
        self.source_tags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(repo.clone())
            .or_default()
            .clone()
    }

    /// Sends every [`CopyEvent`] to `sink` as it happens.
    pub fn with_events(mut self, sink: mpsc::UnboundedSender<CopyEvent>) -> Self {
        self.events = Some(sink);
        self
    }

    /// Asks `gate` about every image after its walk and before its first
    /// write: a refused image is not written at all.
    pub fn with_gate(mut self, gate: Arc<dyn Gate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Shares `permits` as the transfer bound, so several copiers (jobs)
    /// together stay within one global limit.
    pub fn with_permits(mut self, permits: Arc<Semaphore>) -> Self {
        self.permits = permits;
        self
    }

    /// The options in use.
    pub fn options(&self) -> &CopyOptions {
        &self.options
    }

    /// Copies the image `reference` of `src_repo` with its referrers to
    /// `dst_repo`, tagging it `dst_tag` (default: the source tag, if the
    /// reference is one). Failures of single nodes (a referrer that cannot be
    /// read, a blob that will not upload) are listed in
    /// [`CopyReport::failures`] while everything else is still copied; an
    /// `Err` means the image itself could not be read or planned.
    pub async fn copy_image(
        &self,
        src_repo: &RepoName,
        reference: &Reference,
        dst_repo: &RepoName,
        dst_tag: Option<&Tag>,
    ) -> Result<CopyReport, CopyError> {
        let image = self.walk_image(src_repo, reference).await?;
        self.write_image(image, dst_repo, dst_tag).await
    }

    /// The first half of [`Copier::copy_image`]: reads the image's graph
    /// on the source, writing nothing. Walks are cheap (manifests and
    /// listings, a few KiB each, bounded by the graph limits) and cost round
    /// trips, so a caller may walk more images at once than it writes.
    pub async fn walk_image(
        &self,
        src_repo: &RepoName,
        reference: &Reference,
    ) -> Result<WalkedImage, CopyError> {
        Ok(WalkedImage {
            graph: self.walk(src_repo, reference).await?,
            src_repo: src_repo.clone(),
            reference: reference.clone(),
        })
    }

    /// The second half of [`Copier::copy_image`]: asks the gate (which
    /// sees the whole graph before any write), then writes the image.
    pub async fn write_image(
        &self,
        image: WalkedImage,
        dst_repo: &RepoName,
        dst_tag: Option<&Tag>,
    ) -> Result<CopyReport, CopyError> {
        let WalkedImage {
            graph,
            src_repo,
            reference,
        } = image;
        let tag = match reference {
            _ if dst_tag.is_some() => dst_tag.cloned(),
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        };
        let mut rec = Recorder::new(self.events.clone(), false);
        if let Some(refusal) = self.admit(&graph, &src_repo, &mut rec).await {
            return Err(refusal);
        }
        Ok(self
            .write(&graph, &src_repo, dst_repo, tag.as_ref(), &mut rec)
            .await)
    }

    /// The same walk as [`Copier::copy_image`], without writing anything:
    /// what would be copied, skipped (and why) and converted. Reads the
    /// target to tell what is already there.
    pub async fn plan_image(
        &self,
        src_repo: &RepoName,
        reference: &Reference,
        dst_repo: &RepoName,
        dst_tag: Option<&Tag>,
    ) -> Result<Vec<PlanItem>, CopyError> {
        let graph = self.walk(src_repo, reference).await?;
        let tag = dst_tag.cloned().or_else(|| match reference {
            Reference::Tag(t) => Some(t.clone()),
            Reference::Digest(_) => None,
        });
        let mut rec = Recorder::new(self.events.clone(), true);
        // A refused image would have nothing written: its plan is the
        // verification steps alone.
        if self.admit(&graph, src_repo, &mut rec).await.is_some() {
            return Ok(rec.collected);
        }
        // Failures are in the plan as `Action::Fail` items.
        self.write(&graph, src_repo, dst_repo, tag.as_ref(), &mut rec)
            .await;
        Ok(rec.collected)
    }

    /// The graph of `reference` on the source, with cosign attachments
    /// converted as the options ask.
    async fn walk(&self, src_repo: &RepoName, reference: &Reference) -> Result<Graph, CopyError> {
        let mut graph = walk::walk(self, src_repo, reference).await?;
        cosign::convert(&mut graph, &self.options);
        Ok(graph)
    }

    /// Asks the gate (if any) about the walked image; records its steps and
    /// returns the refusal, if it refused.
    async fn admit(
        &self,
        graph: &Graph,
        src_repo: &RepoName,
        rec: &mut Recorder,
    ) -> Option<CopyError> {
        let gate = self.gate.as_ref()?;
        let image = ImageToCheck::from_graph(self.source.as_ref(), src_repo, graph, rec.dry_run);
        let decision = gate.check(image).await;
        for step in decision.steps {
            rec.emit(step);
        }
        decision.refusal.map(|reason| CopyError::Unverified {
            registry: self.source.name().to_string(),
            repo: src_repo.to_string(),
            digest: graph.root.clone(),
            reason,
        })
    }

    /// Writes the walked `graph` to the target (or, in a dry run, reports
    /// what it would write), phase by phase.
    async fn write(
        &self,
        graph: &Graph,
        src_repo: &RepoName,
        dst_repo: &RepoName,
        tag: Option<&Tag>,
        rec: &mut Recorder,
    ) -> CopyReport {
        for e in &graph.events {
            rec.emit(e.clone());
        }
        let mut run = Run::new(self, graph, src_repo, dst_repo, tag, rec);
        run.fresh = self.fresh_target(dst_repo).await;
        for (d, e) in &graph.failures {
            run.fail(d.clone(), NodeKind::Manifest, e.clone());
        }
        manifests::probe_present(&mut run).await;
        cosign::put_generated_blobs(&mut run).await;
        blobs::copy_blobs(&mut run).await;
        manifests::copy_manifests(&mut run).await;
        publish::publish(&mut run).await;
        tags::write_tags(&mut run).await;
        cosign::report_conversions(&mut run);
        run.report
    }
}
