//! Trusted identities of a Notation verifier: `"*"` (any certificate that
//! chains to the trust store) or `x509.subject: C=US, ST=WA, O=Corp, ...`,
//! matched against the signing certificate's subject as a set of RDN
//! attributes: every attribute the identity names must be in the subject
//! with the same value; the subject may have more (the specification's
//! partial match, notation-go's `isX509DNsubset`).
//!
//! Rules (specs/trust-store-trust-policy.md, "Trusted Identities
//! Constraints"): an identity names C, ST and O at least; no attribute
//! twice; `\,` `\;` `\\` and `\ ` escape; identities of one verifier must
//! not overlap (a certificate matching two of them); `"*"` stands alone.

use std::collections::BTreeMap;
use std::fmt;

/// The prefix of an x509 subject identity.
const PREFIX: &str = "x509.subject:";
/// Attributes every identity must name.
const MANDATORY: [&str; 3] = ["C", "ST", "O"];

/// A distinguished name as attribute type (upper-case short name, or a
/// dotted OID) → value, unescaped.
pub type Attributes = BTreeMap<String, String>;

/// Why an identity or a subject cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// Neither `*` nor `x509.subject: ...`.
    #[error("identity {0:?} is neither \"*\" nor \"x509.subject: <DN>\"")]
    Form(String),
    /// An RDN without `=`, or with an empty type.
    #[error("identity {0:?}: every RDN is TYPE=value")]
    Rdn(String),
    /// An attribute named twice.
    #[error("{0:?} names attribute {1} twice")]
    Duplicate(String, String),
    /// C, ST or O missing.
    #[error("identity {0:?} lacks {1} (C, ST and O are required)")]
    Mandatory(String, &'static str),
    /// Two identities a certificate could match both of.
    #[error("identities {0:?} and {1:?} overlap (one certificate can match both)")]
    Overlap(String, String),
    /// `*` beside other identities.
    #[error("\"*\" must be the only identity")]
    WildcardNotAlone,
    /// No identity at all.
    #[error("no identity: give \"*\" or x509.subject identities")]
    Empty,
}

/// One trusted identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Any subject.
    Any,
    /// A subject containing these attributes.
    Subject {
        /// The identity as configured (for messages and the policy hash).
        text: String,
        /// Its attributes.
        attributes: Attributes,
    },
}

impl Identity {
    /// Parses one configured identity.
    pub fn parse(text: &str) -> Result<Identity, IdentityError> {
        if text.trim() == "*" {
            return Ok(Identity::Any);
        }
        let dn = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| IdentityError::Form(text.to_string()))?;
        let attributes = parse_dn(dn).map_err(|e| match e {
            DnError::Rdn => IdentityError::Rdn(text.to_string()),
            DnError::Duplicate(a) => IdentityError::Duplicate(text.to_string(), a),
        })?;
        if let Some(m) = MANDATORY.iter().find(|m| !attributes.contains_key(**m)) {
            return Err(IdentityError::Mandatory(text.to_string(), m));
        }
        Ok(Identity::Subject {
            text: text.to_string(),
            attributes,
        })
    }

    /// Whether a certificate with `subject` has this identity.
    pub fn matches(&self, subject: &Attributes) -> bool {
        match self {
            Identity::Any => true,
            Identity::Subject { attributes, .. } => attributes
                .iter()
                .all(|(k, v)| subject.get(k).is_some_and(|s| s == v)),
        }
    }

    /// A certificate can match both: they agree on every attribute both name.
    fn overlaps(&self, other: &Identity) -> bool {
        match (self, other) {
            (Identity::Subject { attributes: a, .. }, Identity::Subject { attributes: b, .. }) => {
                a.iter().all(|(k, v)| b.get(k).is_none_or(|w| w == v))
            }
            _ => true,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Any => f.write_str("*"),
            Identity::Subject { text, .. } => f.write_str(text),
        }
    }
}

/// Parses a verifier's identity list, checking the list rules.
pub fn parse_identities(list: &[String]) -> Result<Vec<Identity>, IdentityError> {
    let identities: Vec<Identity> = list
        .iter()
        .map(|s| Identity::parse(s))
        .collect::<Result<_, _>>()?;
    if identities.is_empty() {
        return Err(IdentityError::Empty);
    }
    if identities.len() > 1 && identities.contains(&Identity::Any) {
        return Err(IdentityError::WildcardNotAlone);
    }
    for (i, a) in identities.iter().enumerate() {
        for b in &identities[i + 1..] {
            if a.overlaps(b) {
                return Err(IdentityError::Overlap(a.to_string(), b.to_string()));
            }
        }
    }
    Ok(identities)
}

