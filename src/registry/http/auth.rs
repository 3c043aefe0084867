//! Registry authentication: RFC 7235 challenge parsing, token scope strings
//! and the bearer-token cache.
//!
//! References: distribution `docs/spec/auth/{token,scope}.md` (spec-notes §6),
//! RFC 7235 §2.1 (challenge grammar), RFC 6750 §3 (`error` parameter).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use super::credentials::Secret;

/// One parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Auth scheme, lower-cased (`bearer`, `basic`).
    pub scheme: String,
    /// Parameters with lower-cased names and unquoted values.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// A parameter by (lower-case) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// True for the `Bearer` scheme.
    pub fn is_bearer(&self) -> bool {
        self.scheme == "bearer"
    }

    /// True for the `Basic` scheme.
    pub fn is_basic(&self) -> bool {
        self.scheme == "basic"
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && (self.s[self.i] == b' ' || self.s[self.i] == b'\t') {
            self.i += 1;
        }
    }
    fn skip_ws_commas(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b',') {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    /// A token (tchar+).
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(|c| is_tchar(c as char)) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    /// A lenient unquoted value: everything up to a comma or whitespace.
    fn bare_value(&mut self) -> String {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| !matches!(c, b',' | b' ' | b'\t'))
        {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }
    fn quoted(&mut self) -> String {
        // Caller saw the opening quote.
        self.i += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                b'"' => break,
                _ => out.push(c),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Parses one or more challenges from a `WWW-Authenticate` value
/// (`#challenge` list, RFC 7235 §4.1). Quoted values may contain commas;
/// several challenges may share one header. Unparseable trailing input is
/// ignored: the challenges read so far are returned.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut lx = Lexer {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        lx.skip_ws_commas();
        let Some(scheme) = lx.token() else {
            break;
        };
        let mut ch = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: BTreeMap::new(),
        };
        // Parameters `name=value`, separated by commas, until a token that
        // is not followed by '=' (the next challenge's scheme).
        loop {
            lx.skip_ws_commas();
            let save = lx.i;
            let Some(name) = lx.token() else {
                break;
            };
            lx.skip_ws();
            if lx.peek() != Some(b'=') {
                lx.i = save;
                break;
            }
            lx.i += 1;
            lx.skip_ws();
            let value = if lx.peek() == Some(b'"') {
                lx.quoted()
            } else {
                lx.bare_value()
            };
            ch.params.insert(name.to_ascii_lowercase(), value);
        }
        out.push(ch);
    }
    out
}

/// One resource scope of a token request (`repository:<name>:pull,push`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    /// Resource type (`repository`, `registry`).
    pub resource_type: String,
    /// Resource name; may contain `host:port`.
    pub name: String,
    /// Actions, sorted.
    pub actions: BTreeSet<String>,
}

impl Scope {
    /// `repository:<name>:pull`.
    pub fn pull(repo: &str) -> Scope {
        Scope::new("repository", repo, &["pull"])
    }

    /// `repository:<name>:pull,push` (distribution wants both for writes).
    pub fn push(repo: &str) -> Scope {
        Scope::new("repository", repo, &["pull", "push"])
    }

    /// `repository:<name>:pull,push,delete` (distribution's token action
    /// for manifest DELETE, spec-notes §1.6).
    pub fn delete(repo: &str) -> Scope {
        Scope::new("repository", repo, &["pull", "push", "delete"])
    }

    /// `registry:catalog:*`.
    pub fn catalog() -> Scope {
        Scope::new("registry", "catalog", &["*"])
    }

