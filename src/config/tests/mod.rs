//! Tests for loading and resolving configurations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

mod paths_and_limits;
mod postgres_state;
mod reference;

const MINIMAL_JOB: &str = r#"
[[jobs]]
name = "a"
source = "ghcr.io/org/a"
target = "localhost:5000/mirror/a"
"#;

/// Writes `text` to a fresh temp dir as `name` and loads it with `env`.
fn load_text(
    name: &str,
    text: &str,
    env: &[(&str, &str)],
) -> (tempfile::TempDir, Result<Config, ConfigErrors>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let res = load_with_env(&path, env);
    (dir, res)
}

fn problems(text: &str) -> Vec<ConfigProblem> {
    let (_dir, res) = load_text("c.toml", text, &[]);
    match res {
        Ok(_) => panic!("expected problems for:\n{text}"),
        Err(e) => e.0,
    }
}

/// Asserts exactly one problem, at `path`, whose message contains `want`.
fn assert_one(text: &str, path: &str, want: &str) {
    let ps = problems(text);
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert_eq!(ps[0].path.to_string(), path, "{ps:#?}");
    assert!(
        ps[0].message.contains(want),
        "{:?} lacks {want:?}",
        ps[0].message
    );
    assert!(ps[0].origin.ends_with("c.toml"), "{}", ps[0].origin);
}

#[test]
fn every_example_config_resolves() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        // REFERENCE.md documents the keys; its example is loaded by `reference`.
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let cfg = load_with_env(&path, []).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!cfg.jobs.is_empty(), "{}", path.display());
        assert!(
            cfg.warnings.is_empty(),
            "{}: {:?}",
            path.display(),
            cfg.warnings
        );
        // `show` must render every example.
        let shown = cfg.to_toml().unwrap();
        assert!(shown.contains("[[jobs]]"), "{shown}");
        seen += 1;
    }
    assert!(seen >= 3, "expected daemon.toml, migration.yaml, demo.toml");
}

#[test]
fn examples_resolve_to_what_they_say() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let daemon = load_with_env(&root.join("daemon.toml"), []).unwrap();
    let alpine = daemon.job("alpine").unwrap();
    assert_eq!(
        alpine.schedule.timing,
        Timing::Interval(Duration::from_secs(6 * 3600))
    );
    assert_eq!(alpine.schedule.jitter, Duration::from_secs(300));
    // [defaults] lists platforms without a mode: indexes stay whole.
    assert_eq!(alpine.platform_mode, PlatformMode::Whole);
    assert_eq!(
        daemon.job("app").unwrap().platform_mode,
        PlatformMode::Filter
    );
    assert_eq!(alpine.referrers.depth, 2);
    let distroless = daemon.job("distroless-static").unwrap();
    assert!(matches!(distroless.schedule.timing, Timing::Cron(_)));
    // The job's own cron replaces the default interval, the jitter stays.
    assert_eq!(distroless.schedule.jitter, Duration::from_secs(300));
    let target = distroless
        .target_repository(&crate::oci::RepoName::new("distroless/static").unwrap())
        .unwrap();
    assert_eq!(
        target.to_string(),
        "registry.internal.example/mirror/distroless/distroless/static"
    );
    let app = daemon.job("app").unwrap();
    assert_eq!(
        app.referrers.include_kinds,
        [ReferrerKind::Signature, ReferrerKind::Sbom]
    );
    assert_eq!(app.tags.digests.len(), 1);
    assert_eq!(
        daemon.registry("registry.internal.example").referrers,
        ReferrersMode::Tags
    );
    assert_eq!(
        daemon.registry("quay.io"),
        RegistrySettings::defaults("quay.io")
    );

    let migration = load_with_env(&root.join("migration.yaml"), []).unwrap();
    let job = &migration.jobs[0];
    let Source::Catalog(cat) = &job.source else {
        panic!("catalog source expected")
    };
    assert_eq!(cat.namespace, "team/");
    assert!(cat.matches("team/app"));
    assert!(!cat.matches("team/tmp-x"));
    assert!(!cat.matches("teamx/app"));
    assert!(!cat.matches("other/app"));
    let t = job
        .target_repository(&crate::oci::RepoName::new("team/app").unwrap())
        .unwrap();
    assert_eq!(t.to_string(), "registry.new.example/migrated/app");
    assert_eq!(job.referrers.source_mode, ReferrersMode::Tags);
    assert_eq!(migration.limits.concurrent_blobs, 16);
    assert!(migration.registry("registry.old.example:5000").plain_http);

    let demo = load_with_env(&root.join("demo.toml"), []).unwrap();
    // Relative paths are the config file's directory's.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(demo.state.database, repo.join("target/demo.db"));
    assert!(matches!(
        &demo.jobs[0].source,
        Source::Repository(r) if r.location == crate::oci::Location::Layout(repo.join("tests/fixtures/demo-layout"))
    ));
    // Built-in defaults.
    assert_eq!(demo.limits.concurrent_jobs, 2);
    assert_eq!(demo.server.listen.to_string(), "127.0.0.1:9110");
    assert_eq!(demo.jobs[0].referrers, ReferrerOptions::default());
}

