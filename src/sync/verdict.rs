//! Why an item is copied, verified or left alone: the checkpoint compared
//! with the source. A run uses the verdict to skip; `plan` says it as the
//! reason. One function decides both, so a plan never explains a decision
//! the run would not take.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use futures::FutureExt;

use super::items::Item;
use super::report::{ItemResult, failed};
use super::{SyncOptions, Syncer};
use crate::config::{Job, fmt_duration};
use crate::copy::Copier;
use crate::oci::{Digest, Reference};
use crate::store::{FailureRecord, TagState};

/// What the checkpoint says about an item.
pub(super) enum Verdict {
    /// `--full`: the checkpoint is not consulted.
    Full,
    /// No state database: every item takes the full path.
    NoDatabase,
    /// Never mirrored (or its checkpoint is gone).
    NoCheckpoint,
    /// The source tag points at another digest now.
    DigestChanged { from: Digest, to: Digest },
    /// The job maps the item to another target now.
    TargetChanged { from: String, to: String },
    /// The referrers could not be listed cheaply: the walk decides.
    ReferrersUnreadable,
    /// A referrer was added or removed: which listings changed (the
    /// referrers API list, a fallback or cosign tag).
    ReferrersChanged(Vec<String>),
    /// Unchanged, but last verified longer ago than `state.verify_after`.
    Expired {
        verified_at: DateTime<Utc>,
        verify_after: Duration,
    },
    /// Unchanged since the last verified copy: skipped.
    Unchanged { verified_at: DateTime<Utc> },
}

impl Verdict {
    /// Compares the checkpoint `state` with what the source has now.
    pub(super) fn of(
        state: Option<&TagState>,
        digest: &Digest,
        fingerprint: Option<&str>,
        target: &str,
        now: DateTime<Utc>,
        verify_after: Duration,
    ) -> Verdict {
        let Some(state) = state else {
            return Verdict::NoCheckpoint;
        };
        if &state.source_digest != digest {
            return Verdict::DigestChanged {
                from: state.source_digest.clone(),
                to: digest.clone(),
            };
        }
        if state.target_repo != target {
            return Verdict::TargetChanged {
                from: state.target_repo.clone(),
                to: target.to_string(),
            };
        }
        let Some(fingerprint) = fingerprint else {
            return Verdict::ReferrersUnreadable;
        };
        if state.referrers_fingerprint.as_deref() != Some(fingerprint) {
            return Verdict::ReferrersChanged(changed_listings(
                state.referrers_fingerprint.as_deref().unwrap_or_default(),
                fingerprint,
            ));
        }
        let fresh = now
            .signed_duration_since(state.updated_at)
            .to_std()
            .is_ok_and(|age| age < verify_after);
        if fresh {
            Verdict::Unchanged {
                verified_at: state.updated_at,
            }
        } else {
            Verdict::Expired {
                verified_at: state.updated_at,
                verify_after,
            }
        }
    }

    /// True when a run skips the item.
    pub(super) fn is_unchanged(&self) -> bool {
        matches!(self, Verdict::Unchanged { .. })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Full => f.write_str("--full: every node is checked against the target"),
            Verdict::NoDatabase => {
                f.write_str("no state database yet: every node is checked against the target")
            }
            Verdict::NoCheckpoint => f.write_str("new: not mirrored before (no checkpoint)"),
            Verdict::DigestChanged { from, to } => write!(f, "digest changed: {from} -> {to}"),
            Verdict::TargetChanged { from, to } => write!(f, "target changed: {from} -> {to}"),
            Verdict::ReferrersUnreadable => {
                f.write_str("referrers could not be listed cheaply: the walk checks them")
            }
            Verdict::ReferrersChanged(what) if what.is_empty() => f.write_str("referrers changed"),
            Verdict::ReferrersChanged(what) => write!(f, "referrers changed: {}", what.join(", ")),
            Verdict::Expired {
                verified_at,
                verify_after,
            } => write!(
                f,
                "unchanged, but last verified {} (more than state.verify_after = {} ago): checked against the target again",
                at(*verified_at),
                fmt_duration(*verify_after)
            ),
            Verdict::Unchanged { verified_at } => write!(
                f,
                "unchanged since the last verified copy {}: skipped",
                at(*verified_at)
            ),
        }
    }
}

/// The listings that differ between two referrer fingerprints
/// (`v2 api:<digest> <tag>=<digest> …`, see `fingerprint.rs`): the
/// referrers API list, or the fallback and cosign tags by name.
fn changed_listings(old: &str, new: &str) -> Vec<String> {
    let parts = |fp: &str| -> std::collections::BTreeMap<String, String> {
        fp.split(' ')
            .skip(1)
            .map(|p| match p.split_once('=') {
                Some(("policy", hash)) => ("signature policy".to_string(), hash.to_string()),
                Some((tag, digest)) => (format!("tag {tag}"), digest.to_string()),
                None => ("referrers API list".to_string(), p.to_string()),
            })
            .collect()
    };
    let (old, new) = (parts(old), parts(new));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| match (old.contains_key(k), new.contains_key(k)) {
            _ if k == "signature policy" => "signature policy changed".to_string(),
            (false, _) => format!("{k} added"),
            (_, false) => format!("{k} removed"),
            _ => format!("{k} moved"),
        })
        .collect()
}

