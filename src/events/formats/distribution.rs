//! CNCF distribution notifications: an envelope
//! (`application/vnd.docker.distribution.events.v1+json`) of events with
//! `action` and a `target` (`mediaType`, `digest`, `repository`, `tag`).
//! Only manifest pushes are work; blob pushes, pulls, mounts and deletes
//! are counted as ignored.
//!
//! References: distribution `docs/notifications.md` ("Events", "Envelope").

use serde::Deserialize;

use super::{json, push};
use crate::config::WebhookFormat;
use crate::events::{ParseError, Parsed};
use crate::oci::media_type;

const FORMAT: WebhookFormat = WebhookFormat::Distribution;

#[derive(Deserialize)]
struct Envelope {
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    action: String,
    target: Target,
    #[serde(default)]
    request: Option<Request>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    digest: Option<String>,
    repository: String,
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    host: Option<String>,
}

/// The manifest pushes of an envelope.
pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let envelope: Envelope = json(FORMAT, body)?;
    let mut out = Parsed::default();
    for e in envelope.events {
        if e.action != "push" || !media_type::is_manifest(&e.target.media_type) {
            out.ignored += 1;
            continue;
        }
        out.pushes.push(push(
            FORMAT,
            e.request.and_then(|r| r.host),
            &e.target.repository,
            e.target.tag.as_deref(),
            e.target.digest.as_deref(),
        )?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:4b1b5a5e0e7e2b7e8e1d0f3a7c6b5a4e3d2c1b0a9f8e7d6c5b4a39281706f5e4";

    #[test]
    fn manifest_pushes_are_work_and_the_rest_is_counted() {
        let body = format!(
            r#"{{"events":[
              {{"id":"1","action":"push","target":{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{DIGEST}","repository":"team/app"}}}},
              {{"id":"2","action":"push","target":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{DIGEST}","repository":"team/app","tag":"v1"}},"request":{{"host":"reg.example:5000"}}}},
              {{"id":"3","action":"pull","target":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{DIGEST}","repository":"team/app"}}}}
            ]}}"#
        );
        let parsed = parse(body.as_bytes()).unwrap();
        assert_eq!(parsed.ignored, 2);
        assert_eq!(parsed.pushes.len(), 1);
        let p = &parsed.pushes[0];
        assert_eq!(p.repository, "team/app");
        assert_eq!(p.tag.as_deref(), Some("v1"));
        assert_eq!(
            p.digest.as_ref().map(|d| d.to_string()).as_deref(),
            Some(DIGEST)
        );
        assert_eq!(p.registry.as_deref(), Some("reg.example:5000"));
    }

    #[test]
    fn a_bad_digest_or_shape_names_the_field() {
        let body = r#"{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:xyz","repository":"a"}}]}"#;
        let e = parse(body.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("digest") && e.contains("sha256:xyz"), "{e}");
        let e = parse(b"{\"events\":3}").unwrap_err().to_string();
        assert!(e.starts_with("distribution webhook: invalid body"), "{e}");
        let body = r#"{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","tag":"v1","repository":"../etc"}}]}"#;
        let e = parse(body.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("repository"), "{e}");
    }
}
