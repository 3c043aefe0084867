//! Converting cosign attachments between legacy tags and OCI 1.1 referrers
//! ([`CopyOptions::cosign`]). The walked graph is rewritten before anything
//! is written: a converted manifest becomes a node like any other (its
//! blobs are the original's, copied from the source as usual), with a
//! referrer edge (to-referrers) or a cosign tag edge (to-tags), so the
//! phases publish it in whatever form the target supports, fallback tags
//! included. The original goes unless it is kept on request or because
//! something in the graph refers to it (a signature on an SBOM names the
//! SBOM's digest, which a conversion would change).
//!
//! The shapes themselves are [`crate::oci::cosign`]'s.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use super::error::CopyError;
use super::graph::{CosignEdge, Graph, Node, ReferrerEdge};
use super::options::{CopyOptions, CosignMode};
use super::report::{Action, NodeKind, Outcome, Representation};
use super::run::Run;
use crate::oci::cosign::{Attachment, CosignError, to_legacy, to_referrer};
use crate::oci::referrers::cosign_tag;
use crate::oci::{Descriptor, Digest, Manifest};

/// One manifest written in the other cosign form.
#[derive(Clone, Debug)]
pub(crate) struct Conversion {
    /// [`CosignMode::ToReferrers`] or [`CosignMode::ToTags`].
    pub direction: CosignMode,
    /// The source manifests it replaces (several when referrers merge).
    pub from: Vec<Digest>,
    /// The converted manifest.
    pub to: Digest,
    /// The source form, for plans: `cosign tag sha256-….sig`, `referrer`.
    pub what: String,
}

/// Rewrites `graph` as `opts.cosign` asks; manifests that cannot be
/// converted stay as they are and are reported as failures by digest.
pub(crate) fn convert(graph: &mut Graph, opts: &CopyOptions) {
    let keep = opts.cosign_keep_original;
    match opts.cosign {
        CosignMode::Keep => {}
        CosignMode::ToReferrers => to_referrers(graph, keep),
        CosignMode::ToTags => to_tags(graph, keep),
    }
}

/// Digests something in the graph names as its subject.
fn subjects(graph: &Graph) -> HashSet<Digest> {
    let referrers = graph.referrers.iter().map(|e| e.subject.clone());
    referrers
        .chain(graph.cosign.iter().map(|c| c.subject.clone()))
        .collect()
}

fn failed(graph: &mut Graph, digest: &Digest, what: &str, source: CosignError) {
    let e = CopyError::Cosign {
        what: what.to_string(),
        source,
    };
    graph.failures.push((Some(digest.clone()), Arc::new(e)));
}

fn add_node(graph: &mut Graph, manifest: Manifest, kind: NodeKind) -> Digest {
    let d = manifest.digest().clone();
    if !graph.nodes.contains_key(&d) {
        graph.order.push(d.clone());
        graph.nodes.insert(d.clone(), Node { manifest, kind });
    }
    d
}

/// Drops the nodes in `gone` that no edge of the graph needs any more.
fn remove_unused(graph: &mut Graph, gone: HashSet<Digest>) {
    let needed: HashSet<&Digest> = graph
        .referrers
        .iter()
        .flat_map(|e| [&e.referrer, &e.subject])
        .chain(graph.cosign.iter().flat_map(|c| [&c.digest, &c.subject]))
        .chain(std::iter::once(&graph.root))
        .collect();
    let gone: HashSet<Digest> = gone.into_iter().filter(|d| !needed.contains(d)).collect();
    graph.order.retain(|d| !gone.contains(d));
    graph.nodes.retain(|d, _| !gone.contains(d));
}

fn subject_descriptor(graph: &Graph, subject: &Digest) -> Option<Descriptor> {
    graph.nodes.get(subject).map(|n| n.manifest.descriptor())
}

/// Every legacy tag manifest becomes a referrer of its subject.
fn to_referrers(graph: &mut Graph, keep: bool) {
    let referred = subjects(graph);
    let mut gone = HashSet::new();
    let mut kept = Vec::new();
    for c in std::mem::take(&mut graph.cosign) {
        let what = format!("cosign tag {}", c.tag);
        let (Some(kind), Some(node), Some(subject)) = (
            Attachment::of_tag(&c.tag),
            graph.nodes.get(&c.digest),
            subject_descriptor(graph, &c.subject),
        ) else {
            kept.push(c);
            continue;
        };
        match to_referrer(&node.manifest, kind, &subject) {
            Ok(m) => {
                let to = add_node(graph, m, NodeKind::Referrer);
                graph.referrers.push(ReferrerEdge {
                    subject: c.subject.clone(),
                    referrer: to.clone(),
                    via: Representation::CosignTag,
                });
                graph.conversions.push(Conversion {
                    direction: CosignMode::ToReferrers,
                    from: vec![c.digest.clone()],
                    to,
                    what,
                });
                if keep || referred.contains(&c.digest) {
                    kept.push(c);
                } else {
                    gone.insert(c.digest);
                }
            }
            Err(e) => {
                failed(graph, &c.digest, &what, e);
                kept.push(c);
            }
        }
    }
    graph.cosign = kept;
    remove_unused(graph, gone);
}

