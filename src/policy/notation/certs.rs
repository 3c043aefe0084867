//! Certificates of a Notation signature: the signer's chain (`x5c`) and a
//! verifier's trust store. Parsing is `x509-cert`'s (RustCrypto), path
//! building and certificate signatures are `rustls-webpki`'s, signature
//! arithmetic `ring`'s; this module applies the Notary Project's
//! certificate requirements (specs/signature-specification.md,
//! "Certificate Requirements") on top.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::Digest as _;
use webpki::KeyUsage;
use x509_cert::der::asn1::{Ia5StringRef, ObjectIdentifier, PrintableStringRef, Utf8StringRef};
use x509_cert::der::{Decode as _, Encode as _, Tag, Tagged as _};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage as KeyUsageExt};

use super::identity::Attributes;

/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), DER value bytes.
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// Certificate signature algorithms accepted along a chain.
static CHAIN_ALGORITHMS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
];

/// A parsed certificate and its DER bytes.
#[derive(Clone)]
pub struct Cert {
    der: Vec<u8>,
    x509: x509_cert::Certificate,
}

/// The public key of a signing certificate, as far as the JWS `alg`
/// mapping cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// RSA with a modulus of this many bits.
    Rsa(usize),
    /// ECDSA on P-256.
    P256,
    /// ECDSA on P-384.
    P384,
    /// ECDSA on P-521.
    P521,
    /// Anything else.
    Other,
}

impl Cert {
    /// Parses DER.
    pub fn from_der(der: Vec<u8>) -> Result<Cert, x509_cert::der::Error> {
        let x509 = x509_cert::Certificate::from_der(&der)?;
        Ok(Cert { der, x509 })
    }

    /// SHA-256 of the DER, hex (the policy hash; notation's thumbprints).
    pub fn fingerprint(&self) -> String {
        hex::encode(sha2::Sha256::digest(&self.der))
    }

    /// The subject as RFC 4514 text, for messages.
    pub fn subject_text(&self) -> String {
        self.x509.tbs_certificate.subject.to_string()
    }

    /// The subject's attributes, for identity matching; `Err(type)` when an
    /// attribute appears twice (no identity can then be matched soundly).
    pub fn subject(&self) -> Result<Attributes, String> {
        let mut attributes = Attributes::new();
        for rdn in self.x509.tbs_certificate.subject.0.iter() {
            for atv in rdn.0.iter() {
                let key = attribute_name(&atv.oid);
                let value = match atv.value.tag() {
                    Tag::PrintableString => PrintableStringRef::try_from(&atv.value)
                        .ok()
                        .map(|s| s.as_str().to_string()),
                    Tag::Utf8String => Utf8StringRef::try_from(&atv.value)
                        .ok()
                        .map(|s| s.as_str().to_string()),
                    Tag::Ia5String => Ia5StringRef::try_from(&atv.value)
                        .ok()
                        .map(|s| s.as_str().to_string()),
                    _ => None,
                };
                let value = match value {
                    Some(v) => v,
                    None => format!("#{}", hex::encode(atv.value.to_der().unwrap_or_default())),
                };
                if attributes.insert(key.clone(), value).is_some() {
                    return Err(key);
                }
            }
        }
        Ok(attributes)
    }

    fn is_self_issued(&self) -> bool {
        self.x509.tbs_certificate.subject == self.x509.tbs_certificate.issuer
    }

    /// The validity period, in seconds since the epoch.
    pub fn validity(&self) -> (u64, u64) {
        let v = &self.x509.tbs_certificate.validity;
        (
            v.not_before.to_unix_duration().as_secs(),
            v.not_after.to_unix_duration().as_secs(),
        )
    }

    /// The subject public key's type.
    pub fn key_type(&self) -> KeyType {
        let spki = &self.x509.tbs_certificate.subject_public_key_info;
        if spki.algorithm.oid == RSA_ENCRYPTION {
            use rsa::pkcs1::DecodeRsaPublicKey as _;
            use rsa::traits::PublicKeyParts as _;
            return rsa::RsaPublicKey::from_pkcs1_der(spki.subject_public_key.raw_bytes())
                .map_or(KeyType::Other, |k| KeyType::Rsa(k.size() * 8));
        }
        if spki.algorithm.oid != EC_PUBLIC_KEY {
            return KeyType::Other;
        }
        match spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
        {
            Some(c) if c == P256 => KeyType::P256,
            Some(c) if c == P384 => KeyType::P384,
            Some(c) if c == P521 => KeyType::P521,
            _ => KeyType::Other,
        }
    }

