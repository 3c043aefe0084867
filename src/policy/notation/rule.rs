//! One trust rule: trust stores, trusted identities and the verification
//! level; the per-verifier half of a Notation verification (the
//! signature's own checks are in `mod.rs`).

use super::certs::{self, TrustStore};
use super::identity::Identity;
use super::jws::Jws;

/// Which time-bound checks are enforced (the rest are only logged):
/// notation's `strict` enforces both, `permissive` neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Level {
    /// Every certificate valid at verification time ("authentic
    /// timestamp": none is read, so the time of verification is used).
    pub validity_now: bool,
    /// `io.cncf.notary.expiry` not passed.
    pub expiry: bool,
}

impl Level {
    /// Everything enforced.
    pub const STRICT: Level = Level {
        validity_now: true,
        expiry: true,
    };
}

/// Trust stores, identities, level.
#[derive(Clone)]
pub struct Rule {
    /// Trusted roots: a chain must lead to one of any store.
    pub stores: Vec<TrustStore>,
    /// Trusted signers.
    pub identities: Vec<Identity>,
    /// What is enforced.
    pub level: Level,
}

/// Why a rule refuses a signature.
pub struct Refused {
    /// The reason.
    pub reason: String,
    /// Whether it holds for good (not: a certificate not valid now).
    pub lasting: bool,
}

impl Rule {
    /// What decides this rule's verdicts, for the policy hash.
    pub fn hash_input(&self) -> String {
        let mut s = format!("{}/{}\0", self.level.validity_now, self.level.expiry);
        for store in &self.stores {
            for f in store.fingerprints() {
                s.push_str(&f);
                s.push('\0');
            }
        }
        for i in &self.identities {
            s.push_str(&i.to_string());
            s.push('\0');
        }
        s
    }

    /// Whether this rule trusts `jws` (its integrity already checked) at
    /// `now`: validity now, a path to a trusted root, a trusted signer,
    /// expiry.
    pub fn admits(&self, jws: &Jws, now: u64) -> Result<(), Refused> {
        let refused = |reason: String, lasting: bool| Refused { reason, lasting };
        // Path building checks validity at the time given: now, or (when
        // validity now is only logged) the signing time, at which the
        // chain was already found valid.
        let mut path_time = now;
        if let Err(e) = certs::check_validity(&jws.chain, "verification time", now) {
            if self.level.validity_now {
                return Err(refused(e.to_string(), false));
            }
            tracing::warn!(error = %e, "Notation certificate not valid now; accepted (level permits).");
            path_time = jws.signing_time;
        }
        let mut first = None;
        let trusted = self
            .stores
            .iter()
            .any(|s| match s.verify(&jws.chain, path_time) {
                Ok(()) => true,
                Err(e) => {
                    first.get_or_insert(e);
                    false
                }
            });
        if !trusted {
            let reason = first.map_or_else(|| "no trust store".to_string(), |e| e.to_string());
            return Err(refused(reason, true));
        }
        self.signer_is_trusted(jws)
            .map_err(|reason| refused(reason, true))?;
        if let Some(expiry) = jws.expiry.filter(|e| now >= *e) {
            let at = certs::rfc3339(expiry);
            if self.level.expiry {
                return Err(refused(format!("signature expired at {at}"), true));
            }
            tracing::warn!(expiry = %at, "Notation signature expired; accepted (level permits).");
        }
        Ok(())
    }

    fn signer_is_trusted(&self, jws: &Jws) -> Result<(), String> {
        if self.identities.contains(&Identity::Any) {
            return Ok(());
        }
        let leaf = jws.chain.first().ok_or("no signing certificate")?;
        let subject = leaf.subject().map_err(|dup| {
            format!(
                "signing certificate subject {} names {dup} twice: it cannot match an identity",
                leaf.subject_text()
            )
        })?;
        if self.identities.iter().any(|i| i.matches(&subject)) {
            Ok(())
        } else {
            Err(format!(
                "signing certificate subject {} is not a trusted identity",
                leaf.subject_text()
            ))
        }
    }
}
