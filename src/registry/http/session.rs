//! The authentication session with one registry: the `/v2/` ping and the
//! scheme it reveals, `Authorization` values, token requests (GET with
//! Basic credentials, or the OAuth2 refresh-token grant for identity
//! tokens) and re-authentication after a 401 (spec-notes §6).

use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tracing::debug;

use super::auth::{self, Challenge, Scope};
use super::credentials::{self, Credentials, Secret};
use super::{Ctx, HttpRegistry, MAX_METADATA_BODY, lock};
use crate::registry::{ErrorKind, Operation, RegistryError};

/// The authentication scheme learned from the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum AuthScheme {
    Anonymous,
    Basic,
    Bearer { realm: String, service: String },
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    /// Any JSON number: a server's absurd value is clamped, not refused.
    #[serde(default)]
    expires_in: Option<f64>,
    #[serde(default)]
    issued_at: Option<String>,
}

/// A token server's answer received at `now`: the token (`token`, else
/// `access_token`) and how long it may be used (clamped, whatever number the
/// server sent). A pure function, fuzzed in `fuzz/`.
pub fn parse_token_response(
    body: &[u8],
    now: SystemTime,
) -> Result<(Secret, Duration), &'static str> {
    let parsed: TokenResponse =
        serde_json::from_slice(body).map_err(|_| "token response is not the expected JSON")?;
    let token = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or("token response has no token")?;
    let lifetime = auth::token_lifetime(parsed.expires_in, parsed.issued_at.as_deref(), now);
    Ok((Secret::new(token), lifetime))
}

impl HttpRegistry {
    /// Pings `/v2/` once per registry and remembers its challenge.
    pub(super) async fn ensure_ping(&self, ctx: &Ctx) -> Result<(), RegistryError> {
        self.ping
            .get_or_try_init(|| async {
                let pctx = Ctx {
                    op: Operation::Ping,
                    repo: ctx.repo.clone(),
                    target: None,
                    scopes: Vec::new(),
                };
                self.with_retry(|| self.ping_once(&pctx)).await
            })
            .await
            .map(|_| ())
    }