/// The cosign OCI 1.1 referrers of each subject and kind become one legacy
/// tag manifest; a legacy tag of the same subject and kind already on the
/// source is merged in (the tag can hold only one manifest).
fn to_tags(graph: &mut Graph, keep: bool) {
    let referred = subjects(graph);
    let mut groups: BTreeMap<(Digest, Attachment), Vec<(Digest, Representation)>> = BTreeMap::new();
    for e in &graph.referrers {
        let Some(node) = graph.nodes.get(&e.referrer) else {
            continue;
        };
        if let Some(kind) = Attachment::of_referrer(&node.manifest) {
            groups
                .entry((e.subject.clone(), kind))
                .or_default()
                .push((e.referrer.clone(), e.via));
        }
    }
    let mut gone = HashSet::new();
    for ((subject, kind), members) in groups {
        let tag = cosign_tag(&subject, kind.suffix());
        let what = format!("{} cosign {} referrer(s)", members.len(), kind.suffix());
        let Some(subject_desc) = subject_descriptor(graph, &subject) else {
            continue;
        };
        let mut manifests: Vec<Manifest> = members
            .iter()
            .filter_map(|(d, _)| graph.nodes.get(d).map(|n| n.manifest.clone()))
            .collect();
        let legacy = graph.cosign.iter().position(|c| c.tag == tag);
        if let Some(i) = legacy
            && let Some(node) = graph.nodes.get(&graph.cosign[i].digest)
        {
            match to_referrer(&node.manifest, kind, &subject_desc) {
                Ok(m) => manifests.push(m),
                Err(e) => {
                    let d = graph.cosign[i].digest.clone();
                    failed(graph, &d, &format!("cosign tag {tag}"), e);
                    continue;
                }
            }
        }
        let refs: Vec<&Manifest> = manifests.iter().collect();
        let built = match to_legacy(&refs) {
            Ok(b) => b,
            Err(e) => {
                failed(graph, &members[0].0, &what, e);
                continue;
            }
        };
        if let Some(config) = built.config {
            graph.generated_blobs.push(config);
        }
        let to = add_node(graph, built.manifest, NodeKind::Cosign);
        if let Some(i) = legacy {
            // The tag now points at the merged manifest.
            let old = graph.cosign.remove(i);
            if !keep && old.digest != to {
                gone.insert(old.digest);
            }
        }
        graph.cosign.push(CosignEdge {
            tag,
            digest: to.clone(),
            subject: subject.clone(),
            via: members[0].1,
        });
        let from: Vec<Digest> = members.iter().map(|(d, _)| d.clone()).collect();
        if !keep {
            let drop: HashSet<&Digest> = from.iter().filter(|d| !referred.contains(*d)).collect();
            graph.referrers.retain(|e| !drop.contains(&e.referrer));
            gone.extend(drop.into_iter().cloned());
        }
        graph.conversions.push(Conversion {
            direction: CosignMode::ToTags,
            from,
            to,
            what,
        });
    }
    remove_unused(graph, gone);
}

/// Before the blob phase: uploads the config blobs that merging referrers
/// made (they exist on no source), so the blob phase finds them on the
/// target like any other.
pub(crate) async fn put_generated_blobs(run: &mut Run<'_>) {
    if run.dry {
        return;
    }
    let (copier, dst_repo) = (run.copier, run.dst_repo);
    for (desc, bytes) in &run.graph.generated_blobs {
        let body: crate::registry::BlobStream =
            Box::pin(futures::stream::iter([Ok::<Bytes, _>(bytes.clone())]));
        let _permit = copier.permits.acquire().await;
        match copier.target.blob_put(dst_repo, desc, body).await {
            Ok(()) => run.holds(&desc.digest),
            Err(e) => {
                let e = CopyError::target("upload converted config", Some(&desc.digest), e);
                run.fail(Some(desc.digest.clone()), NodeKind::Blob, Arc::new(e));
            }
        }
    }
}

/// After the tags: says and counts each conversion that was written (or,
/// in a plan, would be); one already on the target is no conversion, so a
/// repeated run converts nothing.
pub(crate) fn report_conversions(run: &mut Run<'_>) {
    for c in &run.graph.conversions {
        let planned = match run.outcomes.get(&c.to) {
            Some(Outcome::Put { .. }) => false,
            Some(Outcome::Planned { .. }) => true,
            _ => continue,
        };
        if !planned {
            match c.direction {
                CosignMode::ToReferrers => run.report.cosign_to_referrers += 1,
                CosignMode::ToTags => run.report.cosign_to_tags += 1,
                CosignMode::Keep => {}
            }
        }
        let from: Vec<String> = c.from.iter().map(ToString::to_string).collect();
        let to = match c.direction {
            CosignMode::ToTags => "cosign tag",
            _ => "OCI 1.1 referrer",
        };
        let why = format!("converted {} ({}) to {to}", c.what, from.join(", "));
        let size = run
            .graph
            .nodes
            .get(&c.to)
            .map_or(0, |n| n.manifest.bytes().len() as u64);
        let kind = match c.direction {
            CosignMode::ToTags => NodeKind::Cosign,
            _ => NodeKind::Referrer,
        };
        run.rec
            .note(Some(c.to.clone()), kind, Action::Convert, size, why);
    }
}