#[test]
fn unknown_key_is_named() {
    assert_one(
        &format!("version = 1\n[limits]\nconcurent_jobs = 3\n{MINIMAL_JOB}"),
        "limits.concurent_jobs",
        "unknown field",
    );
    assert_one(
        &format!("version = 1\n{MINIMAL_JOB}tag = {{ allow = ['x'] }}\n"),
        "jobs[0].tag",
        "unknown field",
    );
    assert_one(
        &format!("version = 1\nlimit = 3\n{MINIMAL_JOB}"),
        "limit",
        "unknown field",
    );
}

#[test]
fn a_refused_key_does_not_hide_other_faults_in_its_table() {
    let text = format!(
        "version = 1\nversoin = 2\n{MINIMAL_JOB}tag = 'x'\nconcurrency = 'many'\nschedule = {{ interval = 'soon', every = '1h' }}\n"
    );
    let paths: Vec<String> = problems(&text).iter().map(|p| p.path.to_string()).collect();
    assert_eq!(
        paths,
        // Serde's faults in key order, then the checks of the values.
        [
            "versoin",
            "jobs[0].concurrency",
            "jobs[0].schedule.every",
            "jobs[0].tag",
            "jobs[0].schedule.interval",
        ]
    );
}

#[test]
fn bad_version() {
    assert_one(
        &format!("version = 2\n{MINIMAL_JOB}"),
        "version",
        "unsupported version 2",
    );
    assert_one(MINIMAL_JOB, "version", "missing");
}

#[test]
fn bad_reference() {
    let text = "version = 1\n[[jobs]]\nname = \"a\"\nsource = \"ghcr.io/Org/A\"\ntarget = \"localhost:5000/a\"\n";
    assert_one(text, "jobs[0].source", "invalid repository name");
    let text = "version = 1\n[[jobs]]\nname = \"a\"\nsource = \"ghcr.io/org/a:v1\"\ntarget = \"localhost:5000/a\"\n";
    assert_one(text, "jobs[0].source", "names a tag or digest");
}

#[test]
fn bad_regex() {
    assert_one(
        &format!("version = 1\n{MINIMAL_JOB}tags = {{ allow = ['ok', 'v(1'] }}\n"),
        "jobs[0].tags.allow[1]",
        "invalid regex \"v(1\"",
    );
}

#[test]
fn bad_semver() {
    assert_one(
        &format!("version = 1\n{MINIMAL_JOB}tags = {{ semver = '>>1' }}\n"),
        "jobs[0].tags.semver",
        "invalid semver range",
    );
}

#[test]
fn bad_cron() {
    assert_one(
        &format!("version = 1\n{MINIMAL_JOB}schedule = {{ cron = '61 * * * *' }}\n"),
        "jobs[0].schedule.cron",
        "invalid cron expression",
    );
    assert_one(
        &format!(
            "version = 1\n{MINIMAL_JOB}schedule = {{ cron = '0 * * * *', interval = '1h' }}\n"
        ),
        "jobs[0].schedule",
        "not both",
    );
}

#[test]
fn bad_duration() {
    assert_one(
        &format!("version = 1\n[limits]\ndrain_timeout = 'soon'\n{MINIMAL_JOB}"),
        "limits.drain_timeout",
        "invalid duration \"soon\"",
    );
    // A bad default is reported once, not once per job.
    let text = format!(
        "version = 1\n[defaults]\nschedule = {{ interval = '5 parsecs' }}\n{MINIMAL_JOB}{}",
        MINIMAL_JOB.replace("\"a\"", "\"b\"")
    );
    assert_one(&text, "defaults.schedule.interval", "invalid duration");
}

#[test]
fn duplicate_job_name() {
    assert_one(
        &format!("version = 1\n{MINIMAL_JOB}{MINIMAL_JOB}"),
        "jobs[1].name",
        "duplicate job name \"a\"",
    );
}

