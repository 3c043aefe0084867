//! Token server and per-request scope checks (distribution's token auth, or Basic).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::Rng as _;

use super::{Auth, AuthMode};

/// What a request needs: (resource type, name, actions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    pub fn repo(name: &str, actions: &[&str]) -> Access {
        Access {
            kind: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    pub fn scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }

    /// Parse `type:name:actions`; the name may contain ':' (host:port), so split at the ends.
    pub fn parse(scope: &str) -> Option<Access> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        Some(Access {
            kind: kind.into(),
            name: name.into(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }
}

struct Token {
    granted: HashMap<(String, String), BTreeSet<String>>,
    issued: Instant,
    ttl: Duration,
}

/// Issued tokens.
#[derive(Default)]
pub struct Tokens {
    tokens: HashMap<String, Token>,
    order: Vec<String>,
}

impl Tokens {
    pub fn issued(&self) -> Vec<String> {
        self.order.clone()
    }

    fn issue(&mut self, granted: Vec<Access>, ttl: Duration) -> String {
        let token = hex::encode(rand::rng().random::<[u8; 24]>());
        let mut map: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
        for a in granted {
            map.entry((a.kind, a.name)).or_default().extend(a.actions);
        }
        self.tokens.insert(
            token.clone(),
            Token {
                granted: map,
                issued: Instant::now(),
                ttl,
            },
        );
        self.order.push(token.clone());
        token
    }
}

/// Result of checking a request.
pub enum Verdict {
    Allowed,
    /// 401 with this `WWW-Authenticate` value.
    Challenge(String),
}

fn credentials(authorization: Option<&str>) -> Option<(String, String)> {
    let v = authorization?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn bearer(authorization: Option<&str>) -> Option<&str> {
    let (scheme, rest) = authorization?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Check a registry request needing `required` (empty = just authenticated, e.g. `/v2/`).
pub fn check(
    auth: &Auth,
    tokens: &Tokens,
    host: &str,
    authorization: Option<&str>,
    read_only: bool,
    required: &[Access],
) -> Verdict {
    match auth.mode {
        AuthMode::Basic => match credentials(authorization) {
            Some((u, p)) if u == auth.username && p == auth.password => Verdict::Allowed,
            None if auth.anonymous_pull && read_only && authorization.is_none() => Verdict::Allowed,
            _ => Verdict::Challenge("Basic realm=\"test-registry\"".into()),
        },
        AuthMode::Bearer => {
            let scope = required
                .iter()
                .map(Access::scope)
                .collect::<Vec<_>>()
                .join(" ");
            let challenge = |error: Option<&str>| {
                let mut c =
                    format!("Bearer realm=\"http://{host}/token\",service=\"test-registry\"");
                if !scope.is_empty() {
                    c.push_str(&format!(",scope=\"{scope}\""));
                }
                if let Some(e) = error {
                    c.push_str(&format!(",error=\"{e}\""));
                }
                Verdict::Challenge(c)
            };
            let Some(t) = bearer(authorization) else {
                return challenge(None);
            };
            let Some(token) = tokens.tokens.get(t) else {
                return challenge(Some("invalid_token"));
            };
            if token.issued.elapsed() >= token.ttl {
                return challenge(Some("invalid_token"));
            }
            let ok = required.iter().all(|a| {
                token
                    .granted
                    .get(&(a.kind.clone(), a.name.clone()))
                    .is_some_and(|g| a.actions.iter().all(|x| g.contains(x) || g.contains("*")))
            });
            if ok {
                Verdict::Allowed
            } else {
                challenge(Some("insufficient_scope"))
            }
        }
    }
}

/// Answer of the token endpoint: Ok(JSON body) or Err(status).
pub fn token_endpoint(
    auth: &Auth,
    tokens: &mut Tokens,
    authorization: Option<&str>,
    scopes: &[String],
) -> Result<String, u16> {
    let full = match (authorization, credentials(authorization)) {
        (None, _) => false,
        (Some(_), Some((u, p))) if u == auth.username && p == auth.password => true,
        _ => return Err(401),
    };
    // Anonymous callers get pull at most (only with `anonymous_pull`); the registry then
    // answers insufficient_scope for anything more, like real token servers (no error here).
    let granted: Vec<Access> = scopes
        .iter()
        .flat_map(|s| s.split(' '))
        .filter_map(Access::parse)
        .map(|mut a| {
            if !full {
                a.actions
                    .retain(|x| auth.anonymous_pull && a.kind == "repository" && x == "pull");
            }
            a
        })
        .collect();
    let token = tokens.issue(granted, auth.token_ttl);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Ok(serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": auth.token_ttl.as_secs(),
        "issued_at": rfc3339(now),
    })
    .to_string())
}

/// Seconds since the epoch as RFC 3339 UTC (civil-from-days, H. Hinnant).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