    async fn ping_once(&self, ctx: &Ctx) -> Result<(), RegistryError> {
        let url = self.url(ctx, "/v2/")?;
        let resp = self
            .raw_send(Operation::Ping, self.client.get(url))
            .await
            .map_err(|k| self.err(ctx, k))?;
        match resp.status() {
            StatusCode::UNAUTHORIZED => {
                let challenges = challenges_of(resp.headers());
                if let Some(s) = self.scheme_from(&challenges) {
                    *lock(&self.scheme) = s;
                }
                Ok(())
            }
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self.status_error(ctx, resp).await),
        }
    }

    fn scheme_from(&self, challenges: &[Challenge]) -> Option<AuthScheme> {
        if let Some(b) = challenges.iter().find(|c| c.is_bearer())
            && let Some(realm) = b.param("realm")
        {
            return Some(AuthScheme::Bearer {
                realm: realm.to_string(),
                service: b.param("service").unwrap_or_default().to_string(),
            });
        }
        challenges
            .iter()
            .any(Challenge::is_basic)
            .then_some(AuthScheme::Basic)
    }

    /// The credentials for this registry: explicit ones, else a Docker
    /// config lookup made once, on the first request that needs them, on a
    /// blocking thread (a credential helper may take a while) and with no
    /// lock held.
    pub(super) async fn resolved_credentials(
        &self,
        ctx: &Ctx,
    ) -> Result<Option<&Credentials>, RegistryError> {
        self.credentials
            .get_or_try_init(|| async {
                let source = self.settings.docker_config.clone();
                let host = self.name.clone();
                let dirs = self.settings.credential_helper_dirs.clone();
                let timeout = self.settings.credential_helper_timeout;
                tokio::task::spawn_blocking(move || {
                    credentials::lookup(&source, &host, &dirs, timeout)
                })
                .await
                .map_err(|e| ErrorKind::Credentials(format!("lookup did not finish: {e}")))?
                .map_err(|e| ErrorKind::Credentials(e.to_string()))
            })
            .await
            .map(Option::as_ref)
            .map_err(|k| self.err(ctx, k))
    }

    fn basic_header(credentials: Option<&Credentials>) -> Option<HeaderValue> {
        match credentials {
            Some(Credentials::Basic { username, password }) => {
                let raw = format!("{username}:{}", password.expose());
                let enc = base64::engine::general_purpose::STANDARD.encode(raw);
                let mut v = HeaderValue::from_str(&format!("Basic {enc}")).ok()?;
                v.set_sensitive(true);
                Some(v)
            }
            _ => None,
        }
    }

    /// The `Authorization` value for a request in `ctx`, fetching a token
    /// when needed.
    /// Also returns the bearer token sent, to recognise it if refused.
    pub(super) async fn authorization(
        &self,
        ctx: &Ctx,
    ) -> Result<(Option<HeaderValue>, Option<Secret>), RegistryError> {
        let scheme = lock(&self.scheme).clone();
        match scheme {
            AuthScheme::Anonymous => Ok((None, None)),
            AuthScheme::Basic => Ok((
                Self::basic_header(self.resolved_credentials(ctx).await?),
                None,
            )),
            AuthScheme::Bearer { realm, service } => {
                let (_, token) = self.token(ctx, &realm, &service, &ctx.scopes, None).await?;
                let mut v =
                    HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                        self.err(
                            ctx,
                            ErrorKind::InvalidResponse("token is not a valid header value".into()),
                        )
                    })?;
                v.set_sensitive(true);
                Ok((Some(v), Some(token)))
            }
        }
    }

    /// A token for `scopes`: a cached one unless it is the `rejected`
    /// one, else a fresh one.
    async fn token(
        &self,
        ctx: &Ctx,
        realm: &str,
        service: &str,
        scopes: &[Scope],
        rejected: Option<&Secret>,
    ) -> Result<(String, Secret), RegistryError> {
        let key = auth::token_key(realm, service, scopes);
        let cached = || {
            lock(&self.tokens)
                .get(&key, Instant::now(), auth::REFRESH_MARGIN)
                .filter(|t| Some(t) != rejected)
        };
        if let Some(t) = cached() {
            return Ok((key, t));
        }
        // One fetch at a time, so a burst of requests (or of 401s for the
        // same expired token) shares one new token.
        let _guard = self.token_fetch.lock().await;
        if let Some(t) = cached() {
            return Ok((key, t));
        }
        let tctx = Ctx {
            op: Operation::Token,
            ..ctx.clone()
        };
        let (token, lifetime) = self
            .with_retry(|| self.fetch_token(&tctx, realm, service, scopes))
            .await?;
        lock(&self.tokens).insert(key.clone(), token.clone(), lifetime, Instant::now());
        Ok((key, token))
    }

    async fn fetch_token(
        &self,
        ctx: &Ctx,
        realm: &str,
        service: &str,
        scopes: &[Scope],
    ) -> Result<(Secret, Duration), RegistryError> {
        let mut url = Url::parse(realm).map_err(|e| {
            self.err(
                ctx,
                ErrorKind::InvalidResponse(format!("invalid token realm: {e}")),
            )
        })?;
        // A token request carries the credentials: never in clear text to
        // a realm named by an HTTPS registry (unless it is configured
        // insecure).
        match url.scheme() {
            "https" => {}
            "http" if self.base.scheme() == "http" || !self.settings.tls_verify => {}
            "http" => {
                return Err(self.err(
                    ctx,
                    ErrorKind::InsecureDowngrade(format!(
                        "token realm {}",
                        url.origin().ascii_serialization()
                    )),
                ));
            }
            other => {
                return Err(self.err(
                    ctx,
                    ErrorKind::InvalidResponse(format!("token realm with scheme {other:?}")),
                ));
            }
        }
        let merged = auth::merge_scopes(scopes);
        let credentials = self.resolved_credentials(ctx).await?;
        let req = match credentials {
            Some(Credentials::IdentityToken(refresh)) => {
                // OAuth2 refresh-token grant (distribution auth/oauth.md).
                let scope = merged
                    .iter()
                    .map(Scope::to_string)
                    .collect::<Vec<_>>()
                    .join(" ");
                let form = [
                    ("grant_type", "refresh_token"),
                    ("service", service),
                    ("client_id", "ocimirror"),
                    ("scope", scope.as_str()),
                    ("refresh_token", refresh.expose()),
                ];
                self.client.post(url).form(&form)
            }
            _ => {
                {
                    let mut q = url.query_pairs_mut();
                    if !service.is_empty() {
                        q.append_pair("service", service);
                    }
                    for s in &merged {
                        q.append_pair("scope", &s.to_string());
                    }
                }
                let mut req = self.client.get(url);
                if let Some(basic) = Self::basic_header(credentials) {
                    req = req.header(header::AUTHORIZATION, basic);
                }
                req
            }
        };
        let resp = self
            .raw_send(Operation::Token, req)
            .await
            .map_err(|k| self.err(ctx, k))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let mut e = self.status_error(ctx, resp).await;
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                e.kind = ErrorKind::Unauthorized(format!(
                    "token endpoint refused the {} (HTTP {})",
                    if credentials.is_some() {
                        "credentials"
                    } else {
                        "anonymous request"
                    },
                    status.as_u16()
                ));
            }
            return Err(e);
        }
        let body = self.read_body(ctx, resp, MAX_METADATA_BODY).await?;
        parse_token_response(&body, SystemTime::now())
            .map_err(|what| self.err(ctx, ErrorKind::InvalidResponse(what.into())))
    }

    /// Reacts to a 401: learns the challenge and gets a fresh token (with
    /// the scopes the challenge asks for). True when a retry may succeed.
    pub(super) async fn reauthenticate(
        &self,
        ctx: &Ctx,
        headers: &HeaderMap,
        sent_auth: bool,
        sent_token: Option<&Secret>,
    ) -> Result<bool, RegistryError> {
        let challenges = challenges_of(headers);
        let Some(scheme) = self.scheme_from(&challenges) else {
            return Ok(false);
        };
        let previous = std::mem::replace(&mut *lock(&self.scheme), scheme.clone());
        match scheme {
            AuthScheme::Basic => {
                // Retry only when we have credentials we did not send yet.
                let have = self.resolved_credentials(ctx).await?.is_some();
                Ok(have && (previous != AuthScheme::Basic || !sent_auth))
            }
            AuthScheme::Bearer { realm, service } => {
                let mut scopes = ctx.scopes.clone();
                if let Some(b) = challenges.iter().find(|c| c.is_bearer())
                    && let Some(s) = b.param("scope")
                {
                    scopes.extend(auth::parse_scope_list(s));
                }
                let error = challenges
                    .iter()
                    .find(|c| c.is_bearer())
                    .and_then(|c| c.param("error"))
                    .unwrap_or("");
                debug!(registry = %self.name, repo = %ctx.repo, op = %ctx.op, error, "Re-authenticating.");
                let (wide_key, _) = self
                    .token(ctx, &realm, &service, &scopes, sent_token)
                    .await?;
                // Requests of this context use the (possibly wider) token
                // from now on.
                let key = auth::token_key(&realm, &service, &ctx.scopes);
                lock(&self.tokens).alias(&wide_key, key);
                Ok(true)
            }
            AuthScheme::Anonymous => Ok(false),
        }
    }
}

