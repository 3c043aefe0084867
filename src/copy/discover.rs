//! Finding the referrers of one manifest on the source: the referrers API,
//! the `<alg>-<hex>` fallback tag, or both (their union), plus cosign legacy
//! tags. Listing entries are only candidates: the walker fetches each one and
//! keeps it only when its `subject` is the manifest (spec notes §3.5).

use std::collections::HashSet;

use super::error::{CopyError, Limit, Side};
use super::graph::{Origin, Pending};
use super::options::ReferrersMode;
use super::report::Representation;
use super::source::SourceRepo;
use crate::oci::media_type as mt;
use crate::oci::referrers::{COSIGN_SUFFIXES, FallbackIndexError, cosign_tag, fallback_tag};
use crate::oci::{Descriptor, Digest, Reference, Tag};

/// The referrer candidates of `subject`, at referrer depth `depth`.
pub(crate) async fn discover(
    ctx: &SourceRepo<'_>,
    subject: &Digest,
    depth: usize,
) -> Result<Vec<Pending>, CopyError> {
    let copier = ctx.copier;
    let source = &copier.source;
    let opts = &copier.options;
    let layout = ctx.is_layout();
    let mut found: Vec<(Descriptor, Representation)> = Vec::new();

    if matches!(
        opts.source_referrers,
        ReferrersMode::Auto | ReferrersMode::Api
    ) {
        match source
            .referrers_api(ctx.repo, subject)
            .await
            .map_err(|e| CopyError::source("list referrers", Some(subject), e))?
        {
            Some(list) => found.extend(list.into_iter().map(|d| (d, Representation::Api))),
            None if opts.source_referrers == ReferrersMode::Api => {
                return Err(CopyError::Unsupported {
                    side: Side::Source,
                    registry: source.name().to_string(),
                    message: format!(
                        "repository {} has no referrers API (source referrers mode is api)",
                        ctx.repo
                    ),
                });
            }
            None => {}
        }
    }

    if matches!(
        opts.source_referrers,
        ReferrersMode::Auto | ReferrersMode::Tags
    ) {
        let tag = fallback_tag(subject);
        if ctx.has_tag(&tag).await != Some(false) {
            for d in read_fallback(ctx, subject, &tag).await? {
                if !found.iter().any(|(f, _)| f.digest == d.digest) {
                    found.push((d, Representation::FallbackTag));
                }
            }
        }
    }

    let max = opts.max_referrers_per_subject;
    if found.len() > max {
        return Err(CopyError::LimitExceeded {
            limit: Limit::ReferrersPerSubject,
            max: max as u64,
            registry: source.name().to_string(),
            repo: ctx.repo.to_string(),
            digest: subject.clone(),
        });
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (desc, via) in found {
        if !seen.insert(desc.digest.clone()) {
            continue;
        }
        out.push(Pending {
            digest: desc.digest.clone(),
            depth,
            nesting: 0,
            origin: Origin::Referrer {
                subject: subject.clone(),
                via: if layout { Representation::Layout } else { via },
            },
            prefetched: None,
        });
    }

    if opts.cosign_tags {
        for suffix in COSIGN_SUFFIXES {
            let tag = cosign_tag(subject, suffix);
            if ctx.has_tag(&tag).await == Some(false) {
                continue;
            }
            let Ok(t) = Tag::new(&tag) else { continue };
            let fetched = source
                .manifest_fetch(ctx.repo, &Reference::Tag(t))
                .await
                .map_err(|e| CopyError::source("fetch cosign tag", Some(subject), e))?;
            if let Some(f) = fetched {
                out.push(Pending {
                    digest: f.manifest.digest().clone(),
                    depth,
                    nesting: 0,
                    origin: Origin::Cosign { tag },
                    prefetched: Some(f.manifest),
                });
            }
        }
    }
    Ok(out)
}

/// The entries of the fallback index `tag` (empty when the tag is absent).
async fn read_fallback(
    ctx: &SourceRepo<'_>,
    subject: &Digest,
    tag: &str,
) -> Result<Vec<Descriptor>, CopyError> {
    let source = &ctx.copier.source;
    let Ok(t) = Tag::new(tag) else {
        return Ok(Vec::new());
    };
    let Some(fetched) = source
        .manifest_fetch(ctx.repo, &Reference::Tag(t))
        .await
        .map_err(|e| CopyError::source("fetch fallback index", Some(subject), e))?
    else {
        return Ok(Vec::new());
    };
    let m = fetched.manifest;
    if m.media_type() != mt::OCI_INDEX {
        return Err(CopyError::FallbackIndex {
            side: Side::Source,
            registry: source.name().to_string(),
            repo: ctx.repo.to_string(),
            tag: tag.to_string(),
            source: FallbackIndexError::NotAnIndex(m.media_type().to_string()),
        });
    }
    Ok(m.child_manifests().to_vec())
}
