//! What a copy reports: per-node events (for plans, progress and metrics),
//! typed node failures, and the counts of a [`CopyReport`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::error::CopyError;
use crate::oci::Digest;

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

impl Representation {
    /// The metric label value (`source_repr`/`target_repr`).
    pub fn label(self) -> &'static str {
        match self {
            Representation::Api => "api",
            Representation::FallbackTag => "fallback_tag",
            Representation::CosignTag => "cosign_tag",
            Representation::Layout => "layout",
        }
    }
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
    /// A whole image, once it is done (progress only: `copy` and `once`
    /// send one per image with what happened to it).
    Image,
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
            NodeKind::Image => "image",
        })
    }
}

/// One node that failed: which, what it is, and the typed error (shared, so
/// every task waiting on the same transfer reports the same error).
#[derive(Clone, Debug)]
pub struct NodeFailure {
    /// The node, when the failure concerns one digest.
    pub digest: Option<Digest>,
    /// What the node is.
    pub node: NodeKind,
    /// Why it failed.
    pub error: Arc<CopyError>,
}

impl NodeFailure {
    /// The error's stable label (see [`CopyError::kind`]).
    pub fn kind(&self) -> &'static str {
        self.error.kind()
    }
}

impl From<CopyError> for NodeFailure {
    /// An image-level failure (the image could not be read or planned).
    fn from(error: CopyError) -> Self {
        NodeFailure {
            digest: None,
            node: NodeKind::Manifest,
            error: Arc::new(error),
        }
    }
}

impl PartialEq for NodeFailure {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
            && self.node == other.node
            && (Arc::ptr_eq(&self.error, &other.error)
                || (self.kind() == other.kind()
                    && self.error.to_string() == other.error.to_string()))
    }
}

impl Eq for NodeFailure {}

impl fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.error, self.kind())
    }
}

/// Nodes left out for a failed dependency that a failure summary names
/// one by one; beyond this it counts them.
const MAX_NAMED_DEPENDENTS: usize = 3;

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
    /// Image tags written (the `tags` that are not cosign's): the tag this
    /// run put or moved, which deletion sync records as the job's own.
    pub image_tags: u64,
    /// Referrers left out by a filter or the depth limit.
    pub filtered: u64,
    /// Referrers listed on the source for an index that the platform
    /// filter replaced (by one platform manifest or a narrowed index): they
    /// no longer apply and are not copied. Not a failure, but not a plain
    /// success either: callers should say so.
    pub dropped: u64,
    /// Referrers written, by (source, target) representation.
    pub referrers: BTreeMap<(Representation, Representation), u64>,
    /// Referrers already on the target, by (source, target) representation.
    pub referrers_skipped: BTreeMap<(Representation, Representation), u64>,
    /// Fallback indexes written on the target.
    pub fallback_indexes_written: u64,
    /// cosign legacy tag manifests written as OCI 1.1 referrers.
    pub cosign_to_referrers: u64,
    /// cosign OCI 1.1 referrer groups written as legacy tag manifests.
    pub cosign_to_tags: u64,
    /// What failed (one entry per failed node); empty on success.
    pub failures: Vec<NodeFailure>,
    /// Subjects whose referrers the source listed in full: a referrer of
    /// one of them missing from [`CopyReport::published_referrers`] was
    /// withdrawn (or filtered out) at the source.
    pub referrers_listed: Vec<Digest>,
    /// Referrers published on the target (written, or found there).
    pub published_referrers: Vec<PublishedReferrer>,
}

