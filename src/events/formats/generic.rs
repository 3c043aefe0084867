//! The generic body, for any sender a script can drive:
//! `{"registry": "host", "repository": "path", "tag": "v1"}` (or
//! `"digest"` instead of / beside `"tag"`), or a list of such objects.

use serde::Deserialize;

use super::{json, push};
use crate::config::WebhookFormat;
use crate::events::{ParseError, Parsed};

const FORMAT: WebhookFormat = WebhookFormat::Generic;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    #[serde(default)]
    registry: Option<String>,
    repository: String,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    digest: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(Body),
    Many(Vec<Body>),
}

/// The pushes a generic body names.
pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let bodies = match json(FORMAT, body)? {
        OneOrMany::One(b) => vec![b],
        OneOrMany::Many(v) => v,
    };
    let pushes = bodies
        .into_iter()
        .map(|b| {
            push(
                FORMAT,
                b.registry,
                &b.repository,
                b.tag.as_deref(),
                b.digest.as_deref(),
            )
        })
        .collect::<Result<_, _>>()?;
    Ok(Parsed { pushes, ignored: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_or_many_objects() {
        let one = parse(br#"{"registry":"r.example","repository":"a/b","tag":"v1"}"#).unwrap();
        assert_eq!(one.pushes[0].registry.as_deref(), Some("r.example"));
        let many =
            parse(br#"[{"repository":"a","tag":"1"},{"repository":"b","tag":"2"}]"#).unwrap();
        assert_eq!(many.pushes.len(), 2);
        let e = parse(br#"{"repository":"a"}"#).unwrap_err().to_string();
        assert!(e.contains("neither a tag nor a digest"), "{e}");
    }
}
