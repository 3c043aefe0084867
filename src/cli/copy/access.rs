//! How `copy` reaches its two registries: skopeo's per-side credential and
//! TLS flags, on top of a config file's `[registries]` entries (`-c`), on
//! top of the defaults. A side's flags apply to that side's host only, so
//! credentials never go to the other registry.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::app::http_settings;
use crate::config;
use crate::oci::{ImageReference, Location};
use crate::registry::http::{Credentials, DockerConfigSource, HttpSettings, Secret};
use crate::registry::open::Registries;

use super::{CopyArgs, CopyCommandError};

/// Registry access flags of `ocimirror copy`.
#[derive(Clone, Debug, clap::Args)]
pub struct AccessArgs {
    /// Credentials for the source registry (skopeo's syntax). Set OCIMIRROR_SRC_CREDS
    /// instead to keep the password off the command line.
    #[arg(
        long,
        env = "OCIMIRROR_SRC_CREDS",
        hide_env_values = true,
        value_name = "USER:PASSWORD",
        value_parser = UserPasswordParser
    )]
    pub src_creds: Option<UserPassword>,
    /// Credentials for the destination registry (or OCIMIRROR_DEST_CREDS).
    #[arg(
        long,
        env = "OCIMIRROR_DEST_CREDS",
        hide_env_values = true,
        value_name = "USER:PASSWORD",
        value_parser = UserPasswordParser
    )]
    pub dest_creds: Option<UserPassword>,
    /// Verify the source's TLS certificate (--src-tls-verify=false to skip). Either
    /// value means HTTPS, also for loopback hosts.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub src_tls_verify: Option<bool>,
    /// Verify the destination's TLS certificate (--dest-tls-verify=false to skip).
    /// Either value means HTTPS, also for loopback hosts.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub dest_tls_verify: Option<bool>,
    /// Also trust the CA certificates in this PEM file for the source (repeatable;
    /// means HTTPS).
    #[arg(long, value_name = "FILE")]
    pub src_ca_file: Vec<PathBuf>,
    /// Also trust the CA certificates in this PEM file for the destination
    /// (repeatable; means HTTPS).
    #[arg(long, value_name = "FILE")]
    pub dest_ca_file: Vec<PathBuf>,
    /// Also trust every *.crt file in this directory for the source (skopeo's
    /// --src-cert-dir; client certificates are not supported).
    #[arg(long, value_name = "DIR")]
    pub src_cert_dir: Option<PathBuf>,
    /// Also trust every *.crt file in this directory for the destination.
    #[arg(long, value_name = "DIR")]
    pub dest_cert_dir: Option<PathBuf>,
    /// Take the settings of SRC's and DST's hosts (credentials, TLS, plain HTTP, rate
    /// and in-flight limits, upload mode) from this config file's [registries]
    /// section, as `once` would; the flags above override them.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Read no Docker config at all.
    #[arg(long, conflicts_with = "docker_config")]
    pub no_docker_config: bool,
}

/// `USER:PASSWORD`; the password never shows in `Debug` or `Display`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserPassword {
    username: String,
    password: Secret,
}

impl FromStr for UserPassword {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(UserPassword {
                username: user.to_string(),
                password: Secret::new(password),
            }),
            _ => Err("expected USER:PASSWORD (a user name, a colon, the password)"),
        }
    }
}

/// Parses [`UserPassword`] with an error that does not echo the value
/// (clap's own value errors quote it, and it may hold the password).
#[derive(Clone)]
struct UserPasswordParser;

impl clap::builder::TypedValueParser for UserPasswordParser {
    type Value = UserPassword;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<UserPassword, clap::Error> {
        let flag = arg.map_or_else(String::new, |a| format!("{a}: "));
        value
            .to_str()
            .ok_or("not UTF-8")
            .and_then(UserPassword::from_str)
            .map_err(|why| {
                clap::Error::raw(
                    clap::error::ErrorKind::InvalidValue,
                    format!("{flag}{why}\n"),
                )
            })
    }
}

/// One side's flags, for that side's registry host.
struct Side {
    host: Option<String>,
    creds: Option<UserPassword>,
    tls_verify: Option<bool>,
    ca_files: Vec<PathBuf>,
}

