//! Registry personalities: the documented ways real registries answer the
//! referrers endpoint (and `OCI-Subject` on manifest PUT), one preset each,
//! so the copy tests can run against every one of them (spec notes §2.5, §8).

use axum::body::Body;
use axum::response::Response;

use super::http::{err, plain_404, reply};
use super::{Auth, Options};

/// How a registry answers `GET /v2/<name>/referrers/<digest>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Personality {
    /// The referrers API and `OCI-Subject` on PUT (zot, ACR, Harbor ≥ 2.11, ECR since 2024-06).
    FullApi,
    /// distribution 2.8/3.x: the router's plain-text `404 page not found`, no `OCI-Subject`.
    Distribution28,
    /// The API turned off (ECR before 2024-06): 405 with an OCI `UNSUPPORTED` error.
    ApiOff405,
    /// GHCR: 303 to a web page on another origin (`127.0.0.2`), which serves HTML.
    Ghcr303,
    /// Docker Hub 2024: `OCI-Subject` on PUT, but the endpoint answers plain 404.
    DockerHub2024,
    /// A web front end: 200 `text/html`.
    Html200,
    /// Token auth works for the repository, but the referrers path alone answers 401
    /// (`insufficient_scope`) whatever the token.
    Referrers401,
}

impl Personality {
    /// User of the personalities that need credentials.
    pub const USER: &str = "mirror";
    /// Password of [`Personality::USER`].
    pub const PASSWORD: &str = "mirror-secret";

    /// Every personality.
    pub const ALL: [Personality; 7] = [
        Personality::FullApi,
        Personality::Distribution28,
        Personality::ApiOff405,
        Personality::Ghcr303,
        Personality::DockerHub2024,
        Personality::Html200,
        Personality::Referrers401,
    ];

    /// Serves the referrers API (lists referrers from `GET …/referrers/…`).
    pub fn has_api(self) -> bool {
        self == Personality::FullApi
    }

    /// Answers `OCI-Subject` on a manifest PUT with `subject` without serving the API.
    pub fn claims_subject_without_api(self) -> bool {
        self == Personality::DockerHub2024
    }

    /// Needs credentials ([`Personality::USER`], token auth).
    pub fn needs_credentials(self) -> bool {
        self == Personality::Referrers401
    }

    /// The options of a registry with this personality.
    pub fn options(self) -> Options {
        Options {
            referrers_api: self.has_api(),
            personality: self,
            auth: self
                .needs_credentials()
                .then(|| Auth::bearer(Self::USER, Self::PASSWORD)),
            ..Options::default()
        }
    }
}

/// The answer of a registry without the API on its referrers path, given
/// before authentication like distribution's router; `None` to go on (the
/// API, or [`Personality::Referrers401`], which answers after auth).
/// `api_on` is the runtime API switch; `web_origin` the 303 target's origin.
pub(super) fn referrers_answer(
    p: Personality,
    api_on: bool,
    web_origin: Option<&str>,
) -> Option<Response> {
    match p {
        Personality::FullApi => (!api_on).then(plain_404),
        Personality::Referrers401 => None,
        Personality::Distribution28 | Personality::DockerHub2024 => Some(plain_404()),
        Personality::ApiOff405 => Some(err(
            405,
            "UNSUPPORTED",
            "The referrers API is not enabled for this registry",
        )),
        Personality::Ghcr303 => Some(reply(
            303,
            &[(
                "location",
                format!(
                    "http://{}/orgs/test/packages?ref=referrers",
                    web_origin.unwrap_or("127.0.0.2")
                ),
            )],
            Body::empty(),
        )),
        Personality::Html200 => Some(html_page()),
    }
}

/// A web page, as a CDN or login front end serves it.
pub(super) fn html_page() -> Response {
    reply(
        200,
        &[("content-type", "text/html; charset=utf-8".to_string())],
        "<!DOCTYPE html><html><body><h1>Packages</h1></body></html>",
    )
}
