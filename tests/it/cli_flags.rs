//! The flags regsync, skopeo and crane users reach for, through the real
//! binary: `copy` credentials, TLS and `-c`, shell completions, the man
//! page, `--version` and `serve --listen`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::support::cli::{ocimirror_with_env, text};
use crate::support::distribution::Distribution;
use crate::support::registry::{Auth, Options, TestRegistry};

const REPO: &str = "team/app";
const DEST_USER: &str = "bob";
const DEST_PASSWORD: &str = "dest-pw-42";

async fn ocimirror(args: &[&str]) -> Output {
    ocimirror_with_env(Path::new("."), args, &[]).await
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The demo image as an `oci:` source (no registry needed).
fn demo_source() -> String {
    format!(
        "oci:{}:v1.0.0",
        manifest_dir().join("tests/fixtures/demo-layout").display()
    )
}

async fn registry(auth: Option<Auth>) -> TestRegistry {
    TestRegistry::start(Options {
        auth,
        ..Options::default()
    })
    .await
}

fn both(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn dest_creds_from_the_environment_reach_only_the_destination() {
    let src = registry(None).await;
    let digest = src.seed_image(REPO, "v1", &[b"layer"]);
    let dst = registry(Some(Auth::basic(DEST_USER, DEST_PASSWORD))).await;
    let from = format!("{}/{REPO}:v1", src.host());
    let to = format!("{}/{REPO}:v1", dst.host());
    let creds = format!("{DEST_USER}:{DEST_PASSWORD}");

    // Without credentials the destination refuses.
    let out = ocimirror(&["copy", "--no-docker-config", &from, &to]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // The password comes from the environment, not the command line.
    let out = ocimirror_with_env(
        Path::new("."),
        &["copy", "--no-docker-config", &from, &to],
        &[("OCIMIRROR_DEST_CREDS", &creds), ("OCIMIRROR_LOG", "debug")],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let (_, bytes) = dst.manifest(REPO, "v1").expect("copied manifest");
    assert_eq!(
        format!("sha256:{}", ocimirror::oci::Digest::sha256(&bytes).hex()),
        digest
    );
    assert!(
        dst.log()
            .iter()
            .any(|r| r.auth_scheme.as_deref() == Some("Basic") && r.status == 201),
        "the destination never saw the credentials"
    );
    let sent_to_source: Vec<_> = src
        .log()
        .into_iter()
        .filter(|r| r.auth_scheme.is_some())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        sent_to_source.is_empty(),
        "credentials went to the source: {sent_to_source:?}"
    );
    assert!(!both(&out).contains(DEST_PASSWORD), "{}", text(&out));
}

#[tokio::test]
async fn wrong_src_creds_name_the_registry_and_exit_1_or_3() {
    let src = registry(Some(Auth::basic("alice", "right-pw"))).await;
    src.seed_image(REPO, "v1", &[b"layer"]);
    let dir = tempfile::tempdir().unwrap();
    let to = format!("oci:{}", dir.path().display());
    let from = format!("{}/{REPO}:v1", src.host());

    let out = ocimirror(&["copy", "--src-creds", "alice:right-pw", &from, &to]).await;
    assert!(out.status.success(), "{}", text(&out));

    // One image: that image failed (1), saying which registry refused.
    let out = ocimirror(&["copy", "--src-creds", "alice:n0t-the-pw", &from, &to]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = both(&out);
    assert!(said.contains(&src.host()), "{}", text(&out));
    assert!(said.contains("unauthorized"), "{}", text(&out));
    assert!(!said.contains("n0t-the-pw"), "{}", text(&out));

    // --all-tags: the tag list cannot be read, nothing can start (3).
    let repo = format!("{}/{REPO}", src.host());
    let out = ocimirror(&[
        "copy",
        "--all-tags",
        "--src-creds",
        "alice:n0t-the-pw",
        &repo,
        &to,
    ])
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(both(&out).contains(&src.host()), "{}", text(&out));

    // Flags for a side that is a layout, or two sets for one host: usage errors.
    let out = ocimirror(&["copy", "--dest-creds", "bob:pw", &from, &to]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        both(&out).contains("--dest-* flags are for registries"),
        "{}",
        text(&out)
    );
    let same = format!("{}/other:v1", src.host());
    let out = ocimirror(&[
        "copy",
        "--src-creds",
        "alice:right-pw",
        "--dest-creds",
        "alice:right-pw",
        &from,
        &same,
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(both(&out).contains(&src.host()), "{}", text(&out));

    // A malformed value is a usage error that does not echo it.
    let out = ocimirror(&["copy", "--src-creds", "no-colon-secret", &from, &to]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(both(&out).contains("USER:PASSWORD"), "{}", text(&out));
    assert!(!both(&out).contains("no-colon-secret"), "{}", text(&out));
}

#[tokio::test]
async fn dest_tls_verify_and_ca_file_against_a_tls_registry() {
    let d = tokio::task::spawn_blocking(Distribution::start_tls)
        .await
        .unwrap();
    let src = demo_source();
    let to = |tag: &str| format!("{}/tls/demo:{tag}", d.host());

    // Loopback without a TLS flag means plain HTTP, which this registry refuses.
    let out = ocimirror(&["copy", &src, &to("plain")]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(both(&out).contains(&d.host()), "{}", text(&out));
    // HTTPS with a CA nobody gave us: refused by name at once, not retried.
    let out = ocimirror_with_env(
        Path::new("."),
        &["copy", "--dest-tls-verify=true", &src, &to("unknown-ca")],
        &[("OCIMIRROR_LOG", "info")],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(both(&out).contains("UnknownIssuer"), "{}", text(&out));
    assert!(!both(&out).contains("Retrying"), "{}", text(&out));
    let ca = Distribution::test_ca();
    let out = ocimirror(&[
        "copy",
        "--dest-ca-file",
        ca.to_str().unwrap(),
        &src,
        &to("with-ca"),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));

    let out = ocimirror(&["copy", "--dest-tls-verify=false", &src, &to("unverified")]).await;
    assert!(out.status.success(), "{}", text(&out));
    // skopeo's certificate directory: its *.crt files are trusted.
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(&ca, certs.path().join("ca.crt")).unwrap();
    let cert_dir = certs.path().to_str().unwrap();
    let out = ocimirror(&["copy", "--dest-cert-dir", cert_dir, &src, &to("cert-dir")]).await;
    assert!(out.status.success(), "{}", text(&out));
    // Everything went over TLS although the host is loopback (plain HTTP by default).
    let log = d.log();
    for tag in ["with-ca", "unverified", "cert-dir"] {
        assert!(
            log.contains(&format!("\"PUT /v2/tls/demo/manifests/{tag} HTTP/2.0\"")),
            "no TLS manifest PUT for {tag}: {log}"
        );
    }
}

#[tokio::test]
async fn config_flag_reuses_the_registries_section() {
    let dst = registry(Some(Auth::basic(DEST_USER, DEST_PASSWORD))).await;
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, format!("{DEST_PASSWORD}\n")).unwrap();
    let config = dir.path().join("ocimirror.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 1

[registries."{host}"]
username = "{DEST_USER}"
password_file = "password"

[[jobs]]
name = "unused"
source = "oci:layout"
target = "{host}/unused"
"#,
            host = dst.host()
        ),
    )
    .unwrap();
    let to = format!("{}/{REPO}:v1", dst.host());
    let cfg = config.to_str().unwrap();
    let out = ocimirror(&["copy", "-c", cfg, &demo_source(), &to]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(dst.manifest(REPO, "v1").is_some());

    // A flag beats the file; an invalid file is a config error (78).
    let out = ocimirror(&[
        "copy",
        "-c",
        cfg,
        "--dest-creds",
        "bob:n0t-the-pw",
        &demo_source(),
        &format!("{}/{REPO}:v2", dst.host()),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    std::fs::write(&config, "version = 1\n[registries.x]\nbogus = 1\n").unwrap();
    let out = ocimirror(&["copy", "-c", cfg, &demo_source(), &to]).await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(both(&out).contains("ocimirror.toml"), "{}", text(&out));
}

#[tokio::test]
async fn copy_help_says_the_docker_config_is_read_and_how_to_turn_it_off() {
    let out = ocimirror(&["copy", "--help"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "~/.docker/config.json",
        "--no-docker-config",
        "OCIMIRROR_SRC_CREDS",
    ] {
        assert!(help.contains(needle), "{needle} missing: {help}");
    }
}

const SUBCOMMANDS: [&str; 9] = [
    "copy",
    "serve",
    "once",
    "plan",
    "status",
    "config",
    "generate",
    "completions",
    "man",
];

#[tokio::test]
async fn bash_completion_knows_the_subcommands_and_flags() {
    let out = ocimirror(&["completions", "bash"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(script.contains("complete -F _ocimirror"), "{script}");
    for word in SUBCOMMANDS.iter().chain(&["--all-tags", "--dest-creds"]) {
        assert!(script.contains(word), "{word} missing from the completion");
    }
}

/// `groff`'s warnings about a page (empty: valid roff).
fn roff_warnings(page: &Path) -> String {
    let out = std::process::Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .arg(page)
        .output()
        .expect("groff is installed");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn man_pages_are_valid_roff_naming_every_subcommand() {
    let out = ocimirror(&["man"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH ocimirror 1"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!("ocimirror\\-{sub}(1)")),
            "{sub}: {page}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let out = ocimirror(&["man", "--dir", dir.path().to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
    let pages = ["ocimirror".to_string()]
        .into_iter()
        .chain(SUBCOMMANDS.iter().map(|s| format!("ocimirror-{s}")));
    for name in pages {
        let path = dir.path().join(format!("{name}.1"));
        assert!(path.is_file(), "{} not written", path.display());
        assert_eq!(roff_warnings(&path), "", "{}", path.display());
    }
}

#[tokio::test]
async fn version_names_the_commit_and_build_date() {
    let out = ocimirror(&["--version"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let git = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(manifest_dir())
        .output()
        .unwrap();
    let commit = String::from_utf8_lossy(&git.stdout).trim().to_string();
    let version = String::from_utf8_lossy(&out.stdout);
    let re = regex::Regex::new(r"^ocimirror 0\.1\.0 \((\S+) (\d{4}-\d{2}-\d{2})\)\n$").unwrap();
    let caps = re
        .captures(&version)
        .unwrap_or_else(|| panic!("{version:?}"));
    assert_eq!(&caps[1], commit, "{version}");
}

/// A config for `serve` listening on `listen`, with a layout job per name.
fn serve_config(listen: &str, jobs: &[&str]) -> String {
    let mut toml =
        format!("version = 1\n[state]\ndatabase = \"state.db\"\n[server]\nlisten = \"{listen}\"\n");
    let src = demo_source();
    for job in jobs {
        toml.push_str(&format!(
            "[[jobs]]\nname = \"{job}\"\nsource = \"{}\"\ntarget = \"oci:{job}\"\n\
             schedule = {{ interval = \"1h\" }}\n",
            src.trim_end_matches(":v1.0.0")
        ));
    }
    toml
}

/// A running `ocimirror serve` (killed when dropped) and its directory.
struct Serve {
    child: tokio::process::Child,
    dir: tempfile::TempDir,
}

impl Serve {
    /// Starts `serve -c <config> extra…` on a config with one layout job
    /// whose `server.listen` is `listen`.
    fn start(listen: &str, extra: &[&str]) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ocimirror.toml");
        std::fs::write(&config, serve_config(listen, &["demo"])).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ocimirror"))
            .arg("serve")
            .arg("-c")
            .arg(&config)
            .args(extra)
            .env("OCIMIRROR_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Serve { child, dir }
    }

    /// Sends `signal` to it.
    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id().expect("still running")).unwrap();
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(pid, signal) };
    }

    /// Stops it with SIGTERM and returns its output.
    async fn stop(self) -> Output {
        self.signal(libc::SIGTERM);
        self.exit().await
    }

    /// Waits (bounded) for it to exit and returns its output.
    async fn exit(self) -> Output {
        let Serve { child, dir } = self;
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .expect("serve exits within 30 s")
            .unwrap();
        drop(dir);
        out
    }
}

/// Polls `url` until it answers 200.
async fn wait_ok(url: &str) -> Result<(), String> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.get(url).send().await {
            Ok(r) if r.status() == 200 => return Ok(()),
            Ok(r) if Instant::now() > deadline => return Err(format!("{url}: {}", r.status())),
            Err(e) if Instant::now() > deadline => return Err(format!("{url}: {e}")),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test]
async fn serve_listen_overrides_the_configured_address() {
    // The configured address is taken: only --listen lets serve start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let configured = taken.local_addr().unwrap().to_string();
    let chosen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let serve = Serve::start(&configured, &["--listen", &chosen.to_string()]);
    let ready = wait_ok(&format!("http://{chosen}/healthz")).await;
    let out = serve.stop().await;
    assert!(ready.is_ok(), "{ready:?}\n{}", text(&out));
    assert!(out.status.success(), "{}", text(&out));

    // Without it, the configured (taken) address is the one it fails on, by name.
    let out = Serve::start(&configured, &[]).exit().await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(both(&out).contains(&configured), "{}", text(&out));
    drop(taken);
}

/// Polls `/metrics` until it mentions `job`.
async fn wait_for_job(addr: &str, job: &str) -> Result<(), String> {
    let url = format!("http://{addr}/metrics");
    let needle = format!("job=\"{job}\"");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(&url).await {
            last = r.text().await.unwrap_or_default();
            if last.contains(&needle) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("{needle} never in /metrics:\n{last}"))
}

#[tokio::test]
async fn sighup_reloads_a_valid_config_and_keeps_the_old_one_on_errors() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let serve = Serve::start(&addr, &[]);
    let config = serve.dir.path().join("ocimirror.toml");
    let first = wait_for_job(&addr, "demo").await;

    // Invalid: logged by name, the running config stays.
    std::fs::write(&config, serve_config(&addr, &["demo"]) + "bogus_key = 1\n").unwrap();
    serve.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let alive = wait_ok(&format!("http://{addr}/healthz")).await;

    // Valid: the new job is scheduled (its series appear).
    std::fs::write(&config, serve_config(&addr, &["demo", "second"])).unwrap();
    serve.signal(libc::SIGHUP);
    let second = wait_for_job(&addr, "second").await;
    let out = serve.stop().await;
    assert!(
        first.is_ok() && alive.is_ok(),
        "{first:?} {alive:?}\n{}",
        text(&out)
    );
    assert!(second.is_ok(), "{second:?}\n{}", text(&out));
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("configuration invalid") && stderr.contains("bogus_key"),
        "{}",
        text(&out)
    );
}
