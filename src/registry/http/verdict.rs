//! What one answer of `GET /v2/<name>/referrers/<digest>` says about the
//! referrers API: every real-world answer mapped in one place, as a pure
//! function (spec-notes §2.5, §8).
//!
//! References: distribution-spec §"Listing Referrers" (a registry with the
//! API answers 200 with an OCI index and MUST NOT answer 404; a client
//! receiving 404 MUST fall back to the tag schema).

use std::fmt;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::{header_str, parse_error_body};
use crate::oci::media_type::{OCI_INDEX, essence};

/// The answer that decided a verdict, for logs and error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    /// HTTP status.
    pub status: u16,
    /// OCI error codes of the body, if it was the JSON error envelope.
    pub codes: Vec<String>,
    /// What else mattered (content type, redirect), empty when nothing.
    pub detail: String,
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if !self.codes.is_empty() {
            write!(f, " {}", self.codes.join(","))?;
        }
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// What a referrers-endpoint answer means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 200 with an OCI index: the API works; the body is a page.
    Supported,
    /// The repository has no referrers API: use the tag schema. Cached.
    NoApi(Answer),
    /// 400 without `UNSUPPORTED`: the spec's "invalid digest". Our digests
    /// are valid, so on the probe digest it means no API; on a real subject
    /// it is not cached (an algorithm the registry refuses, say).
    DigestRefused(Answer),
    /// 404 `NAME_UNKNOWN`: the repository does not exist, which says nothing
    /// about the API (oras-go does not cache it either).
    RepositoryMissing(Answer),
    /// 401/403 after authentication: no API when auth works for the
    /// repository elsewhere (the caller checks), else an auth error.
    Denied(Answer),
    /// Anything else (429, 5xx, ...): an error, retried as usual.
    Failed,
}

