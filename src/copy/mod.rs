//! The copy engine: walks an image's graph on a source registry (index,
//! platform manifests, config and layers, and the referrers of every manifest,
//! recursively) and recreates it digest-exact on a target, converting the
//! referrers' representation (referrers API, `<alg>-<hex>` fallback tag,
//! cosign legacy tags, OCI layout) to what the target supports.
//!
//! Order on the target: blobs, then manifests bottom-up (children before
//! indexes, every referrer after its subject), then fallback indexes (one
//! read-modify-write per subject), then cosign tags, then the image tag.
//! Manifest bytes are never re-serialised, so every digest on the target is
//! the source's (the one exception is the new index written by
//! `--platform-mode filter` when several platforms match).
//!
//! Imports only [`crate::registry`] (the port) and [`crate::oci`].
//!
//! References: spec notes §2–§5 and §9; oras-go `copy.go`/`extendedcopy.go`
//! (bounded concurrency, one owner per digest); regclient `image.go`.

mod discover;
pub mod error;
pub mod platform;
mod publish;
mod transfer;
mod walk;

#[cfg(test)]
mod memory;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OnceCell, Semaphore, mpsc};

use crate::oci::{Digest, Reference, RepoName, Tag};
use crate::registry::{ReferrersSupport, Registry};

pub use error::{CopyError, Side};
pub use platform::{PlatformError, PlatformSpec};

/// How referrers are found on the source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DiscoveryMode {
    /// The referrers API where the registry has it, plus the fallback tag
    /// where one exists (a registry holding both gives the union).
    #[default]
    Auto,
    /// Only the referrers API (an error where the registry has none).
    Api,
    /// Only `<alg>-<hex>` fallback tags.
    Tags,
}

/// How referrers are published on the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PublishMode {
    /// Trust `OCI-Subject` on the manifest PUT, confirmed once per repository
    /// by the referrers endpoint; fallback tags only where there is no API.
    #[default]
    Auto,
    /// Referrers API only: never write a fallback tag.
    Api,
    /// Always maintain `<alg>-<hex>` fallback indexes.
    Tags,
}

macro_rules! mode_from_str {
    ($t:ty) => {
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    "auto" => Ok(<$t>::Auto),
                    "api" => Ok(<$t>::Api),
                    "tags" => Ok(<$t>::Tags),
                    other => Err(format!(
                        "invalid mode {other:?}: expected auto, api or tags"
                    )),
                }
            }
        }
    };
}
mode_from_str!(DiscoveryMode);
mode_from_str!(PublishMode);

/// What a platform filter does to an index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PlatformMode {
    /// Copy the whole index digest-exact; the platform list narrows nothing.
    #[default]
    All,
    /// Copy only matching platform manifests. One match: the tag points at
    /// that platform manifest (digest-exact). Several: a new index listing
    /// only them is written, with a new digest, so the original index's
    /// signatures and other referrers no longer apply and are not copied.
    Filter,
}

impl FromStr for PlatformMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            // `whole` is the config file's word; `all` is kept as an alias.
            "whole" | "all" => Ok(PlatformMode::All),
            "filter" => Ok(PlatformMode::Filter),
            other => Err(format!(
                "invalid platform mode {other:?}: expected whole or filter"
            )),
        }
    }
}

/// An annotation a referrer must carry: the key, and the value when given.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AnnotationMatch {
    /// Annotation key.
    pub key: String,
    /// Required value; `None` means any value.
    pub value: Option<String>,
}

impl FromStr for AnnotationMatch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = match s.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (s, None),
        };
        if key.is_empty() {
            return Err(format!(
                "invalid annotation match {s:?}: expected KEY or KEY=VALUE"
            ));
        }
        Ok(AnnotationMatch {
            key: key.to_string(),
            value,
        })
    }
}

/// What to copy and how.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Copy referrers at all.
    pub referrers: bool,
    /// How many referrer hops to follow from the image (a signature on an
    /// SBOM on a platform manifest is depth 2).
    pub max_depth: usize,
    /// Copy only referrers with one of these artifact types (empty: all).
    pub artifact_types_include: Vec<String>,
    /// Never copy referrers with one of these artifact types.
    pub artifact_types_exclude: Vec<String>,
    /// Copy only referrers carrying all of these annotations.
    pub annotations: Vec<AnnotationMatch>,
    /// Wanted platforms (used by [`PlatformMode::Filter`]).
    pub platforms: Vec<PlatformSpec>,
    /// What the platform list does.
    pub platform_mode: PlatformMode,
    /// How referrers are found on the source.
    pub source_referrers: DiscoveryMode,
    /// How referrers are published on the target.
    pub target_referrers: PublishMode,
    /// Also copy cosign legacy tags (`sha256-<hex>.sig/.att/.sbom`).
    pub cosign_tags: bool,
    /// Transfers (blob or manifest) in flight at once, across the graph.
    pub concurrency: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            referrers: true,
            max_depth: 8,
            artifact_types_include: Vec::new(),
            artifact_types_exclude: Vec::new(),
            annotations: Vec::new(),
            platforms: Vec::new(),
            platform_mode: PlatformMode::All,
            source_referrers: DiscoveryMode::Auto,
            target_referrers: PublishMode::Auto,
            cosign_tags: true,
            concurrency: 8,
        }
    }
}

