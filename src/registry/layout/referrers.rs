//! Referrers in a layout. The image-spec defines no place for them (spec
//! notes §7): regclient keeps a `sha256-<hex>` fallback tag in `index.json`,
//! oras-go only lists every manifest there. Reading merges both, so a layout
//! from either tool answers like a registry with the referrers API, whatever
//! adapter opened it and whatever discovery mode the reader uses.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{LayoutRegistry, index};
use crate::oci::media_type as mt;
use crate::oci::referrers::fallback_tag;
use crate::oci::{Descriptor, Digest, Reference, RepoName, Tag};
use crate::registry::{ErrorKind, Operation, Registry, RegistryError};

/// A file that is no usable manifest (not one, damaged, a FIFO, a link out
/// of the layout), as opposed to a failing file system.
fn unreadable(e: &RegistryError) -> bool {
    match &e.kind {
        ErrorKind::Manifest(_) | ErrorKind::DigestMismatch { .. } => true,
        ErrorKind::Io(io) => super::fs::unsafe_path(io).is_some(),
        _ => false,
    }
}

impl LayoutRegistry {
    /// Referrers of `subject`: the subject scan, then the entries of the
    /// fallback tag the scan did not find (a referrer listed only there),
    /// without duplicates. Entries are candidates: readers check each
    /// manifest's `subject` (spec notes §3.5). A directory that is not a
    /// layout (yet) has none.
    pub(super) async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let mut found = self.referrers_by_scan(repo, subject).await?;
        let Ok(tag) = Tag::new(&fallback_tag(subject)) else {
            return Ok(found);
        };
        let fallback = match self.manifest_fetch(repo, &Reference::Tag(tag)).await {
            Ok(f) => f,
            // An unreadable fallback index counts as none (spec notes §3.5);
            // the scan stands.
            Err(e) if unreadable(&e) => {
                tracing::warn!(error = %e, "ignoring unreadable fallback index in layout");
                None
            }
            Err(e) => return Err(e),
        };
        if let Some(f) = fallback.filter(|f| f.manifest.media_type() == mt::OCI_INDEX) {
            for d in f.manifest.child_manifests() {
                if !found.iter().any(|x| x.digest == d.digest) {
                    found.push(d.clone());
                }
            }
        }
        Ok(found)
    }

    /// Referrers of `subject` found by reading every manifest listed in
    /// `index.json` and keeping those whose `subject` is `subject`. Listed
    /// manifests whose blob is missing, unreadable or not a manifest are
    /// skipped. The scan is done once per version of `index.json` and
    /// answers every subject.
    pub async fn referrers_by_scan(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let op = Operation::Referrers;
        let dir = self.dir(repo, op).await?;
        let Some(index) = self
            .index(&dir, repo, op, Some(subject.to_string()))
            .await?
        else {
            return Ok(Vec::new());
        };
        if let Some(map) = index::cached_subjects(&dir, &index).await {
            return Ok(map.get(subject).cloned().unwrap_or_default());
        }
        let mut seen = BTreeSet::new();
        let mut map = index::SubjectMap::new();
        for entry in index.descriptors() {
            if !mt::is_manifest(&entry.media_type) || !seen.insert(entry.digest.clone()) {
                continue;
            }
            let manifest = match self
                .read_manifest(&dir, repo, op, &entry.digest, Some(&entry.media_type))
                .await
            {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                // One bad file must not hide every other referrer.
                Err(e) if unreadable(&e) => {
                    tracing::warn!(error = %e, "skipping unreadable manifest in layout scan");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(s) = manifest.subject() {
                map.entry(s.digest.clone())
                    .or_default()
                    .push(manifest.referrer_descriptor());
            }
        }
        let out = map.get(subject).cloned().unwrap_or_default();
        index::store_subjects(&dir, &index, Arc::new(map)).await;
        Ok(out)
    }
}
