//! Publishing referrers on the target in the representation it supports:
//! nothing more than the manifest PUT on referrers-API targets, a merged
//! `<alg>-<hex>` fallback index on tag-schema targets and OCI layouts.
//!
//! The fallback index is read, checked to be an index, merged (dedupe by
//! digest, foreign entries kept, descriptors per the spec) and written back
//! after the referrers themselves, conditionally where the target gives
//! ETags, retried when it changed under us, and serialised per
//! (target, repository, subject) inside the process. All referrers of one
//! subject go in one read-modify-write.
//!
//! References: distribution-spec §"Pushing Manifests with Subject",
//! §"Referrers Tag Schema"; spec notes §2.5, §3.3–3.5.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;

use super::Copier;
use super::error::{CopyError, Side};
use super::options::ReferrersMode;
use super::report::{Action, CopyReport, NodeKind, Outcome, PublishedReferrer, Representation};
use super::run::Run;
use crate::oci::media_type as mt;
use crate::oci::referrers::{fallback_tag, merge_fallback_index};
use crate::oci::{Descriptor, Digest, Manifest, Reference, RepoName, Tag};
use crate::registry::{ErrorKind, Precondition, ReferrersSupport};

/// Attempts at a conditional fallback-index update before giving up.
const MAX_ATTEMPTS: usize = 8;

type LockKey = (String, String, Digest);

/// One lock per (target registry, repository, subject) in the process, so two
/// copies adding referrers to one subject never lose each other's entries,
/// even against registries that ignore `If-Match`.
static SUBJECT_LOCKS: LazyLock<Mutex<HashMap<LockKey, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

impl Copier {
    /// Referrers support of a target repository, asked once per copier.
    async fn target_support(&self, repo: &RepoName) -> Result<ReferrersSupport, CopyError> {
        if let Some(s) = self
            .target_support
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(repo)
        {
            return Ok(*s);
        }
        let s = self
            .target
            .referrers_support(repo)
            .await
            .map_err(|e| CopyError::target("probe referrers API", None, e))?;
        self.target_support
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(repo.clone(), s);
        Ok(s)
    }

    fn target_is_layout(&self) -> bool {
        self.target.is_layout()
    }
}

/// Counts a referrer as written or as already on the target.
fn count_referrer(
    report: &mut CopyReport,
    via: Representation,
    to: Representation,
    outcome: &Outcome,
) {
    let counts = match outcome {
        Outcome::Put { .. } => &mut report.referrers,
        Outcome::Exists => &mut report.referrers_skipped,
        _ => return,
    };
    *counts.entry((via, to)).or_default() += 1;
}

/// A referrer as published, for withdrawn-referrer sync.
fn published(
    subject: &Digest,
    referrer: &Digest,
    outcome: &Outcome,
    in_fallback: bool,
) -> PublishedReferrer {
    PublishedReferrer {
        subject: subject.clone(),
        referrer: referrer.clone(),
        written: matches!(outcome, Outcome::Put { .. }),
        in_fallback,
    }
}

