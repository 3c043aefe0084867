//! The status page at `/`, loaded from a running daemon by a real browser:
//! Debian's headless Chromium dumps the DOM it rendered (the content a
//! person reads) and takes a phone-sized screenshot. Set
//! `OCIMIRROR_SCREENSHOT=<path.png>` to keep the screenshot (the README's
//! `docs/status-page.png` is made that way).

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use crate::api::{MISSING, jobs_with_history};

/// Phone viewport (CSS pixels) of the screenshot.
const PHONE: (u32, u32) = (412, 915);

/// Runs headless Chromium on `url` with `args`; its stdout.
async fn chromium(profile: &Path, args: &[&str], url: &str) -> String {
    let bin = std::env::var("OCIMIRROR_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        Command::new(&bin)
            .args([
                "--headless",
                // Tests run as root in CI, where the sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                &format!("--user-data-dir={}", profile.display()),
            ])
            .args(args)
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium did not finish within 90 s")
    .unwrap_or_else(|e| {
        panic!("cannot run {bin}: {e} (install Debian's chromium, or set OCIMIRROR_CHROMIUM)")
    });
    assert!(
        out.status.success(),
        "{bin} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_status_page_shows_every_job_in_a_real_browser() {
    let (_src, _dst, d) = jobs_with_history().await;
    let url = d.url("/");
    let profile = tempfile::tempdir().unwrap();

    let dom = chromium(profile.path(), &["--dump-dom"], &url).await;
    for needed in [
        "<title>ocimirror status</title>",
        "id=\"job-mirror\"",
        "id=\"job-pinned\"",
        "badge success",
        "badge failed",
        MISSING,
        "not found",
        "none (up to date)",
        "behind since",
        "href=\"/api/v1/jobs\"",
        "href=\"/api/v1/jobs/pinned/failures\"",
        "http-equiv=\"refresh\"",
        "name=\"viewport\"",
    ] {
        assert!(
            dom.contains(needed),
            "the rendered page lacks {needed:?}:\n{dom}"
        );
    }

    let shot = profile.path().join("status.png");
    let size = format!("--window-size={},{}", PHONE.0, PHONE.1);
    chromium(
        profile.path(),
        &[&format!("--screenshot={}", shot.display()), &size],
        &url,
    )
    .await;
    let png = std::fs::read(&shot).expect("chromium wrote no screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    let height = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
    assert_eq!((width, height), PHONE, "screenshot size");
    // A blank page compresses to almost nothing; a rendered one does not.
    assert!(
        png.len() > 10_000,
        "screenshot of {} bytes looks blank",
        png.len()
    );
    if let Ok(keep) = std::env::var("OCIMIRROR_SCREENSHOT") {
        std::fs::copy(&shot, &keep).unwrap();
    }
    d.stop().await;
}
