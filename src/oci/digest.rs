//! Content digests: strict parsing, hashing while streaming.
//!
//! A [`Digest`] is only ever built from a validated string or from hashing,
//! so its text is safe to use as a path component (`blobs/<alg>/<hex>`).
//!
//! References: distribution-spec §"Pulling manifests" digest grammar,
//! image-spec `descriptor.md` §Digests.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// A digest algorithm ocimirror can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, 64 lower-case hex characters.
    Sha256,
    /// SHA-512, 128 lower-case hex characters.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as it appears in a digest string.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No `algorithm:encoded` separator.
    #[error("digest {0:?} is not of the form <algorithm>:<hex>")]
    Malformed(String),
    /// A well-formed digest with an algorithm we cannot verify.
    #[error("digest {0:?} uses an unsupported algorithm (only sha256 and sha512 are verified)")]
    UnsupportedAlgorithm(String),
    /// Wrong length or characters for the algorithm.
    #[error(
        "digest {0:?} has an invalid encoded part (expected lower-case hex of the algorithm's length)"
    )]
    InvalidEncoded(String),
}

/// A validated content digest such as `sha256:<64 hex>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    /// Lower-case hex, validated against the algorithm's length.
    hex: String,
}

impl Digest {
    /// The digest of `bytes` under `algorithm`.
    pub fn compute(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut d = Digester::new(algorithm);
        d.update(bytes);
        d.finish()
    }

    /// The SHA-256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Digest {
        Digest::compute(Algorithm::Sha256, bytes)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded (hex) part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// True when `bytes` hash to this digest.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        Digest::compute(self.algorithm, bytes) == *self
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, enc) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Malformed(s.to_string()))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other if is_algorithm_grammar(other) => {
                return Err(DigestError::UnsupportedAlgorithm(s.to_string()));
            }
            _ => return Err(DigestError::Malformed(s.to_string())),
        };
        let valid = enc.len() == algorithm.hex_len()
            && enc
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(DigestError::InvalidEncoded(s.to_string()));
        }
        Ok(Digest {
            algorithm,
            hex: enc.to_string(),
        })
    }
}

/// `[a-z0-9]+` components joined by `[+._-]`.
fn is_algorithm_grammar(s: &str) -> bool {
    !s.is_empty()
        && s.split(['+', '.', '_', '-']).all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes content incrementally, for verifying a stream as it passes.
pub struct Digester {
    state: State,
    len: u64,
}

enum State {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Digester {
    /// A fresh hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        let state = match algorithm {
            Algorithm::Sha256 => State::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => State::Sha512(sha2::Sha512::new()),
        };
        Digester { state, len: 0 }
    }

    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        match &mut self.state {
            State::Sha256(h) => h.update(bytes),
            State::Sha512(h) => h.update(bytes),
        }
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self.state {
            State::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            State::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_JSON: &str =
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn computes_the_spec_empty_descriptor_digest() {
        assert_eq!(Digest::sha256(b"{}").to_string(), EMPTY_JSON);
    }

    #[test]
    fn parses_and_round_trips() {
        let d: Digest = EMPTY_JSON.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY_JSON);
        let s512 = Digest::compute(Algorithm::Sha512, b"x").to_string();
        assert_eq!(s512.parse::<Digest>().unwrap().to_string(), s512);
    }

    #[test]
    fn rejects_anything_that_could_become_a_path() {
        for bad in [
            "sha256:../../etc/passwd",
            "sha256:44136FA355B3678A1146AD16F7E8649E94FB4FC21FE77E8310C060F61CAAFF8A",
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8",
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a/",
            "../sha256:abc",
            "sha256",
            "",
            ":",
            "sha256:",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn unknown_algorithms_are_named_as_unsupported() {
        let err = "blake3:abcd".parse::<Digest>().unwrap_err();
        assert!(matches!(err, DigestError::UnsupportedAlgorithm(_)));
        let err = "BLAKE3:abcd".parse::<Digest>().unwrap_err();
        assert!(matches!(err, DigestError::Malformed(_)));
    }

    #[test]
    fn streaming_equals_one_shot() {
        let mut d = Digester::new(Algorithm::Sha256);
        d.update(b"hello ");
        d.update(b"world");
        assert_eq!(d.len(), 11);
        assert_eq!(d.finish(), Digest::sha256(b"hello world"));
    }
}