/// Phase 3: publishes every copied referrer of the graph in the target's
/// representation. Referrers that are not published (their manifest failed,
/// the target's referrers support is unknown, their fallback index could
/// not be written) are noted in [`Run::unpublished`].
pub(crate) async fn publish(run: &mut Run<'_>) {
    let (copier, graph, dst_repo) = (run.copier, run.graph, run.dst_repo);
    // subject -> (referrer descriptor, source representation, its outcome)
    let mut fallback: BTreeMap<Digest, Vec<(Descriptor, Representation, Outcome)>> =
        BTreeMap::new();
    // subject -> referrers the target's API lists (asked once per subject).
    let mut api_lists: HashMap<Digest, Vec<Digest>> = HashMap::new();
    for edge in &graph.referrers {
        if run.failed.contains(&edge.referrer) || run.failed.contains(&edge.subject) {
            run.unpublished.push(edge.referrer.clone());
            continue;
        }
        let (Some(node), Some(outcome)) = (
            graph.nodes.get(&edge.referrer),
            run.outcomes.get(&edge.referrer).cloned(),
        ) else {
            continue;
        };
        let mut target_rep = if copier.target_is_layout() {
            Representation::Layout
        } else {
            match copier.options.target_referrers {
                ReferrersMode::Tags => Representation::FallbackTag,
                // Api means "never a fallback tag", not "hope": a target
                // that answers "no API" fails the referrer by name.
                ReferrersMode::Api => match copier.target_support(dst_repo).await {
                    Ok(ReferrersSupport::Unsupported) => {
                        let e = CopyError::Unsupported {
                            side: Side::Target,
                            registry: copier.target.name().to_string(),
                            message: format!(
                                "repository {dst_repo} has no referrers API (target referrers mode \
                                 is api, so no fallback tag is written for {})",
                                edge.referrer
                            ),
                        };
                        run.unpublished.push(edge.referrer.clone());
                        run.fail(Some(edge.referrer.clone()), NodeKind::Referrer, Arc::new(e));
                        continue;
                    }
                    Ok(_) => Representation::Api,
                    Err(e) => {
                        run.unpublished.push(edge.referrer.clone());
                        run.fail(Some(edge.referrer.clone()), NodeKind::Referrer, Arc::new(e));
                        continue;
                    }
                },
                ReferrersMode::Auto => {
                    let support = match copier.target_support(dst_repo).await {
                        Ok(s) => s,
                        Err(e) => {
                            run.unpublished.push(edge.referrer.clone());
                            run.fail(Some(edge.referrer.clone()), NodeKind::Referrer, Arc::new(e));
                            continue;
                        }
                    };
                    let indexed = match outcome {
                        // The registry said whether it indexed the subject.
                        Outcome::Put {
                            subject_indexed, ..
                        } => subject_indexed,
                        // Already there or dry run: its API decides.
                        _ => true,
                    };
                    if indexed && support == ReferrersSupport::Supported {
                        Representation::Api
                    } else {
                        Representation::FallbackTag
                    }
                }
            }
        };
        if target_rep == Representation::Api
            && outcome == Outcome::Exists
            && copier.options.recheck_present
        {
            // Trusting nothing on the target: a referrer it holds must be
            // reachable through its API, else through the fallback tag (as
            // for a PUT the target did not index).
            match listed_by_api(copier, dst_repo, &edge.subject, &mut api_lists).await {
                Ok(listed) if listed.contains(&edge.referrer) => {}
                Ok(_) => {
                    if copier.options.target_referrers == ReferrersMode::Api {
                        let e = CopyError::Unsupported {
                            side: Side::Target,
                            registry: copier.target.name().to_string(),
                            message: format!(
                                "repository {dst_repo} does not list referrer {} of {} (target \
                                 referrers mode is api, so no fallback tag is written)",
                                edge.referrer, edge.subject
                            ),
                        };
                        run.unpublished.push(edge.referrer.clone());
                        run.fail(Some(edge.referrer.clone()), NodeKind::Referrer, Arc::new(e));
                        continue;
                    }
                    target_rep = Representation::FallbackTag;
                }
                Err(e) => {
                    run.unpublished.push(edge.referrer.clone());
                    run.fail(Some(edge.referrer.clone()), NodeKind::Referrer, Arc::new(e));
                    continue;
                }
            }
        }
        if edge.via != target_rep && outcome != Outcome::Exists {
            run.rec.note(
                Some(edge.referrer.clone()),
                NodeKind::Referrer,
                Action::Convert,
                node.manifest.bytes().len() as u64,
                format!("{} -> {target_rep}", edge.via),
            );
        }
        if target_rep == Representation::Api {
            if let Outcome::Put {
                subject_indexed: false,
                ..
            } = outcome
            {
                tracing::warn!(referrer = %edge.referrer, "target did not confirm the subject (no OCI-Subject); target referrers mode is api, so no fallback tag is written");
            }
            count_referrer(&mut run.report, edge.via, target_rep, &outcome);
            run.report.published_referrers.push(published(
                &edge.subject,
                &edge.referrer,
                &outcome,
                false,
            ));
            continue;
        }
        fallback.entry(edge.subject.clone()).or_default().push((
            node.manifest.referrer_descriptor(),
            edge.via,
            outcome,
        ));
    }
    let target_rep = if copier.target_is_layout() {
        Representation::Layout
    } else {
        Representation::FallbackTag
    };
    let dry = run.dry;
    for (subject, entries) in fallback {
        let descs: Vec<Descriptor> = entries.iter().map(|(d, _, _)| d.clone()).collect();
        match merge_into_fallback(copier, dst_repo, &subject, &descs, dry).await {
            Ok(written) => {
                for (desc, via, outcome) in &entries {
                    count_referrer(&mut run.report, *via, target_rep, outcome);
                    run.report.published_referrers.push(published(
                        &subject,
                        &desc.digest,
                        outcome,
                        true,
                    ));
                }
                if written && !dry {
                    run.report.fallback_indexes_written += 1;
                }
                let action = if written {
                    Action::Write
                } else {
                    Action::Exists
                };
                run.rec.note(
                    Some(subject.clone()),
                    NodeKind::FallbackIndex,
                    action,
                    0,
                    format!("tag {} ({} referrers)", fallback_tag(&subject), descs.len()),
                );
            }
            Err(e) => {
                run.unpublished
                    .extend(descs.iter().map(|d| d.digest.clone()));
                run.fail(Some(subject.clone()), NodeKind::FallbackIndex, Arc::new(e));
            }
        }
    }
}

