//! Building the graph of an image on the source: the root (tag or digest),
//! index children, and the referrers of every manifest node, recursively to
//! `max_depth`, deduplicated by digest (so loops end), each manifest read
//! once and kept in memory. Nothing is written.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::discover;
use super::platform::{self, PlatformSpec};
use super::{Action, Copier, CopyError, CopyEvent, NodeKind, PlatformMode, Representation};
use crate::oci::{Descriptor, Digest, Manifest, Reference, RepoName};

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

/// `tag` (a cosign legacy tag) points at `digest` on the source.
#[derive(Clone, Debug)]
pub(crate) struct CosignEdge {
    pub tag: String,
    pub digest: Digest,
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
    /// Cosign legacy tags to recreate.
    pub cosign: Vec<CosignEdge>,
    /// Skips decided while walking (filters, invalid listing entries).
    pub events: Vec<CopyEvent>,
    /// Referrers left out by filters.
    pub filtered: u64,
    /// Nodes (or listings) that could not be read, with why.
    pub failures: Vec<(Option<Digest>, CopyError)>,
    /// Digests that could not be read: whatever needs them is not copied.
    pub unreadable: HashSet<Digest>,
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
    pub depth: usize,
    pub origin: Origin,
    /// Already fetched during discovery (cosign tags are read by tag).
    pub prefetched: Option<Manifest>,
}

/// State shared by one walk.
pub(crate) struct WalkCtx<'a> {
    pub copier: &'a Copier,
    pub repo: &'a RepoName,
    /// The source repository's tags, listed once per copier (shared by the
    /// images of one run): fallback and cosign tags are read only when
    /// listed. `None` when listing failed (then probed).
    tags: Arc<OnceCell<Option<Arc<HashSet<String>>>>>,
}

impl WalkCtx<'_> {
    /// `Some(true/false)` when the tag list is known, `None` to probe.
    pub async fn has_tag(&self, tag: &str) -> Option<bool> {
        let tags = self
            .tags
            .get_or_init(|| async {
                match self.copier.source.tags(self.repo).await {
                    Ok(t) => Some(Arc::new(t.into_iter().collect())),
                    Err(e) if e.is_not_found() => Some(Arc::default()),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list source tags; probing referrer tags one by one");
                        None
                    }
                }
            })
            .await;
        tags.as_ref().map(|t| t.contains(tag))
    }

    /// True when the source is an OCI layout directory.
    pub fn source_is_layout(&self) -> bool {
        self.copier.source.is_layout()
    }
}

enum Visit {
    Node {
        node: Box<Node>,
        digest: Digest,
        origin: Origin,
        next: Vec<Pending>,
        discovery_error: Option<CopyError>,
    },
    Skip(CopyEvent, bool),
    Fail(Digest, CopyError),
}

