//! The jobs half of the resolve step: `[defaults]`, every `[[jobs]]`
//! entry with the defaults merged in, schedules, tag selection, sources and
//! target mappings.

use super::*;
use crate::oci::ReferrerKind;

impl Resolver<'_> {
    pub(super) fn defaults(&mut self, d: FileDefaults) -> ResolvedDefaults {
        let p = KeyPath::root().key("defaults");
        let schedule = d.schedule.clone().unwrap_or_default();
        // Validate once here so a bad default is reported once, not per job.
        let _ = self.schedule(
            Some(&schedule),
            &FileSchedule::default(),
            &p.key("schedule"),
        );
        let platforms = d
            .platforms
            .as_ref()
            .map(|ps| self.platforms(ps, &p.key("platforms")))
            .unwrap_or_default();
        let referrers = d.referrers.clone().unwrap_or_default();
        self.check_referrers(&referrers, &p.key("referrers"));
        let policy = self.default_policy(d.policy.as_ref());
        ResolvedDefaults {
            schedule,
            platforms,
            platform_mode: d.platform_mode,
            referrers,
            policy,
        }
    }

    /// A job's schedule over the defaults. Problems in the defaults' own
    /// values are reported once, by [`Self::defaults`].
    fn schedule(
        &mut self,
        job: Option<&FileSchedule>,
        defaults: &FileSchedule,
        p: &KeyPath,
    ) -> Option<Schedule> {
        let before = self.problems.len();
        let (timing_src, timing_path) = match job {
            Some(j) if j.interval.is_some() || j.cron.is_some() => (j, p.clone()),
            _ => (defaults, KeyPath::root().key("defaults").key("schedule")),
        };
        let own_timing = timing_path == *p;
        let timing = match (&timing_src.interval, &timing_src.cron) {
            (Some(_), Some(_)) => {
                if own_timing {
                    self.problem(p, "set either interval or cron, not both");
                }
                None
            }
            (Some(i), None) => if own_timing {
                self.duration(i, &p.key("interval"))
            } else {
                humantime::parse_duration(i.trim()).ok()
            }
            .and_then(|d| {
                if d.is_zero() {
                    if own_timing {
                        self.problem(&p.key("interval"), "interval must be longer than 0s");
                    }
                    None
                } else {
                    Some(Timing::Interval(d))
                }
            }),
            (None, Some(c)) => match CronExpr::parse(c) {
                Ok(c) => Some(Timing::Cron(c)),
                Err(e) => {
                    if own_timing {
                        self.problem(
                            &p.key("cron"),
                            format!("invalid cron expression {c:?}: {e} (expected 5 fields: minute hour day-of-month month day-of-week)"),
                        );
                    }
                    None
                }
            },
            (None, None) => Some(Schedule::default().timing),
        };
        let jitter_job = job.and_then(|j| j.jitter.as_ref());
        let jitter = match (jitter_job, &defaults.jitter) {
            (Some(j), _) => self.duration(j, &p.key("jitter")),
            (None, Some(j)) => humantime::parse_duration(j.trim()).ok(),
            (None, None) => Some(Duration::ZERO),
        };
        if self.problems.len() > before {
            return None;
        }
        Some(Schedule {
            timing: timing?,
            jitter: jitter?,
        })
    }

    fn platforms(&mut self, list: &[String], p: &KeyPath) -> Vec<PlatformSpec> {
        let mut out = Vec::new();
        for (i, s) in list.iter().enumerate() {
            match s.parse::<PlatformSpec>() {
                Ok(pl) => out.push(pl),
                Err(_) => self.problem(
                    &p.index(i),
                    format!("invalid platform {s:?}: expected os/arch[/variant], e.g. \"linux/arm64/v8\""),
                ),
            }
        }
        out
    }

    fn check_referrers(&mut self, r: &FileReferrers, p: &KeyPath) {
        if r.depth == Some(0) {
            self.problem(
                &p.key("depth"),
                "must be at least 1 (use enabled = false to skip referrers)",
            );
        }
        for (key, list) in [
            ("include_artifact_types", &r.include_artifact_types),
            ("exclude_artifact_types", &r.exclude_artifact_types),
        ] {
            for (i, t) in list.iter().flatten().enumerate() {
                let valid = t.split_once('/').is_some_and(|(a, b)| {
                    !a.is_empty() && !b.is_empty() && !t.contains(char::is_whitespace)
                });
                if !valid {
                    self.problem(
                        &p.key(key).index(i),
                        format!("invalid artifact type {t:?}: expected a media type like \"application/vnd.dev.cosign.artifact.sig.v1+json\""),
                    );
                }
            }
        }
        for (key, list) in [
            ("include_kinds", &r.include_kinds),
            ("exclude_kinds", &r.exclude_kinds),
        ] {
            for (i, k) in list.iter().flatten().enumerate() {
                if let Err(e) = k.parse::<ReferrerKind>() {
                    self.problem(&p.key(key).index(i), e);
                }
            }
        }
    }

    fn patterns(&mut self, list: Option<&Vec<String>>, p: &KeyPath) -> Vec<Pattern> {
        let mut out = Vec::new();
        for (i, s) in list.into_iter().flatten().enumerate() {
            match Pattern::new(s) {
                Ok(pat) => out.push(pat),
                Err(e) => {
                    // regex errors span several lines; keep the problem on one.
                    let msg = e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .trim()
                        .to_string();
                    self.problem(&p.index(i), format!("invalid regex {s:?}: {msg}"));
                }
            }
        }
        out
    }

    fn tags(&mut self, t: Option<&FileTags>, p: &KeyPath) -> TagSelector {
        let Some(t) = t else {
            return TagSelector::default();
        };
        let allow = self.patterns(t.allow.as_ref(), &p.key("allow"));
        let deny = self.patterns(t.deny.as_ref(), &p.key("deny"));
        let semver = t
            .semver
            .as_ref()
            .and_then(|s| match semver::VersionReq::parse(s) {
                Ok(r) => Some(r),
                Err(e) => {
                    self.problem(&p.key("semver"), format!("invalid semver range {s:?}: {e}"));
                    None
                }
            });
        if t.newest == Some(0) {
            self.problem(&p.key("newest"), "must be at least 1");
        }
        let mut digests = Vec::new();
        for (i, d) in t.digests.iter().flatten().enumerate() {
            match Digest::from_str(d) {
                Ok(d) => digests.push(d),
                Err(e) => self.problem(
                    &p.key("digests").index(i),
                    format!("invalid digest {d:?}: {e}"),
                ),
            }
        }
        TagSelector {
            allow,
            deny,
            semver,
            newest: t.newest,
            digests,
        }
    }

    fn repository(&mut self, s: &str, p: &KeyPath) -> Option<ImageReference> {
        match ImageReference::from_str(s) {
            Ok(r) if r.tag.is_some() || r.digest.is_some() => {
                self.problem(
                    p,
                    format!("{s:?} names a tag or digest: give the repository only and select tags with `tags`"),
                );
                None
            }
            Ok(r) => Some(r),
            Err(e) => {
                self.problem(p, e.to_string());
                None
            }
        }
    }

    fn host_field(&mut self, host: &str, p: &KeyPath) -> Option<String> {
        match validate_host(host) {
            Ok(h) => Some(h),
            Err(msg) => {
                self.problem(p, msg);
                None
            }
        }
    }

    pub(super) fn job(&mut self, j: FileJob, d: &ResolvedDefaults, p: &KeyPath) -> Option<Job> {
        let before = self.problems.len();
        if j.name.is_empty()
            || !j
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            self.problem(
                &p.key("name"),
                format!(
                    "invalid job name {:?}: use letters, digits, '.', '_' and '-'",
                    j.name
                ),
            );
        }
        let source = match &j.source {
            StrOrTable::Str(s) => self.repository(s, &p.key("source")).map(Source::Repository),
            StrOrTable::Table(c) => self.catalog(c, &p.key("source")).map(Source::Catalog),
        };
        let target = match &j.target {
            StrOrTable::Str(s) => self.repository(s, &p.key("target")).map(Target::Repository),
            StrOrTable::Table(m) => self.mapping(m, &p.key("target")).map(Target::Mapping),
        };
        if let (Some(Source::Catalog(_)), Some(Target::Repository(_))) = (&source, &target) {
            self.problem(
                &p.key("target"),
                "a catalog source copies many repositories: the target must be a table { registry, prefix }",
            );
        }
        if let (Some(Source::Repository(s)), Some(Target::Repository(t))) = (&source, &target)
            && s == t
        {
            self.problem(&p.key("target"), "target is the same repository as source");
        }
        if let (Some(Source::Repository(s)), Some(Target::Mapping(m))) = (&source, &target) {
            if m.strip_namespace {
                self.problem(
                    &p.key("target").key("strip_namespace"),
                    "only applies to catalog sources",
                );
            }
            // With one source repository the mapped name is known now.
            if let Err(e) = m.map(s.repo.as_str()) {
                self.problem(
                    &p.key("target"),
                    format!("maps {s} to an invalid repository: {e}"),
                );
            }
        }
        let tags = self.tags(j.tags.as_ref(), &p.key("tags"));
        let own_platforms = j
            .platforms
            .as_ref()
            .map(|ps| self.platforms(ps, &p.key("platforms")));
        let platforms = own_platforms.unwrap_or_else(|| d.platforms.clone());
        // Whole unless the user asks for filter: a platform list alone
        // narrows nothing, so indexes (and their signatures) stay
        // digest-exact, as config/daemon.toml says.
        let platform_mode = j
            .platform_mode
            .or(d.platform_mode)
            .unwrap_or(PlatformMode::Whole);
        let referrers = match &j.referrers {
            Some(r) => {
                self.check_referrers(r, &p.key("referrers"));
                merge_referrers(r, &d.referrers)
            }
            None => merge_referrers(&FileReferrers::default(), &d.referrers),
        };
        let schedule = self.schedule(j.schedule.as_ref(), &d.schedule, &p.key("schedule"));
        let concurrency = self.positive(
            j.concurrency,
            Job::DEFAULT_CONCURRENCY,
            &p.key("concurrency"),
        );
        let delete = self.delete_policy(j.delete.as_ref(), &p.key("delete"));
        let overwrite = self.overwrite_policy(j.overwrite.as_ref(), &p.key("overwrite"));
        let policy = self.policy(j.policy.as_ref(), &d.policy, &p.key("policy"));
        if self.problems.len() > before {
            return None;
        }
        Some(Job {
            name: j.name,
            source: source?,
            target: target?,
            tags,
            platforms,
            platform_mode,
            referrers,
            schedule: schedule?,
            concurrency,
            delete,
            overwrite,
            policy,
        })
    }

    fn catalog(&mut self, c: &FileCatalogSource, p: &KeyPath) -> Option<CatalogSource> {
        let registry = self.host_field(&c.registry, &p.key("registry"));
        let namespace = c
            .namespace
            .as_deref()
            .map(|n| n.trim_matches('/'))
            .unwrap_or("");
        let namespace = if namespace.is_empty() {
            String::new()
        } else if crate::oci::RepoName::new(namespace).is_err() {
            self.problem(
                &p.key("namespace"),
                format!(
                    "invalid namespace {namespace:?}: must be a repository path like \"team/\""
                ),
            );
            String::new()
        } else {
            format!("{namespace}/")
        };
        let include = self.patterns(c.include.as_ref(), &p.key("include"));
        let exclude = self.patterns(c.exclude.as_ref(), &p.key("exclude"));
        Some(CatalogSource {
            registry: registry?,
            namespace,
            include,
            exclude,
        })
    }

    fn mapping(&mut self, m: &FileTargetMapping, p: &KeyPath) -> Option<TargetMapping> {
        let registry = self.host_field(&m.registry, &p.key("registry"))?;
        let prefix = m
            .prefix
            .as_deref()
            .unwrap_or("")
            .trim_matches('/')
            .to_string();
        if !prefix.is_empty() && crate::oci::RepoName::new(&prefix).is_err() {
            self.problem(
                &p.key("prefix"),
                format!("invalid prefix {prefix:?}: must be a repository path like \"mirror/\""),
            );
            return None;
        }
        Some(TargetMapping {
            registry,
            prefix,
            strip_namespace: m.strip_namespace.unwrap_or(false),
        })
    }
}

