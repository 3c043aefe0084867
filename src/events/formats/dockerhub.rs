//! Docker Hub repository webhooks: `{"push_data": {"tag"}, "repository":
//! {"repo_name"}}`. Hub sends no digest and signs nothing: authenticate it
//! with `?token=` in the webhook URL.
//!
//! References: Docker Hub docs, "Webhooks" (example payload).

use serde::Deserialize;

use super::{json, push};
use crate::config::WebhookFormat;
use crate::events::{ParseError, Parsed};

const FORMAT: WebhookFormat = WebhookFormat::Dockerhub;

#[derive(Deserialize)]
struct Body {
    push_data: PushData,
    repository: Repository,
}

#[derive(Deserialize)]
struct PushData {
    tag: String,
}

#[derive(Deserialize)]
struct Repository {
    repo_name: String,
}

/// The one push of a Hub webhook. Official images (`repo_name` without a
/// `/`) live under `library/`, as references name them.
pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let body: Body = json(FORMAT, body)?;
    let repo = if body.repository.repo_name.contains('/') {
        body.repository.repo_name
    } else {
        format!("library/{}", body.repository.repo_name)
    };
    Ok(Parsed {
        pushes: vec![push(FORMAT, None, &repo, Some(&body.push_data.tag), None)?],
        ignored: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_data_names_repository_and_tag() {
        let body = br#"{"callback_url":"https://registry.hub.docker.com/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/",
          "push_data":{"pushed_at":1417566161,"pusher":"trustedbuilder","tag":"latest"},
          "repository":{"name":"testhook","namespace":"svendowideit","repo_name":"svendowideit/testhook"}}"#;
        let p = &parse(body).unwrap().pushes[0];
        assert_eq!(
            (p.repository.as_str(), p.tag.as_deref()),
            ("svendowideit/testhook", Some("latest"))
        );
        let p = &parse(br#"{"push_data":{"tag":"1.27"},"repository":{"repo_name":"nginx"}}"#)
            .unwrap()
            .pushes[0];
        assert_eq!(p.repository, "library/nginx");
    }
}
