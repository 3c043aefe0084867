//! Copy mechanics: blobs (HEAD the target, mount within one registry or from
//! another target repository known to hold the blob, else
//! stream with digest verification), manifests bottom-up with their exact
//! bytes, then publication of referrers, cosign tags and the image tag.
//!
//! Every transfer takes one permit of the copier's semaphore and gives it
//! back before anything else waits on it; a digest already in flight for the
//! same target repository is awaited, not transferred twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::Flight;
use super::walk::Graph;
use super::{
    Action, Copier, CopyError, CopyEvent, CopyReport, NodeKind, Recorder, Representation, publish,
};
use crate::oci::{Descriptor, Digest, Manifest, Reference, RepoName, Tag};
use crate::registry::stream::{StreamContext, verify};

/// What happened to one blob or manifest on the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Uploaded, with the bytes sent.
    Copied(u64),
    /// Mounted from the source repository.
    Mounted,
    /// Already there.
    Exists,
    /// Manifest written; whether the target indexed its subject.
    Put { subject_indexed: bool, size: u64 },
    /// Dry run: would be copied (or mounted, when `mount`).
    Planned { mount: bool },
    /// Not copied on purpose (a foreign layer the source does not serve).
    Skipped(String),
}

impl Copier {
    /// Runs `work` unless another task is already doing (or did) it for the
    /// same (repository, digest); then takes that task's outcome instead. If
    /// the task doing it is cancelled, the next waiter does the work itself.
    /// Returns the outcome and whether this call did the work.
    async fn single_flight<F, Fut>(
        &self,
        repo: &RepoName,
        digest: &Digest,
        work: F,
    ) -> (Result<Outcome, CopyError>, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Outcome, CopyError>>,
    {
        let key = (repo.clone(), digest.clone());
        let cell: Flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        // Set only when this call ran `work`: keeps its typed error.
        let mine: std::sync::Mutex<Option<Result<Outcome, CopyError>>> =
            std::sync::Mutex::new(None);
        let shared = cell
            .get_or_init(|| async {
                let result = work().await;
                let shared = match &result {
                    Ok(o) => Ok(o.clone()),
                    Err(e) => Err(e.to_string()),
                };
                *mine.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                shared
            })
            .await
            .clone();
        let mine = mine.into_inner().unwrap_or_else(|e| e.into_inner());
        match mine {
            Some(result) => {
                // A success is remembered for the copier's lifetime (later
                // images sharing the digest skip it); a failure is forgotten
                // so the next attempt tries again.
                if result.is_err() {
                    self.in_flight
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&key);
                }
                (result, true)
            }
            None => (
                shared.map_err(|message| CopyError::InFlight {
                    digest: digest.clone(),
                    message,
                }),
                false,
            ),
        }
    }

    fn same_registry(&self) -> bool {
        Arc::ptr_eq(&self.source, &self.target) || self.source.name() == self.target.name()
    }