/// The verdict of one answer. `body` is the (capped) error body; it is not
/// looked at for a 200 with an OCI index.
pub(crate) fn verdict(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Verdict {
    let content_type = header_str(headers, "content-type").map(essence);
    if status == StatusCode::OK && content_type == Some(OCI_INDEX) {
        return Verdict::Supported;
    }
    let (codes, _) = parse_error_body(body);
    let answer = |detail: String| Answer {
        status: status.as_u16(),
        codes: codes.clone(),
        detail,
    };
    // An explicit refusal, whatever the status (ECR before 2024-06: 405).
    if codes.iter().any(|c| c == "UNSUPPORTED") {
        return Verdict::NoApi(answer(String::new()));
    }
    match status.as_u16() {
        200..=299 => Verdict::NoApi(answer(format!(
            "Content-Type {}, not an OCI index",
            content_type.unwrap_or("missing")
        ))),
        // GHCR: 303 to a github.com web page; GAR: a login page.
        300..=399 => Verdict::NoApi(answer(format!(
            "redirect to {}",
            header_str(headers, "location").map_or("nowhere", location_origin)
        ))),
        400 => Verdict::DigestRefused(answer(String::new())),
        404 if codes.iter().any(|c| c == "NAME_UNKNOWN") => {
            Verdict::RepositoryMissing(answer(String::new()))
        }
        // distribution's router: plain-text `404 page not found`.
        404 => Verdict::NoApi(answer(if codes.is_empty() {
            "no OCI error body".to_string()
        } else {
            String::new()
        })),
        401 | 403 => Verdict::Denied(answer(String::new())),
        405 | 501 => Verdict::NoApi(answer(String::new())),
        _ => Verdict::Failed,
    }
}

/// The scheme and host of a `Location` (never its path or query, which may
/// carry tokens); relative ones are "the same origin".
fn location_origin(location: &str) -> &str {
    match location.split_once("://") {
        Some((scheme, rest)) => {
            let end = scheme.len() + 3 + rest.find(['/', '?', '#']).unwrap_or(rest.len());
            location.get(..end).unwrap_or("another origin")
        }
        None => "the same origin",
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn run(status: u16, h: &[(&'static str, &'static str)], body: &str) -> Verdict {
        verdict(
            StatusCode::from_u16(status).unwrap(),
            &headers(h),
            body.as_bytes(),
        )
    }

    fn oci(code: &str) -> String {
        format!(r#"{{"errors":[{{"code":"{code}","message":"m"}}]}}"#)
    }

    fn no_api(v: &Verdict) -> String {
        match v {
            Verdict::NoApi(a) => a.to_string(),
            other => panic!("expected NoApi, got {other:?}"),
        }
    }

    const JSON: (&str, &str) = ("content-type", "application/json");

    #[test]
    fn index_answer_is_supported() {
        let ct = ("content-type", "application/vnd.oci.image.index.v1+json");
        assert_eq!(run(200, &[ct], ""), Verdict::Supported);
        let with_params = (
            "content-type",
            "application/vnd.oci.image.index.v1+json; charset=utf-8",
        );
        assert_eq!(run(200, &[with_params], ""), Verdict::Supported);
    }

    #[test]
    fn distribution_plain_404_is_no_api() {
        let v = run(
            404,
            &[("content-type", "text/plain; charset=utf-8")],
            "404 page not found\n",
        );
        assert_eq!(no_api(&v), "HTTP 404 (no OCI error body)");
        // Some other OCI code on a 404 is "404 otherwise" too.
        assert_eq!(
            no_api(&run(404, &[JSON], &oci("MANIFEST_UNKNOWN"))),
            "HTTP 404 MANIFEST_UNKNOWN"
        );
    }

    #[test]
    fn name_unknown_is_a_missing_repository() {
        assert!(matches!(
            run(404, &[JSON], &oci("NAME_UNKNOWN")),
            Verdict::RepositoryMissing(a) if a.to_string() == "HTTP 404 NAME_UNKNOWN"
        ));
    }

    #[test]
    fn refusals_are_no_api() {
        assert_eq!(
            no_api(&run(405, &[JSON], &oci("UNSUPPORTED"))),
            "HTTP 405 UNSUPPORTED"
        );
        assert_eq!(no_api(&run(405, &[], "")), "HTTP 405");
        assert_eq!(no_api(&run(501, &[], "not implemented")), "HTTP 501");
        // UNSUPPORTED decides whatever the status.
        assert_eq!(
            no_api(&run(400, &[JSON], &oci("UNSUPPORTED"))),
            "HTTP 400 UNSUPPORTED"
        );
        assert_eq!(
            no_api(&run(500, &[JSON], &oci("UNSUPPORTED"))),
            "HTTP 500 UNSUPPORTED"
        );
    }

    #[test]
    fn bad_digest_400_is_its_own_verdict() {
        assert!(matches!(
            run(400, &[JSON], &oci("DIGEST_INVALID")),
            Verdict::DigestRefused(a) if a.status == 400
        ));
    }

    #[test]
    fn web_pages_are_no_api() {
        let v = run(200, &[("content-type", "text/html")], "<html>hi</html>");
        assert_eq!(
            no_api(&v),
            "HTTP 200 (Content-Type text/html, not an OCI index)"
        );
        assert_eq!(
            no_api(&run(200, &[], "{}")),
            "HTTP 200 (Content-Type missing, not an OCI index)"
        );
        // A JSON 200 that is not typed as an index is not trusted either.
        assert!(matches!(run(200, &[JSON], "{}"), Verdict::NoApi(_)));
    }

    #[test]
    fn redirects_are_no_api_and_do_not_leak_the_location_path() {
        let v = run(
            303,
            &[(
                "location",
                "https://github.com/orgs/x/packages?token=secret",
            )],
            "",
        );
        assert_eq!(no_api(&v), "HTTP 303 (redirect to https://github.com)");
        assert_eq!(
            no_api(&run(302, &[("location", "/login?next=/v2/")], "")),
            "HTTP 302 (redirect to the same origin)"
        );
        assert_eq!(no_api(&run(307, &[], "")), "HTTP 307 (redirect to nowhere)");
    }

    #[test]
    fn auth_refusals_are_denied() {
        assert!(matches!(
            run(401, &[JSON], &oci("UNAUTHORIZED")),
            Verdict::Denied(_)
        ));
        assert!(matches!(
            run(403, &[JSON], &oci("DENIED")),
            Verdict::Denied(_)
        ));
    }

    #[test]
    fn transient_failures_are_errors() {
        for status in [429, 500, 502, 503, 408] {
            assert_eq!(run(status, &[JSON], &oci("UNAVAILABLE")), Verdict::Failed);
        }
        assert_eq!(
            run(500, &[("content-type", "text/html")], "<h1>"),
            Verdict::Failed
        );
    }
}