    /// A scope from parts.
    pub fn new(resource_type: &str, name: &str, actions: &[&str]) -> Scope {
        Scope {
            resource_type: resource_type.to_string(),
            name: name.to_string(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Parses `type:name:actions`; the name may contain colons.
    pub fn parse(s: &str) -> Option<Scope> {
        let (resource_type, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if resource_type.is_empty() || name.is_empty() {
            return None;
        }
        Some(Scope {
            resource_type: resource_type.to_string(),
            name: name.to_string(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let actions: Vec<&str> = self.actions.iter().map(String::as_str).collect();
        write!(
            f,
            "{}:{}:{}",
            self.resource_type,
            self.name,
            actions.join(",")
        )
    }
}

/// Merges scopes: one entry per resource, with the union of their actions,
/// in a stable order (so equal sets give equal cache keys).
pub fn merge_scopes<'a>(scopes: impl IntoIterator<Item = &'a Scope>) -> Vec<Scope> {
    let mut by_resource: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for s in scopes {
        by_resource
            .entry((s.resource_type.clone(), s.name.clone()))
            .or_default()
            .extend(s.actions.iter().cloned());
    }
    by_resource
        .into_iter()
        .map(|((resource_type, name), actions)| Scope {
            resource_type,
            name,
            actions,
        })
        .collect()
}

/// Parses a challenge's space-separated `scope` parameter.
pub fn parse_scope_list(s: &str) -> Vec<Scope> {
    s.split_whitespace().filter_map(Scope::parse).collect()
}

/// Tokens shorter-lived than this are treated as living this long, as
/// Docker's client does (the token spec says tokens should last ≥ 60 s).
pub const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// Tokens are trusted at most this long, whatever the server says; a
/// registry that revokes one earlier answers 401 and a fresh one is fetched.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a token received at `now` may be used: `expires_in` (default
/// 60 s, any number accepted) less the token's age by `issued_at` (RFC
/// 3339), clamped to [`MIN_TOKEN_LIFETIME`, `MAX_TOKEN_LIFETIME`]. An
/// `issued_at` in the future, unparseable, or older than the lifetime means
/// the clocks disagree: the lifetime then counts from receipt.
pub fn token_lifetime(
    expires_in: Option<f64>,
    issued_at: Option<&str>,
    now: SystemTime,
) -> Duration {
    let secs = expires_in
        .filter(|s| s.is_finite())
        .unwrap_or(MIN_TOKEN_LIFETIME.as_secs_f64());
    let ttl = Duration::try_from_secs_f64(secs.clamp(
        MIN_TOKEN_LIFETIME.as_secs_f64(),
        MAX_TOKEN_LIFETIME.as_secs_f64(),
    ))
    .unwrap_or(MIN_TOKEN_LIFETIME);
    let age = issued_at
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t.trim()).ok())
        .and_then(|t| now.duration_since(SystemTime::from(t)).ok())
        .filter(|age| *age < ttl)
        .unwrap_or(Duration::ZERO);
    ttl.saturating_sub(age).max(MIN_TOKEN_LIFETIME)
}

/// A cached token with its expiry.
#[derive(Clone, Debug)]
struct CachedToken {
    token: Secret,
    expires: Instant,
}

/// Bearer tokens keyed by (realm, service, sorted scope set).
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: HashMap<String, CachedToken>,
}

/// The cache key for a token request.
pub fn token_key(realm: &str, service: &str, scopes: &[Scope]) -> String {
    let merged = merge_scopes(scopes);
    let scopes: Vec<String> = merged.iter().map(Scope::to_string).collect();
    format!("{realm} {service} {}", scopes.join(" "))
}

impl TokenCache {
    /// A token still valid at `now` with `margin` to spare.
    pub fn get(&self, key: &str, now: Instant, margin: Duration) -> Option<Secret> {
        let t = self.tokens.get(key)?;
        (now + margin < t.expires).then(|| t.token.clone())
    }

    /// Stores a token received at `now`, usable for `lifetime` (see
    /// [`token_lifetime`]; clamped again here, so no value overflows).
    pub fn insert(&mut self, key: String, token: Secret, lifetime: Duration, now: Instant) {
        let ttl = lifetime.clamp(MIN_TOKEN_LIFETIME, MAX_TOKEN_LIFETIME);
        let expires = now.checked_add(ttl).unwrap_or(now);
        self.tokens.insert(key, CachedToken { token, expires });
    }

    /// Makes `to` name the same token (and expiry) as `from`.
    pub fn alias(&mut self, from: &str, to: String) {
        if let Some(t) = self.tokens.get(from).cloned() {
            self.tokens.insert(to, t);
        }
    }

    /// Forgets a token the registry refused.
    pub fn remove(&mut self, key: &str) {
        self.tokens.remove(key);
    }
}

/// How early a token is refreshed before it expires: a tenth of the
/// minimum lifetime, so a request never starts with a token about to lapse.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(6);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_commas_in_quotes() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#;
        let c = parse_challenges(h);
        assert_eq!(c.len(), 1);
        assert!(c[0].is_bearer());
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:samalba/my-app:pull,push")
        );
    }

