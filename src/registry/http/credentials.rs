//! Registry credentials: explicit settings, or Docker's `config.json`
//! (`auths` entries including the base64 `auth` field, `credHelpers`,
//! `credsStore`) with `docker-credential-<name> get` helpers.
//!
//! Nothing here ever prints a secret: [`Secret`] redacts itself in `Debug`
//! and `Display`, and errors name only hosts and helper names.

pub use crate::secret::Secret;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;

use super::settings::DockerConfigSource;

/// Most bytes read from a credential helper's answer.
const MAX_HELPER_OUTPUT: u64 = 64 * 1024;

/// Credentials for one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// Username and password (Basic auth, or Basic to the token endpoint).
    Basic {
        /// User name (not secret).
        username: String,
        /// Password or access token.
        password: Secret,
    },
    /// An identity (refresh) token, exchanged at the token endpoint with
    /// the OAuth2 `refresh_token` grant.
    IdentityToken(Secret),
}

/// Why credentials could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The config file exists but cannot be read or parsed.
    #[error("cannot read docker config {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Why (never file content).
        reason: String,
    },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper} failed for {host}: {reason}")]
    Helper {
        /// Helper name.
        helper: String,
        /// Registry host.
        host: String,
        /// Why (never the helper's output).
        reason: String,
    },
}

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// The default config path: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn default_docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// The Docker config file `source` names; `None` for [`DockerConfigSource::Off`]
/// (or no `$DOCKER_CONFIG`/`$HOME` to find one in).
pub fn docker_config_path(source: &DockerConfigSource) -> Option<PathBuf> {
    match source {
        DockerConfigSource::Off => None,
        DockerConfigSource::Default => default_docker_config(),
        DockerConfigSource::Path(p) => Some(p.clone()),
    }
}

/// Credentials for `registry` from the Docker config `source` names; with
/// [`DockerConfigSource::Off`] no file is touched. Blocks while a helper
/// runs (at most `helper_timeout`): call it off the async runtime.
pub fn lookup(
    source: &DockerConfigSource,
    registry: &str,
    helper_dirs: &[PathBuf],
    helper_timeout: Duration,
) -> Result<Option<Credentials>, CredentialsError> {
    match docker_config_path(source) {
        Some(path) => from_docker_config(&path, registry, helper_dirs, helper_timeout),
        None => Ok(None),
    }
}

/// The keys under which `auths`/`credHelpers` may store a registry: the
/// host itself, and for Docker Hub its historical names.
fn lookup_keys(registry: &str) -> Vec<String> {
    let mut keys = vec![registry.to_string()];
    if matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        keys.extend(
            [
                "https://index.docker.io/v1/",
                "index.docker.io",
                "docker.io",
                "registry-1.docker.io",
            ]
            .map(String::from),
        );
    }
    keys
}

/// `https://host/v1/` → `host`: auths keys are sometimes URLs.
fn normalise_key(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// Looks up credentials for `registry` (as in an image reference, e.g.
/// `docker.io`, `localhost:5000`) in the Docker config at `path`.
/// A missing file means no credentials. `helper_dirs` are searched before
/// `PATH` for `docker-credential-*` programs; one that has not answered
/// within `helper_timeout` is killed.
pub fn from_docker_config(
    path: &Path,
    registry: &str,
    helper_dirs: &[PathBuf],
    helper_timeout: Duration,
) -> Result<Option<Credentials>, CredentialsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CredentialsError::Config {
                path: path.to_path_buf(),
                reason: e.kind().to_string(),
            });
        }
    };
    // serde_json errors name line/column only, never the content.
    let config: DockerConfig =
        serde_json::from_str(&text).map_err(|e| CredentialsError::Config {
            path: path.to_path_buf(),
            reason: format!("invalid JSON at line {} column {}", e.line(), e.column()),
        })?;
    let keys = lookup_keys(registry);
    for key in &keys {
        if let Some(helper) = config.cred_helpers.get(key) {
            return run_helper(helper, key, helper_dirs, helper_timeout);
        }
    }
    if let Some(store) = &config.creds_store {
        // Docker Hub is stored under its legacy URL in credential stores.
        let key = if keys.len() > 1 {
            "https://index.docker.io/v1/"
        } else {
            registry
        };
        // As Docker does: the store wins; the file is the fallback.
        if let Some(c) = run_helper(store, key, helper_dirs, helper_timeout)? {
            return Ok(Some(c));
        }
    }
    for key in &keys {
        let entry = config
            .auths
            .iter()
            .find(|(k, _)| *k == key || normalise_key(k) == key);
        if let Some((_, entry)) = entry
            && let Some(c) = entry_credentials(entry, registry, path)?
        {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn entry_credentials(
    entry: &AuthEntry,
    registry: &str,
    path: &Path,
) -> Result<Option<Credentials>, CredentialsError> {
    if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::IdentityToken(Secret::new(token))));
    }
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let bad = || CredentialsError::Config {
            path: path.to_path_buf(),
            reason: format!("the auth field for {registry} is not base64 of user:password"),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, pass) = decoded.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credentials::Basic {
            username: user.to_string(),
            password: Secret::new(pass),
        }));
    }
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials::Basic {
            username: u.clone(),
            password: Secret::new(p.clone()),
        }));
    }
    Ok(None)
}

