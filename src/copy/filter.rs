//! The referrer filters: which referrers (and cosign attachments) a copy
//! leaves out, by artifact type, by kind ([`ReferrerKind`]) and by
//! annotation. An include list of types and one of kinds add up (a referrer
//! passes when either names it); every exclude list and every annotation
//! must pass too. What is left out is counted in
//! [`super::CopyReport::filtered`], never as a failure.

use super::options::CopyOptions;
use crate::oci::{Manifest, ReferrerKind};

/// Why the filters leave `manifest` (a referrer) out, or `None` to copy it.
pub(crate) fn filter_reason(opts: &CopyOptions, manifest: &Manifest) -> Option<String> {
    let desc = manifest.referrer_descriptor();
    let at = desc.artifact_type.as_deref().unwrap_or("");
    let kind = ReferrerKind::of(manifest);
    let includes = !opts.artifact_types_include.is_empty() || !opts.kinds_include.is_empty();
    if includes
        && !opts.artifact_types_include.iter().any(|t| t == at)
        && !opts.kinds_include.contains(&kind)
    {
        return Some(format!("{kind} (artifactType {at:?}) not included"));
    }
    if opts.artifact_types_exclude.iter().any(|t| t == at) {
        return Some(format!("artifactType {at:?} excluded"));
    }
    if opts.kinds_exclude.contains(&kind) {
        return Some(format!("{kind} (artifactType {at:?}) excluded"));
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
