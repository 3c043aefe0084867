//! Resolves `[jobs.delete]` and `[jobs.overwrite]` (see
//! [`crate::config::DeletePolicy`], [`crate::config::OverwritePolicy`]).

use super::super::file::{FileDelete, FileOverwrite};
use super::super::{DeletePolicy, OverwritePolicy};
use super::{KeyPath, Resolver};
use crate::oci::Tag;

impl Resolver<'_> {
    pub(super) fn delete_policy(&mut self, d: Option<&FileDelete>, p: &KeyPath) -> DeletePolicy {
        let mut policy = DeletePolicy::default();
        let Some(d) = d else {
            return policy;
        };
        policy.enabled = d.enabled.unwrap_or(false);
        if let Some(g) = &d.grace
            && let Some(g) = self.duration(g, &p.key("grace"))
        {
            policy.grace = g;
        }
        if let Some(f) = d.max_fraction {
            if f > 0.0 && f <= 1.0 {
                policy.max_fraction = f;
            } else {
                self.problem(
                    &p.key("max_fraction"),
                    format!(
                        "must be more than 0 and at most 1 (a fraction of the job's tags), not {f}"
                    ),
                );
            }
        }
        policy
    }
}

impl Resolver<'_> {
    pub(super) fn overwrite_policy(
        &mut self,
        o: Option<&FileOverwrite>,
        p: &KeyPath,
    ) -> OverwritePolicy {
        let mut policy = OverwritePolicy::default();
        let Some(o) = o else {
            return policy;
        };
        if let Some(mode) = o.mode {
            policy.mode = mode;
        }
        if let Some(t) = &o.backup_tag {
            policy.backup_tag = t.clone();
            // A template that does not name the tag, or yields no valid
            // tag, would overwrite backups or fail every move.
            let example = policy.backup_name("v1.2.3", chrono::DateTime::UNIX_EPOCH);
            if !t.contains("{tag}") || Tag::new(&example).is_err() {
                self.problem(
                    &p.key("backup_tag"),
                    format!(
                        "{t:?} must contain {{tag}} and make a valid tag (it gives {example:?})"
                    ),
                );
            }
        }
        policy.keep = self.positive(o.keep, OverwritePolicy::DEFAULT_KEEP, &p.key("keep"));
        policy
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{OverwriteMode, load_with_env};

    fn load(extra: &str) -> Result<crate::config::Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            format!(
                "version = 1\n[[jobs]]\nname = \"a\"\nsource = \"r.example/a\"\n\
                 target = \"r.example/m/a\"\n{extra}"
            ),
        )
        .unwrap();
        load_with_env(&path, std::iter::empty::<(String, String)>()).map_err(|e| e.to_string())
    }

    #[test]
    fn bad_fractions_and_templates_are_named() {
        let e = load("[jobs.delete]\nenabled = true\nmax_fraction = 0\n").unwrap_err();
        assert!(e.contains("jobs[0].delete.max_fraction"), "{e}");
        let e = load("[jobs.overwrite]\nbackup_tag = \"prev-{date}\"\n").unwrap_err();
        assert!(
            e.contains("jobs[0].overwrite.backup_tag") && e.contains("{tag}"),
            "{e}"
        );
        let e = load("[jobs.overwrite]\nbackup_tag = \"{tag} old\"\n").unwrap_err();
        assert!(e.contains("make a valid tag"), "{e}");
        let c = load("[jobs.overwrite]\nmode = \"backup\"\nkeep = 2\n").unwrap();
        assert_eq!(c.jobs[0].overwrite.mode, OverwriteMode::Backup);
        assert_eq!(c.jobs[0].overwrite.keep, 2);
        assert!(!c.jobs[0].delete.enabled);
    }
}
