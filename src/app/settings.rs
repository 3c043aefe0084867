//! The config's registry and job entries as the adapters' and the copy
//! engine's settings.

use std::num::NonZeroU32;

use crate::config::{Job, Limits, ReferrersMode, RegistryAuth, RegistrySettings};
use crate::copy::CopyOptions;
use crate::registry::ReferrersSupport;
use crate::registry::http::{Credentials, DockerConfigSource, HttpSettings, UploadMode};

/// Maps a config registry entry to the HTTP adapter's settings.
pub fn http_settings(s: &RegistrySettings) -> HttpSettings {
    let credentials = match &s.auth {
        RegistryAuth::Anonymous => None,
        RegistryAuth::Basic { username, password } => Some(Credentials::Basic {
            username: username.clone(),
            password: password.clone(),
        }),
        RegistryAuth::Token { token } => Some(Credentials::IdentityToken(token.clone())),
    };
    // Three states down to the adapter: "off" reads no Docker config at all.
    let docker_config = match &s.docker_config {
        crate::config::DockerConfig::Disabled => DockerConfigSource::Off,
        crate::config::DockerConfig::Default => DockerConfigSource::Default,
        crate::config::DockerConfig::Path(p) => DockerConfigSource::Path(p.clone()),
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
        referrers_cache_ttl: s.referrers_cache_ttl,
        metadata_timeout: s.request_timeout,
        min_blob_bytes_per_second: s.min_blob_bytes_per_second,
        ..HttpSettings::default()
    }
}

/// The copy engine's options for `job` under the global `limits`.
pub fn copy_options(job: &Job, limits: &Limits) -> CopyOptions {
    let r = &job.referrers;
    CopyOptions {
        referrers: r.enabled,
        max_depth: r.depth as usize,
        artifact_types_include: r.include_artifact_types.clone(),
        artifact_types_exclude: r.exclude_artifact_types.clone(),
        kinds_include: r.include_kinds.clone(),
        kinds_exclude: r.exclude_kinds.clone(),
        platforms: job.platforms.clone(),
        platform_mode: job.platform_mode,
        source_referrers: r.source_mode,
        target_referrers: r.target_mode,
        cosign_tags: r.cosign_tags,
        cosign: r.cosign,
        cosign_keep_original: r.cosign_keep_original,
        concurrency: job.concurrency.max(1),
        max_index_depth: limits.max_index_depth,
        max_nodes: limits.max_nodes_per_image,
        max_manifest_bytes: limits.max_manifest_bytes_per_image,
        max_referrers_per_subject: limits.max_referrers_per_subject,
        ..CopyOptions::default()
    }
}
