//! notation's own trust policy (`trustpolicy.json`, version 1.0) over its
//! trust store layout (`<truststore>/x509/ca/<name>/`), read into trust
//! rules selected by the source repository
//! (specs/trust-store-trust-policy.md, "Trust Policy").
//!
//! Supported: levels `strict` and `permissive` (with `override` of
//! `authenticTimestamp` and `expiry`; `revocation` is never checked, so
//! its override changes nothing), `ca:` trust stores (`tsa:` ones are
//! ignored: timestamps are not read). Refused when loading, with the
//! reason: `audit` (authenticity only logged: it would admit anyone's
//! signature) and `skip` (admits unsigned images: leave such repositories
//! out of the job or use `mode = "warn"`), `signingAuthority:` stores.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::certs::{TrustStore, TrustStoreError};
use super::identity::{self, IdentityError};
use super::rule::{Level, Rule};

/// A loaded trust policy file.
#[derive(Clone)]
pub struct TrustPolicy {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    policies: Vec<Scoped>,
}

#[derive(Clone)]
struct Scoped {
    name: String,
    /// `None`: the global scope `*`.
    repositories: Option<Vec<String>>,
    rule: Rule,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    version: String,
    trust_policies: Vec<FilePolicy>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilePolicy {
    name: String,
    registry_scopes: Vec<String>,
    signature_verification: FileVerification,
    #[serde(default)]
    trust_stores: Vec<String>,
    #[serde(default)]
    trusted_identities: Vec<String>,
}

#[derive(Deserialize)]
struct FileVerification {
    level: String,
    #[serde(default, rename = "override")]
    overrides: BTreeMap<String, String>,
}

/// Why a trust policy cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustPolicyError {
    /// The file cannot be read.
    #[error("cannot read {path:?}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not the trust policy JSON shape.
    #[error("{path:?} is not a notation trust policy: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// Another version.
    #[error("trust policy version {0:?} is not supported (1.0 is)")]
    Version(String),
    /// Scopes neither `["*"]` nor repository URIs.
    #[error("trust policy {0:?}: registryScopes must be [\"*\"] or repository URIs without '*'")]
    Scopes(String),
    /// A repository in two policies, or two global policies.
    #[error("scope {0:?} is in more than one trust policy")]
    ScopeTwice(String),
    /// `audit` or `skip`, or an unknown level.
    #[error(
        "trust policy {policy:?}: level {level:?} is not supported here (strict and permissive are: audit would admit a signature by anyone, skip an unsigned image)"
    )]
    Level {
        /// The trust policy.
        policy: String,
        /// The level.
        level: String,
    },
    /// An override this verifier cannot honour.
    #[error("trust policy {policy:?}: override {key} = {value:?} is not supported")]
    Override {
        /// The trust policy.
        policy: String,
        /// The check.
        key: String,
        /// Its action.
        value: String,
    },
    /// A store other than `ca:` / `tsa:`.
    #[error("trust policy {policy:?}: trust store {store:?} is not supported (ca:<name> is)")]
    Store {
        /// The trust policy.
        policy: String,
        /// The store reference.
        store: String,
    },
    /// No `ca:` store.
    #[error("trust policy {0:?}: no ca: trust store")]
    NoStore(String),
    /// A store that cannot be loaded.
    #[error("trust policy {policy:?}: {source}")]
    Load {
        /// The trust policy.
        policy: String,
        /// Why.
        source: TrustStoreError,
    },
    /// Bad identities.
    #[error("trust policy {policy:?}: {source}")]
    Identity {
        /// The trust policy.
        policy: String,
        /// Why.
        source: IdentityError,
    },
}