    /// The raw subject public key (RSA: PKCS#1 `RSAPublicKey`; EC: the
    /// uncompressed point), as `ring` takes it.
    pub fn public_key(&self) -> &[u8] {
        self.x509
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes()
    }

    /// The leaf requirements `webpki` does not check: keyUsage present with
    /// digitalSignature and without keyCertSign, and not a CA.
    pub fn check_signing_leaf(&self) -> Result<(), &'static str> {
        let tbs = &self.x509.tbs_certificate;
        let key_usage = tbs
            .get::<KeyUsageExt>()
            .map_err(|_| "keyUsage extension is malformed")?;
        match key_usage {
            None => return Err("keyUsage extension is missing"),
            Some((_, ku)) if !ku.digital_signature() => {
                return Err("keyUsage lacks digitalSignature");
            }
            Some((_, ku)) if ku.key_cert_sign() => return Err("keyUsage has keyCertSign"),
            Some(_) => {}
        }
        match tbs.get::<BasicConstraints>() {
            Err(_) => Err("basicConstraints extension is malformed"),
            Ok(Some((_, bc))) if bc.ca => Err("it is a CA certificate"),
            Ok(_) => Ok(()),
        }
    }
}

/// The RFC 4514 short name of a subject attribute, else its dotted OID.
fn attribute_name(oid: &ObjectIdentifier) -> String {
    let name = match oid.to_string().as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.17" => "POSTALCODE",
        other => return other.to_string(),
    };
    name.to_string()
}

/// Why a certificate chain is not accepted.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// The chain does not end at a root (self-issued) certificate.
    #[error("x5c does not end with a root certificate")]
    NoRoot,
    /// A certificate outside its validity period at a time that matters.
    #[error(
        "certificate {subject} is not valid at the {when} {time} (valid {not_before} to {not_after})"
    )]
    Validity {
        /// Its subject.
        subject: String,
        /// "signing time" or "verification time".
        when: &'static str,
        /// That time (RFC 3339).
        time: String,
        /// Validity start (RFC 3339).
        not_before: String,
        /// Validity end (RFC 3339).
        not_after: String,
    },
    /// The signing certificate breaks a leaf requirement.
    #[error("signing certificate {subject} is not a code-signing certificate: {reason}")]
    Leaf {
        /// Its subject.
        subject: String,
        /// The requirement.
        reason: &'static str,
    },
    /// No path to a trust-store root.
    #[error("certificate chain does not lead to a root certificate of trust store {store}")]
    Untrusted {
        /// The trust store's path.
        store: String,
    },
    /// A path was found but it breaks a rule (`webpki`'s verdict).
    #[error("certificate chain rejected against trust store {store}: {reason}")]
    Rejected {
        /// The trust store's path.
        store: String,
        /// `webpki`'s error, described.
        reason: String,
    },
}

/// Seconds since the epoch as RFC 3339, for messages.
pub fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(|| format!("{secs}s after the epoch"), |t| t.to_rfc3339())
}

/// Checks what the chain must satisfy whatever the trust store: the leaf
/// requirements, a root at the end, and every certificate valid at the
/// signer's claimed signing time (as notation does; validity at
/// verification time is the trust rule's, [`check_validity`]).
pub fn check_chain(chain: &[Cert], signing_time: u64) -> Result<(), ChainError> {
    let Some(leaf) = chain.first() else {
        return Err(ChainError::NoRoot);
    };
    leaf.check_signing_leaf()
        .map_err(|reason| ChainError::Leaf {
            subject: leaf.subject_text(),
            reason,
        })?;
    if !chain.last().is_some_and(Cert::is_self_issued) {
        return Err(ChainError::NoRoot);
    }
    check_validity(chain, "signing time", signing_time)
}

/// Every certificate of `chain` is within its validity period at `time`.
pub fn check_validity(chain: &[Cert], when: &'static str, time: u64) -> Result<(), ChainError> {
    for c in chain {
        let (not_before, not_after) = c.validity();
        if time < not_before || time > not_after {
            return Err(ChainError::Validity {
                subject: c.subject_text(),
                when,
                time: rfc3339(time),
                not_before: rfc3339(not_before),
                not_after: rfc3339(not_after),
            });
        }
    }
    Ok(())
}

/// A verifier's trusted root certificates.
#[derive(Clone)]
pub struct TrustStore {
    /// Where they were read from (for messages).
    pub path: PathBuf,
    certs: Vec<Cert>,
}

