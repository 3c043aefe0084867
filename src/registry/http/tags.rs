//! Tag and catalog listing with `n` and RFC 5988 `Link` pagination
//! (spec-notes §1.9). Works when the server ignores `n` (distribution 2.8
//! returns everything at once) and with relative or absolute `Link`s.

use std::collections::HashSet;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use super::auth::Scope;
use super::{Ctx, HttpRegistry, MAX_METADATA_BODY, ReqBody};
use crate::oci::RepoName;
use crate::registry::{ErrorKind, Operation, RegistryError};

/// Entries asked for per page.
const PAGE_SIZE: usize = 1000;
/// Pages followed at most (a loop guard).
const MAX_PAGES: usize = 10_000;

/// The target of the `rel="next"` link in one or more `Link` values.
pub fn next_link<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    for value in values {
        let mut rest = value;
        while let Some(start) = rest.find('<') {
            let after = &rest[start + 1..];
            let end = after.find('>')?;
            let target = &after[..end];
            let params_all = &after[end + 1..];
            // Parameters run to the next link (a ',' outside quotes then '<').
            let mut in_quotes = false;
            let mut cut = params_all.len();
            for (i, c) in params_all.char_indices() {
                match c {
                    '"' => in_quotes = !in_quotes,
                    ',' if !in_quotes => {
                        cut = i;
                        break;
                    }
                    _ => {}
                }
            }
            let params = &params_all[..cut];
            let is_next = params.split(';').any(|p| {
                let Some((k, v)) = p.split_once('=') else {
                    return false;
                };
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            });
            if is_next {
                return Some(target.to_string());
            }
            rest = &params_all[cut..];
        }
    }
    None
}

#[derive(Deserialize)]
struct TagPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct CatalogPage {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

impl HttpRegistry {
    /// Fetches every page starting at `first`, handing each body to `page`.
    pub(super) async fn paginate(
        &self,
        ctx: &Ctx,
        first: Url,
        headers: HeaderMap,
        mut page: impl FnMut(&[u8], &HeaderMap) -> Result<(), RegistryError>,
    ) -> Result<(), RegistryError> {
        let mut url = first;
        let mut seen = HashSet::new();
        for _ in 0..MAX_PAGES {
            if !seen.insert(url.to_string()) {
                return Err(self.err(
                    ctx,
                    ErrorKind::InvalidResponse("pagination Link loops back".into()),
                ));
            }
            let (body, resp_headers) = self
                .with_retry(|| async {
                    let resp = self
                        .send(
                            ctx,
                            Method::GET,
                            url.clone(),
                            headers.clone(),
                            ReqBody::Empty,
                        )
                        .await?;
                    if resp.status() != StatusCode::OK {
                        return Err(self.status_error(ctx, resp).await);
                    }
                    let h = resp.headers().clone();
                    Ok((self.read_body(ctx, resp, MAX_METADATA_BODY).await?, h))
                })
                .await?;
            page(&body, &resp_headers)?;
            let links = resp_headers
                .get_all("link")
                .iter()
                .filter_map(|v| v.to_str().ok());
            match next_link(links) {
                Some(next) => url = self.resolve(ctx, &url, &next)?,
                None => return Ok(()),
            }
        }
        Err(self.err(
            ctx,
            ErrorKind::InvalidResponse(format!("more than {MAX_PAGES} pages")),
        ))
    }

    pub(super) async fn tags_impl(&self, repo: &RepoName) -> Result<Vec<String>, RegistryError> {
        let ctx = Ctx::new(Operation::TagList, repo, None, false);
        let mut url = self.url(&ctx, &format!("/v2/{repo}/tags/list"))?;
        url.query_pairs_mut()
            .append_pair("n", &PAGE_SIZE.to_string());
        let mut tags = Vec::new();
        let mut seen = HashSet::new();
        self.paginate(&ctx, url, HeaderMap::new(), |body, _| {
            let page: TagPage = serde_json::from_slice(body).map_err(|_| {
                self.err(
                    &ctx,
                    ErrorKind::InvalidResponse("tag list is not the expected JSON".into()),
                )
            })?;
            for t in page.tags.unwrap_or_default() {
                if seen.insert(t.clone()) {
                    tags.push(t);
                }
            }
            Ok(())
        })
        .await?;
        Ok(tags)
    }

    /// Every repository of the registry (`GET /v2/_catalog`, all pages).
    pub async fn catalog(&self) -> Result<Vec<String>, RegistryError> {
        let ctx = Ctx {
            op: Operation::Catalog,
            repo: String::new(),
            target: None,
            scopes: vec![Scope::catalog()],
        };
        let mut url = self.url(&ctx, "/v2/_catalog")?;
        url.query_pairs_mut()
            .append_pair("n", &PAGE_SIZE.to_string());
        let mut repos = Vec::new();
        self.paginate(&ctx, url, HeaderMap::new(), |body, _| {
            let page: CatalogPage = serde_json::from_slice(body).map_err(|_| {
                self.err(
                    &ctx,
                    ErrorKind::InvalidResponse("catalog is not the expected JSON".into()),
                )
            })?;
            repos.extend(page.repositories.unwrap_or_default());
            Ok(())
        })
        .await?;
        Ok(repos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_forms() {
        assert_eq!(
            next_link([r#"</v2/a/tags/list?last=b&n=2>; rel="next""#]),
            Some("/v2/a/tags/list?last=b&n=2".into())
        );
        assert_eq!(
            next_link([r#"<https://r.example/v2/a/tags/list?n=2&last=b>;rel=next"#]),
            Some("https://r.example/v2/a/tags/list?n=2&last=b".into())
        );
        // Several links in one value, next not first; rel with several values.
        assert_eq!(
            next_link([r#"</prev>; rel="prev", </x?a=1,2>; title="a, b"; rel="last next""#]),
            Some("/x?a=1,2".into())
        );
        // Several headers.
        assert_eq!(
            next_link([r#"</p>; rel="prev""#, r#"</n>; rel="next""#]),
            Some("/n".into())
        );
        assert_eq!(next_link([r#"</p>; rel="prev""#]), None);
        assert_eq!(next_link(std::iter::empty()), None);
        assert_eq!(next_link(["garbage"]), None);
    }
}