    async fn copy_blob(
        &self,
        src_repo: &RepoName,
        dst_repo: &RepoName,
        desc: &Descriptor,
        dry_run: bool,
    ) -> Result<Outcome, CopyError> {
        let d = &desc.digest;
        let _permit = self.permits.acquire().await;
        if self
            .target
            .blob_head(dst_repo, d)
            .await
            .map_err(|e| CopyError::target("check blob", Some(d), e))?
            .is_some()
        {
            self.target_holds(d, dst_repo);
            return Ok(Outcome::Exists);
        }
        let same_registry = self.same_registry() && src_repo != dst_repo;
        if dry_run {
            return Ok(Outcome::Planned {
                mount: same_registry,
            });
        }
        let mount_from = if same_registry {
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
        loop {
            match self.transfer_blob(src_repo, dst_repo, desc).await {
                Ok(done) => {
                    if let Outcome::Copied(_) = done {
                        self.target_holds(d, dst_repo);
                    }
                    return Ok(done);
                }
                Err(e) if attempt < TRANSFER_RETRIES.len() && transient(&e) => {
                    tracing::debug!(digest = %d, error = %e, "Blob transfer failed; restarting it.");
                    tokio::time::sleep(std::time::Duration::from_millis(TRANSFER_RETRIES[attempt]))
                        .await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
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
        let stream = verify(
            blob.stream,
            d.clone(),
            Some(desc.size),
            StreamContext {
                registry: self.source.name().to_string(),
                repo: src_repo.to_string(),
            },
        );
        self.target
            .blob_put(dst_repo, desc, stream)
            .await
            .map_err(|e| CopyError::target("upload blob", Some(d), e))?;
        Ok(Outcome::Copied(desc.size))
    }

    /// Whether the target has manifest `d` (a failed check counts as absent:
    /// the write that follows reports the real problem).
    async fn has_manifest(&self, dst_repo: &RepoName, d: &Digest) -> bool {
        let _permit = self.permits.acquire().await;
        match self
            .target
            .manifest_head(dst_repo, &Reference::Digest(d.clone()))
            .await
        {
            Ok(found) => found.is_some(),
            Err(e) => {
                tracing::debug!(error = %e, "manifest check failed; treating as absent");
                false
            }
        }
    }

    async fn copy_manifest(
        &self,
        dst_repo: &RepoName,
        manifest: &Manifest,
        dry_run: bool,
    ) -> Result<Outcome, CopyError> {
        // The caller checked that the target lacks it.
        let d = manifest.digest();
        let _permit = self.permits.acquire().await;
        if dry_run {
            return Ok(Outcome::Planned { mount: false });
        }
        let reference = Reference::Digest(d.clone());
        let out = put_settled(self.target.as_ref(), dst_repo, &reference, manifest)
            .await
            .map_err(|e| CopyError::target("write manifest", Some(d), e))?;
        Ok(Outcome::Put {
            subject_indexed: out.subject_indexed,
            size: manifest.bytes().len() as u64,
        })
    }

    /// Points `tag` at `manifest` on the target unless it already does.
    pub(crate) async fn put_tag(
        &self,
        dst_repo: &RepoName,
        tag: &Tag,
        manifest: &Manifest,
        dry_run: bool,
    ) -> Result<bool, CopyError> {
        let d = manifest.digest();
        let _permit = self.permits.acquire().await;
        let current = self
            .target
            .manifest_head(dst_repo, &Reference::Tag(tag.clone()))
            .await
            .map_err(|e| CopyError::target("check tag", Some(d), e))?;
        if current.is_some_and(|c| &c.digest == d) {
            return Ok(false);
        }
        if !dry_run {
            put_settled(
                self.target.as_ref(),
                dst_repo,
                &Reference::Tag(tag.clone()),
                manifest,
            )
            .await
            .map_err(|e| CopyError::target("write tag", Some(d), e))?;
        }
        Ok(true)
    }
}

/// Back-off before restarting a failed blob transfer, in milliseconds.
const TRANSFER_RETRIES: [u64; 2] = [200, 1000];

/// True for failures a fresh attempt may not meet again: retryable statuses
/// and transport errors, and bodies cut short or corrupted in transit (a
/// source that is really corrupt fails every attempt).
fn transient(e: &CopyError) -> bool {
    use crate::registry::ErrorKind;
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

/// Pushes a manifest whose children are all on the target, retrying a few
/// times when the registry says a child is unknown or invalid. distribution
/// (filesystem storage) writes a blob's link file in place, so while another
/// process or copier commits the same shared blob, a manifest PUT can read
/// a half-written link and answer MANIFEST_BLOB_UNKNOWN or DIGEST_INVALID
/// (our own digest was computed from the bytes, so it is not the manifest's).
async fn put_settled(
    target: &dyn crate::registry::Registry,
    repo: &RepoName,
    reference: &Reference,
    manifest: &Manifest,
) -> Result<crate::registry::PutManifestOutcome, crate::registry::RegistryError> {
    const SETTLE: [u64; 3] = [100, 300, 900];
    let mut attempt = 0;
    loop {
        let result = target
            .manifest_put(
                repo,
                reference,
                manifest,
                crate::registry::Precondition::None,
            )
            .await;
        match result {
            Err(e) if attempt < SETTLE.len() && child_not_settled(&e) => {
                tracing::debug!(error = %e, "Manifest children not visible yet; retrying.");
                tokio::time::sleep(std::time::Duration::from_millis(SETTLE[attempt])).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn child_not_settled(e: &crate::registry::RegistryError) -> bool {
    matches!(&e.kind, crate::registry::ErrorKind::Status { status: 400, codes, .. }
        if codes.iter().any(|c| c == "MANIFEST_BLOB_UNKNOWN" || c == "DIGEST_INVALID"))
}

/// Copies the walked `graph` (or, in a dry run, reports what it would do).
pub(crate) async fn execute(
    copier: &Copier,
    graph: &Graph,
    src_repo: &RepoName,
    dst_repo: &RepoName,
    tag: Option<&Tag>,
    rec: &mut Recorder,
) -> CopyReport {
    let dry = rec.dry_run;
    let mut report = CopyReport {
        filtered: graph.filtered,
        ..CopyReport::default()
    };
    for e in &graph.events {
        rec.emit(e.clone());
    }
    let mut failed: HashSet<Digest> = graph.unreadable.clone();
    for (d, e) in &graph.failures {
        fail(rec, &mut report, d.clone(), NodeKind::Manifest, e);
    }

    let width = copier.options.concurrency.max(1) * 2;

    // 0. Manifests the target already has. A registry stores a manifest only
    // once its blobs are there, so their blobs need no check (this makes a
    // no-op re-copy one HEAD per manifest).
    let probes: Vec<_> = graph
        .order
        .iter()
        .map(|d| async move { copier.has_manifest(dst_repo, d).await.then(|| d.clone()) })
        .collect();
    let present: HashSet<Digest> = bounded(probes, width).await.into_iter().flatten().collect();

    // 1. Blobs of the missing manifests, deduplicated, in discovery order.
    let mut blobs: Vec<&Descriptor> = Vec::new();
    let mut seen = HashSet::new();
    for d in graph.order.iter().filter(|d| !present.contains(*d)) {
        if let Some(n) = graph.nodes.get(d) {
            for b in n.manifest.blobs() {
                if seen.insert(b.digest.clone()) {
                    blobs.push(b);
                }
            }
        }
    }
    for d in graph.order.iter().filter(|d| present.contains(*d)) {
        if let Some(n) = graph.nodes.get(d) {
            for b in n.manifest.blobs() {
                if seen.insert(b.digest.clone()) {
                    report.blobs_skipped += 1;
                }
            }
        }
    }
    let tasks: Vec<_> = blobs
        .into_iter()
        .map(|b| async move {
            let (r, owner) = copier
                .single_flight(dst_repo, &b.digest, || {
                    copier.copy_blob(src_repo, dst_repo, b, dry)
                })
                .await;
            (b, r, owner)
        })
        .collect();
    let results = bounded(tasks, width).await;
    for (b, r, owner) in results {
        let (action, reason) = match r {
            Ok(Outcome::Copied(n)) if owner => {
                report.blobs_copied += 1;
                report.bytes += n;
                (Action::Copy, String::new())
            }
            Ok(Outcome::Mounted) if owner => {
                report.blobs_mounted += 1;
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
                report.blobs_skipped += 1;
                (Action::Exists, String::new())
            }
            Err(e) => {
                failed.insert(b.digest.clone());
                fail(rec, &mut report, Some(b.digest.clone()), NodeKind::Blob, &e);
                continue;
            }
        };
        rec.emit(CopyEvent {
            digest: Some(b.digest.clone()),
            kind: NodeKind::Blob,
            action,
            size: b.size,
            reason,
        });
    }

    // 2. Manifests, bottom-up by height: children and subjects first.
    let heights = heights(graph);
    let max = heights.values().copied().max().unwrap_or(0);
    let mut outcomes: HashMap<Digest, Outcome> = HashMap::new();
    for level in 0..=max {
        let mut batch = Vec::new();
        for d in &graph.order {
            if heights.get(d) != Some(&level) {
                continue;
            }
            let Some(node) = graph.nodes.get(d) else {
                continue;
            };
            let needs = dependencies(graph, d)
                .into_iter()
                .chain(node.manifest.blobs().into_iter().map(|b| b.digest.clone()))
                .find(|n| failed.contains(n));
            if let Some(needs) = needs {
                failed.insert(d.clone());
                let e = CopyError::Dependency {
                    digest: d.clone(),
                    needs,
                };
                fail(rec, &mut report, Some(d.clone()), node.kind, &e);
                continue;
            }
            if present.contains(d) {
                report.manifests_skipped += 1;
                outcomes.insert(d.clone(), Outcome::Exists);
                rec.emit(CopyEvent {
                    digest: Some(d.clone()),
                    kind: node.kind,
                    action: Action::Exists,
                    size: node.manifest.bytes().len() as u64,
                    reason: String::new(),
                });
                continue;
            }
            batch.push((d, node));
        }
        let tasks: Vec<_> = batch
            .into_iter()
            .map(|(d, node)| async move {
                let (r, owner) = copier
                    .single_flight(dst_repo, d, || {
                        copier.copy_manifest(dst_repo, &node.manifest, dry)
                    })
                    .await;
                (d, node, r, owner)
            })
            .collect();
        let results = bounded(tasks, width).await;
        for (d, node, r, owner) in results {
            let size = node.manifest.bytes().len() as u64;
            match r {
                Ok(o) => {
                    let action = match &o {
                        Outcome::Put { size, .. } if owner => {
                            report.manifests_copied += 1;
                            report.bytes += size;
                            Action::Copy
                        }
                        Outcome::Planned { .. } => Action::Copy,
                        _ => {
                            report.manifests_skipped += 1;
                            Action::Exists
                        }
                    };
                    rec.emit(CopyEvent {
                        digest: Some(d.clone()),
                        kind: node.kind,
                        action,
                        size,
                        reason: String::new(),
                    });
                    // A waiter did not write it: it is "present" for its report.
                    let o = if owner { o } else { Outcome::Exists };
                    outcomes.insert(d.clone(), o);
                }
                Err(e) => {
                    failed.insert(d.clone());
                    fail(rec, &mut report, Some(d.clone()), node.kind, &e);
                }
            }
        }
    }

    // 3. Referrers' representation on the target (fallback indexes).
    publish::publish(
        copier,
        graph,
        dst_repo,
        &outcomes,
        &failed,
        rec,
        &mut report,
    )
    .await;

    // 4. Cosign legacy tags, digest-exact, then 5. the image tag.
    let mut tags: Vec<(Tag, &Digest, NodeKind)> = Vec::new();
    for c in &graph.cosign {
        if let Ok(t) = Tag::new(&c.tag) {
            tags.push((t, &c.digest, NodeKind::Cosign));
        }
    }
    if let Some(t) = tag {
        tags.push((t.clone(), &graph.root, NodeKind::Tag));
    }
    for (t, d, kind) in tags {
        let Some(node) = graph.nodes.get(d) else {
            continue;
        };
        if failed.contains(d) {
            continue;
        }
        match copier.put_tag(dst_repo, &t, &node.manifest, dry).await {
            Ok(written) => {
                if written && !dry {
                    report.tags += 1;
                    if kind == NodeKind::Cosign
                        && matches!(outcomes.get(d), Some(Outcome::Put { .. }))
                    {
                        *report
                            .referrers
                            .entry((Representation::CosignTag, Representation::CosignTag))
                            .or_default() += 1;
                    }
                }
                rec.emit(CopyEvent {
                    digest: Some(d.clone()),
                    kind: NodeKind::Tag,
                    action: if written {
                        Action::Write
                    } else {
                        Action::Exists
                    },
                    size: 0,
                    reason: format!("tag {t}"),
                });
            }
            Err(e) => fail(rec, &mut report, Some(d.clone()), NodeKind::Tag, &e),
        }
    }
    report
}

/// Records a failure in the report and as an event.
pub(crate) fn fail(
    rec: &mut Recorder,
    report: &mut CopyReport,
    digest: Option<Digest>,
    kind: NodeKind,
    e: &CopyError,
) {
    tracing::warn!(error = %e, "copy step failed");
    report.failures.push(e.to_string());
    rec.emit(CopyEvent {
        digest,
        kind,
        action: Action::Fail,
        size: 0,
        reason: e.to_string(),
    });
}

/// Manifests `d` needs on the target first: its index children and, for a
/// referrer, its subject.
fn dependencies(graph: &Graph, d: &Digest) -> Vec<Digest> {
    let mut out: Vec<Digest> = graph
        .nodes
        .get(d)
        .map(|n| {
            n.manifest
                .child_manifests()
                .iter()
                .map(|c| c.digest.clone())
                .collect()
        })
        .unwrap_or_default();
    out.extend(
        graph
            .referrers
            .iter()
            .filter(|e| &e.referrer == d)
            .map(|e| e.subject.clone()),
    );
    out
}

/// Height of each manifest: 0 without dependencies in the graph, else one
/// more than its highest dependency. A loop (impossible with honest content)
/// is cut where it closes.
fn heights(graph: &Graph) -> BTreeMap<Digest, usize> {
    fn height(
        graph: &Graph,
        d: &Digest,
        memo: &mut BTreeMap<Digest, usize>,
        on_path: &mut HashSet<Digest>,
    ) -> usize {
        if let Some(h) = memo.get(d) {
            return *h;
        }
        if !on_path.insert(d.clone()) {
            return 0;
        }
        let mut h = 0;
        for dep in dependencies(graph, d) {
            if graph.nodes.contains_key(&dep) {
                h = h.max(height(graph, &dep, memo, on_path) + 1);
            }
        }
        on_path.remove(d);
        memo.insert(d.clone(), h);
        h
    }
    let mut memo = BTreeMap::new();
    let mut on_path = HashSet::new();
    for d in graph.nodes.keys() {
        height(graph, d, &mut memo, &mut on_path);
    }
    memo
}

/// Runs `tasks` with at most `width` in flight; outputs in completion order.
/// The futures are built before the first await (no closure over borrowed
/// arguments is held across it), which keeps the copy future `Send` for
/// every lifetime, so scheduled runs can be spawned.
async fn bounded<F: std::future::Future>(tasks: Vec<F>, width: usize) -> Vec<F::Output> {
    let mut queue = tasks.into_iter();
    let mut in_flight = FuturesUnordered::new();
    let mut out = Vec::new();
    loop {
        while in_flight.len() < width.max(1) {
            match queue.next() {
                Some(f) => in_flight.push(f),
                None => break,
            }
        }
        match in_flight.next().await {
            Some(o) => out.push(o),
            None => break,
        }
    }
    out
}
