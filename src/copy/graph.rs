//! The graph of one image as walked on the source, shared by the walk (which
//! builds it) and the phases that write it: manifests by digest, referrer and
//! cosign relations, and the bottom-up order in which the target gets them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use super::cosign::Conversion;
use super::error::CopyError;
use super::report::{CopyEvent, NodeKind, Representation};
use crate::oci::{Descriptor, Digest, Manifest};

/// A manifest of the graph.
pub(crate) struct Node {
    /// Exact bytes and parsed view.
    pub manifest: Manifest,
    /// What the node is.
    pub kind: NodeKind,
}

/// `referrer` has `subject` as its subject and was found through `via`.
#[derive(Clone, Debug)]
pub(crate) struct ReferrerEdge {
    pub subject: Digest,
    pub referrer: Digest,
    pub via: Representation,
}

/// `tag` (a cosign legacy tag of `subject`) points at `digest` on the
/// source, or at the converted manifest that replaces what `via` held.
#[derive(Clone, Debug)]
pub(crate) struct CosignEdge {
    pub tag: String,
    pub digest: Digest,
    pub subject: Digest,
    pub via: Representation,
}

/// The walked graph of one image.
pub(crate) struct Graph {
    /// The manifest the image tag points at on the target.
    pub root: Digest,
    /// Every manifest, by digest.
    pub nodes: HashMap<Digest, Node>,
    /// Digests in discovery order (for stable output).
    pub order: Vec<Digest>,
    /// Referrer relations.
    pub referrers: Vec<ReferrerEdge>,
    /// Subjects whose referrers the source listed without error.
    pub listed: Vec<Digest>,
    /// Cosign legacy tags to recreate.
    pub cosign: Vec<CosignEdge>,
    /// cosign attachments converted to the other form (see `cosign.rs`).
    pub conversions: Vec<Conversion>,
    /// Blobs made by a conversion (merged configs), uploaded from memory:
    /// they exist on no source. A few hundred bytes each.
    pub generated_blobs: Vec<(Descriptor, Bytes)>,
    /// Skips decided while walking (filters, invalid listing entries).
    pub events: Vec<CopyEvent>,
    /// Referrers left out by filters.
    pub filtered: u64,
    /// Referrers of an index the platform filter replaced.
    pub dropped: u64,
    /// Nodes (or listings) that could not be read, with why.
    pub failures: Vec<(Option<Digest>, Arc<CopyError>)>,
    /// Digests that could not be read: whatever needs them is not copied.
    pub unreadable: HashSet<Digest>,
}

impl Graph {
    /// An empty graph whose image tag will point at `root`.
    pub fn new(root: Digest) -> Self {
        Graph {
            root,
            nodes: HashMap::new(),
            order: Vec::new(),
            referrers: Vec::new(),
            listed: Vec::new(),
            cosign: Vec::new(),
            conversions: Vec::new(),
            generated_blobs: Vec::new(),
            events: Vec::new(),
            filtered: 0,
            dropped: 0,
            failures: Vec::new(),
            unreadable: HashSet::new(),
        }
    }

    /// Manifests each node of [`Graph::order`] needs on the target first
    /// (its index children and, for a referrer, its subject), as positions
    /// in `order`; dependencies outside the graph are left out.
    fn dependency_positions(&self) -> Vec<Vec<usize>> {
        let position: HashMap<&Digest, usize> =
            self.order.iter().enumerate().map(|(i, d)| (d, i)).collect();
        let mut deps: Vec<Vec<usize>> = self
            .order
            .iter()
            .map(|d| {
                self.nodes
                    .get(d)
                    .map(|n| {
                        n.manifest
                            .child_manifests()
                            .iter()
                            .filter_map(|c| position.get(&c.digest).copied())
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        for e in &self.referrers {
            if let (Some(&r), Some(&s)) = (position.get(&e.referrer), position.get(&e.subject)) {
                deps[r].push(s);
            }
        }
        deps
    }

    /// Manifests `d` needs on the target first, as digests.
    pub fn dependencies(&self, d: &Digest) -> impl Iterator<Item = &Digest> {
        let children = self
            .nodes
            .get(d)
            .map(|n| n.manifest.child_manifests())
            .unwrap_or_default()
            .iter()
            .map(|c| &c.digest);
        let subjects = self
            .referrers
            .iter()
            .filter(move |e| &e.referrer == d)
            .map(|e| &e.subject);
        children.chain(subjects)
    }

    /// The manifests in waves, bottom-up: every manifest comes in a later
    /// wave than everything it needs; within a wave, discovery order.
    pub fn waves(&self) -> Vec<Vec<&Digest>> {
        levels(&self.dependency_positions())
            .into_iter()
            .map(|wave| wave.into_iter().map(|i| &self.order[i]).collect())
            .collect()
    }
}

/// Kahn's algorithm in waves, iterative and linear in nodes plus edges:
/// `deps[i]` lists what node `i` needs first. Wave 0 holds the nodes
/// without dependencies, wave k+1 those whose last dependency is in wave k.
/// Nodes on a loop (impossible with content-addressed manifests) go in one
/// last wave, so they are still tried. Each wave is sorted by position.
pub(crate) fn levels(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = deps.len();
    let mut waiting: Vec<usize> = vec![0; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            if d < n && d != i {
                waiting[i] += 1;
                dependents[d].push(i);
            }
        }
    }
    let mut wave: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut placed = 0;
    let mut out = Vec::new();
    while !wave.is_empty() {
        placed += wave.len();
        let mut next = Vec::new();
        for &i in &wave {
            for &j in &dependents[i] {
                waiting[j] -= 1;
                if waiting[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        out.push(std::mem::replace(&mut wave, next));
    }
    if placed < n {
        out.push((0..n).filter(|&i| waiting[i] > 0).collect());
    }
    out
}

/// Where a pending node was found.
#[derive(Clone, Debug)]
pub(crate) enum Origin {
    Root,
    Child,
    Referrer {
        subject: Digest,
        via: Representation,
    },
    Cosign {
        tag: String,
    },
}

/// A node to visit.
pub(crate) struct Pending {
    pub digest: Digest,
    /// Referrer hops from the image.
    pub depth: usize,
    /// Indexes above it, counted from the image or referrer it belongs to.
    pub nesting: usize,
    pub origin: Origin,
    /// Already fetched during discovery (cosign tags are read by tag).
    pub prefetched: Option<Manifest>,
}