/// A referrer published on the target, as withdrawn-referrer sync records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedReferrer {
    /// Its subject.
    pub subject: Digest,
    /// The referrer manifest.
    pub referrer: Digest,
    /// This copy wrote it (not found on the target already).
    pub written: bool,
    /// Listed in the subject's fallback index (else by the referrers API).
    pub in_fallback: bool,
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
        self.image_tags += other.image_tags;
        self.filtered += other.filtered;
        self.dropped += other.dropped;
        for (k, v) in other.referrers {
            *self.referrers.entry(k).or_default() += v;
        }
        for (k, v) in other.referrers_skipped {
            *self.referrers_skipped.entry(k).or_default() += v;
        }
        self.fallback_indexes_written += other.fallback_indexes_written;
        self.cosign_to_referrers += other.cosign_to_referrers;
        self.cosign_to_tags += other.cosign_to_tags;
        self.failures.extend(other.failures);
        self.referrers_listed.extend(other.referrers_listed);
        self.published_referrers.extend(other.published_referrers);
    }

    /// True when nothing failed.
    pub fn is_success(&self) -> bool {
        self.failures.is_empty()
    }

    /// The failures in one line a person can read: the first failure in
    /// full, how many more and of which kinds, and how many nodes waited on
    /// them (a target that refuses connections fails every blob check, and
    /// every manifest above them: one cause, not twenty lines).
    pub fn failure_summary(&self) -> String {
        let mut causes: Vec<&NodeFailure> = Vec::new();
        let mut dependent: Vec<&Digest> = Vec::new();
        for f in &self.failures {
            match &*f.error {
                CopyError::Dependency { digest, .. } => dependent.push(digest),
                _ => causes.push(f),
            }
        }
        let Some(first) = causes.first() else {
            // Only nodes waiting on a failure said elsewhere: say the first.
            return self
                .failures
                .first()
                .map(ToString::to_string)
                .unwrap_or_default();
        };
        let mut out = first.to_string();
        if causes.len() > 1 {
            let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
            for f in &causes[1..] {
                *kinds.entry(f.kind()).or_default() += 1;
            }
            let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            out.push_str(&format!(
                "; and {} more failed ({})",
                causes.len() - 1,
                kinds.join(", ")
            ));
        }
        let on = if causes.len() == 1 { "it" } else { "them" };
        match dependent.len() {
            0 => {}
            // A few are named (a manifest left out for lack of its layer
            // is worth its digest); many are counted.
            n if n <= MAX_NAMED_DEPENDENTS => {
                let verb = if n == 1 { "it depends" } else { "they depend" };
                let named: Vec<String> = dependent.iter().map(ToString::to_string).collect();
                out.push_str(&format!(
                    "; not copied because {verb} on {on}: {}",
                    named.join(", ")
                ));
            }
            n => out.push_str(&format!(
                "; {n} nodes not copied because they depend on {on}"
            )),
        }
        out
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
        if self.dropped > 0 {
            write!(
                f,
                "; {} referrers dropped with the filtered index",
                self.dropped
            )?;
        }
        if !self.referrers.is_empty() {
            let parts: Vec<String> = self
                .referrers
                .iter()
                .map(|((s, t), n)| format!("{s} -> {t}: {n}"))
                .collect();
            write!(f, "; referrers {}", parts.join(", "))?;
        }
        if self.cosign_to_referrers + self.cosign_to_tags > 0 {
            write!(
                f,
                "; cosign converted: {} to referrers, {} to tags",
                self.cosign_to_referrers, self.cosign_to_tags
            )?;
        }
        if !self.failures.is_empty() {
            write!(f, "; {} failed", self.failures.len())?;
        }
        Ok(())
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
    /// A signature checked, or an image admitted or refused, by the
    /// signature policy.
    Verify,
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
            Action::Verify => "verify",
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
    /// For [`Action::Fail`]: the typed failure (its `kind()` labels metrics).
    pub failure: Option<NodeFailure>,
}

impl CopyEvent {
    /// The end of one image (`name`): copied, unchanged (`Exists`),
    /// deferred (`Skip`) or failed.
    pub fn image_done(name: &str, action: Action) -> CopyEvent {
        CopyEvent {
            digest: None,
            kind: NodeKind::Image,
            action,
            size: 0,
            reason: name.to_string(),
            failure: None,
        }
    }
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

/// What happened to one blob or manifest on the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Uploaded, with the bytes sent.
    Copied(u64),
    /// Mounted from the source repository.
    Mounted,
    /// Already there.
    Exists,
    /// Manifest written; whether the target indexed its subject.
    Put { subject_indexed: bool, size: u64 },
    /// Dry run: would be copied (or mounted, when `mount`).
    Planned { mount: bool },
    /// Not copied on purpose (a foreign layer the source does not serve).
    Skipped(String),
}

