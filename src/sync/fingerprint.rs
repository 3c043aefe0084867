//! The referrer set of an image's root, as one string: compared with the
//! checkpoint to skip an unchanged item at the cost of one request.

use std::collections::HashSet;

use crate::config::{CosignMode, Job, ReferrersMode};
use crate::oci::referrers::{COSIGN_SUFFIXES, cosign_tag, fallback_tag};
use crate::oci::{Digest, Reference, RepoName, Tag};
use crate::registry::Registry;

/// A fingerprint of the referrers of `digest` as the walk discovers them:
/// the referrers API list, the fallback tag and cosign's tags. Referrer tags
/// missing from `tags` (the repository's listing, when known) cost no
/// request, so an unchanged tag usually costs one request here. `None` when
/// something could not be read: the item then takes the full path.
pub(super) async fn referrers_fingerprint(
    source: &dyn Registry,
    repo: &RepoName,
    digest: &Digest,
    job: &Job,
    tags: Option<&HashSet<String>>,
) -> Option<String> {
    let options = &job.referrers;
    if !options.enabled {
        return Some("referrers-off".into());
    }
    let mut parts = Vec::new();
    if options.source_mode != ReferrersMode::Tags {
        match source.referrers_api(repo, digest).await {
            Ok(Some(mut list)) => {
                list.sort_by(|a, b| a.digest.cmp(&b.digest));
                let joined: Vec<String> = list.iter().map(|d| d.digest.to_string()).collect();
                parts.push(format!(
                    "api:{}",
                    Digest::sha256(joined.join(",").as_bytes())
                ));
            }
            Ok(None) if options.source_mode == ReferrersMode::Api => return None,
            Ok(None) => {}
            Err(_) => return None,
        }
    }
    let mut referrer_tags = Vec::new();
    if options.source_mode != ReferrersMode::Api {
        referrer_tags.push(fallback_tag(digest));
    }
    if options.cosign_tags {
        referrer_tags.extend(COSIGN_SUFFIXES.iter().map(|s| cosign_tag(digest, s)));
    }
    for tag in referrer_tags {
        if tags.is_some_and(|listed| !listed.contains(&tag)) {
            continue;
        }
        let reference = Reference::Tag(Tag::new(&tag).ok()?);
        match source.manifest_head(repo, &reference).await {
            Ok(Some(desc)) => parts.push(format!("{tag}={}", desc.digest)),
            Ok(None) => {}
            Err(_) => return None,
        }
    }
    // A conversion changes what the target gets from the same source: a
    // new mode (or keep-original) must not pass for unchanged. `keep` adds
    // nothing, so checkpoints written before conversions existed hold.
    if options.cosign != CosignMode::Keep {
        parts.push(format!(
            "cosign={}{}",
            options.cosign,
            if options.cosign_keep_original {
                "+original"
            } else {
                ""
            }
        ));
    }
    Some(format!("v2 {}", parts.join(" ")))
}
