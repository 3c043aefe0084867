//! Resolving `[defaults.policy]` and `[jobs.policy]` into a job's
//! [`Policy`]: the job's fields override the defaults' (its `cosign` and
//! `notation` lists replace theirs). Key files and trust stores are read
//! and parsed here, so a bad key or certificate is a config problem naming
//! its file (once, for a default verifier), not a failure at the first
//! image.

use std::collections::HashSet;

use super::{KeyPath, Resolver};
use crate::config::file::{FileCosignKey, FileNotation, FilePolicy};
use crate::policy::notation::{Level, Rule, Trust, TrustPolicy, TrustStore, identity};
use crate::policy::{CosignKey, Mode, NotationVerifier, Policy, PublicKey};

/// `[defaults.policy]`, its keys loaded once.
#[derive(Default)]
pub(super) struct DefaultPolicy {
    file: FilePolicy,
    cosign: Vec<CosignKey>,
    notation: Vec<NotationVerifier>,
}

impl Resolver<'_> {
    /// Loads the defaults' verifiers.
    pub(super) fn default_policy(&mut self, d: Option<&FilePolicy>) -> DefaultPolicy {
        let p = KeyPath::root().key("defaults").key("policy");
        let file = d.cloned().unwrap_or_default();
        let cosign = self.cosign_keys(file.cosign.as_deref().unwrap_or_default(), &p);
        let notation = self.notation_verifiers(file.notation.as_deref().unwrap_or_default(), &p);
        DefaultPolicy {
            file,
            cosign,
            notation,
        }
    }

    /// The policy of a job from its own block over the defaults.
    pub(super) fn policy(
        &mut self,
        job: Option<&FilePolicy>,
        d: &DefaultPolicy,
        p: &KeyPath,
    ) -> Policy {
        let mode = job.and_then(|j| j.mode).or(d.file.mode).unwrap_or_default();
        let require = job
            .and_then(|j| j.require)
            .or(d.file.require)
            .unwrap_or_default();
        let (listed, cosign) = match job.and_then(|j| j.cosign.as_ref()) {
            Some(list) => (!list.is_empty(), self.cosign_keys(list, p)),
            None => (
                d.file.cosign.as_ref().is_some_and(|l| !l.is_empty()),
                d.cosign.clone(),
            ),
        };
        let (notation_listed, notation) = match job.and_then(|j| j.notation.as_ref()) {
            Some(list) => (!list.is_empty(), self.notation_verifiers(list, p)),
            None => (
                d.file.notation.as_ref().is_some_and(|l| !l.is_empty()),
                d.notation.clone(),
            ),
        };
        if mode != Mode::Off && !listed && !notation_listed {
            self.problem(
                &p.key("mode"),
                format!(
                    "mode is {mode} but no verifier is configured: add a [[policy.cosign]] key or a [[policy.notation]] trust store"
                ),
            );
        }
        if let Some(n) = notation
            .iter()
            .find(|n| cosign.iter().any(|c| c.name == n.name))
        {
            self.problem(
                &p.key("notation"),
                format!(
                    "verifier name {:?} is used by a cosign and a notation verifier",
                    n.name
                ),
            );
        }
        Policy {
            mode,
            require,
            cosign,
            notation,
        }
    }

    fn notation_verifiers(&mut self, list: &[FileNotation], p: &KeyPath) -> Vec<NotationVerifier> {
        let mut verifiers = Vec::new();
        let mut names = HashSet::new();
        for (i, n) in list.iter().enumerate() {
            let np = p.key("notation").index(i);
            if !names.insert(n.name.as_str()) {
                self.problem(
                    &np.key("name"),
                    format!("verifier name {:?} is used twice", n.name),
                );
            } else if let Some(v) = self.notation_verifier(n, &np) {
                verifiers.push(v);
            }
        }
        verifiers
    }

    fn notation_verifier(&mut self, n: &FileNotation, p: &KeyPath) -> Option<NotationVerifier> {
        if n.name.is_empty() || n.name.contains(',') {
            self.problem(
                &p.key("name"),
                format!("invalid verifier name {:?}: non-empty, without ','", n.name),
            );
            return None;
        }
        let store_path = self.path(&p.key("trust_store"), &n.trust_store);
        let trust = match (&n.trust_policy, &n.identities) {
            (Some(_), Some(_)) => {
                self.problem(
                    &p.key("identities"),
                    "identities come from the trust policy's trustedIdentities: remove one of identities and trust_policy",
                );
                None
            }
            (None, None) => {
                self.problem(
                    &p.key("identities"),
                    "identities is required (or trust_policy)",
                );
                None
            }
            (Some(policy), None) => {
                let policy_path = self.path(&p.key("trust_policy"), policy);
                TrustPolicy::load(&policy_path, &store_path)
                    .map_err(|e| self.problem(&p.key("trust_policy"), e.to_string()))
                    .ok()
                    .map(Trust::Policy)
            }
            (None, Some(identities)) => {
                let store = TrustStore::load(&store_path)
                    .map_err(|e| self.problem(&p.key("trust_store"), format!("trust store: {e}")))
                    .ok();
                let identities = identity::parse_identities(identities)
                    .map_err(|e| self.problem(&p.key("identities"), e.to_string()))
                    .ok();
                store.zip(identities).map(|(store, identities)| {
                    Trust::Inline(Rule {
                        stores: vec![store],
                        identities,
                        level: Level::STRICT,
                    })
                })
            }
        };
        Some(NotationVerifier {
            name: n.name.clone(),
            trust: trust?,
        })
    }

    fn cosign_keys(&mut self, list: &[FileCosignKey], p: &KeyPath) -> Vec<CosignKey> {
        let mut keys = Vec::new();
        let mut names = HashSet::new();
        for (i, k) in list.iter().enumerate() {
            let kp = p.key("cosign").index(i);
            if !names.insert(k.name.as_str()) {
                self.problem(
                    &kp.key("name"),
                    format!("verifier name {:?} is used twice", k.name),
                );
            } else if let Some(c) = self.cosign_key(k, &kp) {
                keys.push(c);
            }
        }
        keys
    }

    fn cosign_key(&mut self, k: &FileCosignKey, p: &KeyPath) -> Option<CosignKey> {
        if k.name.is_empty() || k.name.contains(',') {
            self.problem(
                &p.key("name"),
                format!("invalid verifier name {:?}: non-empty, without ','", k.name),
            );
            return None;
        }
        let path = self.path(&p.key("key"), &k.key);
        let pem = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) => {
                self.problem(
                    &p.key("key"),
                    format!("cannot read public key {:?}: {e}", path.display()),
                );
                return None;
            }
        };
        match PublicKey::from_pem(&pem) {
            Ok(key) => Some(CosignKey {
                name: k.name.clone(),
                path,
                key,
                annotations: k.annotations.clone().unwrap_or_default(),
            }),
            Err(e) => {
                self.problem(
                    &p.key("key"),
                    format!("public key {:?}: {e}", path.display()),
                );
                None
            }
        }
    }
}
