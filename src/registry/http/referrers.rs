//! The referrers API: unfiltered listing over every `Link` page, and
//! support detection with a per-repository verdict cache (spec-notes §2).
//! What each answer of the endpoint means is decided in `verdict.rs`; this
//! file acts on it: list, fall back, cache, or fail.

use std::collections::HashSet;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::Deserialize;
use tracing::debug;

use super::tags::next_link;
use super::verdict::{Answer, Verdict, verdict};
use super::{Ctx, HttpRegistry, MAX_ERROR_BODY, MAX_METADATA_BODY, ReqBody, read_limited};
use crate::oci::media_type::OCI_INDEX;
use crate::oci::{Descriptor, Digest, Reference, RepoName};
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
    /// Any answer that is not an index page (never `Supported`/`Failed`).
    Other(Verdict),
}

/// What one listing found out.
enum Listing {
    /// The API answered: every referrer of every page.
    Found(Vec<Descriptor>),
    /// No API here; `cache` when the answer speaks for the repository.
    NoApi { answer: Answer, cache: bool },
    /// 404 `NAME_UNKNOWN`.
    RepositoryMissing(Answer),
}

impl HttpRegistry {
    fn forced_referrers(&self) -> Option<ReferrersSupport> {
        self.settings
            .referrers
            .filter(|v| *v != ReferrersSupport::Unknown)
    }

