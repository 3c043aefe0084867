//! Running the real `ocimirror` binary from tests.

use std::path::Path;
use std::process::Output;

/// Runs the real binary in `dir` to completion (quiet logs, no config from
/// the environment).
pub async fn ocimirror(dir: &Path, args: &[&str]) -> Output {
    ocimirror_with_env(dir, args, &[]).await
}

/// [`ocimirror`] with extra environment variables.
pub async fn ocimirror_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ocimirror"))
        .args(args)
        .current_dir(dir)
        .env("OCIMIRROR_LOG", "warn")
        .env_remove("OCIMIRROR_CONFIG")
        .envs(env.iter().copied())
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

/// What [`ocimirror_measured`] saw: the output, the wall time and the
/// child's own peak resident memory (its `rusage`, not this process's).
pub struct Measured {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Wall time until it exited.
    pub elapsed: std::time::Duration,
    /// Peak resident set size in bytes.
    pub peak_rss: u64,
}

/// Runs the real binary in `dir` and reaps it with `wait4`, which reports
/// that one child's peak memory however many tests run beside it. Killed
/// after `limit` (so a hang fails the test instead of stalling it). Call it
/// from `spawn_blocking` when an in-process registry serves the child.
// The child is reaped by wait4 below, which std's Child cannot see.
#[allow(clippy::zombie_processes)]
pub fn ocimirror_measured(dir: &Path, args: &[&str], limit: std::time::Duration) -> Measured {
    let out = tempfile::tempdir().unwrap();
    let (o, e) = (out.path().join("stdout"), out.path().join("stderr"));
    let started = std::time::Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ocimirror"))
        .args(args)
        .current_dir(dir)
        .env("OCIMIRROR_LOG", "warn")
        .env_remove("OCIMIRROR_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + limit;
            while std::time::Instant::now() < deadline {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            // SAFETY: kill(2) on our own child's pid, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        })
    };
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, not yet reaped; both pointers are valid.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = watchdog.join();
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Measured {
        code,
        stdout: std::fs::read_to_string(&o).unwrap_or_default(),
        stderr: std::fs::read_to_string(&e).unwrap_or_default(),
        elapsed: started.elapsed(),
        // ru_maxrss is in KiB on Linux.
        peak_rss: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
    }
}