impl Side {
    fn new(
        flag: &'static str,
        image: &ImageReference,
        creds: Option<&UserPassword>,
        tls_verify: Option<bool>,
        ca_files: &[PathBuf],
        cert_dir: Option<&Path>,
    ) -> Result<Side, CopyCommandError> {
        let mut ca_files = ca_files.to_vec();
        if let Some(dir) = cert_dir {
            ca_files.extend(crt_files(dir)?);
        }
        let side = Side {
            host: match &image.location {
                Location::Registry(h) => Some(h.clone()),
                Location::Layout(_) => None,
            },
            creds: creds.cloned(),
            tls_verify,
            ca_files,
        };
        if side.has_flags() && side.host.is_none() {
            return Err(CopyCommandError::Usage(format!(
                "{flag} flags are for registries; {image} is an OCI layout"
            )));
        }
        Ok(side)
    }

    fn has_flags(&self) -> bool {
        self.creds.is_some() || self.tls_verify.is_some() || !self.ca_files.is_empty()
    }

    /// Applies the flags when `host` is this side's.
    fn apply(&self, host: &str, s: &mut HttpSettings) {
        if self.host.as_deref() != Some(host) {
            return;
        }
        if let Some(c) = &self.creds {
            s.credentials = Some(Credentials::Basic {
                username: c.username.clone(),
                password: c.password.clone(),
            });
        }
        if let Some(v) = self.tls_verify {
            s.tls_verify = v;
        }
        s.ca_certificates.extend(self.ca_files.iter().cloned());
        // Asking about certificates means TLS, even on loopback (which
        // otherwise defaults to plain HTTP).
        if (self.tls_verify.is_some() || !self.ca_files.is_empty()) && s.plain_http.is_none() {
            s.plain_http = Some(false);
        }
    }
}

/// The `*.crt` files of a skopeo-style certificate directory, sorted.
fn crt_files(dir: &Path) -> Result<Vec<PathBuf>, CopyCommandError> {
    let unreadable = |e: std::io::Error| {
        CopyCommandError::Usage(format!("certificate directory {}: {e}", dir.display()))
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("crt") => files.push(path),
            Some("cert" | "key") => {
                return Err(CopyCommandError::Usage(format!(
                    "{}: client certificates are not supported",
                    path.display()
                )));
            }
            _ => {}
        }
    }
    files.sort();
    Ok(files)
}

/// The adapters factory for `copy`: per host, the config's settings (with
/// `-c`) or the defaults, then `--plain-http`/`--docker-config`, then the
/// flags of the side whose host it is.
pub fn registries(args: &CopyArgs) -> Result<Registries, CopyCommandError> {
    let a = &args.access;
    let src = Side::new(
        "--src-*",
        &args.src,
        a.src_creds.as_ref(),
        a.src_tls_verify,
        &a.src_ca_file,
        a.src_cert_dir.as_deref(),
    )?;
    let dst = Side::new(
        "--dest-*",
        &args.dst,
        a.dest_creds.as_ref(),
        a.dest_tls_verify,
        &a.dest_ca_file,
        a.dest_cert_dir.as_deref(),
    )?;
    // One host, one adapter: it cannot hold two sets of credentials.
    if src.host.is_some() && src.host == dst.host && src.has_flags() && dst.has_flags() {
        return Err(CopyCommandError::Usage(format!(
            "SRC and DST are both on {}, reached through one connection: give its \
             credentials and TLS settings once, with --src-* or --dest-* (or in -c FILE)",
            src.host.unwrap_or_default()
        )));
    }
    let config = a.config.as_deref().map(config::load).transpose()?;
    let (plain_http, docker_config, no_docker_config) = (
        args.plain_http,
        args.docker_config.clone(),
        a.no_docker_config,
    );
    Ok(Registries::new(move |host| {
        let mut s = match &config {
            Some(c) => http_settings(&c.registry(host)),
            None => HttpSettings::default(),
        };
        if plain_http {
            s.plain_http = Some(true);
        }
        if let Some(path) = &docker_config {
            s.docker_config = DockerConfigSource::Path(path.clone());
        }
        if no_docker_config {
            s.docker_config = DockerConfigSource::Off;
        }
        src.apply(host, &mut s);
        dst.apply(host, &mut s);
        s
    }))
}