#[derive(Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

fn find_helper(name: &str, helper_dirs: &[PathBuf]) -> PathBuf {
    let program = format!("docker-credential-{name}");
    helper_dirs
        .iter()
        .map(|d| d.join(&program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

/// Runs `docker-credential-<helper> get` with the host on stdin, killing
/// it when it has not exited within `timeout`.
fn run_helper(
    helper: &str,
    host: &str,
    helper_dirs: &[PathBuf],
    timeout: Duration,
) -> Result<Option<Credentials>, CredentialsError> {
    let fail = |reason: String| CredentialsError::Helper {
        helper: helper.to_string(),
        host: host.to_string(),
        reason,
    };
    let mut child = Command::new(find_helper(helper, helper_dirs))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("cannot start: {}", e.kind())))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper may exit without reading its input; its answer counts.
        if let Err(e) = stdin.write_all(host.as_bytes())
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!("cannot write: {}", e.kind())));
        }
    }
    // stdout is drained on a thread so a chatty helper cannot block on a
    // full pipe while we wait for it to exit.
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stdout.take(MAX_HELPER_OUTPUT).read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "no answer within {} s; stopped",
                    timeout.as_secs_f64()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(fail(format!("cannot wait: {}", e.kind()))),
        }
    };
    // A grandchild may still hold stdout open: wait for it a short while only.
    let stdout = rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
    if !status.success() {
        // The protocol reports a missing entry on stdout.
        if String::from_utf8_lossy(&stdout).contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!("exit status {status}")));
    }
    let parsed: HelperOutput = serde_json::from_slice(&stdout)
        .map_err(|_| fail("output is not the expected JSON".into()))?;
    if parsed.secret.is_empty() {
        return Ok(None);
    }
    // Helpers return identity tokens with the username `<token>`.
    if parsed.username == "<token>" {
        return Ok(Some(Credentials::IdentityToken(Secret::new(parsed.secret))));
    }
    Ok(Some(Credentials::Basic {
        username: parsed.username,
        password: Secret::new(parsed.secret),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(30);

    fn write(dir: &Path, json: &str) -> PathBuf {
        let p = dir.join("config.json");
        std::fs::write(&p, json).unwrap();
        p
    }

    #[test]
    fn secret_redacts() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{s:?}"), "<redacted>");
        let c = Credentials::Basic {
            username: "u".into(),
            password: s.clone(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn auths_base64_and_url_keys() {
        let dir = tempfile::tempdir().unwrap();
        // "alice:pa:ss" — the password may contain colons.
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:pa:ss");
        let p = write(
            dir.path(),
            &format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},
                "localhost:5000":{{"username":"bob","password":"pw"}},
                "tok.example":{{"identitytoken":"idt"}},
                "https://reg.example/v2/":{{"auth":"{auth}"}}}}}}"#
            ),
        );
        let hub = from_docker_config(&p, "docker.io", &[], T)
            .unwrap()
            .unwrap();
        assert_eq!(
            hub,
            Credentials::Basic {
                username: "alice".into(),
                password: Secret::new("pa:ss")
            }
        );
        let local = from_docker_config(&p, "localhost:5000", &[], T)
            .unwrap()
            .unwrap();
        assert!(matches!(local, Credentials::Basic { ref username, .. } if username == "bob"));
        let tok = from_docker_config(&p, "tok.example", &[], T)
            .unwrap()
            .unwrap();
        assert_eq!(tok, Credentials::IdentityToken(Secret::new("idt")));
        assert!(
            from_docker_config(&p, "reg.example", &[], T)
                .unwrap()
                .is_some()
        );
        assert!(from_docker_config(&p, "other", &[], T).unwrap().is_none());
    }

    #[test]
    fn missing_file_is_none_and_bad_files_do_not_leak() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            from_docker_config(&dir.path().join("nope.json"), "x", &[], T)
                .unwrap()
                .is_none()
        );
        let p = write(
            dir.path(),
            r#"{"auths":{"x":{"auth":"c2VjcmV0LW5vLWNvbG9u"}}}"#,
        );
        let e = from_docker_config(&p, "x", &[], T).unwrap_err().to_string();
        assert!(
            !e.contains("secret-no-colon") && !e.contains("c2VjcmV0"),
            "{e}"
        );
        let p = write(dir.path(), r#"{"auths": "topsecret"#);
        let e = from_docker_config(&p, "x", &[], T).unwrap_err().to_string();
        assert!(!e.contains("topsecret"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn cred_helpers_and_store() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            let p = dir.path().join(format!("docker-credential-{name}"));
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        // Echoes the host it was asked about in the username.
        script(
            "fake",
            r#"read host; [ "$1" = get ] || exit 3; echo "{\"ServerURL\":\"$host\",\"Username\":\"u-$host\",\"Secret\":\"s3cret\"}""#,
        );
        script("tok", r#"echo '{"Username":"<token>","Secret":"idtok"}'"#);
        script(
            "none",
            r#"echo 'credentials not found in native keychain'; exit 1"#,
        );
        let dirs = vec![dir.path().to_path_buf()];
        let p = write(
            dir.path(),
            r#"{"credsStore":"fake","credHelpers":{"t.example":"tok","n.example":"none"},
               "auths":{"a.example":{"username":"x","password":"y"}}}"#,
        );
        let c = from_docker_config(&p, "reg.example:5000", &dirs, T)
            .unwrap()
            .unwrap();
        assert_eq!(
            c,
            Credentials::Basic {
                username: "u-reg.example:5000".into(),
                password: Secret::new("s3cret")
            }
        );
        let c = from_docker_config(&p, "docker.io", &dirs, T)
            .unwrap()
            .unwrap();
        assert!(
            matches!(c, Credentials::Basic { ref username, .. } if username == "u-https://index.docker.io/v1/")
        );
        assert_eq!(
            from_docker_config(&p, "t.example", &dirs, T).unwrap(),
            Some(Credentials::IdentityToken(Secret::new("idtok")))
        );
        assert_eq!(from_docker_config(&p, "n.example", &dirs, T).unwrap(), None);
        // The store wins over auths; auths are the fallback.
        assert!(matches!(
            from_docker_config(&p, "a.example", &dirs, T).unwrap(),
            Some(Credentials::Basic { ref username, .. }) if username == "u-a.example"
        ));
        let p = write(
            dir.path(),
            r#"{"credsStore":"none","auths":{"a.example":{"username":"x","password":"y"}}}"#,
        );
        assert!(matches!(
            from_docker_config(&p, "a.example", &dirs, T).unwrap(),
            Some(Credentials::Basic { ref username, .. }) if username == "x"
        ));
        let p = write(dir.path(), r#"{"credsStore":"missing-helper"}"#);
        let e = from_docker_config(&p, "r", &dirs, T).unwrap_err();
        assert!(e.to_string().contains("docker-credential-missing-helper"));
    }

    #[cfg(unix)]
    #[test]
    fn a_hanging_helper_is_killed_at_its_timeout() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("docker-credential-hang");
        std::fs::write(&p, "#!/bin/sh\nexec sleep 60\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = write(dir.path(), r#"{"credsStore":"hang"}"#);
        let started = Instant::now();
        let e = from_docker_config(
            &config,
            "r.example",
            &[dir.path().to_path_buf()],
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("docker-credential-hang") && e.contains("r.example"),
            "{e}"
        );
        assert!(e.contains("no answer within"), "{e}");
    }

    #[test]
    fn off_names_no_file() {
        assert_eq!(docker_config_path(&DockerConfigSource::Off), None);
        assert_eq!(
            docker_config_path(&DockerConfigSource::Path("/x/c.json".into())),
            Some(PathBuf::from("/x/c.json"))
        );
        assert_eq!(lookup(&DockerConfigSource::Off, "r", &[], T).unwrap(), None);
    }
}
