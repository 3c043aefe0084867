//! The registries half of the resolve step: `[registries."<host>"]`
//! entries (credentials and secret files, Docker config, TLS, limits,
//! upload mode, referrers) and the paths they name.

use super::*;

impl Resolver<'_> {
    /// The path at `key`: taken from the config file's directory when the
    /// file wrote it relative, as given when it came from the environment
    /// (relative to the working directory, like any command-line path).
    pub(super) fn path(&self, key: &KeyPath, p: &Path) -> PathBuf {
        if self.origin(key) == ENV_ORIGIN {
            p.to_path_buf()
        } else {
            lexically_normal(&self.base.join(p))
        }
    }

    pub(super) fn secret_file(&mut self, file: &Path, path: &KeyPath) -> Option<Secret> {
        let file = &self.path(path, file);
        match std::fs::read_to_string(file) {
            Ok(s) => Some(Secret::new(s.trim_end_matches(['\n', '\r']))),
            Err(e) => {
                self.problem(
                    path,
                    format!("cannot read secret file {:?}: {e}", file.display()),
                );
                None
            }
        }
    }

    pub(super) fn secret(
        &mut self,
        inline: Option<Secret>,
        file: Option<&PathBuf>,
        p: &KeyPath,
        name: &str,
    ) -> Option<Secret> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem(
                    &p.key(name),
                    format!("set either {name} or {name}_file, not both"),
                );
                None
            }
            (Some(s), None) => Some(s),
            (None, Some(f)) => self.secret_file(f, &p.key(format!("{name}_file"))),
            (None, None) => None,
        }
    }

    pub(super) fn registry(
        &mut self,
        host: &str,
        r: FileRegistry,
        p: &KeyPath,
    ) -> Option<RegistrySettings> {
        let before = self.problems.len();
        let host = match validate_host(host) {
            Ok(h) => h,
            Err(msg) => {
                self.problem(p, msg);
                host.to_string()
            }
        };
        let has_password = r.password.is_some() || r.password_file.is_some();
        let has_token = r.token.is_some() || r.token_file.is_some();
        let password = self.secret(r.password, r.password_file.as_ref(), p, "password");
        let token = self.secret(r.token, r.token_file.as_ref(), p, "token");
        // A secret that failed to load was already reported, so a `None`
        // below just means "no credentials".
        let auth = match (r.username, has_password, has_token) {
            (_, true, true) | (Some(_), false, true) => {
                self.problem(
                    &p.key("token"),
                    "set either username/password or token, not both",
                );
                RegistryAuth::Anonymous
            }
            (Some(username), true, false) => password
                .map(|password| RegistryAuth::Basic { username, password })
                .unwrap_or(RegistryAuth::Anonymous),
            (Some(_), false, false) => {
                self.problem(
                    &p.key("username"),
                    "username needs password or password_file",
                );
                RegistryAuth::Anonymous
            }
            (None, true, false) => {
                self.problem(&p.key("password"), "password needs username");
                RegistryAuth::Anonymous
            }
            (None, false, true) => token
                .map(|token| RegistryAuth::Token { token })
                .unwrap_or(RegistryAuth::Anonymous),
            (None, false, false) => RegistryAuth::Anonymous,
        };
        let docker_config = match r.docker_config {
            None | Some(BoolOrPath::Bool(false)) => DockerConfig::Disabled,
            Some(BoolOrPath::Bool(true)) => DockerConfig::Default,
            Some(BoolOrPath::Path(path)) => {
                DockerConfig::Path(self.path(&p.key("docker_config"), &path))
            }
        };
        let ca_file = r
            .ca_file
            .as_deref()
            .map(|c| self.path(&p.key("ca_file"), c));
        if let Some(ca) = &ca_file
            && let Err(e) = std::fs::metadata(ca)
        {
            self.problem(
                &p.key("ca_file"),
                format!("cannot read CA file {:?}: {e}", ca.display()),
            );
        }
        if let Some(rps) = r.requests_per_second
            && !(rps.is_finite() && rps > 0.0)
        {
            self.problem(&p.key("requests_per_second"), "must be a positive number");
        }
        let max_in_flight = self.positive(
            r.max_in_flight,
            RegistrySettings::DEFAULT_MAX_IN_FLIGHT,
            &p.key("max_in_flight"),
        );
        let chunk_size = match r.chunk_size {
            None => RegistrySettings::DEFAULT_CHUNK_SIZE,
            Some(v) => match parse_byte_size(&v) {
                Ok(0) | Err(_) => {
                    let shown = match &v {
                        ByteSizeValue::Bytes(n) => n.to_string(),
                        ByteSizeValue::Text(s) => format!("{s:?}"),
                    };
                    self.problem(
                        &p.key("chunk_size"),
                        format!("invalid size {shown}: use a positive byte count or e.g. \"8MiB\""),
                    );
                    RegistrySettings::DEFAULT_CHUNK_SIZE
                }
                Ok(n) => n,
            },
        };
        let referrers_cache_ttl = match &r.referrers_cache_ttl {
            Some(d) => self.duration(d, &p.key("referrers_cache_ttl")),
            None => Some(RegistrySettings::DEFAULT_REFERRERS_CACHE_TTL),
        };
        let request_timeout = match &r.request_timeout {
            Some(d) => match self.duration(d, &p.key("request_timeout")) {
                Some(d) if d.is_zero() => {
                    self.problem(&p.key("request_timeout"), "must be longer than 0s");
                    None
                }
                other => other,
            },
            None => Some(RegistrySettings::DEFAULT_REQUEST_TIMEOUT),
        };
        if self.problems.len() > before {
            return None;
        }
        let defaults = RegistrySettings::defaults(&host);
        Some(RegistrySettings {
            host,
            auth,
            docker_config,
            tls_verify: r.tls_verify.unwrap_or(defaults.tls_verify),
            ca_file,
            plain_http: r.plain_http.unwrap_or(defaults.plain_http),
            requests_per_second: r.requests_per_second,
            max_in_flight,
            upload: r.upload.unwrap_or_default(),
            chunk_size,
            referrers: r.referrers.unwrap_or_default(),
            referrers_cache_ttl: referrers_cache_ttl?,
            request_timeout: request_timeout?,
            min_blob_bytes_per_second: r
                .min_blob_bytes_per_second
                .unwrap_or(RegistrySettings::DEFAULT_MIN_BLOB_BYTES_PER_SECOND),
        })
    }
}
