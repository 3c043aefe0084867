//! Resolves `[jobs.delete]` (see [`crate::config::DeletePolicy`]).

use super::super::DeletePolicy;
use super::super::file::FileDelete;
use super::{KeyPath, Resolver};

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
