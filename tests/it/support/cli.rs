//! Running the real `ocimirror` binary from tests.

use std::path::Path;
use std::process::Output;

/// Runs the real binary in `dir` to completion (quiet logs, no config from
/// the environment).
pub async fn ocimirror(dir: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ocimirror"))
        .args(args)
        .current_dir(dir)
        .env("OCIMIRROR_LOG", "warn")
        .env_remove("OCIMIRROR_CONFIG")
        .output()
        .await
        .unwrap()
}

/// Status, stdout and stderr of a finished process, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
