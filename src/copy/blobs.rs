//! Blobs: HEAD the target (a size other than the descriptor's counts as
//! absent: a target must not be believed about bytes it does not hold; a
//! new repository is not asked, see `fresh`),
//! mount within one registry or from another target repository known to
//! hold the blob, else stream with digest verification.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;

use super::Copier;
use super::error::CopyError;
use super::flight::bounded;
use super::fresh::Written;
use super::report::{Action, NodeKind, Outcome};
use super::run::Run;
use crate::oci::{Descriptor, Digest, RepoName};
use crate::registry::{BlobStream, ErrorKind, Operation, RegistryError};

impl Copier {
    fn same_registry(&self) -> bool {
        Arc::ptr_eq(&self.source, &self.target) || self.source.name() == self.target.name()
    }

    async fn copy_blob(
        &self,
        src_repo: &RepoName,
        dst_repo: &RepoName,
        desc: &Descriptor,
        dry_run: bool,
        fresh: Option<&Written>,
    ) -> Result<Outcome, CopyError> {
        let d = &desc.digest;
        let _permit = self.permits.acquire().await;
        let reported = match fresh {
            // A new repository holds what this copier put there: no HEAD.
            Some(w) if w.contains(d) => return Ok(Outcome::Exists),
            Some(_) => None,
            None => self
                .target
                .blob_head(dst_repo, d)
                .await
                .map_err(|e| CopyError::target("check blob", Some(d), e))?,
        };
        match reported {
            Some(size) if size == desc.size => {
                self.target_holds(d, dst_repo);
                return Ok(Outcome::Exists);
            }
            Some(size) => {
                tracing::warn!(digest = %d, expected = desc.size, reported = size, "Target reports another blob size; uploading the blob again.");
            }
            None => {}
        }
        let lied = reported.is_some();
        let same_registry = self.same_registry() && src_repo != dst_repo;
        if dry_run {
            return Ok(Outcome::Planned {
                mount: same_registry,
            });
        }
        let mount_from = if lied {
            None
        } else if same_registry {
            Some(src_repo.clone())
        } else {
            self.target_holder(d, dst_repo)
        };
        if let Some(from) = mount_from {
            // A mount only saves a transfer: when it is declined or fails,
            // the upload below decides.
            match self.target.blob_mount(dst_repo, d, &from).await {
                Ok(true) => {
                    self.target_holds(d, dst_repo);
                    if let Some(w) = fresh {
                        w.add(d);
                    }
                    return Ok(Outcome::Mounted);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(digest = %d, from = %from, error = %e, "Mount failed; uploading instead.")
                }
            }
        }
        // The HTTP adapter retries single requests, but a streamed upload
        // cannot be replayed: a transfer cut short or corrupted on either
        // side is restarted here from a fresh source read.
        let mut attempt = 0;
        let done = loop {
            match self.transfer_blob(src_repo, dst_repo, desc).await {
                Ok(done) => break done,
                Err(e) if attempt < TRANSFER_RETRIES.len() && transient(&e) => {
                    tracing::debug!(digest = %d, error = %e, "Blob transfer failed; restarting it.");
                    tokio::time::sleep(std::time::Duration::from_millis(TRANSFER_RETRIES[attempt]))
                        .await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        if let Outcome::Copied(_) = done {
            if lied {
                self.check_uploaded_size(dst_repo, desc).await?;
            }
            self.target_holds(d, dst_repo);
            if let Some(w) = fresh {
                w.add(d);
            }
        }
        Ok(done)
    }

    /// After re-uploading a blob whose size the target misreported: the
    /// target must now report the descriptor's size.
    async fn check_uploaded_size(
        &self,
        dst_repo: &RepoName,
        desc: &Descriptor,
    ) -> Result<(), CopyError> {
        let d = &desc.digest;
        match self
            .target
            .blob_head(dst_repo, d)
            .await
            .map_err(|e| CopyError::target("check blob", Some(d), e))?
        {
            Some(size) if size != desc.size => Err(CopyError::TargetSizeMismatch {
                registry: self.target.name().to_string(),
                repo: dst_repo.to_string(),
                digest: d.clone(),
                expected: desc.size,
                reported: size,
            }),
            _ => Ok(()),
        }
    }

    /// Notes that target repository `repo` holds blob `d`.
    fn target_holds(&self, d: &Digest, repo: &RepoName) {
        self.target_blobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(d.clone())
            .or_insert_with(|| repo.clone());
    }

    /// Another target repository than `repo` known to hold blob `d`.
    fn target_holder(&self, d: &Digest, repo: &RepoName) -> Option<RepoName> {
        self.target_blobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(d)
            .filter(|holder| *holder != repo)
            .cloned()
    }

    /// One attempt at streaming a blob from the source to the target.
    async fn transfer_blob(
        &self,
        src_repo: &RepoName,
        dst_repo: &RepoName,
        desc: &Descriptor,
    ) -> Result<Outcome, CopyError> {
        let d = &desc.digest;
        let blob = match self.source.blob_get(src_repo, d).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() && !desc.urls.is_empty() => {
                return Ok(Outcome::Skipped(
                    "foreign layer not served by the source (it has urls)".into(),
                ));
            }
            Err(e) => return Err(CopyError::source("read blob", Some(d), e)),
        };
        // Verification happens once, in the source adapter: a `blob_get`
        // stream hashes the bytes as they pass and withholds its last chunk
        // unless they match the digest (and end at the announced size), so
        // no upload it feeds can complete with wrong bytes. The engine only
        // checks that the announced size is the descriptor's; the target is
        // told the body is verified and does not hash it again.
        if blob.size != desc.size {
            return Err(CopyError::source(
                "read blob",
                Some(d),
                RegistryError::new(
                    self.source.name(),
                    src_repo.as_str(),
                    Operation::BlobGet,
                    Some(d.to_string()),
                    ErrorKind::SizeMismatch {
                        expected: desc.size,
                        actual: blob.size,
                    },
                ),
            ));
        }
        let (stream, source_failure) = watch_source(blob.stream);
        if let Err(e) = self.target.blob_put_verified(dst_repo, desc, stream).await {
            // An upload that failed because its source broke off (cut, or
            // wrong bytes) is the source's failure, said as such.
            let from_source = source_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            return Err(match from_source {
                Some(src) => CopyError::source("read blob", Some(d), src),
                None => CopyError::target("upload blob", Some(d), e),
            });
        }
        Ok(Outcome::Copied(desc.size))
    }
}

/// The first error of a source stream, kept aside for the caller.
type SourceFailure = Arc<Mutex<Option<RegistryError>>>;

/// `stream` with its first error kept in the returned slot; the target
/// sees an error of its own that says the source broke off.
fn watch_source(stream: BlobStream) -> (BlobStream, SourceFailure) {
    let slot: SourceFailure = Arc::default();
    let keep = Arc::clone(&slot);
    let watched = stream.map_err(move |e| {
        let echo = RegistryError::new(
            e.registry.clone(),
            e.repo.clone(),
            e.op,
            e.target.clone(),
            ErrorKind::Transport {
                message: format!("the source stream broke off: {}", e.kind),
                retryable: true,
            },
        );
        keep.lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
        echo
    });
    (Box::pin(watched), slot)
}

/// Back-off before restarting a failed blob transfer, in milliseconds.
const TRANSFER_RETRIES: [u64; 2] = [200, 1000];

/// True for failures a fresh attempt may not meet again: retryable statuses
/// and transport errors, and bodies cut short or corrupted in transit (a
/// source that is really corrupt fails every attempt).
fn transient(e: &CopyError) -> bool {
    match e {
        CopyError::Registry { source, .. } => {
            source.is_retryable()
                || matches!(
                    source.kind,
                    ErrorKind::DigestMismatch { .. }
                        | ErrorKind::SizeMismatch { .. }
                        | ErrorKind::Transport { .. }
                )
        }
        _ => false,
    }
}

/// Phase 1: the blobs of the manifests the target lacks (of every manifest
/// with [`super::CopyOptions::recheck_present`]), deduplicated, in
/// discovery order.
pub(crate) async fn copy_blobs(run: &mut Run<'_>) {
    let graph = run.graph;
    let recheck = run.copier.options.recheck_present;
    let mut blobs: Vec<&Descriptor> = Vec::new();
    let mut seen = HashSet::new();
    for d in graph
        .order
        .iter()
        .filter(|d| recheck || !run.present.contains(*d))
    {
        if let Some(n) = graph.nodes.get(d) {
            for b in n.manifest.blobs() {
                if seen.insert(b.digest.clone()) {
                    blobs.push(b);
                }
            }
        }
    }
    for d in graph
        .order
        .iter()
        .filter(|d| !recheck && run.present.contains(*d))
    {
        if let Some(n) = graph.nodes.get(d) {
            for b in n.manifest.blobs() {
                if seen.insert(b.digest.clone()) {
                    run.report.blobs_skipped += 1;
                }
            }
        }
    }
    let (copier, src_repo, dst_repo, dry) = (run.copier, run.src_repo, run.dst_repo, run.dry);
    let fresh = run.fresh.as_deref();
    let tasks: Vec<_> = blobs
        .into_iter()
        .map(|b| async move {
            let (r, owner) = copier
                .single_flight(dst_repo, &b.digest, || {
                    copier.copy_blob(src_repo, dst_repo, b, dry, fresh)
                })
                .await;
            (b, r, owner)
        })
        .collect();
    for (b, r, owner) in bounded(tasks, run.width).await {
        let (action, reason) = match r {
            Ok(Outcome::Copied(n)) if owner => {
                run.report.blobs_copied += 1;
                run.report.bytes += n;
                (Action::Copy, String::new())
            }
            Ok(Outcome::Mounted) if owner => {
                run.report.blobs_mounted += 1;
                (Action::Mount, format!("from {src_repo}"))
            }
            Ok(Outcome::Planned { mount }) => {
                if mount {
                    (Action::Mount, format!("mount from {src_repo}, else upload"))
                } else {
                    (Action::Copy, String::new())
                }
            }
            Ok(Outcome::Skipped(why)) => (Action::Skip, why),
            Ok(_) => {
                run.report.blobs_skipped += 1;
                (Action::Exists, String::new())
            }
            Err(e) => {
                run.failed.insert(b.digest.clone());
                run.fail(Some(b.digest.clone()), NodeKind::Blob, e);
                continue;
            }
        };
        run.rec.note(
            Some(b.digest.clone()),
            NodeKind::Blob,
            action,
            b.size,
            reason,
        );
    }
}