/// Why a DN does not parse.
#[derive(Debug, PartialEq, Eq)]
pub enum DnError {
    /// An RDN without `TYPE=`.
    Rdn,
    /// An attribute named twice.
    Duplicate(String),
}

/// Parses `C=US, ST=WA, O=Corp` (RDNs separated by `,` or `+`, backslash
/// escapes of one character or two hex digits) into its attributes.
pub fn parse_dn(dn: &str) -> Result<Attributes, DnError> {
    let mut attributes = Attributes::new();
    for rdn in split_unescaped(dn) {
        let (key, value) = rdn.split_once('=').ok_or(DnError::Rdn)?;
        let key = key.trim().to_ascii_uppercase();
        if key.is_empty() {
            return Err(DnError::Rdn);
        }
        let value = unescape(trim_unescaped(value));
        if attributes.insert(key.clone(), value).is_some() {
            return Err(DnError::Duplicate(key));
        }
    }
    Ok(attributes)
}

/// Splits at `,` and `+` not preceded by a backslash.
fn split_unescaped(dn: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in dn.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' | '+' => {
                parts.push(&dn[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&dn[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// Trims surrounding spaces, keeping an escaped trailing space.
fn trim_unescaped(value: &str) -> &str {
    let v = value.trim_start();
    let trimmed = v.trim_end();
    if trimmed.ends_with('\\') && trimmed.len() < v.len() {
        &v[..trimmed.len() + 1]
    } else {
        trimmed
    }
}

/// Resolves backslash escapes: `\c` is `c`, `\hh` is the byte `hh`.
fn unescape(value: &str) -> String {
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        let hex = rest
            .get(..2)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (hex, rest.split_first()) {
            (Some(byte), _) => {
                bytes.push(byte);
                rest = &rest[2..];
            }
            (None, Some((&c, tail))) => {
                bytes.push(c);
                rest = tail;
            }
            (None, None) => bytes.push(b),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(dn: &str) -> Attributes {
        parse_dn(dn).unwrap()
    }

    #[test]
    fn an_identity_matches_a_subject_that_has_its_attributes() {
        let id = Identity::parse("x509.subject: C=US, ST=WA, O=Corp").unwrap();
        assert!(id.matches(&subject("C=US, ST=WA, L=Seattle, O=Corp, CN=release")));
        // Order and spacing do not matter; values do, exactly.
        assert!(id.matches(&subject("O=Corp,ST=WA,C=US")));
        assert!(!id.matches(&subject("C=US, ST=WA, O=corp")));
        assert!(!id.matches(&subject("C=US, ST=WA, O=Corp Inc")));
        assert!(!id.matches(&subject("C=US, O=Corp")));
        assert!(Identity::Any.matches(&subject("CN=anyone")));
    }

    #[test]
    fn escapes_are_resolved_on_both_sides() {
        let id = Identity::parse(r"x509.subject: C=US, ST=WA, O=Acme\, Inc., OU=a\;b\\c, CN=\ x\ ")
            .unwrap();
        let Identity::Subject { attributes, .. } = &id else {
            panic!("{id:?}")
        };
        assert_eq!(attributes["O"], "Acme, Inc.");
        assert_eq!(attributes["OU"], r"a;b\c");
        assert_eq!(attributes["CN"], " x ");
        assert!(id.matches(&subject(r"CN=\20x\20,OU=a\;b\\c,O=Acme\, Inc.,ST=WA,C=US")));
    }

    #[test]
    fn identities_follow_the_list_rules() {
        let ids =
            |l: &[&str]| parse_identities(&l.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(ids(&["*"]).unwrap(), vec![Identity::Any]);
        assert_eq!(ids(&[]), Err(IdentityError::Empty));
        assert_eq!(
            ids(&["*", "x509.subject: C=US, ST=WA, O=Corp"]),
            Err(IdentityError::WildcardNotAlone)
        );
        assert!(matches!(
            ids(&["x509.subject: C=US, O=Corp"]),
            Err(IdentityError::Mandatory(_, "ST"))
        ));
        assert!(matches!(ids(&["CN=release"]), Err(IdentityError::Form(_))));
        assert!(matches!(
            ids(&["x509.subject: C=US, ST=WA, O=Corp, O=Other"]),
            Err(IdentityError::Duplicate(_, _))
        ));
        assert!(matches!(
            ids(&[
                "x509.subject: C=US, ST=WA, O=Corp",
                "x509.subject: C=US, ST=WA, O=Corp, OU=a"
            ]),
            Err(IdentityError::Overlap(_, _))
        ));
        assert_eq!(
            ids(&[
                "x509.subject: C=US, ST=WA, O=Corp, OU=a",
                "x509.subject: C=US, ST=WA, O=Corp, OU=b"
            ])
            .unwrap()
            .len(),
            2
        );
    }
}
