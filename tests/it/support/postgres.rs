//! A throwaway PostgreSQL server for tests: Debian's `postgresql` binaries
//! (`initdb`, `pg_ctl` from /usr/lib/postgresql/*/bin) on a loopback port,
//! its data in a temporary directory, stopped and deleted on drop. Uses no
//! ocimirror code; the store's unit tests include this file too.
//!
//! Missing binaries skip the PostgreSQL tests, unless
//! `OCIMIRROR_REQUIRE_POSTGRES=1` (set by tests/run, so CI never skips).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// A running PostgreSQL server with a `postgres` superuser (trust auth).
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

/// The newest installed server's binary directory.
fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop()
}

/// initdb refuses to run as root: as root, the server runs as the
/// `postgres` user the package creates.
fn command(bin: &Path, tool: &str) -> Command {
    let tool = bin.join(tool);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(tool);
        c
    } else {
        Command::new(tool)
    }
}

fn run(mut c: Command) -> Output {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

/// `pg_ctl start` on `dir`/data, listening on `port`; whether it started.
fn pg_ctl_start(bin: &Path, dir: &Path, port: u16) -> bool {
    let options = format!(
        "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
         -c max_connections=300",
        dir.display()
    );
    let mut c = command(bin, "pg_ctl");
    c.args(["start", "-w", "-t", "60", "-D"])
        .arg(dir.join("data"))
        .arg("-l")
        .arg(dir.join("log"))
        .args(["-o", &options]);
    c.output().is_ok_and(|o| o.status.success())
}

impl Postgres {
    /// Starts a new server, or `None` (with a note) when PostgreSQL is not
    /// installed and not required.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var("OCIMIRROR_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "OCIMIRROR_REQUIRE_POSTGRES=1 but no /usr/lib/postgresql/*/bin/initdb: \
                 install Debian's postgresql"
            );
            eprintln!("PostgreSQL is not installed: skipping its tests.");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("ocimirror-pg")
            .tempdir()
            .expect("temp dir");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            run({
                let mut c = Command::new("chown");
                c.arg("postgres:postgres").arg(dir.path());
                c
            });
        }
        let data = dir.path().join("data");
        run({
            let mut c = command(&bin, "initdb");
            c.args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
                .arg("-D")
                .arg(&data);
            c
        });
        // A port picked free can be taken before the server binds it: retry.
        for _ in 0..5 {
            let port = free_port();
            if pg_ctl_start(&bin, dir.path(), port) {
                return Some(Postgres { dir, bin, port });
            }
        }
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        panic!("PostgreSQL did not start:\n{log}");
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn kill(&self) {
        let mut c = command(&self.bin, "pg_ctl");
        c.args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(self.dir.path().join("data"));
        run(c);
    }

    /// Starts the server again after [`Postgres::kill`], on the same port
    /// with the same data.
    pub fn restart(&self) {
        assert!(
            pg_ctl_start(&self.bin, self.dir.path(), self.port),
            "PostgreSQL did not start again"
        );
    }

    /// One server for every test of this process that holds it at the
    /// time; stopped when the last one lets go.
    pub fn shared() -> Option<Arc<Postgres>> {
        static SHARED: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pg) = slot.upgrade() {
            return Some(pg);
        }
        let pg = Arc::new(Postgres::start()?);
        *slot = Arc::downgrade(&pg);
        Some(pg)
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new, empty database; returns its URL.
    pub fn create_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run({
            let mut c = command(&self.bin, "createdb");
            c.args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
                .arg(self.port.to_string())
                .arg(&name);
            c
        });
        self.url(&name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut c = command(&self.bin, "pg_ctl");
        c.args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(self.dir.path().join("data"));
        let _ = c.output();
    }
}
