//! Deletion sync in the output of `plan`, `once` and `status`: pending
//! deletions with their due times, what a run deleted or kept, the guard.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::output::timestamp;
use super::status::human_time as human;
use crate::store::{OwnedReferrer, OwnedTag};
use crate::sync::DeletionReport;

/// Deletion sync of one job run.
#[derive(Debug, Default, Serialize)]
pub struct DeletionsDoc {
    /// Owned tags the source is without, oldest absence first.
    pub pending: Vec<PendingDeletionDoc>,
    /// Tags deleted (`kind`: `tag` untagged, `digest` deleted by digest).
    pub deleted: Vec<DeletedDoc>,
    /// Due tags kept, and why.
    pub kept: Vec<KeptDoc>,
    /// Why the guard stopped every deletion, when it did.
    pub guard_tripped: Option<String>,
}

impl DeletionsDoc {
    /// True when there is nothing to say (deletion sync off or idle).
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
            && self.deleted.is_empty()
            && self.kept.is_empty()
            && self.guard_tripped.is_none()
    }
}

/// A pending deletion.
#[derive(Debug, Serialize)]
pub struct PendingDeletionDoc {
    /// `registry/repo:tag` on the target.
    pub target: String,
    /// The digest the job wrote under it.
    pub digest: String,
    /// First run without it at the source (RFC 3339).
    pub absent_since: String,
    /// When it may be deleted (RFC 3339).
    pub due_at: String,
    /// True when the grace period has passed.
    pub due: bool,
}

/// A deleted tag.
#[derive(Debug, Serialize)]
pub struct DeletedDoc {
    /// `registry/repo:tag` on the target.
    pub target: String,
    /// `tag` or `digest`.
    pub kind: &'static str,
}

/// A due tag kept.
#[derive(Debug, Serialize)]
pub struct KeptDoc {
    /// `registry/repo:tag` on the target.
    pub target: String,
    /// What still needs it.
    pub reason: String,
}

/// The document of a run's deletion report.
pub fn doc(r: &DeletionReport) -> DeletionsDoc {
    DeletionsDoc {
        pending: r
            .pending
            .iter()
            .map(|p| PendingDeletionDoc {
                target: p.target.clone(),
                digest: p.digest.to_string(),
                absent_since: timestamp(p.absent_since),
                due_at: timestamp(p.due_at),
                due: p.due,
            })
            .collect(),
        deleted: r
            .deleted
            .iter()
            .map(|d| DeletedDoc {
                target: d.target.clone(),
                kind: d.kind.as_str(),
            })
            .collect(),
        kept: r
            .kept
            .iter()
            .map(|k| KeptDoc {
                target: k.target.clone(),
                reason: k.reason.clone(),
            })
            .collect(),
        guard_tripped: r.guard_tripped.clone(),
    }
}

/// Pending deletions (tags, then withdrawn referrers as `repo@digest`) as
/// the database records them (for `status`).
pub fn pending_from_store(
    owned: &[OwnedTag],
    referrers: &[OwnedReferrer],
    grace: Duration,
    now: DateTime<Utc>,
) -> Vec<PendingDeletionDoc> {
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let tags = owned.iter().map(|t| {
        let target = format!("{}:{}", t.target_repo, t.tag);
        (target, t.digest.to_string(), t.absent_since)
    });
    let referrers = referrers.iter().map(|r| {
        let target = format!("{}@{}", r.target_repo, r.referrer);
        (target, r.referrer.to_string(), r.absent_since)
    });
    let mut pending: Vec<(DateTime<Utc>, PendingDeletionDoc)> = tags
        .chain(referrers)
        .filter_map(|(target, digest, absent_since)| {
            let since = absent_since?;
            let due_at = since
                .checked_add_signed(grace)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            Some((
                since,
                PendingDeletionDoc {
                    target,
                    digest,
                    absent_since: timestamp(since),
                    due_at: timestamp(due_at),
                    due: due_at <= now,
                },
            ))
        })
        .collect();
    pending.sort_by_key(|(since, _)| *since);
    pending.into_iter().map(|(_, p)| p).collect()
}

/// The lines of a deletion report, indented under its job; empty when
/// there is nothing to say.
pub fn text(d: &DeletionsDoc) -> String {
    let mut out = String::new();
    if d.is_empty() {
        return out;
    }
    out.push_str(&format!(
        "  deletions: {} pending, {} deleted, {} kept\n",
        d.pending.len(),
        d.deleted.len(),
        d.kept.len()
    ));
    out.push_str(&pending_lines(&d.pending));
    for x in &d.deleted {
        let how = match x.kind {
            "tag" => "untagged",
            "referrer" => "withdrawn referrer removed",
            _ => "deleted by digest",
        };
        out.push_str(&format!("    DELETED {} ({how})\n", x.target));
    }
    for k in &d.kept {
        out.push_str(&format!("    KEPT {}: {}\n", k.target, k.reason));
    }
    if let Some(why) = &d.guard_tripped {
        out.push_str(&format!("    GUARD TRIPPED: {why}\n"));
    }
    out
}

/// One line per pending deletion: `PENDING DELETE target (absent since …, due …)`.
pub fn pending_lines(pending: &[PendingDeletionDoc]) -> String {
    pending
        .iter()
        .map(|p| {
            let due = if p.due {
                "due now".to_string()
            } else {
                format!("due {}", human(&p.due_at))
            };
            format!(
                "    PENDING DELETE {} ({}; absent from the source since {})\n",
                p.target,
                due,
                human(&p.absent_since)
            )
        })
        .collect()
}