#[test]
fn missing_secret_file() {
    assert_one(
        &format!(
            "version = 1\n[registries.\"ghcr.io\"]\nusername = 'u'\npassword_file = '/nonexistent/pw'\n{MINIMAL_JOB}"
        ),
        "registries.\"ghcr.io\".password_file",
        "cannot read secret file \"/nonexistent/pw\"",
    );
}

#[test]
fn other_job_checks() {
    let catalog_to_repo = "version = 1\n[[jobs]]\nname = 'm'\nsource = { registry = 'old.example' }\ntarget = 'new.example/x'\n";
    assert_one(catalog_to_repo, "jobs[0].target", "catalog source");
    let layout_to_root = "version = 1\n[[jobs]]\nname = 'l'\nsource = 'oci:some/dir'\ntarget = { registry = 'new.example' }\n";
    assert_one(
        layout_to_root,
        "jobs[0].target",
        "maps oci:some/dir to an invalid repository",
    );
    assert_one(
        &format!("version = 1\n{MINIMAL_JOB}platforms = ['linux']\n"),
        "jobs[0].platforms[0]",
        "invalid platform",
    );
    assert_one(
        &format!("version = 1\n[registries.\"ghcr.io\"]\nusername = 'u'\n{MINIMAL_JOB}"),
        "registries.\"ghcr.io\".username",
        "needs password",
    );
    assert_one(
        &format!("version = 1\n[registries.\"https://ghcr.io\"]\n{MINIMAL_JOB}"),
        "registries.\"https://ghcr.io\"",
        "invalid registry host",
    );
    assert_one("version = 1\n", "jobs", "no jobs");
}

#[test]
fn platforms_merge_with_defaults() {
    let text = format!(
        "version = 1\n[defaults]\nplatforms = ['linux/amd64']\n{MINIMAL_JOB}{}platform_mode = 'whole'\n{}platforms = ['linux/arm64/v8']\n",
        MINIMAL_JOB.replace("\"a\"", "\"b\""),
        MINIMAL_JOB.replace("\"a\"", "\"c\""),
    );
    let (_d, res) = load_text("c.toml", &text, &[]);
    let cfg = res.unwrap();
    let view = |name: &str| {
        let j = cfg.job(name).unwrap();
        (
            j.platforms
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            j.platform_mode,
        )
    };
    // A platform list alone never switches to filter mode: indexes stay
    // whole (and digest-exact) unless a job asks for "filter".
    assert_eq!(
        view("a"),
        (vec!["linux/amd64".to_string()], PlatformMode::Whole)
    );
    assert_eq!(
        view("b"),
        (vec!["linux/amd64".to_string()], PlatformMode::Whole)
    );
    // A job's own list replaces the default one.
    assert_eq!(
        view("c"),
        // Parsed once into the engine's normal form: arm64/v8 is arm64.
        (vec!["linux/arm64".to_string()], PlatformMode::Whole)
    );
    let (_d, res) = load_text(
        "c.toml",
        &format!(
            "version = 1\n{MINIMAL_JOB}platforms = ['linux/amd64']\nplatform_mode = 'filter'\n"
        ),
        &[],
    );
    assert_eq!(res.unwrap().jobs[0].platform_mode, PlatformMode::Filter);
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = r#"
version = 1

[limits]
drain_timeout = "later"

[[jobs]]
name = "a"
source = "ghcr.io/org/a"
target = "localhost:5000/a"
tags = { allow = ["("] }

[[jobs]]
name = "b"
source = "ghcr.io/org/b"
target = "localhost:5000/b"
schedule = { cron = "not a cron" }
"#;
    let (_dir, res) = load_text("daemon.toml", text, &[]);
    let err = res.unwrap_err();
    let paths: Vec<String> = err.0.iter().map(|p| p.path.to_string()).collect();
    assert_eq!(
        paths,
        [
            "limits.drain_timeout",
            "jobs[0].tags.allow[0]",
            "jobs[1].schedule.cron"
        ],
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("invalid configuration (3 problems):"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        text.contains("daemon.toml: jobs[1].schedule.cron: invalid cron expression"),
        "{text}"
    );
}

#[test]
fn yaml_is_read_by_extension_and_unknown_extensions_refused() {
    let yaml = "version: 1\njobs:\n  - name: a\n    source: ghcr.io/org/a\n    target: localhost:5000/a\n    tags:\n      newest: 2\n";
    let (_d, res) = load_text("c.yml", yaml, &[]);
    assert_eq!(res.unwrap().jobs[0].tags.newest, Some(2));
    let (_d, res) = load_text("c.json", "{}", &[]);
    assert!(
        res.unwrap_err()
            .to_string()
            .contains("unsupported file extension")
    );
    let res = load_with_env(Path::new("/nonexistent/c.toml"), []);
    assert!(
        res.unwrap_err()
            .to_string()
            .contains("cannot read the file")
    );
}

#[test]
fn env_overrides_with_jail() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "c.toml",
            &format!("version = 1\n[limits]\nconcurrent_jobs = 1\n[registries.\"ghcr.io\"]\nusername = 'u'\npassword = 'from-file'\n{MINIMAL_JOB}"),
        )?;
        jail.set_env("OCIMIRROR_LIMITS__CONCURRENT_JOBS", "7");
        jail.set_env("OCIMIRROR_STATE__DATABASE", "/tmp/x.db");
        jail.set_env("OCIMIRROR_REGISTRIES__ghcr.io__PLAIN_HTTP", "true");
        // Leading zeros survive: secrets stay strings.
        jail.set_env("OCIMIRROR_REGISTRIES__ghcr.io__PASSWORD", "0123");
        jail.set_env(
            "OCIMIRROR_DEFAULTS__PLATFORMS",
            "[linux/amd64, linux/arm64]",
        );
        // Not an override (no `__`): left to the CLI.
        jail.set_env("OCIMIRROR_CONFIG", "elsewhere.toml");
        let cfg = load(Path::new("c.toml")).map_err(|e| e.to_string())?;
        assert_eq!(cfg.limits.concurrent_jobs, 7);
        assert_eq!(cfg.state.database, PathBuf::from("/tmp/x.db"));
        let reg = cfg.registry("ghcr.io");
        assert!(reg.plain_http);
        match &reg.auth {
            RegistryAuth::Basic { username, password } => {
                assert_eq!(username, "u");
                assert_eq!(password.expose(), "0123");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(cfg.jobs[0].platforms.len(), 2);
        Ok(())
    });
}

