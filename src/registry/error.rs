//! The one error type of the registry layer. Every error names the registry,
//! repository, operation and (where there is one) the digest or tag, and
//! never carries a credential.

use std::fmt;
use std::time::Duration;

use crate::oci::{Digest, ManifestError};

/// A registry operation, for error messages, request counters and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// `GET /v2/`.
    Ping,
    /// Token endpoint request.
    Token,
    /// `HEAD /v2/<name>/manifests/<ref>`.
    ManifestHead,
    /// `GET /v2/<name>/manifests/<ref>`.
    ManifestGet,
    /// `PUT /v2/<name>/manifests/<ref>`.
    ManifestPut,
    /// `DELETE /v2/<name>/manifests/<ref>` (untag, or delete by digest).
    ManifestDelete,
    /// `HEAD /v2/<name>/blobs/<digest>`.
    BlobHead,
    /// `GET /v2/<name>/blobs/<digest>`.
    BlobGet,
    /// Blob upload (POST, PATCH, PUT).
    BlobPut,
    /// Cross-repository mount.
    BlobMount,
    /// `GET /v2/<name>/tags/list`.
    TagList,
    /// `GET /v2/<name>/referrers/<digest>`.
    Referrers,
    /// `GET /v2/_catalog`.
    Catalog,
}

impl Operation {
    /// A short stable name, used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Ping => "ping",
            Operation::Token => "token",
            Operation::ManifestHead => "manifest_head",
            Operation::ManifestGet => "manifest_get",
            Operation::ManifestPut => "manifest_put",
            Operation::ManifestDelete => "manifest_delete",
            Operation::BlobHead => "blob_head",
            Operation::BlobGet => "blob_get",
            Operation::BlobPut => "blob_put",
            Operation::BlobMount => "blob_mount",
            Operation::TagList => "tag_list",
            Operation::Referrers => "referrers",
            Operation::Catalog => "catalog",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong, independent of where.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The thing does not exist.
    #[error("not found")]
    NotFound,
    /// Authentication failed or is missing.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Authenticated but not allowed.
    #[error("access denied")]
    Denied,
    /// 429, possibly with a `Retry-After`.
    #[error("rate limited{}", .retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// Parsed `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Another unexpected HTTP status, with the OCI error codes of the body.
    #[error("HTTP {status}{}{}", if .codes.is_empty() { String::new() } else { format!(" {}", .codes.join(",")) }, if .message.is_empty() { String::new() } else { format!(": {}", .message) })]
    Status {
        /// HTTP status code.
        status: u16,
        /// OCI error codes (`MANIFEST_BLOB_UNKNOWN`, ...).
        codes: Vec<String>,
        /// First error message, trimmed.
        message: String,
        /// Parsed `Retry-After`, honoured by the retry loop.
        retry_after: Option<Duration>,
    },
    /// Content did not hash to its digest.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was asked for.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// Content length differs from the descriptor.
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// From the descriptor.
        expected: u64,
        /// Bytes seen.
        actual: u64,
    },
    /// Manifest bytes refused.
    #[error("invalid manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// A response that breaks the protocol.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// A conditional PUT lost a race (412).
    #[error("precondition failed (changed concurrently)")]
    PreconditionFailed,
    /// The adapter cannot do this.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Network, TLS or body transfer failure.
    #[error("transport error: {message}")]
    Transport {
        /// Description with no credential in it.
        message: String,
        /// True when retrying may help (connection reset, timeout).
        retryable: bool,
    },
    /// The registry could not be reached at all (connection refused,
    /// unknown host, connect timeout). Not retried request by request: the
    /// registry is held unreachable for a while (see `http::reachability`).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// Local file system failure (layout adapter).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Credential lookup or configuration failure.
    #[error("credentials: {0}")]
    Credentials(String),
    /// An HTTPS registry pointed at plain HTTP (a `Location`, `Link`,
    /// redirect or token realm); refused so nothing travels in clear text.
    #[error("refused to leave HTTPS for plain HTTP: {0}")]
    InsecureDowngrade(String),
}

impl ErrorKind {
    /// True when the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            ErrorKind::RateLimited { .. } => true,
            ErrorKind::Status { status, .. } => *status >= 500 || *status == 408,
            ErrorKind::Transport { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// A short stable name, used as a metric label.
    pub fn label(&self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unauthorized(_) => "unauthorized",
            ErrorKind::Denied => "denied",
            ErrorKind::RateLimited { .. } => "rate_limited",
            ErrorKind::Status { status, .. } if *status >= 500 => "server_error",
            ErrorKind::Status { .. } => "client_error",
            ErrorKind::DigestMismatch { .. } => "digest_mismatch",
            ErrorKind::SizeMismatch { .. } => "size_mismatch",
            ErrorKind::Manifest(_) => "invalid_manifest",
            ErrorKind::InvalidResponse(_) => "invalid_response",
            ErrorKind::PreconditionFailed => "precondition_failed",
            ErrorKind::Unsupported(_) => "unsupported",
            ErrorKind::Transport { .. } => "transport",
            ErrorKind::Unreachable(_) => "unreachable",
            ErrorKind::Io(_) => "io",
            ErrorKind::Credentials(_) => "credentials",
            ErrorKind::InsecureDowngrade(_) => "insecure_downgrade",
        }
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ErrorKind::RateLimited { retry_after } | ErrorKind::Status { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

/// An error from a registry adapter, with its context.
#[derive(Debug, thiserror::Error)]
#[error("{registry}: {op}{}{}: {kind}", if .repo.is_empty() { String::new() } else { format!(" {}", .repo) }, .target.as_ref().map(|t| format!(" {t}")).unwrap_or_default())]
pub struct RegistryError {
    /// Registry host or `oci:<dir>`.
    pub registry: String,
    /// Repository.
    pub repo: String,
    /// What was being done.
    pub op: Operation,
    /// Digest or tag concerned.
    pub target: Option<String>,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl RegistryError {
    /// Builds an error with its context.
    pub fn new(
        registry: impl Into<String>,
        repo: impl Into<String>,
        op: Operation,
        target: Option<String>,
        kind: ErrorKind,
    ) -> Self {
        RegistryError {
            registry: registry.into(),
            repo: repo.into(),
            op,
            target,
            kind,
        }
    }

    /// True when the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// True for [`ErrorKind::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, ErrorKind::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_registry_repo_operation_and_digest() {
        let d = Digest::sha256(b"x");
        let e = RegistryError::new(
            "reg.example:5000",
            "team/app",
            Operation::BlobGet,
            Some(d.to_string()),
            ErrorKind::Status {
                status: 503,
                codes: vec!["UNAVAILABLE".into()],
                message: "try later".into(),
                retry_after: None,
            },
        );
        let s = e.to_string();
        for part in [
            "reg.example:5000",
            "team/app",
            "blob_get",
            &d.to_string(),
            "503",
            "UNAVAILABLE",
        ] {
            assert!(s.contains(part), "{s} lacks {part}");
        }
        assert!(e.is_retryable());
    }
}
