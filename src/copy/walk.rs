//! Building the graph of an image on the source: the root (tag or digest),
//! index children, and the referrers of every manifest node, recursively to
//! `max_depth`, deduplicated by digest (so loops end), each manifest read
//! once and kept in memory. Nothing is written.
//!
//! The walk is breadth-first and iterative, and bounded by the options'
//! limits (index nesting, nodes, manifest bytes, referrers per subject): a
//! hostile source ends the image with [`CopyError::LimitExceeded`] after a
//! bounded amount of work, before anything is written.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;

use super::Copier;
use super::discover;
use super::error::{CopyError, Limit};
use super::filter::filter_reason;
use super::graph::{CosignEdge, Graph, Node, Origin, Pending, ReferrerEdge};
use super::options::{CopyOptions, PlatformMode};
use super::platform::{self, PlatformSpec};
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

/// Counts against the per-image limits while walking.
struct Budget<'a> {
    opts: &'a CopyOptions,
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
        self.check_nodes(queued, digest)
    }

    fn check_nodes(&self, queued: usize, digest: &Digest) -> Result<(), CopyError> {
        let max = self.opts.max_nodes;
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
    let fetched = source
        .manifest_fetch(repo, reference)
        .await
        .map_err(|e| CopyError::source("fetch manifest", None, e))?
        .ok_or_else(|| CopyError::NotFound {
            registry: source.name().to_string(),
            repo: repo.to_string(),
            reference: reference.to_string(),
        })?;
    let root_manifest = fetched.manifest;
    let mut graph = Graph::new(root_manifest.digest().clone());
    let opts = &copier.options;
    let mut budget = Budget {
        opts,
        registry: source.name(),
        repo,
        blobs: HashSet::new(),
        manifest_bytes: 0,
    };
    let mut visited: HashSet<Digest> = HashSet::new();
    let mut frontier: Vec<Pending> = Vec::new();

    let narrowing = opts.platform_mode == PlatformMode::Filter
        && !opts.platforms.is_empty()
        && root_manifest.is_index();
    let selected: Vec<Descriptor> = if narrowing {
        platform::select_entries(root_manifest.child_manifests(), &opts.platforms)
            .into_iter()
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    // A filter that keeps every entry removes nothing: the index stays
    // digest-exact, with its referrers.
    if narrowing && selected.len() < root_manifest.child_manifests().len() {
        narrow(
            &ctx,
            &root_manifest,
            selected,
            reference,
            &mut graph,
            &mut frontier,
        )
        .await?;
        visited.extend(graph.order.iter().cloned());
        visited.insert(root_manifest.digest().clone());
    } else {
        frontier.push(Pending {
            digest: root_manifest.digest().clone(),
            depth: 0,
            nesting: 0,
            origin: Origin::Root,
            prefetched: Some(root_manifest),
        });
    }
    for p in &frontier {
        visited.insert(p.digest.clone());
    }

    // A referrer candidate is fetched once per subject claiming it: a wrong
    // listing (rejected by the subject check) must not hide the right one.
    let mut claimed: HashSet<(Digest, Digest)> = HashSet::new();
    while !frontier.is_empty() {
        let visits: Vec<Visit> = futures::stream::iter(std::mem::take(&mut frontier))
            .map(|p| visit(&ctx, p))
            .buffered(opts.concurrency.max(1))
            .collect()
            .await;
        for v in visits {
            match v {
                Visit::Node {
                    node,
                    digest,
                    origin,
                    next,
                    discovery_error,
                    listed,
                } => {
                    if let Origin::Referrer { subject, via } = origin {
                        // The walker checked that `subject` is its subject.
                        graph.referrers.push(ReferrerEdge {
                            subject,
                            referrer: digest.clone(),
                            via,
                        });
                    }
                    match discovery_error {
                        Some(e @ CopyError::LimitExceeded { .. }) => return Err(e),
                        Some(e) => graph.failures.push((Some(digest.clone()), Arc::new(e))),
                        None => {}
                    }
                    visited.insert(digest.clone());
                    if graph.nodes.contains_key(&digest) {
                        // Reached twice in one round: expanded already.
                        continue;
                    }
                    if listed {
                        graph.listed.push(digest.clone());
                    }
                    for p in next {
                        match &p.origin {
                            Origin::Referrer { subject, .. } => {
                                if graph.nodes.contains_key(&p.digest)
                                    || !claimed.insert((p.digest.clone(), subject.clone()))
                                {
                                    continue;
                                }
                            }
                            Origin::Cosign { tag } => {
                                // The tag is recreated whenever its manifest is copied.
                                graph.cosign.push(CosignEdge {
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
                        frontier.push(p);
                    }
                    let queued = graph.nodes.len() + 1 + frontier.len();
                    budget.charge(&node, &digest, queued)?;
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
                Visit::Abort(e) => return Err(e),
            }
        }
    }
    Ok(graph)
}

/// Replaces the root index by what the platform filter keeps (`selected`,
/// not every entry): one platform manifest, or a new index listing the
/// kept entries. The index's own referrers no longer apply; they are
/// counted as dropped.
async fn narrow(
    ctx: &SourceRepo<'_>,
    index: &Manifest,
    selected: Vec<Descriptor>,
    reference: &Reference,
    graph: &mut Graph,
    frontier: &mut Vec<Pending>,
) -> Result<(), CopyError> {
    let opts = &ctx.copier.options;
    let platforms_only: Vec<&Descriptor> = selected
        .iter()
        .filter(|d| !platform::is_attestation_entry(d))
        .collect();
    if platforms_only.is_empty() {
        return Err(CopyError::NoPlatformMatch {
            registry: ctx.copier.source.name().to_string(),
            repo: ctx.repo.to_string(),
            reference: reference.to_string(),
            wanted: opts
                .platforms
                .iter()
                .map(PlatformSpec::to_string)
                .collect::<Vec<_>>()
                .join(","),
        });
    }
    if opts.referrers {
        match discover::discover(ctx, index.digest(), 1).await {
            Ok(found) => graph.dropped = found.len() as u64,
            Err(e @ CopyError::LimitExceeded { .. }) => return Err(e),
            Err(e) => graph
                .failures
                .push((Some(index.digest().clone()), Arc::new(e))),
        }
    }
    graph.events.push(CopyEvent {
        digest: Some(index.digest().clone()),
        kind: NodeKind::Index,
        action: Action::Skip,
        size: index.bytes().len() as u64,
        reason: format!(
            "index narrowed by --platform-mode filter; its {} referrers are not copied",
            graph.dropped
        ),
        failure: None,
    });
    if platforms_only.len() == 1 {
        // One platform: the tag points at it, digest-exact.
        let only = platforms_only[0].clone();
        for d in &selected {
            if d.digest != only.digest {
                graph.events.push(CopyEvent {
                    digest: Some(d.digest.clone()),
                    kind: NodeKind::Manifest,
                    action: Action::Skip,
                    size: d.size,
                    reason: "attestation manifest: no index left to hold it".into(),
                    failure: None,
                });
            }
        }
        graph.root = only.digest.clone();
        frontier.push(Pending {
            digest: only.digest.clone(),
            depth: 0,
            nesting: 0,
            origin: Origin::Root,
            prefetched: None,
        });
    } else {
        let narrowed = narrowed_index(index, &selected)?;
        graph.root = narrowed.digest().clone();
        for d in &selected {
            frontier.push(Pending {
                digest: d.digest.clone(),
                depth: 0,
                nesting: 1,
                origin: Origin::Child,
                prefetched: None,
            });
        }
        // The new index is nobody's subject: no referrer discovery for it.
        graph.order.push(narrowed.digest().clone());
        graph.nodes.insert(
            narrowed.digest().clone(),
            Node {
                manifest: narrowed,
                kind: NodeKind::Index,
            },
        );
    }
    for d in index.child_manifests() {
        if !selected.iter().any(|s| s.digest == d.digest) {
            graph.events.push(CopyEvent {
                digest: Some(d.digest.clone()),
                kind: NodeKind::Manifest,
                action: Action::Skip,
                size: d.size,
                reason: "platform not selected".into(),
                failure: None,
            });
        }
    }
    Ok(())
}

/// Reads one pending node, checks it, and lists what it leads to.
async fn visit(ctx: &SourceRepo<'_>, p: Pending) -> Visit {
    let copier = ctx.copier;
    let opts = &copier.options;
    let manifest = match p.prefetched {
        Some(m) => m,
        None => match copier
            .source
            .manifest_fetch(ctx.repo, &Reference::Digest(p.digest.clone()))
            .await
        {
            Ok(Some(f)) => f.manifest,
            Ok(None) => {
                if let Origin::Referrer { via, .. } = &p.origin {
                    // Listings can be stale (spec notes §3.5): skip, not fail.
                    return Visit::Skip(
                        CopyEvent {
                            digest: Some(p.digest.clone()),
                            kind: NodeKind::Referrer,
                            action: Action::Skip,
                            size: 0,
                            reason: format!("listed by {via} but the manifest is missing"),
                            failure: None,
                        },
                        false,
                    );
                }
                return Visit::Fail(
                    p.digest.clone(),
                    CopyError::NotFound {
                        registry: copier.source.name().to_string(),
                        repo: ctx.repo.to_string(),
                        reference: p.digest.to_string(),
                    },
                );
            }
            Err(e) => {
                return Visit::Fail(
                    p.digest.clone(),
                    CopyError::source("fetch manifest", Some(&p.digest), e),
                );
            }
        },
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
    if opts.referrers && p.depth < opts.max_depth {
        match discover::discover(ctx, &digest, p.depth + 1).await {
            Ok(found) => {
                next.extend(found);
                listed = true;
            }
            Err(e) => discovery_error = Some(e),
        }
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

/// The index with only `keep` in its `manifests`, every other field as it
/// was (a new digest).
fn narrowed_index(index: &Manifest, keep: &[Descriptor]) -> Result<Manifest, CopyError> {
    let mut v: serde_json::Map<String, Value> = serde_json::from_slice(index.bytes())
        .map_err(|e| CopyError::BuildIndex(crate::oci::ManifestError::InvalidJson(e)))?;
    let entries: Vec<Value> = match v.remove("manifests") {
        Some(Value::Array(all)) => all
            .into_iter()
            .filter(|e| {
                e.get("digest")
                    .and_then(Value::as_str)
                    .is_some_and(|d| keep.iter().any(|k| k.digest.to_string() == d))
            })
            .collect(),
        _ => Vec::new(),
    };
    v.insert("manifests".into(), Value::Array(entries));
    let bytes = serde_json::to_vec(&Value::Object(v))
        .map_err(|e| CopyError::BuildIndex(crate::oci::ManifestError::InvalidJson(e)))?;
    Ok(Manifest::parse_with(
        Bytes::from(bytes),
        Some(index.media_type()),
        index.digest().algorithm(),
    )?)
}