fn challenges_of(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(auth::parse_challenges)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::http::{DockerConfigSource, HttpSettings};

    fn registry(plain: bool) -> HttpRegistry {
        let settings = HttpSettings {
            docker_config: DockerConfigSource::Off,
            plain_http: Some(plain),
            ..HttpSettings::default()
        };
        HttpRegistry::new("reg.example", settings).unwrap()
    }

    #[tokio::test]
    async fn an_http_token_realm_is_refused_for_an_https_registry() {
        let ctx = Ctx {
            op: Operation::Token,
            repo: "app".into(),
            target: None,
            scopes: Vec::new(),
        };
        let e = registry(false)
            .fetch_token(&ctx, "http://127.0.0.1:1/token", "svc", &[])
            .await
            .unwrap_err();
        assert!(matches!(e.kind, ErrorKind::InsecureDowngrade(_)), "{e}");
        assert!(e.to_string().contains("http://127.0.0.1:1"), "{e}");
        // A plain-HTTP registry may name one (this one is not listening).
        let e = registry(true)
            .fetch_token(&ctx, "http://127.0.0.1:1/token", "svc", &[])
            .await
            .unwrap_err();
        assert!(!matches!(e.kind, ErrorKind::InsecureDowngrade(_)), "{e}");
    }
}
