//! The referrer set of an image's root, and the job settings that decide
//! what the target gets from it (cosign conversion, signature policy), as
//! one string: compared with the checkpoint to skip an unchanged item at
//! the cost of one request.

use std::collections::HashSet;

use futures::future::join_all;

use crate::config::{CosignMode, Job, ReferrersMode};
use crate::oci::referrers::{COSIGN_SUFFIXES, cosign_tag, fallback_tag};
use crate::oci::{Digest, Reference, RepoName, Tag};
use crate::registry::Registry;

/// A fingerprint of the referrers of `digest` as the walk discovers them:
/// the referrers API list, the fallback tag and cosign's tags. Referrer tags
/// missing from `tags` (the repository's listing, when known) cost no
/// request, so an unchanged tag usually costs one request here. `None` when
/// something could not be read: the item then takes the full path. An
/// active signature policy is part of it: a changed mode or key set walks
/// (and verifies) each image once more.
pub(super) async fn referrers_fingerprint(
    source: &dyn Registry,
    repo: &RepoName,
    digest: &Digest,
    job: &Job,
    tags: Option<&HashSet<String>>,
) -> Option<String> {
    let options = &job.referrers;
    if !options.enabled {
        return Some(format!("referrers-off{}", policy_part(job)));
    }
    // The referrers API list and every referrer tag are asked at once: an
    // unchanged tag then costs one round trip here, whatever the latency.
    let api = async {
        if options.source_mode == ReferrersMode::Tags {
            return Some(None);
        }
        match source.referrers_api(repo, digest).await {
            Ok(Some(mut list)) => {
                list.sort_by(|a, b| a.digest.cmp(&b.digest));
                let joined: Vec<String> = list.iter().map(|d| d.digest.to_string()).collect();
                Some(Some(format!(
                    "api:{}",
                    Digest::sha256(joined.join(",").as_bytes())
                )))
            }
            Ok(None) if options.source_mode == ReferrersMode::Api => None,
            Ok(None) => Some(None),
            Err(_) => None,
        }
    };
    let mut referrer_tags = Vec::new();
    if options.source_mode != ReferrersMode::Api {
        referrer_tags.push(fallback_tag(digest));
    }
    if options.cosign_tags {
        referrer_tags.extend(COSIGN_SUFFIXES.iter().map(|s| cosign_tag(digest, s)));
    }
    // Referrer tags missing from the listing cost no request.
    referrer_tags.retain(|tag| tags.is_none_or(|listed| listed.contains(tag)));
    let heads = join_all(referrer_tags.into_iter().map(|tag| async move {
        let reference = Reference::Tag(Tag::new(&tag).ok()?);
        match source.manifest_head(repo, &reference).await {
            Ok(Some(desc)) => Some(Some(format!("{tag}={}", desc.digest))),
            Ok(None) => Some(None),
            Err(_) => None,
        }
    }));
    let (api, heads) = futures::join!(api, heads);
    let mut parts: Vec<String> = api?.into_iter().collect();
    for head in heads {
        parts.extend(head?);
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
    Some(format!("v2 {}{}", parts.join(" "), policy_part(job)))
}

/// ` policy=<mode>-<require>:<hash>` for an active policy (the hash
/// covers the verifiers, not the rule), else nothing, so checkpoints of
/// jobs without a policy hold.
fn policy_part(job: &Job) -> String {
    let p = &job.policy;
    if p.is_active() {
        format!(" policy={}-{}:{}", p.mode, p.require, p.hash())
    } else {
        String::new()
    }
}