/// `[defaults]` after validation, still in file form where jobs merge
/// field by field.
pub(super) struct ResolvedDefaults {
    schedule: FileSchedule,
    platforms: Vec<PlatformSpec>,
    platform_mode: Option<PlatformMode>,
    referrers: FileReferrers,
    policy: policy::DefaultPolicy,
}

fn merge_referrers(job: &FileReferrers, d: &FileReferrers) -> ReferrerOptions {
    let base = ReferrerOptions::default();
    ReferrerOptions {
        enabled: job.enabled.or(d.enabled).unwrap_or(base.enabled),
        depth: job.depth.or(d.depth).unwrap_or(base.depth),
        source_mode: job
            .source_mode
            .or(d.source_mode)
            .unwrap_or(base.source_mode),
        target_mode: job
            .target_mode
            .or(d.target_mode)
            .unwrap_or(base.target_mode),
        include_artifact_types: job
            .include_artifact_types
            .clone()
            .or_else(|| d.include_artifact_types.clone())
            .unwrap_or_default(),
        exclude_artifact_types: job
            .exclude_artifact_types
            .clone()
            .or_else(|| d.exclude_artifact_types.clone())
            .unwrap_or_default(),
        include_kinds: kinds(job.include_kinds.as_ref().or(d.include_kinds.as_ref())),
        exclude_kinds: kinds(job.exclude_kinds.as_ref().or(d.exclude_kinds.as_ref())),
        cosign_tags: job
            .cosign_tags
            .or(d.cosign_tags)
            .unwrap_or(base.cosign_tags),
        cosign: job.cosign.or(d.cosign).unwrap_or(base.cosign),
        cosign_keep_original: job
            .cosign_keep_original
            .or(d.cosign_keep_original)
            .unwrap_or(base.cosign_keep_original),
    }
}

/// The kinds of a list that `check_referrers` validated (invalid words were
/// reported there).
fn kinds(list: Option<&Vec<String>>) -> Vec<ReferrerKind> {
    list.into_iter()
        .flatten()
        .filter_map(|k| k.parse().ok())
        .collect()
}