impl TrustPolicy {
    /// Reads `path` and the `ca:` stores it names under `truststore`.
    pub fn load(path: &Path, truststore: &Path) -> Result<TrustPolicy, TrustPolicyError> {
        let bytes = std::fs::read(path).map_err(|source| TrustPolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: File =
            serde_json::from_slice(&bytes).map_err(|source| TrustPolicyError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        if file.version != "1.0" {
            return Err(TrustPolicyError::Version(file.version));
        }
        let mut seen: Vec<String> = Vec::new();
        let mut policies = Vec::new();
        for p in file.trust_policies {
            let repositories = scopes(&p)?;
            for s in repositories.clone().unwrap_or_else(|| vec!["*".into()]) {
                if seen.contains(&s) {
                    return Err(TrustPolicyError::ScopeTwice(s));
                }
                seen.push(s);
            }
            let rule = rule(&p, truststore)?;
            policies.push(Scoped {
                name: p.name,
                repositories,
                rule,
            });
        }
        Ok(TrustPolicy {
            path: path.to_path_buf(),
            policies,
        })
    }

    /// The rule for `repository` (`<registry>/<path>`): the policy naming
    /// it, else the global one.
    pub fn rule_for(&self, repository: &str) -> Option<&Rule> {
        let exact = self.policies.iter().find(|p| {
            p.repositories
                .as_ref()
                .is_some_and(|r| r.iter().any(|s| s == repository))
        });
        exact
            .or_else(|| self.policies.iter().find(|p| p.repositories.is_none()))
            .map(|p| &p.rule)
    }

    /// What decides its verdicts, for the policy hash.
    pub fn hash_input(&self) -> String {
        let mut s = String::new();
        for p in &self.policies {
            s.push_str(&p.name);
            s.push('\0');
            s.push_str(&p.repositories.as_ref().map_or("*".into(), |r| r.join(",")));
            s.push('\0');
            s.push_str(&p.rule.hash_input());
        }
        s
    }
}

fn scopes(p: &FilePolicy) -> Result<Option<Vec<String>>, TrustPolicyError> {
    let bad = || TrustPolicyError::Scopes(p.name.clone());
    match p.registry_scopes.as_slice() {
        [] => Err(bad()),
        [g] if g == "*" => Ok(None),
        list if list.iter().any(|s| s.contains('*') || !s.contains('/')) => Err(bad()),
        list => Ok(Some(list.to_vec())),
    }
}

fn rule(p: &FilePolicy, truststore: &Path) -> Result<Rule, TrustPolicyError> {
    let policy = || p.name.clone();
    let mut level = match p.signature_verification.level.as_str() {
        "strict" => Level::STRICT,
        "permissive" => Level {
            validity_now: false,
            expiry: false,
        },
        other => {
            return Err(TrustPolicyError::Level {
                policy: policy(),
                level: other.to_string(),
            });
        }
    };
    for (key, value) in &p.signature_verification.overrides {
        let enforce = match value.as_str() {
            "enforce" => true,
            "log" => false,
            _ if key == "revocation" => continue,
            _ => {
                return Err(TrustPolicyError::Override {
                    policy: policy(),
                    key: key.clone(),
                    value: value.clone(),
                });
            }
        };
        match key.as_str() {
            "authenticTimestamp" => level.validity_now = enforce,
            "expiry" => level.expiry = enforce,
            "revocation" => {}
            "authenticity" if enforce => {}
            _ => {
                return Err(TrustPolicyError::Override {
                    policy: policy(),
                    key: key.clone(),
                    value: value.clone(),
                });
            }
        }
    }
    let mut stores = Vec::new();
    for s in &p.trust_stores {
        match s.split_once(':') {
            Some(("ca", name))
                if !name.is_empty() && !name.contains(['/', '\\']) && name != ".." =>
            {
                let dir = truststore.join("x509").join("ca").join(name);
                stores.push(
                    TrustStore::load(&dir).map_err(|source| TrustPolicyError::Load {
                        policy: policy(),
                        source,
                    })?,
                );
            }
            Some(("tsa", _)) => {}
            _ => {
                return Err(TrustPolicyError::Store {
                    policy: policy(),
                    store: s.clone(),
                });
            }
        }
    }
    if stores.is_empty() {
        return Err(TrustPolicyError::NoStore(policy()));
    }
    let identities = identity::parse_identities(&p.trusted_identities).map_err(|source| {
        TrustPolicyError::Identity {
            policy: policy(),
            source,
        }
    })?;
    Ok(Rule {
        stores,
        identities,
        level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(policy: serde_json::Value) -> TrustPolicyError {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("trustpolicy.json");
        std::fs::write(&file, serde_json::to_vec(&policy).unwrap()).unwrap();
        match TrustPolicy::load(&file, dir.path()) {
            Ok(_) => panic!("{policy} loaded"),
            Err(e) => e,
        }
    }

    fn one(
        scopes: serde_json::Value,
        verification: serde_json::Value,
        store: &str,
    ) -> TrustPolicyError {
        load(
            json!({"version": "1.0", "trustPolicies": [{"name": "p", "registryScopes": scopes,
            "signatureVerification": verification, "trustStores": [store],
            "trustedIdentities": ["*"]}]}),
        )
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_when_loading() {
        let strict = json!({"level": "strict"});
        assert!(matches!(
            load(json!({"version": "2.0", "trustPolicies": []})),
            TrustPolicyError::Version(v) if v == "2.0"
        ));
        assert!(matches!(
            one(json!(["registry.example/*"]), strict.clone(), "ca:x"),
            TrustPolicyError::Scopes(_)
        ));
        assert!(matches!(
            one(json!([]), strict.clone(), "ca:x"),
            TrustPolicyError::Scopes(_)
        ));
        for level in ["audit", "skip", "lenient"] {
            assert!(matches!(
                one(json!(["*"]), json!({"level": level}), "ca:x"),
                TrustPolicyError::Level { level: l, .. } if l == level
            ));
        }
        assert!(matches!(
            one(json!(["*"]), json!({"level": "strict", "override": {"authenticity": "log"}}), "ca:x"),
            TrustPolicyError::Override { key, .. } if key == "authenticity"
        ));
        assert!(matches!(
            one(json!(["*"]), strict.clone(), "signingAuthority:sa"),
            TrustPolicyError::Store { .. }
        ));
        assert!(matches!(
            one(json!(["*"]), strict.clone(), "ca:../x"),
            TrustPolicyError::Store { .. }
        ));
        assert!(matches!(
            one(json!(["*"]), strict, "tsa:t"),
            TrustPolicyError::NoStore(_)
        ));
        // A named store that is not there: its path is named.
        let e = one(json!(["*"]), json!({"level": "permissive"}), "ca:missing").to_string();
        assert!(e.contains("x509/ca/missing"), "{e}");
    }
}