/// How a referrer is represented on a registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Representation {
    /// Listed by the referrers API.
    Api,
    /// Listed in an `<alg>-<hex>` fallback index.
    FallbackTag,
    /// A cosign legacy tag (`sha256-<hex>.sig` ...).
    CosignTag,
    /// In an OCI layout directory (fallback-tag entry in `index.json`).
    Layout,
}

impl fmt::Display for Representation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Representation::Api => "api",
            Representation::FallbackTag => "fallback-tag",
            Representation::CosignTag => "cosign-tag",
            Representation::Layout => "layout",
        })
    }
}

/// Counts of what a copy did. Add reports up with [`CopyReport::merge`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Manifests written to the target.
    pub manifests_copied: u64,
    /// Manifests already on the target.
    pub manifests_skipped: u64,
    /// Blobs uploaded.
    pub blobs_copied: u64,
    /// Blobs already on the target.
    pub blobs_skipped: u64,
    /// Blobs mounted from another repository of the same registry.
    pub blobs_mounted: u64,
    /// Bytes uploaded (blobs and manifests).
    pub bytes: u64,
    /// Tags written (image tags and cosign tags).
    pub tags: u64,
    /// Referrers left out by a filter or the depth limit.
    pub filtered: u64,
    /// Referrers written, by (source, target) representation.
    pub referrers: BTreeMap<(Representation, Representation), u64>,
    /// Referrers already on the target, by (source, target) representation.
    pub referrers_skipped: BTreeMap<(Representation, Representation), u64>,
    /// Fallback indexes written on the target.
    pub fallback_indexes_written: u64,
    /// What failed (one message per failed node); empty on success.
    pub failures: Vec<String>,
}

impl CopyReport {
    /// Adds `other` to this report.
    pub fn merge(&mut self, other: CopyReport) {
        self.manifests_copied += other.manifests_copied;
        self.manifests_skipped += other.manifests_skipped;
        self.blobs_copied += other.blobs_copied;
        self.blobs_skipped += other.blobs_skipped;
        self.blobs_mounted += other.blobs_mounted;
        self.bytes += other.bytes;
        self.tags += other.tags;
        self.filtered += other.filtered;
        for (k, v) in other.referrers {
            *self.referrers.entry(k).or_default() += v;
        }
        for (k, v) in other.referrers_skipped {
            *self.referrers_skipped.entry(k).or_default() += v;
        }
        self.fallback_indexes_written += other.fallback_indexes_written;
        self.failures.extend(other.failures);
    }

    /// True when nothing failed.
    pub fn is_success(&self) -> bool {
        self.failures.is_empty()
    }

    /// True when nothing was written to the target.
    pub fn wrote_nothing(&self) -> bool {
        self.manifests_copied == 0
            && self.blobs_copied == 0
            && self.blobs_mounted == 0
            && self.tags == 0
            && self.fallback_indexes_written == 0
    }
}

impl fmt::Display for CopyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "manifests: {} copied, {} present; blobs: {} copied, {} mounted, {} present; {} bytes; {} tags; {} fallback indexes written; {} referrers filtered",
            self.manifests_copied,
            self.manifests_skipped,
            self.blobs_copied,
            self.blobs_mounted,
            self.blobs_skipped,
            self.bytes,
            self.tags,
            self.fallback_indexes_written,
            self.filtered
        )?;
        if !self.referrers.is_empty() {
            let parts: Vec<String> = self
                .referrers
                .iter()
                .map(|((s, t), n)| format!("{s}→{t}: {n}"))
                .collect();
            write!(f, "; referrers {}", parts.join(", "))?;
        }
        if !self.failures.is_empty() {
            write!(f, "; {} failed", self.failures.len())?;
        }
        Ok(())
    }
}