/// Sends events to the sink and, for plans, keeps them.
pub(crate) struct Recorder {
    sink: Option<mpsc::UnboundedSender<CopyEvent>>,
    pub dry_run: bool,
    pub collected: Vec<CopyEvent>,
}

impl Recorder {
    pub fn new(sink: Option<mpsc::UnboundedSender<CopyEvent>>, dry_run: bool) -> Self {
        Recorder {
            sink,
            dry_run,
            collected: Vec::new(),
        }
    }

    pub fn emit(&mut self, event: CopyEvent) {
        if let Some(s) = &self.sink {
            // A closed sink only means nobody listens any more.
            let _ = s.send(event.clone());
        }
        if self.dry_run {
            self.collected.push(event);
        }
    }

    /// An event that is not a failure.
    pub fn note(
        &mut self,
        digest: Option<Digest>,
        kind: NodeKind,
        action: Action,
        size: u64,
        reason: String,
    ) {
        self.emit(CopyEvent {
            digest,
            kind,
            action,
            size,
            reason,
            failure: None,
        });
    }

    /// Records a failure in the report and as an event.
    pub fn fail(
        &mut self,
        report: &mut CopyReport,
        digest: Option<Digest>,
        node: NodeKind,
        error: Arc<CopyError>,
    ) {
        // Said once, by the caller's per-image line and summary; here detail.
        tracing::debug!(error = %error, kind = error.kind(), "Copy step failed.");
        let failure = NodeFailure {
            digest: digest.clone(),
            node,
            error,
        };
        report.failures.push(failure.clone());
        self.emit(CopyEvent {
            digest,
            kind: node,
            action: Action::Fail,
            size: 0,
            reason: failure.error.to_string(),
            failure: Some(failure),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{ErrorKind, Operation, RegistryError};

    fn refused(n: u8) -> NodeFailure {
        let d = Digest::sha256(&[n]);
        NodeFailure {
            digest: Some(d.clone()),
            node: NodeKind::Blob,
            error: Arc::new(CopyError::target(
                "check blob",
                Some(&d),
                RegistryError::new(
                    "reg",
                    "app",
                    Operation::BlobHead,
                    None,
                    ErrorKind::Unreachable("connection refused".into()),
                ),
            )),
        }
    }

    fn waiting(n: u8) -> NodeFailure {
        NodeFailure {
            digest: None,
            node: NodeKind::Manifest,
            error: Arc::new(CopyError::Dependency {
                digest: Digest::sha256(&[n, n]),
                needs: Digest::sha256(&[n]),
            }),
        }
    }

    #[test]
    fn one_cause_is_said_once_and_the_rest_counted() {
        let report = CopyReport {
            failures: vec![
                refused(1),
                waiting(1),
                refused(2),
                refused(3),
                waiting(2),
                waiting(3),
                waiting(4),
            ],
            ..CopyReport::default()
        };
        let s = report.failure_summary();
        assert_eq!(s.matches("connection refused").count(), 1, "{s}");
        assert!(s.contains("and 2 more failed (2 unreachable)"), "{s}");
        assert!(
            s.ends_with("; 4 nodes not copied because they depend on them"),
            "{s}"
        );
        let few = CopyReport {
            failures: vec![refused(1), waiting(1)],
            ..CopyReport::default()
        };
        let s = few.failure_summary();
        assert!(
            s.ends_with(&format!(
                "; not copied because it depends on it: {}",
                Digest::sha256(&[1, 1])
            )),
            "{s}"
        );
        assert_eq!(CopyReport::default().failure_summary(), "");
        let single = CopyReport {
            failures: vec![refused(1)],
            ..CopyReport::default()
        };
        assert_eq!(single.failure_summary(), refused(1).to_string());
    }
}
