//! Harbor webhook policies: `{"type": "PUSH_ARTIFACT", "event_data":
//! {"resources": [{"digest", "tag"}], "repository": {"repo_full_name"}}}`.
//! Other event types (pulls, scans, deletes) are counted as ignored.
//!
//! References: Harbor docs, "Configure Webhook Notifications" (payload format).

use serde::Deserialize;

use super::{json, push};
use crate::config::WebhookFormat;
use crate::events::{ParseError, Parsed};

const FORMAT: WebhookFormat = WebhookFormat::Harbor;

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    event_data: Option<EventData>,
}

#[derive(Deserialize)]
struct EventData {
    #[serde(default)]
    resources: Vec<Resource>,
    repository: Repository,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Deserialize)]
struct Repository {
    repo_full_name: String,
}

/// The artifact pushes of a Harbor event.
pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let body: Body = json(FORMAT, body)?;
    let data = match (body.kind.as_str(), body.event_data) {
        ("PUSH_ARTIFACT", Some(d)) => d,
        ("PUSH_ARTIFACT", None) => {
            return Err(ParseError::Field {
                format: FORMAT,
                field: "event_data",
                message: "missing in a PUSH_ARTIFACT event".into(),
            });
        }
        _ => {
            return Ok(Parsed {
                pushes: Vec::new(),
                ignored: 1,
            });
        }
    };
    let pushes = data
        .resources
        .iter()
        .map(|r| {
            push(
                FORMAT,
                None,
                &data.repository.repo_full_name,
                r.tag.as_deref(),
                r.digest.as_deref(),
            )
        })
        .collect::<Result<_, _>>()?;
    Ok(Parsed { pushes, ignored: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_artifact_resources_become_pushes() {
        let body = br#"{"type":"PUSH_ARTIFACT","occur_at":1700000000,"operator":"admin",
          "event_data":{"resources":[{"digest":"sha256:4b1b5a5e0e7e2b7e8e1d0f3a7c6b5a4e3d2c1b0a9f8e7d6c5b4a39281706f5e4","tag":"v2","resource_url":"harbor.example/library/app:v2"}],
          "repository":{"name":"app","namespace":"library","repo_full_name":"library/app","repo_type":"private"}}}"#;
        let parsed = parse(body).unwrap();
        assert_eq!(parsed.pushes.len(), 1);
        assert_eq!(parsed.pushes[0].repository, "library/app");
        assert_eq!(parsed.pushes[0].tag.as_deref(), Some("v2"));
        assert!(parsed.pushes[0].registry.is_none());
    }

    #[test]
    fn other_types_are_ignored() {
        let parsed = parse(br#"{"type":"PULL_ARTIFACT","event_data":{"resources":[],"repository":{"repo_full_name":"a/b"}}}"#).unwrap();
        assert_eq!(
            parsed,
            Parsed {
                pushes: vec![],
                ignored: 1
            }
        );
    }
}