#[test]
fn env_problems_name_the_environment() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("c.toml", &format!("version = 1\n{MINIMAL_JOB}"))?;
        jail.set_env("OCIMIRROR_LIMITS__DRAIN_TIMEOUT", "whenever");
        jail.set_env("OCIMIRROR_LIMITS__TYPO", "1");
        let err = load(Path::new("c.toml")).unwrap_err();
        let shown: Vec<String> = err.0.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            shown,
            [
                "environment: limits.typo: unknown field: found `typo`, expected `one of `concurrent_jobs`, `concurrent_blobs`, `drain_timeout`, `item_timeout`, `max_index_depth`, `max_nodes_per_image`, `max_manifest_bytes_per_image`, `max_referrers_per_subject``",
                "environment: limits.drain_timeout: invalid duration \"whenever\": expected number at 0 (use e.g. \"30s\", \"15m\", \"1h 30m\")",
            ]
        );
        Ok(())
    });
}

#[test]
fn file_indirection() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("pw", "s3cret\n")?;
        jail.create_file("tok", "t0ken\n")?;
        jail.create_file("db-path", "/var/lib/db.sqlite\n")?;
        jail.create_file(
            "c.toml",
            &format!(
                "version = 1\n[registries.\"ghcr.io\"]\nusername = 'u'\npassword_file = 'pw'\n{MINIMAL_JOB}"
            ),
        )?;
        // The schema field `token_file`, given through the environment.
        jail.set_env("OCIMIRROR_REGISTRIES__quay.io__TOKEN_FILE", "tok");
        // The generic form: any key read from a file.
        jail.set_env("OCIMIRROR_STATE__DATABASE_FILE", "db-path");
        let cfg = load(Path::new("c.toml")).map_err(|e| e.to_string())?;
        match &cfg.registry("ghcr.io").auth {
            RegistryAuth::Basic { password, .. } => assert_eq!(password.expose(), "s3cret"),
            other => panic!("{other:?}"),
        }
        match &cfg.registry("quay.io").auth {
            RegistryAuth::Token { token } => assert_eq!(token.expose(), "t0ken"),
            other => panic!("{other:?}"),
        }
        assert_eq!(cfg.state.database, PathBuf::from("/var/lib/db.sqlite"));

        jail.set_env("OCIMIRROR_LOG__LEVEL_FILE", "missing-file");
        let err = load(Path::new("c.toml")).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert_eq!(err.0[0].origin, "environment");
        assert_eq!(err.0[0].path.to_string(), "log.level");
        assert!(
            err.0[0].message.contains("OCIMIRROR_LOG__LEVEL_FILE"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn secrets_are_redacted_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "hunter2-file").unwrap();
    let text = format!(
        "version = 1\n[registries.\"ghcr.io\"]\nusername = 'u'\npassword_file = '{}'\n[registries.\"quay.io\"]\ntoken = 'hunter2-inline'\n{MINIMAL_JOB}",
        pw.display()
    );
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = load_with_env(&path, []).unwrap();
    let shown = cfg.to_toml().unwrap();
    let debug = format!("{cfg:?}");
    for out in [&shown, &debug] {
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("<redacted>"), "{out}");
    }
    assert_eq!(Secret::new("x").to_string(), "<redacted>");
    // `show` output is valid TOML with the defaults filled in.
    let parsed: toml::Value = toml::from_str(&shown).unwrap();
    assert_eq!(parsed["version"].as_integer(), Some(1));
    assert_eq!(
        parsed["registries"]["ghcr.io"]["auth"]["password"].as_str(),
        Some("<redacted>")
    );
    assert_eq!(
        parsed["jobs"][0]["schedule"]["interval"].as_str(),
        Some("1h")
    );
    assert_eq!(parsed["limits"]["drain_timeout"].as_str(), Some("30s"));
}