/// The referrers of `subject` the target's API lists, asked once per
/// subject (`cache`); none when it has no API.
async fn listed_by_api<'a>(
    copier: &Copier,
    repo: &RepoName,
    subject: &Digest,
    cache: &'a mut HashMap<Digest, Vec<Digest>>,
) -> Result<&'a Vec<Digest>, CopyError> {
    if !cache.contains_key(subject) {
        let _permit = copier.permits.acquire().await;
        let listed = copier
            .target
            .referrers_api(repo, subject)
            .await
            .map_err(|e| CopyError::target("list referrers", Some(subject), e))?;
        let digests = listed
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.digest)
            .collect();
        cache.insert(subject.clone(), digests);
    }
    Ok(cache.entry(subject.clone()).or_default())
}

/// Adds `descs` to the fallback index of `subject` on the target. Returns
/// whether the index was (or, in a dry run, would be) written.
pub(crate) async fn merge_into_fallback(
    copier: &Copier,
    repo: &RepoName,
    subject: &Digest,
    descs: &[Descriptor],
    dry_run: bool,
) -> Result<bool, CopyError> {
    let target = &copier.target;
    let tag_name = fallback_tag(subject);
    let tag = Tag::new(&tag_name).map_err(|_| CopyError::Unsupported {
        side: Side::Target,
        registry: target.name().to_string(),
        message: format!("fallback tag {tag_name:?} is not a valid tag"),
    })?;
    let key = (target.name().to_string(), repo.to_string(), subject.clone());
    let lock = SUBJECT_LOCKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key.clone())
        .or_default()
        .clone();
    let result = async {
        let _guard = lock.lock().await;
        for _ in 0..MAX_ATTEMPTS {
            let existing = target
                .manifest_fetch(repo, &Reference::Tag(tag.clone()))
                .await
                .map_err(|e| CopyError::target("read fallback index", Some(subject), e))?;
            let merged = merge_fallback_index(
                existing
                    .as_ref()
                    .map(|f| (f.manifest.bytes().as_ref(), f.manifest.media_type())),
                descs,
            )
            .map_err(|source| CopyError::FallbackIndex {
                side: Side::Target,
                registry: target.name().to_string(),
                repo: repo.to_string(),
                tag: tag_name.clone(),
                source,
            })?;
            let Some(bytes) = merged else {
                return Ok(false);
            };
            if dry_run {
                return Ok(true);
            }
            let manifest = Manifest::parse(Bytes::from(bytes), Some(mt::OCI_INDEX))?;
            let precondition = match &existing {
                None => Precondition::IfNoneMatch,
                Some(f) => f
                    .etag
                    .clone()
                    .map(Precondition::IfMatch)
                    .unwrap_or(Precondition::None),
            };
            let _permit = copier.permits.acquire().await;
            match target
                .manifest_put(repo, &Reference::Tag(tag.clone()), &manifest, precondition)
                .await
            {
                Ok(_) => return Ok(true),
                Err(e) if matches!(e.kind, ErrorKind::PreconditionFailed) => {
                    tracing::debug!(tag = %tag_name, "fallback index changed concurrently; merging again");
                }
                Err(e) => return Err(CopyError::target("write fallback index", Some(subject), e)),
            }
        }
        Err(CopyError::Contended {
            registry: target.name().to_string(),
            repo: repo.to_string(),
            tag: tag_name.clone(),
            attempts: MAX_ATTEMPTS,
        })
    }
    .await;
    // Forget the lock when nobody else holds or waits for it.
    let mut locks = SUBJECT_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    if locks.get(&key).is_some_and(|l| Arc::strong_count(l) <= 2) {
        locks.remove(&key);
    }
    drop(lock);
    result
}
