//! A registry that refuses connections fails fast, once: one connection
//! attempt, no retries, one WARN, and a one-line failure per image
//! (before: 7 minutes, 450 pings and an error repeated per blob).

use std::net::TcpListener;

use crate::support::cli::{ocimirror, text};
use crate::support::fixtures::{Form, image, seed_registry};
use crate::support::registry::{Fault, FaultKind, Options, TestRegistry};

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn refused_connections_fail_at_once_and_are_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let (target_port, source_port) = (closed_port(), closed_port());
    let layout = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/demo-layout");
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            r#"version = 1
[state]
database = "s.db"
[[jobs]]
name = "to-closed"
source = "oci:{layout}"
target = "127.0.0.1:{target_port}/mirror"
schedule = {{ interval = "1m" }}
[[jobs]]
name = "from-closed"
source = "127.0.0.1:{source_port}/app"
target = "oci:out"
tags = {{ allow = ["a", "b"] }}
schedule = {{ interval = "1m" }}
"#
        ),
    )
    .unwrap();

    let out = ocimirror(dir.path(), &["once", "-c", "c.toml"]).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    for port in [target_port, source_port] {
        // One connection attempt per registry, not one per blob and retry.
        assert!(
            stdout.contains(&format!("requests: 127.0.0.1:{port} 1 (ping 1)\n")),
            "{}",
            text(&out)
        );
        let warnings = stderr
            .lines()
            .filter(|l| l.contains("Registry unreachable") && l.contains(&format!(":{port}")))
            .count();
        assert_eq!(warnings, 1, "{}", text(&out));
    }
    assert!(!stdout.contains("retries"), "{}", text(&out));
    // The image's failure names the cause once, then counts the rest.
    let failed = stdout
        .lines()
        .find(|l| l.contains("FAILED oci:"))
        .unwrap_or_else(|| panic!("{}", text(&out)));
    assert_eq!(failed.matches("Connection refused").count(), 1, "{failed}");
    assert!(failed.contains("[unreachable]"), "{failed}");
    assert!(
        failed.contains("more failed (") && failed.contains("not copied because"),
        "{failed}"
    );
    assert!(
        stdout.contains(&format!("127.0.0.1:{source_port}: ping app: unreachable")),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn copy_to_a_refused_target_fails_with_one_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let src = concat!(
        "oci:",
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/demo-layout:v1.0.0"
    );
    let dst = format!("127.0.0.1:{port}/mirror:v1");
    // At info, so a retry would be announced.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ocimirror"))
        .args(["--log-level", "info", "copy", src, &dst])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("unreachable"), "{all}");
    assert!(!all.contains("Retrying"), "{all}");
    assert_eq!(
        all.matches("Registry unreachable").count(),
        1,
        "said once: {all}"
    );
}

/// A wait is said while it happens: the first retry of a registry is
/// announced at INFO with what failed, the next ones within 10 s at DEBUG.
#[tokio::test]
async fn a_retry_is_announced_at_info_once_per_registry() {
    let reg = TestRegistry::start(Options::default()).await;
    seed_registry(&reg, "app", &image(Form::Api, "announce"));
    let mut fault = Fault::once(Some("GET"), "/manifests/", FaultKind::Status(503));
    fault.times = 3;
    reg.push_fault(fault);
    let dir = tempfile::tempdir().unwrap();
    let src = format!("{}/app:v1", reg.host());
    let dst = format!("oci:{}:v1", dir.path().join("out").display());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ocimirror"))
        .args([
            "--log-level",
            "info",
            "--log-format",
            "json",
            "copy",
            &src,
            &dst,
        ])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let notices: Vec<&str> = stderr.lines().filter(|l| l.contains("Retrying")).collect();
    assert_eq!(notices.len(), 1, "{}", text(&out));
    assert!(
        notices[0].contains("\"level\":\"INFO\"")
            && notices[0].contains("HTTP 503")
            && notices[0].contains(&reg.host()),
        "{}",
        notices[0]
    );
}

/// A repository that does not exist is an error naming it, never "0
/// images, success": `copy --all-tags` and a job alike.
#[tokio::test]
async fn a_missing_source_repository_is_a_failure_naming_it() {
    let reg = TestRegistry::start(Options::default()).await;
    seed_registry(&reg, "app", &image(Form::Api, "present"));
    let dir = tempfile::tempdir().unwrap();
    let src = format!("{}/no-such-repo", reg.host());
    let dst = format!("oci:{}", dir.path().join("out").display());
    let out = ocimirror(dir.path(), &["copy", "--all-tags", &src, &dst]).await;
    // The listing fails: nothing could run (exit 3), said by name.
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("no-such-repo"), "{}", text(&out));

    // A source layout path with a typo: said as such, not "tag not found".
    let typo = format!("oci:{}:v1", dir.path().join("no-such-layout").display());
    let out = ocimirror(dir.path(), &["copy", &typo, &dst]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no OCI layout there") && text(&out).contains("does not exist"),
        "{}",
        text(&out)
    );

    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "version = 1\n[state]\ndatabase = \"s.db\"\n[[jobs]]\nname = \"missing\"\nsource = \"{src}\"\ntarget = \"oci:out2\"\nschedule = {{ interval = \"1m\" }}\n"
        ),
    )
    .unwrap();
    let out = ocimirror(dir.path(), &["once", "-c", "c.toml"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("job missing: failed") && stdout.contains("no-such-repo"),
        "{}",
        text(&out)
    );
}
