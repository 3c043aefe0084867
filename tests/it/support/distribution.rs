//! A real CNCF distribution 2.8 (Debian's `docker-registry`) started per test
//! on a free loopback port, with filesystem storage in a temp dir, deletes
//! enabled and no auth (optionally TLS with the test CA in
//! `tests/it/fixtures/tls`, then with an access log). Killed when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `docker-registry`.
pub struct Distribution {
    child: Child,
    host: String,
    dir: tempfile::TempDir,
    tls: bool,
}

impl Distribution {
    /// Starts one over plain HTTP and waits (bounded) until `GET /v2/` answers.
    pub fn start() -> Distribution {
        Distribution::start_with(false, "")
    }

    /// Starts one over plain HTTP that sends its notifications (manifest
    /// and tag events; blob events are left out) to `url` with
    /// `Authorization: Bearer <token>`, retrying every 100 ms on failure.
    pub fn start_notifying(url: &str, token: &str) -> Distribution {
        Distribution::start_with(
            false,
            &format!(
                "notifications:\n  endpoints:\n    - name: ocimirror\n      url: {url}\n      \
                 headers:\n        Authorization: [Bearer {token}]\n      timeout: 5s\n      \
                 threshold: 3\n      backoff: 100ms\n      ignoredmediatypes:\n        \
                 - application/octet-stream\n"
            ),
        )
    }

    /// Starts one serving HTTPS with `fixtures/tls/server.pem` (issued by
    /// `fixtures/tls/ca.pem` for 127.0.0.1 and localhost), logging every
    /// request (see [`Distribution::log`]).
    pub fn start_tls() -> Distribution {
        Distribution::start_with(true, "")
    }

    /// The test CA's PEM file.
    pub fn test_ca() -> PathBuf {
        Self::fixtures().join("ca.pem")
    }

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/tls")
    }

    fn start_with(tls: bool, extra: &str) -> Distribution {
        let bin = std::env::var_os("OCIMIRROR_DISTRIBUTION_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"));
        assert!(
            bin.is_file(),
            "{} not found: install CNCF distribution with `apt-get install docker-registry` \
             or point OCIMIRROR_DISTRIBUTION_BIN at a registry binary",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        // Ask the OS for a free port, then hand it to the registry.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        let tls_config = if tls {
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                Self::fixtures().join("server.pem").display(),
                Self::fixtures().join("server.key").display()
            )
        } else {
            String::new()
        };
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: error\n  accesslog:\n    disabled: {no_access_log}\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: {host}\n  secret: ocimirror-test-secret\n{tls_config}{extra}",
                dir.path().join("data").display(),
                no_access_log = !tls,
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(&bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut d = Distribution {
            child,
            host,
            dir,
            tls,
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join("registry.log"))
                    .unwrap_or_default();
                panic!("docker-registry exited with {status}: {log}");
            }
            if self.tls {
                // It listens only once ready; the handshake is the client's test.
                if TcpStream::connect(&self.host).is_ok() {
                    return;
                }
            } else if let Ok(mut s) = TcpStream::connect(&self.host) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!(
                    "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.host
                );
                let mut out = String::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_string(&mut out).is_ok()
                    && out.starts_with("HTTP/1.1 200")
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer GET /v2/ on {} within 20 s",
                self.host
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// What the registry logged so far (with TLS: one access-log line per
    /// request, naming the HTTP version).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
