//! Row types of the state database, as the rest of the crate sees them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::oci::Digest;

/// A run's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunResult {
    /// Every selected item is on the target.
    Success,
    /// Some items failed; the rest were synced.
    Partial,
    /// The run failed as a whole (e.g. the source was unreachable).
    Failed,
    /// The tick was skipped because a run of the job was still going.
    Skipped,
}

impl RunResult {
    /// The stored (and metric label) form.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Partial => "partial",
            RunResult::Failed => "failed",
            RunResult::Skipped => "skipped",
        }
    }
}

impl fmt::Display for RunResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunResult {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "success" => RunResult::Success,
            "partial" => RunResult::Partial,
            "failed" => RunResult::Failed,
            "skipped" => RunResult::Skipped,
            _ => return Err(()),
        })
    }
}

/// What a run did. Stored as JSON; unknown or missing fields read as 0, so
/// counters can be added without a migration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunCounts {
    /// Repositories visited.
    pub repositories: u64,
    /// Tags selected.
    pub tags_selected: u64,
    /// Images (tags or digests) copied.
    pub images_copied: u64,
    /// Images already up to date.
    pub images_skipped: u64,
    /// Images that failed.
    pub images_failed: u64,
    /// Manifests pushed.
    pub manifests_copied: u64,
    /// Blobs pushed (not counting mounts).
    pub blobs_copied: u64,
    /// Blobs mounted from another repository.
    pub blobs_mounted: u64,
    /// Bytes uploaded.
    pub bytes_copied: u64,
    /// Referrer manifests pushed.
    pub referrers_copied: u64,
}

impl RunCounts {
    /// Adds `other`'s counters to these (parts of one run done apart).
    pub fn add(&mut self, other: &RunCounts) {
        self.repositories += other.repositories;
        self.tags_selected += other.tags_selected;
        self.images_copied += other.images_copied;
        self.images_skipped += other.images_skipped;
        self.images_failed += other.images_failed;
        self.manifests_copied += other.manifests_copied;
        self.blobs_copied += other.blobs_copied;
        self.blobs_mounted += other.blobs_mounted;
        self.bytes_copied += other.bytes_copied;
        self.referrers_copied += other.referrers_copied;
    }
}

/// How a finished run is recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// The result.
    pub result: RunResult,
    /// What it did.
    pub counts: RunCounts,
    /// A short error summary (no credentials), if anything failed.
    pub error: Option<String>,
}

/// One row of `runs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    /// Id.
    pub id: RunId,
    /// Job name.
    pub job: String,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time; `None` while running (or if the process died).
    pub finished_at: Option<DateTime<Utc>>,
    /// Result; `None` while running.
    pub result: Option<RunResult>,
    /// Counters.
    pub counts: RunCounts,
    /// Error summary.
    pub error: Option<String>,
    /// The process that started it (unknown for runs recorded before
    /// owners were).
    pub owner: Option<RunOwner>,
}

impl RunRecord {
    /// True while the run has not been finished.
    pub fn is_running(&self) -> bool {
        self.finished_at.is_none()
    }

    /// True when the run was never finished and the process that started
    /// it, on this host, is gone (killed, or the machine restarted).
    pub fn is_interrupted(&self) -> bool {
        self.is_running() && self.owner.as_ref().is_some_and(|o| o.is_gone())
    }
}

/// The process running a run: host name and process id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOwner {
    /// Host name (empty when unknown).
    pub host: String,
    /// Process id.
    pub pid: u32,
}

impl RunOwner {
    /// This process.
    pub fn current() -> Self {
        RunOwner {
            host: host_name(),
            pid: std::process::id(),
        }
    }

    /// True when the owner ran on this host and its process no longer
    /// exists. Other hosts, or systems without `/proc`, cannot be checked:
    /// false.
    pub fn is_gone(&self) -> bool {
        let proc = std::path::Path::new("/proc");
        !self.host.is_empty()
            && self.host == host_name()
            && proc.join("self").exists()
            && !proc.join(self.pid.to_string()).exists()
    }
}

impl fmt::Display for RunOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.pid)
    }
}

impl FromStr for RunOwner {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (host, pid) = s.rsplit_once(':').ok_or(())?;
        Ok(RunOwner {
            host: host.to_string(),
            pid: pid.parse().map_err(|_| ())?,
        })
    }
}

/// This machine's host name (Linux), or empty.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// What was last synced for one source tag of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagState {
    /// Job name.
    pub job: String,
    /// Source repository (`host/repo` or `oci:<dir>`).
    pub source_repo: String,
    /// The tag.
    pub tag: String,
    /// The source manifest digest the tag pointed to when synced.
    pub source_digest: Digest,
    /// Identifies the referrer set copied with it (`None` = not tracked).
    pub referrers_fingerprint: Option<String>,
    /// Target repository it was copied to.
    pub target_repo: String,
    /// When it was recorded.
    pub updated_at: DateTime<Utc>,
}

/// A failing item of a job and when to try it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureRecord {
    /// Job name.
    pub job: String,
    /// The item (a tag, digest or repository, as the caller names it).
    pub item: String,
    /// Consecutive failures.
    pub attempts: u32,
    /// The last error summary.
    pub last_error: String,
    /// The first failure of this streak.
    pub first_failed_at: DateTime<Utc>,
    /// The last failure.
    pub last_failed_at: DateTime<Utc>,
    /// Do not retry before this.
    pub next_retry_at: DateTime<Utc>,
}

impl FailureRecord {
    /// True when the item may be tried again at `now`.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.next_retry_at <= now
    }
}

/// Exponential backoff per failing item: `base`, `2*base`, `4*base`, ...
/// capped at `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(60),
            max: Duration::from_secs(6 * 3600),
        }
    }
}

impl Backoff {
    /// The delay after `attempts` consecutive failures (`attempts >= 1`).
    pub fn delay(&self, attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(30);
        self.base
            .checked_mul(1u32 << shift)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// What `ocimirror status` shows for one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobStatus {
    /// Job name.
    pub job: String,
    /// The latest run (may be running).
    pub last_run: Option<RunRecord>,
    /// The latest successful run.
    pub last_success: Option<RunRecord>,
    /// Tags with a recorded sync.
    pub tags_synced: u64,
    /// Items currently failing.
    pub failing_items: u64,
    /// The earliest retry among failing items.
    pub next_retry_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(100),
        };
        let delays: Vec<u64> = (1..=6).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 100, 100]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(100));
    }

    #[test]
    fn results_round_trip() {
        for r in [
            RunResult::Success,
            RunResult::Partial,
            RunResult::Failed,
            RunResult::Skipped,
        ] {
            assert_eq!(r.as_str().parse::<RunResult>(), Ok(r));
        }
        assert!("running".parse::<RunResult>().is_err());
    }
}
