//! GitHub Packages: the `registry_package` event (`X-GitHub-Event:
//! registry_package`, action `published`) of a container package:
//! `registry_package.{namespace, name, package_version.container_metadata.tag.{name, digest}}`.
//! Other events (`ping`, other actions, other ecosystems) are ignored.
//!
//! References: GitHub docs, "Webhook events and payloads", `registry_package`.

use serde::Deserialize;

use super::{json, push};
use crate::config::WebhookFormat;
use crate::events::{ParseError, Parsed};

const FORMAT: WebhookFormat = WebhookFormat::Github;

#[derive(Deserialize)]
struct Body {
    action: String,
    registry_package: Package,
}

#[derive(Deserialize)]
struct Package {
    namespace: String,
    name: String,
    #[serde(default)]
    package_type: Option<String>,
    package_version: Version,
}

#[derive(Deserialize)]
struct Version {
    #[serde(default)]
    container_metadata: Option<ContainerMetadata>,
}

#[derive(Deserialize)]
struct ContainerMetadata {
    tag: TagInfo,
}

#[derive(Deserialize)]
struct TagInfo {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    digest: Option<String>,
}

/// The push of a `registry_package` event; other events are ignored.
pub fn parse(body: &[u8], event_kind: Option<&str>) -> Result<Parsed, ParseError> {
    let ignored = Parsed {
        pushes: Vec::new(),
        ignored: 1,
    };
    if event_kind.is_some_and(|k| k != "registry_package") {
        return Ok(ignored);
    }
    let body: Body = json(FORMAT, body)?;
    let p = body.registry_package;
    let container = p
        .package_type
        .as_deref()
        .is_none_or(|t| t.eq_ignore_ascii_case("container"));
    let (true, "published", Some(meta)) = (
        container,
        body.action.as_str(),
        p.package_version.container_metadata,
    ) else {
        return Ok(ignored);
    };
    // ghcr.io paths are lower case; GitHub reports the owner as written.
    let repo = format!("{}/{}", p.namespace, p.name).to_lowercase();
    Ok(Parsed {
        pushes: vec![push(
            FORMAT,
            None,
            &repo,
            meta.tag.name.as_deref(),
            meta.tag.digest.as_deref(),
        )?],
        ignored: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_container_versions_become_pushes() {
        let body = br#"{"action":"published","registry_package":{"name":"app","namespace":"Octo-Org","package_type":"CONTAINER",
          "package_version":{"version":"sha256:4b1b5a5e0e7e2b7e8e1d0f3a7c6b5a4e3d2c1b0a9f8e7d6c5b4a39281706f5e4",
          "container_metadata":{"tag":{"name":"v1.2.3","digest":"sha256:4b1b5a5e0e7e2b7e8e1d0f3a7c6b5a4e3d2c1b0a9f8e7d6c5b4a39281706f5e4"}}}}}"#;
        let parsed = parse(body, Some("registry_package")).unwrap();
        assert_eq!(parsed.pushes[0].repository, "octo-org/app");
        assert_eq!(parsed.pushes[0].tag.as_deref(), Some("v1.2.3"));
        assert_eq!(parse(b"{}", Some("ping")).unwrap().ignored, 1);
    }
}
