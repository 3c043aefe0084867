//! The state of writing one walked graph to the target, handed from phase to
//! phase (blobs, manifests, referrer publication, tags): what is already
//! there, what failed, what each transfer did, and the report.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Copier;
use super::error::CopyError;
use super::fresh::Written;
use super::graph::Graph;
use super::report::{Action, CopyReport, NodeKind, Outcome, Recorder};
use crate::oci::{Digest, RepoName, Tag};

pub(crate) struct Run<'a> {
    pub copier: &'a Copier,
    pub graph: &'a Graph,
    pub src_repo: &'a RepoName,
    pub dst_repo: &'a RepoName,
    /// The image tag to write last, if any.
    pub tag: Option<&'a Tag>,
    /// Plan only: read the target, write nothing.
    pub dry: bool,
    /// Transfers started at once by one phase.
    pub width: usize,
    pub rec: &'a mut Recorder,
    pub report: CopyReport,
    /// Manifests the target had before this run.
    pub present: HashSet<Digest>,
    /// Nodes not on the target: whatever needs them is not written.
    pub failed: HashSet<Digest>,
    /// What happened to each manifest written or found.
    pub outcomes: HashMap<Digest, Outcome>,
    /// Referrers of the image that are not published on the target: the
    /// image tag is withheld while there are any.
    pub unpublished: Vec<Digest>,
    /// What the target repository holds, when it was new (no HEADs needed).
    pub fresh: Option<Arc<Written>>,
}

impl<'a> Run<'a> {
    pub fn new(
        copier: &'a Copier,
        graph: &'a Graph,
        src_repo: &'a RepoName,
        dst_repo: &'a RepoName,
        tag: Option<&'a Tag>,
        rec: &'a mut Recorder,
    ) -> Self {
        let dry = rec.dry_run;
        Run {
            copier,
            graph,
            src_repo,
            dst_repo,
            tag,
            dry,
            width: copier.options.concurrency.max(1) * 2,
            rec,
            report: CopyReport {
                filtered: graph.filtered,
                dropped: graph.dropped,
                referrers_listed: graph.listed.clone(),
                ..CopyReport::default()
            },
            present: HashSet::new(),
            failed: graph.unreadable.clone(),
            outcomes: HashMap::new(),
            unpublished: Vec::new(),
            fresh: None,
        }
    }

    /// Whether the root manifest is written once, by the image tag, in the
    /// tag phase (no PUT by digest first, no HEAD of the tag): it was not on
    /// the target, so the tag cannot point at it yet.
    pub fn root_by_tag(&self) -> bool {
        self.tag.is_some() && !self.dry && !self.present.contains(&self.graph.root)
    }

    /// Counts and says a manifest written in the tag phase (the root of an
    /// image new to the target).
    pub fn root_written(&mut self, d: &Digest, kind: NodeKind, size: u64) {
        self.report.manifests_copied += 1;
        self.report.bytes += size;
        self.rec
            .note(Some(d.clone()), kind, Action::Copy, size, String::new());
    }

    /// Notes that the target repository now holds `d` (new repositories only).
    pub fn holds(&self, d: &Digest) {
        if let Some(w) = &self.fresh {
            w.add(d);
        }
    }

    /// Records that `digest` (a `node`) failed.
    pub fn fail(&mut self, digest: Option<Digest>, node: NodeKind, error: Arc<CopyError>) {
        self.rec.fail(&mut self.report, digest, node, error);
    }
}
