//! Tag and catalog listing with `n` and RFC 5988 `Link` pagination
//! (spec-notes §1.9). Works when the server ignores `n` (distribution 2.8
//! returns everything at once) and with relative or absolute `Link`s.

use std::collections::HashSet;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use super::auth::Scope;
use super::{Ctx, HttpRegistry, MAX_METADATA_BODY, ReqBody};
use crate::oci::{RepoName, Tag};
use crate::registry::{ErrorKind, Operation, RegistryError};

/// Entries asked for per page.
const PAGE_SIZE: usize = 1000;
/// Pages followed at most (a loop guard).
const MAX_PAGES: usize = 10_000;
/// Entries kept from one listing (tags of a repository, or the catalog).
pub(crate) const MAX_LISTING_ENTRIES: usize = 1_000_000;
/// Body bytes read for one listing, all pages together.
const MAX_LISTING_BYTES: usize = 256 * 1024 * 1024;

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

/// The names of one listing page: the valid ones, in order, and the ones
/// that fail the grammar (dropped).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListingPage {
    /// Names that pass the tag (or repository) grammar.
    pub names: Vec<String>,
    /// Names that do not.
    pub dropped: Vec<String>,
}

/// One page of `GET /v2/<name>/tags/list`. A pure function, fuzzed.
pub fn parse_tag_page(body: &[u8]) -> Result<ListingPage, &'static str> {
    let page: TagPage =
        serde_json::from_slice(body).map_err(|_| "tag list is not the expected JSON")?;
    Ok(split_valid(page.tags.unwrap_or_default(), |t| {
        Tag::new(t).is_ok()
    }))
}

/// One page of `GET /v2/_catalog`. A pure function, fuzzed.
pub fn parse_catalog_page(body: &[u8]) -> Result<ListingPage, &'static str> {
    let page: CatalogPage =
        serde_json::from_slice(body).map_err(|_| "catalog is not the expected JSON")?;
    Ok(split_valid(page.repositories.unwrap_or_default(), |r| {
        RepoName::new(r).is_ok()
    }))
}

fn split_valid(all: Vec<String>, valid: impl Fn(&str) -> bool) -> ListingPage {
    let (names, dropped) = all.into_iter().partition(|n| valid(n));
    ListingPage { names, dropped }
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
    /// Fetches every page starting at `first`, handing each body to
    /// `page`, which answers how many new entries it held. Bounded in pages,
    /// bytes and entries; a page that adds nothing yet links to another is a
    /// loop, however its URL is spelled.
    pub(super) async fn paginate(
        &self,
        ctx: &Ctx,
        first: Url,
        headers: HeaderMap,
        mut page: impl FnMut(&[u8], &HeaderMap) -> Result<usize, RegistryError>,
    ) -> Result<(), RegistryError> {
        let mut url = first;
        let mut seen = HashSet::new();
        let (mut bytes, mut entries) = (0usize, 0usize);
        let invalid = |what: String| self.err(ctx, ErrorKind::InvalidResponse(what));
        for page_no in 1..=MAX_PAGES {
            if !seen.insert(url.to_string()) {
                return Err(invalid("pagination Link loops back".into()));
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
            bytes = bytes.saturating_add(body.len());
            if bytes > MAX_LISTING_BYTES {
                return Err(invalid(format!(
                    "listing larger than {} MiB",
                    MAX_LISTING_BYTES >> 20
                )));
            }
            let added = page(&body, &resp_headers)?;
            entries = entries.saturating_add(added);
            if entries > MAX_LISTING_ENTRIES {
                return Err(invalid(format!(
                    "listing has more than {MAX_LISTING_ENTRIES} entries"
                )));
            }
            let links = resp_headers
                .get_all("link")
                .iter()
                .filter_map(|v| v.to_str().ok());
            match next_link(links) {
                Some(_) if added == 0 => {
                    return Err(invalid(format!(
                        "pagination makes no progress: page {page_no} added no new entry but links to another"
                    )));
                }
                Some(next) => url = self.resolve(ctx, &url, &next)?,
                None => return Ok(()),
            }
        }
        Err(invalid(format!("more than {MAX_PAGES} pages")))
    }

    pub(super) async fn tags_impl(&self, repo: &RepoName) -> Result<Vec<String>, RegistryError> {
        let ctx = Ctx::new(Operation::TagList, repo, None, false);
        let mut url = self.url(&ctx, &format!("/v2/{repo}/tags/list"))?;
        url.query_pairs_mut()
            .append_pair("n", &PAGE_SIZE.to_string());
        let mut tags = Vec::new();
        let mut seen = HashSet::new();
        let mut dropped = Dropped::default();
        self.paginate(&ctx, url, HeaderMap::new(), |body, _| {
            let page = parse_tag_page(body)
                .map_err(|what| self.err(&ctx, ErrorKind::InvalidResponse(what.into())))?;
            let before = seen.len();
            page.dropped.into_iter().for_each(|t| dropped.note(t));
            for t in page.names {
                if seen.insert(t.clone()) {
                    tags.push(t);
                }
            }
            Ok(seen.len() - before)
        })
        .await?;
        dropped.warn(&self.name, repo.as_str(), "tag");
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
        let mut seen = HashSet::new();
        let mut dropped = Dropped::default();
        self.paginate(&ctx, url, HeaderMap::new(), |body, _| {
            let page = parse_catalog_page(body)
                .map_err(|what| self.err(&ctx, ErrorKind::InvalidResponse(what.into())))?;
            let before = seen.len();
            page.dropped.into_iter().for_each(|r| dropped.note(r));
            for r in page.names {
                if seen.insert(r.clone()) {
                    repos.push(r);
                }
            }
            Ok(seen.len() - before)
        })
        .await?;
        dropped.warn(&self.name, "", "repository");
        Ok(repos)
    }
}

/// Names a listing held that fail the grammar: dropped at parse time and
/// said once per listing, not once each.
#[derive(Default)]
struct Dropped {
    count: usize,
    first: Option<String>,
}

impl Dropped {
    fn note(&mut self, name: String) {
        self.count += 1;
        self.first.get_or_insert(name);
    }

    fn warn(&self, registry: &str, repository: &str, what: &str) {
        if let Some(first) = &self.first {
            tracing::warn!(
                registry = %registry,
                repository = %repository,
                dropped = self.count,
                example = %first.escape_debug(),
                "Dropped {what} names that are not valid {what} names."
            );
        }
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
