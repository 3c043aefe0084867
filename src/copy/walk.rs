//! Building the graph of an image on the source: the root (tag or digest),
//! index children, and the referrers of every manifest node, recursively to
//! `max_depth`, deduplicated by digest (so loops end), each manifest read
//! once and kept in memory. Nothing is written.
//!
//! The walk is a work queue, not a level-by-level loop: each answer
//! schedules what it leads to at once, and a node's manifest and its
//! referrer listing are asked together (the listing needs only the digest),
//! so an image costs one round trip per level of its graph instead of two,
//! and a slow answer holds back only what depends on it. The graph is
//! assembled once the queue is empty, in breadth-first order of discovery
//! ([`Rank`]), so its order does not depend on which answer came first.
//!
//! The walk is bounded by the options' limits (index nesting, nodes,
//! manifest bytes, referrers per subject) and by `concurrency` requests in
//! flight: a hostile source ends the image with [`CopyError::LimitExceeded`]
//! after a bounded amount of work, before anything is written.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::Copier;
use super::discover;
use super::error::{CopyError, Limit};
use super::filter::filter_reason;
use super::graph::{CosignEdge, Graph, Node, Origin, Pending, ReferrerEdge};
use super::narrow::narrow;
use super::options::PlatformMode;
use super::platform;
use super::report::{Action, CopyEvent, NodeKind, Representation};
use super::source::SourceRepo;
use crate::oci::{Descriptor, Digest, Manifest, Reference, RepoName};

enum Visit {
    Node {
        node: Box<Node>,
        digest: Digest,
        origin: Origin,
        next: Vec<Pending>,
        discovery_error: Option<CopyError>,
        /// Its referrers were listed in full on the source.
        listed: bool,
    },
    Skip(CopyEvent, bool),
    Fail(Digest, CopyError),
    /// A limit was hit: the image ends here.
    Abort(CopyError),
}

/// Where a node was found, as the path of positions from the root (the
/// i-th entry of what its parent led to): ordered by length, then
/// lexicographically, ranks give the breadth-first order of discovery.
type Rank = Vec<u32>;

/// A visit's answer, kept until the graph is assembled.
struct Answer {
    rank: Rank,
    visit: Visit,
    /// Cosign tags of the node (taken from `next` when it was expanded).
    cosign: Vec<CosignEdge>,
}

/// Counts against the per-image limits while walking.
struct Budget<'a> {
    opts: &'a super::options::CopyOptions,
    registry: &'a str,
    repo: &'a RepoName,
    blobs: HashSet<Digest>,
    manifest_bytes: u64,
}

impl Budget<'_> {
    fn exceeded(&self, limit: Limit, max: u64, digest: &Digest) -> CopyError {
        CopyError::LimitExceeded {
            limit,
            max,
            registry: self.registry.to_string(),
            repo: self.repo.to_string(),
            digest: digest.clone(),
        }
    }

    /// Takes `node` (reached at `digest`) into account, with `queued`
    /// manifests known so far (kept or still to visit).
    fn charge(&mut self, node: &Node, digest: &Digest, queued: usize) -> Result<(), CopyError> {
        let opts = self.opts;
        self.manifest_bytes = self
            .manifest_bytes
            .saturating_add(node.manifest.bytes().len() as u64);
        if self.manifest_bytes > opts.max_manifest_bytes {
            return Err(self.exceeded(Limit::ManifestBytes, opts.max_manifest_bytes, digest));
        }
        self.blobs
            .extend(node.manifest.blobs().into_iter().map(|b| b.digest.clone()));
        let max = opts.max_nodes;
        if queued.saturating_add(self.blobs.len()) > max {
            return Err(self.exceeded(Limit::Nodes, max as u64, digest));
        }
        Ok(())
    }
}