    #[test]
    fn several_challenges_in_one_header_and_case_insensitive_scheme() {
        let h = r#"Basic realm="a, b", BEARER realm="https://x/token", error="insufficient_scope", scope="repository:a:pull repository:b:pull,push""#;
        let c = parse_challenges(h);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c[0].is_basic());
        assert_eq!(c[0].param("realm"), Some("a, b"));
        assert!(c[1].is_bearer());
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
        let scopes = parse_scope_list(c[1].param("scope").unwrap());
        assert_eq!(scopes.len(), 2);
        assert_eq!(scopes[1].to_string(), "repository:b:pull,push");
    }

    #[test]
    fn unquoted_values_escapes_and_spacing() {
        let c = parse_challenges(r#"Bearer realm = "a\"b" , service=svc ,error=invalid_token"#);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].param("realm"), Some("a\"b"));
        assert_eq!(c[0].param("service"), Some("svc"));
        assert_eq!(c[0].param("error"), Some("invalid_token"));
        let c = parse_challenges("Basic");
        assert_eq!(c.len(), 1);
        assert!(c[0].params.is_empty());
        assert!(parse_challenges("").is_empty());
    }

    #[test]
    fn scopes_parse_render_and_merge() {
        let s = Scope::parse("repository:localhost:5000/team/app:push,pull").unwrap();
        assert_eq!(s.name, "localhost:5000/team/app");
        assert_eq!(
            s.to_string(),
            "repository:localhost:5000/team/app:pull,push"
        );
        assert_eq!(Scope::pull("a/b").to_string(), "repository:a/b:pull");
        assert_eq!(Scope::push("a/b").to_string(), "repository:a/b:pull,push");
        assert_eq!(Scope::catalog().to_string(), "registry:catalog:*");
        // The mount case: two scopes, kept separate.
        let merged = merge_scopes(&[Scope::push("target"), Scope::pull("from")]);
        let rendered: Vec<String> = merged.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            rendered,
            ["repository:from:pull", "repository:target:pull,push"]
        );
        // Same resource twice: actions unite.
        let merged = merge_scopes(&[Scope::pull("a"), Scope::push("a")]);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].to_string(), "repository:a:pull,push");
        assert!(Scope::parse("nocolon").is_none());
    }

    #[test]
    fn token_key_ignores_order() {
        let a = token_key("r", "s", &[Scope::pull("x"), Scope::push("y")]);
        let b = token_key("r", "s", &[Scope::push("y"), Scope::pull("x")]);
        assert_eq!(a, b);
        assert_ne!(a, token_key("r", "s", &[Scope::pull("x")]));
    }

    #[test]
    fn token_cache_expiry_and_early_refresh() {
        let mut c = TokenCache::default();
        let t0 = Instant::now();
        c.insert("k".into(), Secret::new("tok"), Duration::from_secs(300), t0);
        assert!(c.get("k", t0, REFRESH_MARGIN).is_some());
        assert!(
            c.get("k", t0 + Duration::from_secs(295), REFRESH_MARGIN)
                .is_none()
        );
        assert!(
            c.get("k", t0 + Duration::from_secs(293), Duration::ZERO)
                .is_some()
        );
        // Tiny or huge lifetimes are clamped.
        c.insert("d".into(), Secret::new("tok"), Duration::ZERO, t0);
        assert!(
            c.get("d", t0 + Duration::from_secs(50), REFRESH_MARGIN)
                .is_some()
        );
        assert!(
            c.get("d", t0 + Duration::from_secs(55), REFRESH_MARGIN)
                .is_none()
        );
        c.insert("z".into(), Secret::new("tok"), Duration::MAX, t0);
        assert!(
            c.get("z", t0 + Duration::from_secs(3600), REFRESH_MARGIN)
                .is_some()
        );
        assert!(
            c.get("z", t0 + MAX_TOKEN_LIFETIME, Duration::ZERO)
                .is_none()
        );
        c.remove("z");
        assert!(c.get("z", t0, Duration::ZERO).is_none());
    }

    #[test]
    fn token_lifetimes_are_clamped_and_never_overflow() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let secs = |d: Duration| d.as_secs();
        assert_eq!(secs(token_lifetime(None, None, now)), 60);
        assert_eq!(secs(token_lifetime(Some(300.0), None, now)), 300);
        assert_eq!(secs(token_lifetime(Some(1.0), None, now)), 60);
        for huge in [u64::MAX as f64, f64::MAX, f64::INFINITY, f64::NAN, -5.0] {
            let d = token_lifetime(Some(huge), None, now);
            assert!(
                d >= MIN_TOKEN_LIFETIME && d <= MAX_TOKEN_LIFETIME,
                "{huge}: {d:?}"
            );
        }
        assert_eq!(
            token_lifetime(Some(u64::MAX as f64), None, now),
            MAX_TOKEN_LIFETIME
        );
        // issued_at 100 s ago: 200 s left of 300.
        assert_eq!(
            secs(token_lifetime(
                Some(300.0),
                Some("2023-11-14T22:11:40Z"),
                now
            )),
            200
        );
        // In the future, absurd, or unparseable: counted from receipt.
        for issued in [
            "2099-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59+14:00",
            "yesterday",
        ] {
            assert_eq!(
                secs(token_lifetime(Some(300.0), Some(issued), now)),
                300,
                "{issued}"
            );
        }
    }
}
