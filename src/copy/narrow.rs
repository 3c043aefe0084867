//! The platform filter on a root index (`--platform-mode filter`): the
//! index is replaced by the one platform manifest kept, or by a new index
//! listing the kept entries; its own referrers no longer apply.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::discover;
use super::error::CopyError;
use super::graph::{Graph, Node, Origin, Pending};
use super::platform::{self, PlatformSpec};
use super::report::{Action, CopyEvent, NodeKind};
use super::source::SourceRepo;
use crate::oci::{Descriptor, Manifest, Reference};

/// Replaces the root index by what the platform filter keeps (`selected`,
/// not every entry): one platform manifest, or a new index listing the
/// kept entries. The index's own referrers no longer apply; they are
/// counted as dropped.
pub(crate) async fn narrow(
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