/// What a node of the graph is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// An index or manifest list.
    Index,
    /// An image manifest.
    Manifest,
    /// A config or layer blob.
    Blob,
    /// A referrer manifest (signature, SBOM, attestation, ...).
    Referrer,
    /// A cosign legacy attachment (`.sig`/`.att`/`.sbom` tag).
    Cosign,
    /// An `<alg>-<hex>` fallback index on the target.
    FallbackIndex,
    /// A tag on the target.
    Tag,
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            NodeKind::Index => "index",
            NodeKind::Manifest => "manifest",
            NodeKind::Blob => "blob",
            NodeKind::Referrer => "referrer",
            NodeKind::Cosign => "cosign",
            NodeKind::FallbackIndex => "fallback-index",
            NodeKind::Tag => "tag",
        })
    }
}

/// What happened (or, in a plan, would happen) to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Copied (plan: would be copied).
    Copy,
    /// Mounted from another repository (plan: would be tried).
    Mount,
    /// Already on the target: nothing to do.
    Exists,
    /// Left out (filter, depth, platform, invalid listing entry).
    Skip,
    /// Published in another representation than on the source.
    Convert,
    /// A tag or fallback index written (plan: would be written).
    Write,
    /// Failed.
    Fail,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Action::Copy => "copy",
            Action::Mount => "mount",
            Action::Exists => "exists",
            Action::Skip => "skip",
            Action::Convert => "convert",
            Action::Write => "write",
            Action::Fail => "fail",
        })
    }
}

/// One thing the engine did or would do, for `--plan`, progress and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyEvent {
    /// The node (for tags: the manifest the tag points at).
    pub digest: Option<Digest>,
    /// What the node is.
    pub kind: NodeKind,
    /// What happened.
    pub action: Action,
    /// Size in bytes, where known.
    pub size: u64,
    /// Why (human-readable, one line).
    pub reason: String,
}

impl fmt::Display for CopyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<7} {:<14} ", self.action, self.kind)?;
        match &self.digest {
            Some(d) => write!(f, "{d}")?,
            None => f.write_str("-")?,
        }
        if !self.reason.is_empty() {
            write!(f, "  ({})", self.reason)?;
        }
        Ok(())
    }
}

/// A line of a dry-run plan.
pub type PlanItem = CopyEvent;

/// A source repository's tags, listed once (`None`: listing failed).
type TagSet = Arc<OnceCell<Option<Arc<std::collections::HashSet<String>>>>>;

/// The shared outcome of one transfer in flight.
type Flight = Arc<OnceCell<Result<transfer::Outcome, String>>>;

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
    events: Option<mpsc::UnboundedSender<CopyEvent>>,
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
            events: None,
        }
    }

    /// Gives the copier the tags of source repository `repo`, already listed
    /// by the caller, so the walk does not list them again.
    pub fn know_source_tags(&self, repo: &RepoName, tags: Arc<std::collections::HashSet<String>>) {
        let cell = self
            .source_tags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(repo.clone())
            .or_default()
            .clone();
        // Already known (listed or given): keep the first.
        let _ = cell.set(Some(tags));
    }

    /// Sends every [`CopyEvent`] to `sink` as it happens.
    pub fn with_events(mut self, sink: mpsc::UnboundedSender<CopyEvent>) -> Self {
        self.events = Some(sink);
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
        let graph = walk::walk(self, src_repo, reference).await?;
        let tag = dst_tag.cloned().or_else(|| match reference {
            Reference::Tag(t) => Some(t.clone()),
            Reference::Digest(_) => None,
        });
        let mut rec = Recorder::new(self.events.clone(), false);
        let report =
            transfer::execute(self, &graph, src_repo, dst_repo, tag.as_ref(), &mut rec).await;
        Ok(report)
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
        let graph = walk::walk(self, src_repo, reference).await?;
        let tag = dst_tag.cloned().or_else(|| match reference {
            Reference::Tag(t) => Some(t.clone()),
            Reference::Digest(_) => None,
        });
        let mut rec = Recorder::new(self.events.clone(), true);
        // Failures are in the plan as `Action::Fail` items.
        transfer::execute(self, &graph, src_repo, dst_repo, tag.as_ref(), &mut rec).await;
        Ok(rec.collected)
    }
}

/// Sends events to the sink and, for plans, keeps them.
pub(crate) struct Recorder {
    sink: Option<mpsc::UnboundedSender<CopyEvent>>,
    dry_run: bool,
    collected: Vec<CopyEvent>,
}

impl Recorder {
    fn new(sink: Option<mpsc::UnboundedSender<CopyEvent>>, dry_run: bool) -> Self {
        Recorder {
            sink,
            dry_run,
            collected: Vec::new(),
        }
    }

    pub(crate) fn emit(&mut self, event: CopyEvent) {
        if let Some(s) = &self.sink {
            // A closed sink only means nobody listens any more.
            let _ = s.send(event.clone());
        }
        if self.dry_run {
            self.collected.push(event);
        }
    }
}
