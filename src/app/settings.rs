//! The config's registry and job entries as the adapters' and the copy
//! engine's settings.

use std::num::NonZeroU32;

use crate::config::{Job, PlatformMode, ReferrersMode, RegistryAuth, RegistrySettings};
use crate::copy::{CopyOptions, DiscoveryMode, PlatformSpec, PublishMode};
use crate::registry::ReferrersSupport;
use crate::registry::http::{Credentials, HttpSettings, Secret, UploadMode};

/// Maps a config registry entry to the HTTP adapter's settings.
pub fn http_settings(s: &RegistrySettings) -> HttpSettings {
    let credentials = match &s.auth {
        RegistryAuth::Anonymous => None,
        RegistryAuth::Basic { username, password } => Some(Credentials::Basic {
            username: username.clone(),
            password: Secret::new(password.expose()),
        }),
        RegistryAuth::Token { token } => {
            Some(Credentials::IdentityToken(Secret::new(token.expose())))
        }
    };
    let docker_config = match &s.docker_config {
        crate::config::DockerConfig::Disabled => None,
        crate::config::DockerConfig::Default => {
            crate::registry::http::credentials::default_docker_config()
        }
        crate::config::DockerConfig::Path(p) => Some(p.clone()),
    };
    HttpSettings {
        credentials,
        docker_config,
        plain_http: s.plain_http.then_some(true),
        ca_certificates: s.ca_file.iter().cloned().collect(),
        tls_verify: s.tls_verify,
        requests_per_second: s
            .requests_per_second
            .and_then(|r| NonZeroU32::new(r.ceil().max(1.0) as u32)),
        max_in_flight: s.max_in_flight,
        upload: match s.upload {
            crate::config::UploadMode::Monolithic => UploadMode::Monolithic,
            crate::config::UploadMode::Chunked => UploadMode::Chunked {
                chunk_size: usize::try_from(s.chunk_size).unwrap_or(usize::MAX),
            },
        },
        referrers: match s.referrers {
            ReferrersMode::Auto => None,
            ReferrersMode::Api => Some(ReferrersSupport::Supported),
            ReferrersMode::Tags => Some(ReferrersSupport::Unsupported),
        },
        ..HttpSettings::default()
    }
}

/// The copy engine's options for `job`.
pub fn copy_options(job: &Job) -> CopyOptions {
    let r = &job.referrers;
    CopyOptions {
        referrers: r.enabled,
        max_depth: r.depth as usize,
        artifact_types_include: r.include_artifact_types.clone(),
        artifact_types_exclude: r.exclude_artifact_types.clone(),
        platforms: job
            .platforms
            .iter()
            .filter_map(|p| crate::config::fmt_platform(p).parse::<PlatformSpec>().ok())
            .collect(),
        platform_mode: match job.platform_mode {
            PlatformMode::Whole => crate::copy::PlatformMode::All,
            PlatformMode::Filter => crate::copy::PlatformMode::Filter,
        },
        source_referrers: match r.source_mode {
            ReferrersMode::Auto => DiscoveryMode::Auto,
            ReferrersMode::Api => DiscoveryMode::Api,
            ReferrersMode::Tags => DiscoveryMode::Tags,
        },
        target_referrers: match r.target_mode {
            ReferrersMode::Auto => PublishMode::Auto,
            ReferrersMode::Api => PublishMode::Api,
            ReferrersMode::Tags => PublishMode::Tags,
        },
        cosign_tags: r.cosign_tags,
        concurrency: job.concurrency.max(1),
        ..CopyOptions::default()
    }
}
