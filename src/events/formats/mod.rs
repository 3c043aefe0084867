//! One parser per webhook body format. Each is a pure function of the body
//! and checks what it takes from it (repository, tag, digest), so a bad
//! field is a 400 naming the field, never a sync of something else.

pub mod distribution;
pub mod dockerhub;
pub mod generic;
pub mod github;
pub mod harbor;

use super::{ParseError, PushEvent};
use crate::config::WebhookFormat;
use crate::oci::{Digest, RepoName, Tag};

fn json<T: serde::de::DeserializeOwned>(
    format: WebhookFormat,
    body: &[u8],
) -> Result<T, ParseError> {
    serde_json::from_slice(body).map_err(|source| ParseError::Json { format, source })
}

/// A push event after checking its repository, tag and digest.
fn push(
    format: WebhookFormat,
    registry: Option<String>,
    repository: &str,
    tag: Option<&str>,
    digest: Option<&str>,
) -> Result<PushEvent, ParseError> {
    let field = |field: &'static str, message: String| ParseError::Field {
        format,
        field,
        message,
    };
    let repository = RepoName::new(repository)
        .map_err(|e| field("repository", format!("{repository:?}: {e}")))?;
    let tag = tag
        .filter(|t| !t.is_empty())
        .map(|t| Tag::new(t).map_err(|e| field("tag", format!("{t:?}: {e}"))))
        .transpose()?;
    let digest = digest
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<Digest>()
                .map_err(|e| field("digest", format!("{d:?}: {e}")))
        })
        .transpose()?;
    if tag.is_none() && digest.is_none() {
        return Err(field(
            "tag",
            format!("neither a tag nor a digest for {repository}"),
        ));
    }
    Ok(PushEvent {
        registry,
        repository: repository.as_str().to_string(),
        tag: tag.map(|t| t.as_str().to_string()),
        digest,
    })
}
