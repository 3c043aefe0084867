//! On a terminal, `copy` shows one status line (images done, bytes, rate)
//! and writes log lines above it, never glued onto it. The terminal is a
//! pseudo-terminal made by util-linux's `script`.

use std::process::Command;

#[test]
fn the_status_line_counts_images_and_log_lines_start_on_a_cleared_line() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_ocimirror");
    let src = concat!(
        "oci:",
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/demo-layout:v1.0.0"
    );
    let dst = format!("oci:{}:v1", dir.path().join("out").display());
    let command = format!("{bin} --log-format text --log-level info copy {src} {dst}");
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("RUST_LOG")
        .env_remove("OCIMIRROR_LOG")
        .output()
        .expect("util-linux script");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    // The status line: images of the total, bytes and a rate.
    assert!(screen.contains("0/1 image done, "), "{screen:?}");
    assert!(screen.contains("B/s)"), "{screen:?}");
    // The log line was written after the status line was cleared.
    let log = screen.find("Image copied.").expect("the INFO line");
    let line_start = screen[..log].rfind('\r').expect("a status line before it");
    assert!(
        screen[line_start..].starts_with("\r\u{1b}[2K"),
        "glued: {:?}",
        &screen[line_start..log]
    );
    // And the summary comes after the status line is gone.
    assert!(
        screen.contains("1 image: manifests: 7 copied"),
        "{screen:?}"
    );
}