/// Why a failing item is (or is not) tried now.
pub(super) fn backoff_reason(f: &FailureRecord, now: DateTime<Utc>) -> String {
    let attempts = plural(u64::from(f.attempts), "attempt", "attempts");
    if f.is_due(now) {
        format!(
            "failing ({attempts}, last error: {}); due for retry",
            f.last_error
        )
    } else {
        format!(
            "failing ({attempts}, last error: {}); not retried before {}",
            f.last_error,
            at(f.next_retry_at)
        )
    }
}

fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `1 attempt`, `2 attempts`.
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Syncer {
    /// An item still backing off after failures: a run defers it, a plan
    /// says why. Either way the source is not asked about it. (A plan
    /// reads the database it must not write: `self.store`, not the run's.)
    pub(super) async fn backing_off(
        &self,
        job: &Job,
        item: &Item,
        options: &SyncOptions,
        now: DateTime<Utc>,
    ) -> Option<ItemResult> {
        if options.full {
            return None;
        }
        let store = self.store.as_ref()?;
        let f = store
            .failure(&job.name, &item.name)
            .boxed()
            .await
            .ok()
            .flatten()
            .filter(|f| !f.is_due(now))?;
        tracing::debug!(job = %job.name, item = %item.name, "Item is backing off after failures.");
        Some(if options.dry_run {
            ItemResult::Planned {
                reason: backoff_reason(&f, now),
                would_run: false,
                steps: Vec::new(),
            }
        } else {
            ItemResult::Deferred(Some(f.next_retry_at))
        })
    }

    /// The checkpoint of `item`; `None` without a database or with `--full`,
    /// where it is not consulted. Read before the source is asked, so that
    /// the referrers of the digest it names can be asked with the tag.
    pub(super) async fn checkpoint(
        &self,
        job: &Job,
        item: &Item,
        options: &SyncOptions,
    ) -> Option<TagState> {
        let store = self.store.as_ref().filter(|_| !options.full)?;
        store
            .tag_state(
                &job.name,
                item.src.repo.as_str(),
                &item.reference.to_string(),
            )
            .boxed()
            .await
            .ok()
            .flatten()
    }

    /// What the checkpoint `state` says about `item`, now at `digest` with
    /// the referrer set `fingerprint`.
    pub(super) fn verdict(
        &self,
        item: &Item,
        options: &SyncOptions,
        state: Option<&TagState>,
        digest: &Digest,
        fingerprint: Option<&str>,
        now: DateTime<Utc>,
    ) -> Verdict {
        if self.store.is_none() {
            return Verdict::NoDatabase;
        }
        if options.full {
            return Verdict::Full;
        }
        Verdict::of(
            state,
            digest,
            fingerprint,
            &item.dst.to_string(),
            now,
            options.verify_after,
        )
    }

    /// Dry run of one item that is not backing off: why it would (or would
    /// not) be touched, and the steps the copy engine would take.
    pub(super) async fn plan_item(
        &self,
        job: &Job,
        item: &Item,
        copier: &Copier,
        digest: &Digest,
        verdict: Verdict,
        now: DateTime<Utc>,
    ) -> ItemResult {
        let failure = match (&verdict, self.store.as_ref()) {
            (Verdict::Full, _) | (_, None) => None,
            (_, Some(s)) => s.failure(&job.name, &item.name).await.ok().flatten(),
        };
        // Items still backing off never get here (see `run_item`): a
        // failure on record is due, and the checkpoint decides as in a run.
        let reason = match &failure {
            Some(f) => format!("{}; {verdict}", backoff_reason(f, now)),
            None => verdict.to_string(),
        };
        let would_run = !verdict.is_unchanged();
        if !would_run {
            return ItemResult::Planned {
                reason,
                would_run,
                steps: Vec::new(),
            };
        }
        match copier
            .plan_image(
                &item.src.repo,
                &Reference::Digest(digest.clone()),
                &item.dst.repo,
                item.dst_tag().as_ref(),
            )
            .await
        {
            Ok(steps) => ItemResult::Planned {
                reason,
                would_run,
                steps,
            },
            Err(e) => failed(&e, e.kind(), e.registry()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::changed_listings;

    #[test]
    fn changed_referrer_listings_are_named() {
        let old = "v2 api:sha256:aa sha256-11.sig=sha256:bb sha256-11=sha256:cc";
        let new = "v2 api:sha256:aa sha256-11.sig=sha256:dd sha256-11.att=sha256:ee";
        assert_eq!(
            changed_listings(old, new),
            vec![
                "tag sha256-11 removed",
                "tag sha256-11.att added",
                "tag sha256-11.sig moved",
            ]
        );
        assert_eq!(
            changed_listings("v2 api:sha256:aa", "v2 api:sha256:ab"),
            vec!["referrers API list moved"]
        );
        assert_eq!(
            changed_listings("v2 api:sha256:aa", "v2 api:sha256:aa policy=enforce:12"),
            vec!["signature policy changed"]
        );
    }
}