/// Walks the graph of `reference` in `repo` on the copier's source.
pub(crate) async fn walk(
    copier: &Copier,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Graph, CopyError> {
    let ctx = WalkCtx {
        copier,
        repo,
        tags: copier
            .source_tags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(repo.clone())
            .or_default()
            .clone(),
    };
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
    let mut graph = Graph {
        root: root_manifest.digest().clone(),
        nodes: HashMap::new(),
        order: Vec::new(),
        referrers: Vec::new(),
        cosign: Vec::new(),
        events: Vec::new(),
        filtered: 0,
        failures: Vec::new(),
        unreadable: HashSet::new(),
    };
    let opts = &copier.options;
    let mut visited: HashSet<Digest> = HashSet::new();
    let mut frontier: Vec<Pending> = Vec::new();

    if opts.platform_mode == PlatformMode::Filter
        && !opts.platforms.is_empty()
        && root_manifest.is_index()
    {
        let selected: Vec<Descriptor> =
            platform::select_entries(root_manifest.child_manifests(), &opts.platforms)
                .into_iter()
                .cloned()
                .collect();
        let platforms_only: Vec<&Descriptor> = selected
            .iter()
            .filter(|d| !platform::is_attestation_entry(d))
            .collect();
        if platforms_only.is_empty() {
            return Err(CopyError::NoPlatformMatch {
                registry: source.name().to_string(),
                repo: repo.to_string(),
                reference: reference.to_string(),
                wanted: opts
                    .platforms
                    .iter()
                    .map(PlatformSpec::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            });
        }
        // The platform filter replaces the index (new digest or a platform
        // manifest), so the index's own referrers no longer apply.
        graph.events.push(CopyEvent {
            digest: Some(root_manifest.digest().clone()),
            kind: NodeKind::Index,
            action: Action::Skip,
            size: root_manifest.bytes().len() as u64,
            reason: "index narrowed by --platform-mode filter; its referrers are not copied".into(),
        });
        visited.insert(root_manifest.digest().clone());
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
                    });
                }
            }
            graph.root = only.digest.clone();
            frontier.push(Pending {
                digest: only.digest.clone(),
                depth: 0,
                origin: Origin::Root,
                prefetched: None,
            });
        } else {
            let narrowed = narrowed_index(&root_manifest, &selected)?;
            graph.root = narrowed.digest().clone();
            // The new index is nobody's subject: no referrer discovery for it.
            visited.insert(narrowed.digest().clone());
            for d in &selected {
                frontier.push(Pending {
                    digest: d.digest.clone(),
                    depth: 0,
                    origin: Origin::Child,
                    prefetched: None,
                });
            }
            graph.order.push(narrowed.digest().clone());
            graph.nodes.insert(
                narrowed.digest().clone(),
                Node {
                    manifest: narrowed,
                    kind: NodeKind::Index,
                },
            );
        }
        for d in root_manifest.child_manifests() {
            if !selected.iter().any(|s| s.digest == d.digest) {
                graph.events.push(CopyEvent {
                    digest: Some(d.digest.clone()),
                    kind: NodeKind::Manifest,
                    action: Action::Skip,
                    size: d.size,
                    reason: "platform not selected".into(),
                });
            }
        }
    } else {
        frontier.push(Pending {
            digest: root_manifest.digest().clone(),
            depth: 0,
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
                        graph.failures.push((Some(digest.clone()), e));
                    }
                    visited.insert(digest.clone());
                    if graph.nodes.contains_key(&digest) {
                        // Reached twice in one round: expanded already.
                        continue;
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
                    graph.failures.push((Some(digest), e));
                }
            }
        }
    }
    Ok(graph)
}

/// Reads one pending node, checks it, and lists what it leads to.
async fn visit(ctx: &WalkCtx<'_>, p: Pending) -> Visit {
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
    // Referrers and cosign attachments pass the artifact-type and
    // annotation filters; images and their children always go.
    if matches!(p.origin, Origin::Referrer { .. } | Origin::Cosign { .. })
        && let Some(why) = filter_reason(opts, &manifest.referrer_descriptor())
    {
        return skip(kind, why, true);
    }
    let mut next: Vec<Pending> = manifest
        .child_manifests()
        .iter()
        .map(|d| Pending {
            digest: d.digest.clone(),
            depth: p.depth,
            origin: Origin::Child,
            prefetched: None,
        })
        .collect();
    let mut discovery_error = None;
    if opts.referrers && p.depth < opts.max_depth {
        match discover::discover(ctx, &digest, p.depth + 1).await {
            Ok(found) => next.extend(found),
            Err(e) => discovery_error = Some(e),
        }
    }
    Visit::Node {
        node: Box::new(Node { manifest, kind }),
        digest,
        origin: p.origin,
        next,
        discovery_error,
    }
}

/// Why the filters leave a referrer out, or `None` to copy it.
pub(crate) fn filter_reason(opts: &super::CopyOptions, desc: &Descriptor) -> Option<String> {
    let at = desc.artifact_type.as_deref().unwrap_or("");
    if !opts.artifact_types_include.is_empty()
        && !opts.artifact_types_include.iter().any(|t| t == at)
    {
        return Some(format!("artifactType {at:?} not included"));
    }
    if opts.artifact_types_exclude.iter().any(|t| t == at) {
        return Some(format!("artifactType {at:?} excluded"));
    }
    for m in &opts.annotations {
        match (desc.annotations.get(&m.key), &m.value) {
            (None, _) => return Some(format!("annotation {} absent", m.key)),
            (Some(v), Some(want)) if v != want => {
                return Some(format!("annotation {}={v:?}, wanted {want:?}", m.key));
            }
            _ => {}
        }
    }
    None
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
