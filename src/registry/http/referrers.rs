//! The referrers API: unfiltered listing over every `Link` page, and
//! support detection with a per-repository verdict cache (spec-notes §2).

use std::collections::HashSet;

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::tags::next_link;
use super::{
    Ctx, HttpRegistry, MAX_ERROR_BODY, MAX_METADATA_BODY, ReqBody, header_str, parse_error_body,
    read_limited,
};
use crate::oci::media_type::{OCI_INDEX, essence};
use crate::oci::{Descriptor, Digest, RepoName};
use crate::registry::{ErrorKind, Operation, ReferrersSupport, RegistryError};

/// The digest oras-go probes with: valid, and never a real subject.
pub const PROBE_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Pages followed at most.
const MAX_PAGES: usize = 1000;

#[derive(Deserialize)]
struct IndexPage {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

enum Page {
    Index(Bytes, HeaderMap),
    /// 404 with the OCI error codes of its body.
    NotFound(Vec<String>),
    /// 200 with something other than an OCI index (a web page, say).
    NotAnIndex,
}

impl HttpRegistry {
    pub(super) async fn referrers_api_impl(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError> {
        let ctx = Ctx::new(Operation::Referrers, repo, Some(subject.to_string()), false);
        let known = self
            .settings
            .referrers
            .filter(|v| *v != ReferrersSupport::Unknown)
            .or_else(|| self.cached_referrers(&ctx.repo));
        if known == Some(ReferrersSupport::Unsupported) {
            return Ok(None);
        }
        let mut url = self.url(&ctx, &format!("/v2/{repo}/referrers/{subject}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static(OCI_INDEX));
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for page_no in 0..MAX_PAGES {
            if !seen.insert(url.to_string()) {
                return Err(self.err(
                    &ctx,
                    ErrorKind::InvalidResponse("referrers Link loops back".into()),
                ));
            }
            let page = self
                .with_retry(|| async {
                    let resp = self
                        .send(
                            &ctx,
                            Method::GET,
                            url.clone(),
                            headers.clone(),
                            ReqBody::Empty,
                        )
                        .await?;
                    match resp.status() {
                        StatusCode::OK => {
                            let ct = header_str(resp.headers(), "content-type").map(essence);
                            if ct != Some(OCI_INDEX) {
                                return Ok(Page::NotAnIndex);
                            }
                            let h = resp.headers().clone();
                            Ok(Page::Index(
                                self.read_body(&ctx, resp, MAX_METADATA_BODY).await?,
                                h,
                            ))
                        }
                        StatusCode::NOT_FOUND => {
                            let body = read_limited(resp, MAX_ERROR_BODY).await.unwrap_or_default();
                            Ok(Page::NotFound(parse_error_body(&body).0))
                        }
                        _ => Err(self.status_error(&ctx, resp).await),
                    }
                })
                .await?;
            match page {
                Page::Index(body, h) => {
                    let index: IndexPage = serde_json::from_slice(&body).map_err(|_| {
                        self.err(
                            &ctx,
                            ErrorKind::InvalidResponse(
                                "referrers response is not an OCI index".into(),
                            ),
                        )
                    })?;
                    out.extend(index.manifests);
                    let links = h.get_all("link").iter().filter_map(|v| v.to_str().ok());
                    match next_link(links) {
                        Some(next) => url = self.resolve(&ctx, &url, &next)?,
                        None => {
                            self.cache_referrers(&ctx.repo, ReferrersSupport::Supported);
                            return Ok(Some(out));
                        }
                    }
                }
                Page::NotFound(codes) if page_no == 0 => {
                    // NAME_UNKNOWN: the repository is missing, which says
                    // nothing about the API (oras-go does not cache it).
                    if !codes.iter().any(|c| c == "NAME_UNKNOWN") {
                        self.cache_referrers(&ctx.repo, ReferrersSupport::Unsupported);
                    }
                    return Ok(None);
                }
                Page::NotAnIndex if page_no == 0 => {
                    self.cache_referrers(&ctx.repo, ReferrersSupport::Unsupported);
                    return Ok(None);
                }
                Page::NotFound(_) | Page::NotAnIndex => {
                    return Err(self.err(
                        &ctx,
                        ErrorKind::InvalidResponse(
                            "a later referrers page is not an OCI index".into(),
                        ),
                    ));
                }
            }
        }
        Err(self.err(
            &ctx,
            ErrorKind::InvalidResponse(format!("more than {MAX_PAGES} referrers pages")),
        ))
    }

    pub(super) async fn referrers_support_impl(
        &self,
        repo: &RepoName,
    ) -> Result<ReferrersSupport, RegistryError> {
        if let Some(forced) = self
            .settings
            .referrers
            .filter(|v| *v != ReferrersSupport::Unknown)
        {
            return Ok(forced);
        }
        if let Some(v) = self.cached_referrers(repo.as_str()) {
            return Ok(v);
        }
        let probe: Digest = PROBE_DIGEST.parse().map_err(|_| {
            RegistryError::new(
                self.name.clone(),
                repo.as_str(),
                Operation::Referrers,
                None,
                ErrorKind::InvalidResponse("probe digest".into()),
            )
        })?;
        self.referrers_api_impl(repo, &probe).await?;
        Ok(self
            .cached_referrers(repo.as_str())
            .unwrap_or(ReferrersSupport::Unknown))
    }
}