    pub(super) async fn referrers_api_impl(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError> {
        let ctx = Ctx::new(Operation::Referrers, repo, Some(subject.to_string()), false);
        let forced = self.forced_referrers();
        let known = forced.or_else(|| self.cached_referrers(&ctx.repo));
        if known == Some(ReferrersSupport::Unsupported) {
            return Ok(None);
        }
        match self.list_referrers(&ctx, repo, subject).await? {
            Listing::Found(list) => {
                self.cache_referrers(&ctx.repo, ReferrersSupport::Supported);
                Ok(Some(list))
            }
            Listing::NoApi { answer, .. } if forced == Some(ReferrersSupport::Supported) => {
                Err(self.err(
                    &ctx,
                    ErrorKind::Unsupported(format!(
                        "the registry answered {answer}, which means it has no referrers API, \
                         but its referrers capability is forced to \"api\""
                    )),
                ))
            }
            Listing::NoApi { answer, cache } => {
                debug!(registry = %self.name, repo = %ctx.repo, %answer, cache, "No referrers API; reading the tag schema.");
                if cache {
                    self.cache_referrers(&ctx.repo, ReferrersSupport::Unsupported);
                }
                Ok(None)
            }
            // Listing referrers of a repository that does not exist is a
            // mistake worth naming, not an empty list.
            Listing::RepositoryMissing(answer) => Err(self.err(
                &ctx,
                ErrorKind::Status {
                    status: answer.status,
                    codes: answer.codes,
                    message: "repository does not exist".into(),
                    retry_after: None,
                },
            )),
        }
    }

    pub(super) async fn referrers_support_impl(
        &self,
        repo: &RepoName,
    ) -> Result<ReferrersSupport, RegistryError> {
        if let Some(forced) = self.forced_referrers() {
            return Ok(forced);
        }
        if let Some(v) = self.cached_referrers(repo.as_str()) {
            return Ok(v);
        }
        let ctx = Ctx::new(Operation::Referrers, repo, Some(PROBE_DIGEST.into()), false);
        let probe: Digest = PROBE_DIGEST
            .parse()
            .map_err(|_| self.err(&ctx, ErrorKind::InvalidResponse("probe digest".into())))?;
        let support = match self.list_referrers(&ctx, repo, &probe).await? {
            Listing::Found(_) => ReferrersSupport::Supported,
            Listing::NoApi { answer, .. } => {
                debug!(registry = %self.name, repo = %ctx.repo, %answer, "No referrers API.");
                ReferrersSupport::Unsupported
            }
            // A target repository that does not exist yet is simply new:
            // nothing is cached, the next call probes again.
            Listing::RepositoryMissing(_) => return Ok(ReferrersSupport::Unknown),
        };
        self.cache_referrers(repo.as_str(), support);
        Ok(support)
    }

    /// Whether a registry that answered `OCI-Subject` on a manifest PUT
    /// really serves the API: Docker Hub in 2024 sent the header without
    /// serving it (spec-notes §2.5, §8). Confirmed with one GET of the
    /// endpoint per repository (then cached); a probe that fails does not
    /// confirm, so the caller keeps the tag schema up to date.
    pub(super) async fn subject_indexing_confirmed(&self, repo: &RepoName) -> bool {
        match self.referrers_support_impl(repo).await {
            Ok(support) => support == ReferrersSupport::Supported,
            Err(e) => {
                debug!(registry = %self.name, repo = %e.repo, error = %e.kind, "Could not confirm the referrers API after OCI-Subject.");
                false
            }
        }
    }

    /// Lists every page of the referrers of `subject`, or says why there is
    /// no list.
    async fn list_referrers(
        &self,
        ctx: &Ctx,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Listing, RegistryError> {
        let mut url = self.url(ctx, &format!("/v2/{repo}/referrers/{subject}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static(OCI_INDEX));
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for page_no in 0..MAX_PAGES {
            if !seen.insert(url.to_string()) {
                return Err(self.err(
                    ctx,
                    ErrorKind::InvalidResponse("referrers Link loops back".into()),
                ));
            }
            let page = self
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
                    let status = resp.status();
                    let h = resp.headers().clone();
                    // The body decides only when the answer is not an index.
                    if verdict(status, &h, b"") == Verdict::Supported {
                        return Ok(Page::Index(
                            self.read_body(ctx, resp, MAX_METADATA_BODY).await?,
                            h,
                        ));
                    }
                    let body = read_limited(resp, MAX_ERROR_BODY).await.unwrap_or_default();
                    match verdict(status, &h, &body) {
                        Verdict::Failed => {
                            Err(self.status_error_of(ctx, status.as_u16(), &h, &body))
                        }
                        v => Ok(Page::Other(v)),
                    }
                })
                .await?;
            let v = match page {
                Page::Index(body, h) => {
                    let index: IndexPage = serde_json::from_slice(&body).map_err(|_| {
                        self.err(
                            ctx,
                            ErrorKind::InvalidResponse(
                                "referrers response is not an OCI index".into(),
                            ),
                        )
                    })?;
                    out.extend(index.manifests);
                    let links = h.get_all("link").iter().filter_map(|v| v.to_str().ok());
                    match next_link(links) {
                        Some(next) => {
                            url = self.resolve(ctx, &url, &next)?;
                            continue;
                        }
                        None => return Ok(Listing::Found(out)),
                    }
                }
                Page::Other(v) if page_no == 0 => v,
                Page::Other(v) => {
                    return Err(self.err(
                        ctx,
                        ErrorKind::InvalidResponse(format!(
                            "a later referrers page is not an OCI index ({v:?})"
                        )),
                    ));
                }
            };
            return match v {
                Verdict::NoApi(answer) => Ok(Listing::NoApi {
                    answer,
                    cache: true,
                }),
                // On the probe digest (always valid) a 400 can only mean
                // that the route is not there.
                Verdict::DigestRefused(answer) => Ok(Listing::NoApi {
                    answer,
                    cache: subject.to_string() == PROBE_DIGEST,
                }),
                Verdict::RepositoryMissing(answer) => Ok(Listing::RepositoryMissing(answer)),
                Verdict::Denied(mut answer) => {
                    // Refused on the referrers path alone? Then it is not
                    // served to us; if the repository refuses us too, that
                    // auth error is the one to report.
                    self.manifest_head_impl(repo, &Reference::Digest(subject.clone()))
                        .await?;
                    answer.detail = "only on the referrers path".into();
                    Ok(Listing::NoApi {
                        answer,
                        cache: true,
                    })
                }
                Verdict::Supported | Verdict::Failed => Err(self.err(
                    ctx,
                    ErrorKind::InvalidResponse("unexpected referrers answer".into()),
                )),
            };
        }
        Err(self.err(
            ctx,
            ErrorKind::InvalidResponse(format!("more than {MAX_PAGES} referrers pages")),
        ))
    }
}