/// Why a trust store cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TrustStoreError {
    /// The path or a file in it cannot be read.
    #[error("cannot read {path:?}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is neither PEM certificates nor one DER certificate.
    #[error("{path:?} is not a PEM or DER certificate file")]
    NotCertificates {
        /// The file.
        path: PathBuf,
    },
    /// A certificate `webpki` cannot use as a trust anchor.
    #[error("certificate {subject} in {path:?} cannot be a trust anchor: {reason:?}")]
    Anchor {
        /// The file.
        path: PathBuf,
        /// Its subject.
        subject: String,
        /// `webpki`'s error.
        reason: webpki::Error,
    },
    /// No certificate found.
    #[error(
        "no certificate in {path:?} (a PEM/DER file, or a directory of .pem, .crt, .cer files)"
    )]
    Empty {
        /// The path.
        path: PathBuf,
    },
}

impl TrustStore {
    /// Loads a PEM/DER file, or every `.pem`, `.crt` and `.cer` file of a
    /// directory (not its subdirectories, as notation does).
    pub fn load(path: &Path) -> Result<TrustStore, TrustStoreError> {
        let read_err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| TrustStoreError::Read { path: p, source }
        };
        let mut files = Vec::new();
        if path.is_dir() {
            for entry in std::fs::read_dir(path).map_err(read_err(path))? {
                let p = entry.map_err(read_err(path))?.path();
                let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
                if p.is_file() && ["pem", "crt", "cer"].contains(&ext) {
                    files.push(p);
                }
            }
            files.sort();
        } else {
            files.push(path.to_path_buf());
        }
        let mut certs = Vec::new();
        for f in files {
            let bytes = std::fs::read(&f).map_err(read_err(&f))?;
            for cert in parse_certificates(&bytes)
                .ok_or_else(|| TrustStoreError::NotCertificates { path: f.clone() })?
            {
                if let Err(reason) =
                    webpki::anchor_from_trusted_cert(&CertificateDer::from(cert.der.as_slice()))
                {
                    return Err(TrustStoreError::Anchor {
                        path: f,
                        subject: cert.subject_text(),
                        reason,
                    });
                }
                certs.push(cert);
            }
        }
        if certs.is_empty() {
            return Err(TrustStoreError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(TrustStore {
            path: path.to_path_buf(),
            certs,
        })
    }

    /// The certificates' fingerprints, sorted (the policy hash).
    pub fn fingerprints(&self) -> Vec<String> {
        let mut f: Vec<String> = self.certs.iter().map(Cert::fingerprint).collect();
        f.sort();
        f
    }

    /// Whether `chain` (leaf first) leads to one of these roots at `now`:
    /// each issuer a CA, signatures valid, the leaf's extendedKeyUsage (if
    /// any) allowing code signing.
    pub fn verify(&self, chain: &[Cert], now: u64) -> Result<(), ChainError> {
        let store = self.path.display().to_string();
        let leaf_der = CertificateDer::from(chain.first().map_or(&[][..], |c| &c.der[..]));
        let leaf =
            webpki::EndEntityCert::try_from(&leaf_der).map_err(|e| ChainError::Rejected {
                store: store.clone(),
                reason: format!("{e:?}"),
            })?;
        let anchors: Vec<_> = self
            .certs
            .iter()
            .filter_map(|c| {
                webpki::anchor_from_trusted_cert(&CertificateDer::from(&c.der[..]))
                    .map(|a| a.to_owned())
                    .ok()
            })
            .collect();
        let intermediates: Vec<CertificateDer<'_>> = chain
            .iter()
            .skip(1)
            .map(|c| CertificateDer::from(&c.der[..]))
            .collect();
        leaf.verify_for_usage(
            CHAIN_ALGORITHMS,
            &anchors,
            &intermediates,
            UnixTime::since_unix_epoch(Duration::from_secs(now)),
            KeyUsage::required_if_present(CODE_SIGNING),
            None,
            None,
        )
        .map(|_| ())
        .map_err(|e| match e {
            webpki::Error::UnknownIssuer => ChainError::Untrusted { store },
            webpki::Error::RequiredEkuNotFoundContext(_) => ChainError::Rejected {
                store,
                reason: "extendedKeyUsage does not allow code signing".into(),
            },
            other => ChainError::Rejected {
                store,
                reason: format!("{other:?}"),
            },
        })
    }
}

/// Certificates of a PEM file, or the one certificate of a DER file.
fn parse_certificates(bytes: &[u8]) -> Option<Vec<Cert>> {
    if bytes.starts_with(b"-----") || bytes.iter().take(64).all(u8::is_ascii) {
        let chain = x509_cert::Certificate::load_pem_chain(bytes).ok()?;
        chain
            .into_iter()
            .map(|x509| x509.to_der().ok().map(|der| Cert { der, x509 }))
            .collect()
    } else {
        Cert::from_der(bytes.to_vec()).ok().map(|c| vec![c])
    }
}