#[test]
fn errors_never_quote_secrets() {
    let ps = problems(&format!(
        "version = 1\n[registries.\"ghcr.io\"]\ntoken = 987654321\n{MINIMAL_JOB}"
    ));
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0].path.to_string(), "registries.\"ghcr.io\".token");
    assert!(!ps[0].message.contains("987654321"), "{}", ps[0].message);
    assert!(ps[0].message.contains("not shown"), "{}", ps[0].message);
    // A syntax error on a secret's line does not echo the line.
    let ps = problems("version = 1\n[registries.\"ghcr.io\"]\npassword = \"hunter2\n");
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert!(!ps[0].message.contains("hunter2"), "{}", ps[0].message);
    assert!(ps[0].message.contains("line 3"), "{}", ps[0].message);
}

#[test]
fn check_reports_exit_status_and_warnings() {
    // `check` and `show` read the process environment: run inside a Jail so
    // no other test's OCIMIRROR_* variables are set meanwhile.
    figment::Jail::expect_with(|jail| {
        jail.create_file("good.toml", &format!("version = 1\n{MINIMAL_JOB}"))?;
        jail.create_file("bad.toml", "version = 3\n")?;
        jail.create_file(
            "spare.toml",
            &format!(
                "version = 1\n[registries.\"ghcr.i0\"]\n[registries.\"ghcr.io\"]\n{MINIMAL_JOB}"
            ),
        )?;
        let ok = check(Path::new("good.toml"));
        assert_eq!(ok.exit_code, 0, "{}", ok.text);
        assert_eq!(ok.text, "good.toml: OK (1 job, 0 registries)");
        let fail = check(Path::new("bad.toml"));
        assert_eq!(fail.exit_code, EXIT_INVALID_CONFIG);
        assert!(
            fail.text
                .contains("bad.toml: version: unsupported version 3"),
            "{}",
            fail.text
        );
        assert!(
            fail.text.contains("bad.toml: jobs: no jobs defined"),
            "{}",
            fail.text
        );
        let spare = check(Path::new("spare.toml"));
        assert_eq!(spare.exit_code, 0, "{}", spare.text);
        assert_eq!(
            spare.text,
            "spare.toml: OK (1 job, 2 registries)\n  warning: spare.toml: registries.\"ghcr.i0\": no job reads from or writes to \"ghcr.i0\": is the host name right?"
        );
        assert!(
            show(Path::new("good.toml"))
                .unwrap()
                .contains("name = \"a\"")
        );
        Ok(())
    });
}

#[test]
fn key_paths_display() {
    let p = KeyPath::root()
        .key("jobs")
        .index(2)
        .key("tags")
        .key("allow")
        .index(0);
    assert_eq!(p.to_string(), "jobs[2].tags.allow[0]");
    assert_eq!(
        KeyPath::root().key("registries").key("ghcr.io").to_string(),
        "registries.\"ghcr.io\""
    );
}

#[test]
fn jobs_follow_referrers_as_deep_as_copy_does() {
    assert_eq!(
        ReferrerOptions::default().depth as usize,
        crate::copy::CopyOptions::default().max_depth
    );
}