/// Walks the graph of `reference` in `repo` on the copier's source.
pub(crate) async fn walk(
    copier: &Copier,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Graph, CopyError> {
    let ctx = SourceRepo::new(copier, repo);
    let source = &copier.source;
    let opts = &copier.options;
    let mut frontier: Vec<Pending> = Vec::new();
    let filtering = opts.platform_mode == PlatformMode::Filter && !opts.platforms.is_empty();
    let mut graph = match reference {
        // The root's digest is known: it is fetched like any node, together
        // with its referrer listing.
        Reference::Digest(d) if !filtering => {
            frontier.push(Pending {
                digest: d.clone(),
                depth: 0,
                nesting: 0,
                origin: Origin::Root,
                prefetched: None,
            });
            Graph::new(d.clone())
        }
        _ => {
            let root_manifest = source
                .manifest_fetch(repo, reference)
                .await
                .map_err(|e| CopyError::source("fetch manifest", None, e))?
                .ok_or_else(|| not_found(copier, repo, reference))?
                .manifest;
            let mut graph = Graph::new(root_manifest.digest().clone());
            let selected: Vec<Descriptor> = if filtering && root_manifest.is_index() {
                platform::select_entries(root_manifest.child_manifests(), &opts.platforms)
                    .into_iter()
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            // A filter that keeps every entry removes nothing: the index
            // stays digest-exact, with its referrers.
            if filtering
                && root_manifest.is_index()
                && selected.len() < root_manifest.child_manifests().len()
            {
                narrow(
                    &ctx,
                    &root_manifest,
                    selected,
                    reference,
                    &mut graph,
                    &mut frontier,
                )
                .await?;
            } else {
                frontier.push(Pending {
                    digest: root_manifest.digest().clone(),
                    depth: 0,
                    nesting: 0,
                    origin: Origin::Root,
                    prefetched: Some(root_manifest),
                });
            }
            graph
        }
    };
    let root_unread = frontier
        .iter()
        .any(|p| p.prefetched.is_none() && matches!(p.origin, Origin::Root));
    let answers = expand(&ctx, &graph, frontier, reference, root_unread).await?;
    assemble(&mut graph, answers);
    Ok(graph)
}

fn not_found(copier: &Copier, repo: &RepoName, reference: &Reference) -> CopyError {
    CopyError::NotFound {
        registry: copier.source.name().to_string(),
        repo: repo.to_string(),
        reference: reference.to_string(),
    }
}

/// Visits `start` and everything it leads to, `concurrency` visits in
/// flight, each answer scheduling its successors as soon as it arrives.
/// Deduplication by digest happens here (so loops end); the limits are
/// charged as nodes arrive.
async fn expand(
    ctx: &SourceRepo<'_>,
    graph: &Graph,
    start: Vec<Pending>,
    reference: &Reference,
    root_unread: bool,
) -> Result<Vec<Answer>, CopyError> {
    let copier = ctx.copier;
    let opts = &copier.options;
    let mut budget = Budget {
        opts,
        registry: copier.source.name(),
        repo: ctx.repo,
        blobs: HashSet::new(),
        manifest_bytes: 0,
    };
    // Nodes already in the graph (a narrowed index) and every node queued.
    let mut visited: HashSet<Digest> = graph.order.iter().cloned().collect();
    let mut expanded: HashSet<Digest> = HashSet::new();
    // A referrer candidate is fetched once per subject claiming it: a wrong
    // listing (rejected by the subject check) must not hide the right one.
    let mut claimed: HashSet<(Digest, Digest)> = HashSet::new();
    let mut queue: VecDeque<(Rank, Pending)> = VecDeque::new();
    for (i, p) in start.into_iter().enumerate() {
        visited.insert(p.digest.clone());
        // The root alone has the empty rank; a narrowed index's entries
        // are its children.
        let rank = if matches!(p.origin, Origin::Root) {
            Vec::new()
        } else {
            vec![i as u32]
        };
        queue.push_back((rank, p));
    }
    let width = opts.concurrency.max(1);
    let mut running = FuturesUnordered::new();
    let mut answers = Vec::new();
    loop {
        while running.len() < width {
            let Some((rank, p)) = queue.pop_front() else {
                break;
            };
            running.push(async move { (rank, visit(ctx, p).await) });
        }
        let Some((rank, visit)) = running.next().await else {
            break;
        };
        let mut cosign = Vec::new();
        match visit {
            Visit::Node {
                node,
                digest,
                origin,
                next,
                discovery_error,
                listed,
            } => {
                if let Some(e @ CopyError::LimitExceeded { .. }) = discovery_error {
                    return Err(e);
                }
                // Reached as a referrer, it is not read again as a child.
                visited.insert(digest.clone());
                if expanded.insert(digest.clone()) {
                    for (i, p) in next.into_iter().enumerate() {
                        match &p.origin {
                            Origin::Referrer { subject, .. } => {
                                if expanded.contains(&p.digest)
                                    || !claimed.insert((p.digest.clone(), subject.clone()))
                                {
                                    continue;
                                }
                            }
                            Origin::Cosign { tag } => {
                                // The tag is recreated whenever its manifest
                                // is copied.
                                cosign.push(CosignEdge {
                                    tag: tag.clone(),
                                    digest: p.digest.clone(),
                                    subject: digest.clone(),
                                    via: Representation::CosignTag,
                                });
                                if !visited.insert(p.digest.clone()) {
                                    continue;
                                }
                            }
                            Origin::Root | Origin::Child => {
                                if !visited.insert(p.digest.clone()) {
                                    continue;
                                }
                            }
                        }
                        let mut child = rank.clone();
                        child.push(i as u32);
                        queue.push_back((child, p));
                    }
                    let queued = expanded.len() + queue.len() + running.len();
                    budget.charge(&node, &digest, queued)?;
                }
                answers.push(Answer {
                    rank,
                    visit: Visit::Node {
                        node,
                        digest,
                        origin,
                        next: Vec::new(),
                        discovery_error,
                        listed,
                    },
                    cosign,
                });
            }
            // The image itself cannot be read: it fails as a whole.
            Visit::Fail(_, e) if root_unread && rank.is_empty() => {
                return Err(match e {
                    CopyError::NotFound { .. } => not_found(copier, ctx.repo, reference),
                    e => e,
                });
            }
            Visit::Abort(e) => return Err(e),
            visit => answers.push(Answer {
                rank,
                visit,
                cosign,
            }),
        }
    }
    Ok(answers)
}

/// Puts the answers into `graph` in breadth-first order of discovery, the
/// first answer for a digest making its node.
fn assemble(graph: &mut Graph, mut answers: Vec<Answer>) {
    answers.sort_by(|a, b| a.rank.len().cmp(&b.rank.len()).then(a.rank.cmp(&b.rank)));
    for a in answers {
        match a.visit {
            Visit::Node {
                node,
                digest,
                origin,
                discovery_error,
                listed,
                ..
            } => {
                if let Origin::Referrer { subject, via } = origin {
                    // The walker checked that `subject` is its subject.
                    graph.referrers.push(ReferrerEdge {
                        subject,
                        referrer: digest.clone(),
                        via,
                    });
                }
                if let Some(e) = discovery_error {
                    graph.failures.push((Some(digest.clone()), Arc::new(e)));
                }
                // Only the answer that expanded the node has its cosign tags.
                graph.cosign.extend(a.cosign);
                if graph.nodes.contains_key(&digest) {
                    // Reached twice: expanded already.
                    continue;
                }
                if listed {
                    graph.listed.push(digest.clone());
                }
                graph.order.push(digest.clone());
                graph.nodes.insert(digest, *node);
            }
            Visit::Skip(event, filtered) => {
                if filtered {
                    graph.filtered += 1;
                }
                graph.events.push(event);
            }
            Visit::Fail(digest, e) => {
                graph.unreadable.insert(digest.clone());
                graph.failures.push((Some(digest), Arc::new(e)));
            }
            Visit::Abort(_) => {}
        }
    }
}

/// Reads one pending node, checks it, and lists what it leads to. Its
/// referrers are listed while the manifest is read (the listing needs only
/// the digest); the listing is dropped if the node is not kept.
async fn visit(ctx: &SourceRepo<'_>, mut p: Pending) -> Visit {
    let copier = ctx.copier;
    let opts = &copier.options;
    let prefetched = p.prefetched.take();
    let listing = async {
        if opts.referrers && p.depth < opts.max_depth {
            Some(discover::discover(ctx, &p.digest, p.depth + 1).await)
        } else {
            None
        }
    };
    let (manifest, listing) = futures::join!(read(ctx, &p, prefetched), listing);
    let manifest = match manifest {
        Ok(m) => m,
        Err(v) => return v,
    };
    let digest = manifest.digest().clone();
    if digest != p.digest {
        // An adapter must verify, but a wrong answer must never be copied.
        return Visit::Fail(
            p.digest.clone(),
            CopyError::source(
                "fetch manifest",
                Some(&p.digest),
                crate::registry::RegistryError::new(
                    copier.source.name(),
                    ctx.repo.as_str(),
                    crate::registry::Operation::ManifestGet,
                    Some(p.digest.to_string()),
                    crate::registry::ErrorKind::DigestMismatch {
                        expected: p.digest.clone(),
                        actual: digest,
                    },
                ),
            ),
        );
    }
    let mut kind = if manifest.is_index() {
        NodeKind::Index
    } else {
        NodeKind::Manifest
    };
    let size = manifest.bytes().len() as u64;
    let skip = |kind, reason: String, filtered| {
        Visit::Skip(
            CopyEvent {
                digest: Some(digest.clone()),
                kind,
                action: Action::Skip,
                size,
                reason,
                failure: None,
            },
            filtered,
        )
    };
    match &p.origin {
        Origin::Referrer { subject, via } => {
            kind = NodeKind::Referrer;
            if manifest.subject().map(|s| &s.digest) != Some(subject) {
                let why = format!("listed by {via} for {subject} but its subject differs");
                return skip(kind, why, false);
            }
        }
        Origin::Cosign { .. } => kind = NodeKind::Cosign,
        Origin::Root | Origin::Child => {}
    }
    // Referrers and cosign attachments pass the referrer filters
    // (filter.rs); images and their children always go.
    if matches!(p.origin, Origin::Referrer { .. } | Origin::Cosign { .. })
        && let Some(why) = filter_reason(opts, &manifest)
    {
        return skip(kind, why, true);
    }
    let children = manifest.child_manifests();
    let nesting = p.nesting + 1;
    if !children.is_empty() && nesting > opts.max_index_depth {
        return Visit::Abort(CopyError::LimitExceeded {
            limit: Limit::IndexDepth,
            max: opts.max_index_depth as u64,
            registry: copier.source.name().to_string(),
            repo: ctx.repo.to_string(),
            digest,
        });
    }
    let mut next: Vec<Pending> = children
        .iter()
        .map(|d| Pending {
            digest: d.digest.clone(),
            depth: p.depth,
            nesting,
            origin: Origin::Child,
            prefetched: None,
        })
        .collect();
    let mut discovery_error = None;
    let mut listed = false;
    match listing {
        Some(Ok(found)) => {
            next.extend(found);
            listed = true;
        }
        Some(Err(e)) => discovery_error = Some(e),
        None => {}
    }
    Visit::Node {
        node: Box::new(Node { manifest, kind }),
        digest,
        origin: p.origin,
        next,
        discovery_error,
        listed,
    }
}

/// The manifest of `p`: `prefetched`, or read from the source; a visit's
/// end when it cannot be read.
async fn read(
    ctx: &SourceRepo<'_>,
    p: &Pending,
    prefetched: Option<Manifest>,
) -> Result<Manifest, Visit> {
    let copier = ctx.copier;
    match prefetched {
        Some(m) => Ok(m),
        None => match copier
            .source
            .manifest_fetch(ctx.repo, &Reference::Digest(p.digest.clone()))
            .await
        {
            Ok(Some(f)) => Ok(f.manifest),
            Ok(None) => {
                if let Origin::Referrer { via, .. } = &p.origin {
                    // Listings can be stale (spec notes §3.5): skip, not fail.
                    return Err(Visit::Skip(
                        CopyEvent {
                            digest: Some(p.digest.clone()),
                            kind: NodeKind::Referrer,
                            action: Action::Skip,
                            size: 0,
                            reason: format!("listed by {via} but the manifest is missing"),
                            failure: None,
                        },
                        false,
                    ));
                }
                Err(Visit::Fail(
                    p.digest.clone(),
                    CopyError::NotFound {
                        registry: copier.source.name().to_string(),
                        repo: ctx.repo.to_string(),
                        reference: p.digest.to_string(),
                    },
                ))
            }
            Err(e) => Err(Visit::Fail(
                p.digest.clone(),
                CopyError::source("fetch manifest", Some(&p.digest), e),
            )),
        },
    }
}
