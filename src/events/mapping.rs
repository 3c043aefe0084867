//! Which jobs an event concerns, and what each must sync. A job covers an
//! event when its source is the event's registry and repository (or a
//! catalog source whose rules match the repository), and its tag rules
//! select the tag. A referrer push (a fallback tag `sha256-<hex>`, a cosign
//! tag `sha256-<hex>.sig`) re-syncs its subject's graph; a push by digest
//! alone is decided by the worker, which can read the manifest's subject.

use crate::config::{Job, Source};
use crate::oci::referrers::{is_cosign_tag, is_fallback_tag};
use crate::oci::{Digest, Location, RepoName, Tag};

use super::PushEvent;

/// What one job must do for an event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Sync this tag.
    Tag(Tag),
    /// A manifest pushed by digest: sync its subject's graph when it has a
    /// subject, else the digest itself when the job selects it.
    Digest(Digest),
    /// A referrer of this manifest changed: re-sync the subject's graph.
    Subject(Digest),
}

impl Target {
    /// `v1`, `sha256:…`, `subject sha256:…`: the item part of the dedupe key.
    pub fn key(&self) -> String {
        match self {
            Target::Tag(t) => t.as_str().to_string(),
            Target::Digest(d) => d.to_string(),
            Target::Subject(d) => format!("subject {d}"),
        }
    }
}

/// One unit of event work: a job, a source repository and what to sync.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Work {
    /// The job.
    pub job: String,
    /// The source repository.
    pub repository: RepoName,
    /// What to sync.
    pub target: Target,
}

impl Work {
    /// `job repo:tag`, the dedupe key and the name in logs and the database.
    pub fn key(&self) -> String {
        format!("{} {}:{}", self.job, self.repository, self.target.key())
    }
}

/// The work `event` means for `jobs`; empty when no job covers it (the
/// caller counts it as ignored). `registry` is the sender's configured
/// registry, which wins over what the body says.
pub fn map(jobs: &[Job], registry: Option<&str>, event: &PushEvent) -> Vec<Work> {
    let Some(registry) = registry.or(event.registry.as_deref()) else {
        return Vec::new();
    };
    let Ok(repository) = RepoName::new(&event.repository) else {
        return Vec::new();
    };
    let target = match (&event.tag, &event.digest) {
        (Some(t), _) => match referrer_subject(t) {
            Some(subject) => Target::Subject(subject),
            None => match Tag::new(t) {
                Ok(tag) => Target::Tag(tag),
                Err(_) => return Vec::new(),
            },
        },
        (None, Some(d)) => Target::Digest(d.clone()),
        (None, None) => return Vec::new(),
    };
    jobs.iter()
        .filter(|job| covers(job, registry, &repository))
        .filter(|job| match &target {
            Target::Tag(t) => selects(job, t),
            Target::Digest(_) | Target::Subject(_) => true,
        })
        .map(|job| Work {
            job: job.name.clone(),
            repository: repository.clone(),
            target: target.clone(),
        })
        .collect()
}

/// True when `job` reads `repository` of `registry`.
fn covers(job: &Job, registry: &str, repository: &RepoName) -> bool {
    match &job.source {
        Source::Repository(r) => {
            r.location == Location::Registry(registry.to_string()) && &r.repo == repository
        }
        Source::Catalog(c) => c.registry == registry && c.matches(repository.as_str()),
    }
}

/// True when `job`'s tag rules (or its fixed tag) select `tag`.
fn selects(job: &Job, tag: &Tag) -> bool {
    if let Source::Repository(r) = &job.source
        && let Some(fixed) = &r.tag
    {
        return fixed == tag;
    }
    !job.tags.select(&[tag.as_str().to_string()]).is_empty()
}

/// The subject a referrer tag stands for: `sha256-<hex>` (fallback index)
/// and `sha256-<hex>.sig|.att|.sbom` (cosign) name `sha256:<hex>`.
pub fn referrer_subject(tag: &str) -> Option<Digest> {
    let base = if is_fallback_tag(tag) {
        tag
    } else if is_cosign_tag(tag) {
        tag.rsplit_once('.').map(|(b, _)| b)?
    } else {
        return None;
    };
    let (alg, hex) = base.split_once('-')?;
    format!("{alg}:{hex}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_with_env;

    const HEX: &str = "4b1b5a5e0e7e2b7e8e1d0f3a7c6b5a4e3d2c1b0a9f8e7d6c5b4a39281706f5e4";

    fn jobs() -> Vec<Job> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"version = 1
[[jobs]]
name = "one"
source = "src.example/team/app"
target = "dst.example/mirror/app"
tags = { allow = ["v.*"] }
[[jobs]]
name = "all"
source = { registry = "src.example", namespace = "team/", exclude = [".*-test"] }
target = { registry = "dst.example", prefix = "m" }
"#,
        )
        .unwrap();
        load_with_env(&path, std::iter::empty::<(String, String)>())
            .unwrap()
            .jobs
    }

    fn event(repo: &str, tag: Option<&str>, digest: Option<&str>) -> PushEvent {
        PushEvent {
            registry: None,
            repository: repo.into(),
            tag: tag.map(Into::into),
            digest: digest.map(|d| d.parse().unwrap()),
        }
    }

    fn names(w: &[Work]) -> Vec<String> {
        w.iter().map(Work::key).collect()
    }

    #[test]
    fn repository_rules_and_tag_selection_pick_the_jobs() {
        let jobs = jobs();
        let reg = Some("src.example");
        assert_eq!(
            names(&map(&jobs, reg, &event("team/app", Some("v1"), None))),
            ["one team/app:v1", "all team/app:v1"]
        );
        // Unselected tag: only the catalog job (which takes every tag).
        assert_eq!(
            names(&map(&jobs, reg, &event("team/app", Some("latest"), None))),
            ["all team/app:latest"]
        );
        // Excluded repository, other registry, no registry at all.
        assert!(map(&jobs, reg, &event("team/app-test", Some("v1"), None)).is_empty());
        assert!(
            map(
                &jobs,
                Some("other.example"),
                &event("team/app", Some("v1"), None)
            )
            .is_empty()
        );
        assert!(map(&jobs, None, &event("team/app", Some("v1"), None)).is_empty());
    }

    #[test]
    fn referrer_tags_resync_their_subject() {
        let jobs = jobs();
        let w = map(
            &jobs,
            Some("src.example"),
            &event("team/app", Some(&format!("sha256-{HEX}.sig")), None),
        );
        assert_eq!(w.len(), 2);
        assert_eq!(
            w[0].target,
            Target::Subject(format!("sha256:{HEX}").parse().unwrap())
        );
        let w = map(
            &jobs,
            Some("src.example"),
            &event("team/app", Some(&format!("sha256-{HEX}")), None),
        );
        assert!(matches!(w[0].target, Target::Subject(_)));
        let w = map(
            &jobs,
            Some("src.example"),
            &event("team/app", None, Some(&format!("sha256:{HEX}"))),
        );
        assert!(matches!(w[0].target, Target::Digest(_)));
    }
}
