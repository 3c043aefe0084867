//! A job's deletion policy (`[jobs.delete]`): whether it removes target
//! tags it wrote once the source no longer has (or selects) them, and the
//! bounds that keep a source outage from emptying the target; and what it
//! does when a tag it wrote would move (`[jobs.overwrite]`).

use std::time::Duration;

use serde::Serialize;

use super::ser_duration;

/// `[jobs.delete]`, resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeletePolicy {
    /// Deletion sync is on (off by default: a mirror only adds).
    pub enabled: bool,
    /// How long a tag must be absent from the source, run after run,
    /// before its target copy is deleted.
    #[serde(serialize_with = "ser_duration")]
    pub grace: Duration,
    /// The most of a job's owned tags one run may delete (0 < f ≤ 1); a run
    /// with more due trips the guard and deletes nothing.
    pub max_fraction: f64,
}

impl DeletePolicy {
    /// Default `grace`: a day, longer than most registry outages.
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);
    /// Default `max_fraction`: a tenth of the job's tags per run.
    pub const DEFAULT_MAX_FRACTION: f64 = 0.1;
}

impl Default for DeletePolicy {
    fn default() -> Self {
        DeletePolicy {
            enabled: false,
            grace: Self::DEFAULT_GRACE,
            max_fraction: Self::DEFAULT_MAX_FRACTION,
        }
    }
}

/// What a job does when a target tag it wrote would move to a new digest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverwriteMode {
    /// Move the tag (a mirror follows its source).
    #[default]
    Move,
    /// Keep the old digest under a backup tag first.
    Backup,
    /// Refuse to move it: the item fails by name.
    Immutable,
}

/// `[jobs.overwrite]`, resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OverwritePolicy {
    /// What happens to a moved tag.
    pub mode: OverwriteMode,
    /// Backup tag name: `{tag}` is the tag, `{date}` the UTC time of the
    /// move as `YYYYMMDD-HHMMSS`.
    pub backup_tag: String,
    /// Backups kept per tag; older ones are deleted.
    pub keep: usize,
}

impl OverwritePolicy {
    /// Default `backup_tag`.
    pub const DEFAULT_BACKUP_TAG: &str = "{tag}-prev-{date}";
    /// Default `keep`.
    pub const DEFAULT_KEEP: usize = 3;

    /// The backup tag name for `tag` moved at `at`.
    pub fn backup_name(&self, tag: &str, at: chrono::DateTime<chrono::Utc>) -> String {
        self.backup_tag
            .replace("{tag}", tag)
            .replace("{date}", &at.format("%Y%m%d-%H%M%S").to_string())
    }
}

impl Default for OverwritePolicy {
    fn default() -> Self {
        OverwritePolicy {
            mode: OverwriteMode::Move,
            backup_tag: Self::DEFAULT_BACKUP_TAG.into(),
            keep: Self::DEFAULT_KEEP,
        }
    }
}
