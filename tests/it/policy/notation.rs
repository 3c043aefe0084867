//! Notation (Notary Project) signatures end to end: a root CA, an
//! intermediate and a code-signing leaf made by Debian's `openssl` (`req`,
//! `x509`, `ca`), JWS envelopes assembled here and signed by `openssl dgst`
//! (RSASSA-PSS for PS256, ECDSA for ES256), pushed as referrers of the
//! image on the source (referrers API and fallback tag), jobs run through
//! `app::run_once`. Nothing here uses ocimirror's verifier or its crates.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Value, json};

use super::{assert_copied, assert_refused, mirror, setup};
use crate::support::fixtures::{self, Fixture, Form, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, sha256};
use crate::support::registry::{Options, TestRegistry};
use crate::sync_jobs::REPO;
use ocimirror::sync::SyncOptions;

const NOTATION: &str = "application/vnd.cncf.notary.signature";
pub(super) const JWS: &str = "application/jose+json";
const PAYLOAD: &str = "application/vnd.cncf.notary.payload.v1+json";
const SCHEME: &str = "io.cncf.notary.signingScheme";
const SIGNING_TIME: &str = "io.cncf.notary.signingTime";
const EXPIRY: &str = "io.cncf.notary.expiry";
pub(super) const IDENTITY: &str = "x509.subject: C=US, ST=WA, O=Corp";

fn openssl(dir: &Path, args: &[&str]) {
    super::signing::openssl_at(Some(dir), args);
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    Rsa,
    P256,
}

/// Validity of the leaf: `openssl ca` dates (`YYYYMMDDHHMMSSZ`).
struct Validity {
    start: String,
    end: String,
}

impl Validity {
    fn current() -> Validity {
        let fmt = |d: chrono::DateTime<chrono::Utc>| d.format("%Y%m%d%H%M%SZ").to_string();
        let now = chrono::Utc::now();
        Validity {
            start: fmt(now - chrono::Duration::days(1)),
            end: fmt(now + chrono::Duration::days(30)),
        }
    }

    fn expired() -> Validity {
        Validity {
            start: "20200101000000Z".into(),
            end: "20200201000000Z".into(),
        }
    }
}

/// A root CA, an intermediate CA and a code-signing leaf under `dir/name`.
pub(super) struct Pki {
    dir: PathBuf,
    kind: KeyKind,
}

impl Pki {
    fn new(dir: &Path, name: &str, kind: KeyKind, subject: &str, leaf: Validity) -> Pki {
        let dir = dir.join(name);
        std::fs::create_dir_all(dir.join("issued")).unwrap();
        let keygen: &[&str] = match kind {
            KeyKind::Rsa => &["-newkey", "rsa:2048"],
            KeyKind::P256 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        };
        let req = |key: &str, out: &str, subj: &str, x509: bool| {
            let mut args = vec![
                "req", "-new", "-nodes", "-keyout", key, "-out", out, "-subj", subj,
            ];
            args.extend_from_slice(keygen);
            if x509 {
                args.extend_from_slice(&[
                    "-x509",
                    "-days",
                    "3650",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ]);
            }
            openssl(&dir, &args);
        };
        req(
            "root.key",
            "root.pem",
            &format!("/C=US/O=Corp/CN={name} root"),
            true,
        );
        req(
            "inter.key",
            "inter.csr",
            &format!("/C=US/O=Corp/CN={name} intermediate"),
            false,
        );
        std::fs::write(
            dir.join("ext.cnf"),
            "[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
             [leaf]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=codeSigning\n",
        )
        .unwrap();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "inter.csr",
                "-CA",
                "root.pem",
                "-CAkey",
                "root.key",
                "-set_serial",
                "2",
                "-days",
                "3650",
                "-extfile",
                "ext.cnf",
                "-extensions",
                "ca",
                "-out",
                "inter.pem",
            ],
        );
        req("leaf.key", "leaf.csr", subject, false);
        // `openssl ca` is what sets explicit validity dates (OpenSSL 3.0).
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(
            dir.join("ca.cnf"),
            "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=issued\nserial=serial\n\
             default_md=sha256\npolicy=p\nunique_subject=no\ncopy_extensions=none\n\
             [p]\ncountryName=optional\nstateOrProvinceName=optional\norganizationName=optional\n\
             commonName=optional\n",
        )
        .unwrap();
        std::fs::write(dir.join("serial"), "03\n").unwrap();
        openssl(
            &dir,
            &[
                "ca",
                "-batch",
                "-config",
                "ca.cnf",
                "-notext",
                "-in",
                "leaf.csr",
                "-cert",
                "inter.pem",
                "-keyfile",
                "inter.key",
                "-startdate",
                &leaf.start,
                "-enddate",
                &leaf.end,
                "-extfile",
                "ext.cnf",
                "-extensions",
                "leaf",
                "-out",
                "leaf.pem",
            ],
        );
        Pki { dir, kind }
    }

    pub(super) fn valid(dir: &Path, name: &str, kind: KeyKind) -> Pki {
        Pki::new(
            dir,
            name,
            kind,
            "/C=US/ST=WA/O=Corp/CN=release",
            Validity::current(),
        )
    }

    pub(super) fn root(&self) -> PathBuf {
        self.dir.join("root.pem")
    }

    fn der(&self, cert: &str) -> String {
        openssl(
            &self.dir,
            &[
                "x509",
                "-in",
                &format!("{cert}.pem"),
                "-outform",
                "DER",
                "-out",
                "c.der",
            ],
        );
        base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(self.dir.join("c.der")).unwrap())
    }

    /// `x5c`: leaf, intermediate, root.
    fn x5c(&self) -> Vec<String> {
        ["leaf", "inter", "root"]
            .iter()
            .map(|c| self.der(c))
            .collect()
    }

    /// The JWS signature of `input` by the leaf key: PS256 (PSS, salt 32)
    /// or ES256 (openssl's DER converted to r || s).
    fn sign(&self, input: &[u8]) -> Vec<u8> {
        std::fs::write(self.dir.join("input"), input).unwrap();
        let mut args = vec!["dgst", "-sha256"];
        if self.kind == KeyKind::Rsa {
            args.extend_from_slice(&[
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
            ]);
        }
        args.extend_from_slice(&["-sign", "leaf.key", "-out", "sig", "input"]);
        openssl(&self.dir, &args);
        let sig = std::fs::read(self.dir.join("sig")).unwrap();
        match self.kind {
            KeyKind::Rsa => sig,
            KeyKind::P256 => der_to_fixed(&sig),
        }
    }

    fn alg(&self) -> &'static str {
        match self.kind {
            KeyKind::Rsa => "PS256",
            KeyKind::P256 => "ES256",
        }
    }
}

/// ECDSA-Sig-Value (SEQUENCE of two INTEGERs) → r || s, 32 bytes each.
fn der_to_fixed(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30);
    let mut at = if der[1] & 0x80 != 0 { 3 } else { 2 };
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[at], 0x02);
        let len = der[at + 1] as usize;
        let int = &der[at + 2..at + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        at += 2 + len;
    }
    out
}

/// The default protected header: valid, signed now.
pub(super) fn header(pki: &Pki) -> Value {
    json!({"alg": pki.alg(), "cty": PAYLOAD, SCHEME: "notary.x509",
           SIGNING_TIME: now_rfc3339(), "crit": [SCHEME]})
}

/// A Notary Project payload naming `target` (a descriptor).
pub(super) fn payload(target: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"targetArtifact": target})).unwrap()
}

/// A JWS envelope of `payload` under `protected`, signed by `pki`'s leaf.
pub(super) fn envelope(pki: &Pki, protected: &Value, payload: &[u8]) -> Vec<u8> {
    let (p, b) = (
        b64url(&serde_json::to_vec(protected).unwrap()),
        b64url(payload),
    );
    let sig = pki.sign(format!("{p}.{b}").as_bytes());
    serde_json::to_vec(&json!({"payload": b, "protected": p, "signature": b64url(&sig),
                               "header": {"x5c": pki.x5c(), "io.cncf.notary.signingAgent": "test"}}))
    .unwrap()
}

/// Pushes `envelope` as a Notation signature manifest referring to
/// `subject` (with layer type `layer_type`); in the fallback form also
/// adds it to the subject's `sha256-<hex>` index. Returns its digest and
/// the envelope blob's.
pub(super) fn push_signature(
    src: &TestRegistry,
    f: &Fixture,
    form: Form,
    layer_type: &str,
    envelope: &[u8],
) -> (String, String) {
    let subject = f.manifest(&f.index).desc();
    let layer = src.put_blob(REPO, envelope);
    let v = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": NOTATION,
        "config": {"mediaType": OCI_EMPTY, "digest": src.put_blob(REPO, b"{}"), "size": 2},
        "layers": [{"mediaType": layer_type, "digest": layer, "size": envelope.len()}],
        "subject": subject,
        "annotations": {"io.cncf.notary.x509chain.thumbprint#S256": "[]"}});
    let bytes = serde_json::to_vec(&v).unwrap();
    let digest = src.put_manifest(REPO, &sha256(&bytes), OCI_MANIFEST, &bytes);
    if form == Form::Tags {
        let tag = fixtures::fallback_tag(&f.index);
        let mut entries: Vec<Value> = f.tags.get(&tag).map_or_else(Vec::new, |old| {
            serde_json::from_slice::<Value>(&old.bytes).unwrap()["manifests"]
                .as_array()
                .unwrap()
                .clone()
        });
        entries.push(
            json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": bytes.len(),
                            "artifactType": NOTATION}),
        );
        let idx = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                             "manifests": entries}))
        .unwrap();
        src.put_manifest(REPO, &tag, OCI_INDEX, &idx);
    }
    (digest, layer)
}

/// `[jobs.policy]` in `mode` with one Notation verifier `corp`.
fn policy(mode: &str, trust_store: &Path, identity: &str) -> String {
    format!(
        "[jobs.policy]\nmode = \"{mode}\"\n[[jobs.policy.notation]]\nname = \"corp\"\n\
         trust_store = \"{}\"\nidentities = [\"{identity}\"]\n",
        trust_store.display()
    )
}

/// The image's own descriptor as a payload target.
pub(super) fn target(f: &Fixture) -> Value {
    f.manifest(&f.index).desc()
}

#[tokio::test]
async fn a_valid_notation_signature_admits_the_image_via_api_and_fallback_tag() {
    for (form, kind) in [(Form::Api, KeyKind::Rsa), (Form::Tags, KeyKind::P256)] {
        let src = TestRegistry::start(Options {
            referrers_api: form == Form::Api,
            ..Options::default()
        })
        .await;
        let dst = TestRegistry::start(Options::default()).await;
        let f = fixtures::image(form, &format!("notation {}", form == Form::Api));
        fixtures::seed_registry(&src, REPO, &f);
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::valid(dir.path(), "corp", kind);
        let env = envelope(&pki, &header(&pki), &payload(&target(&f)));
        let (sig, _) = push_signature(&src, &f, form, JWS, &env);
        let text = policy(
            "enforce",
            &pki.root(),
            "x509.subject: C=US, ST=WA, O=Corp, CN=release",
        );
        let r = mirror(dir.path(), &src, &dst, &text, SyncOptions::default()).await;
        if form == Form::Api {
            assert_copied(&r, &dst, &f);
        } else {
            // The source's fallback index changed (it lists the signature):
            // the target, an API registry, lists referrers instead.
            assert!(r.failures.is_empty(), "{:?}", r.failures);
            assert_eq!(r.counts.images_copied, 1);
            assert!(dst.tags(REPO).contains(&"v1".to_string()));
        }
        assert!(
            dst.referrers(REPO, &f.index).contains(&sig),
            "the signature is mirrored"
        );
    }
}

#[derive(Clone, Copy, Debug)]
enum Case {
    UntrustedRoot,
    SignedOutsideLeafValidity,
    ExpiredLeaf,
    IdentityMismatch,
    OtherDigest,
    TamperedHeader,
    MissingCrit,
    SignatureExpired,
    Cose,
}

#[tokio::test]
async fn a_notation_signature_that_does_not_hold_refuses_the_image_by_reason() {
    use Case::*;
    for case in [
        UntrustedRoot,
        SignedOutsideLeafValidity,
        ExpiredLeaf,
        IdentityMismatch,
        OtherDigest,
        TamperedHeader,
        MissingCrit,
        SignatureExpired,
        Cose,
    ] {
        let (src, dst, f) = setup(&format!("notation {case:?}")).await;
        let dir = tempfile::tempdir().unwrap();
        let pki = match case {
            ExpiredLeaf => Pki::new(
                dir.path(),
                "corp",
                KeyKind::Rsa,
                "/C=US/ST=WA/O=Corp/CN=release",
                Validity::expired(),
            ),
            _ => Pki::valid(dir.path(), "corp", KeyKind::Rsa),
        };
        let mut trust_store = pki.root();
        let mut identity = IDENTITY;
        let mut h = header(&pki);
        let mut body = payload(&target(&f));
        let mut layer_type = JWS;
        let expected: String = match case {
            UntrustedRoot => {
                trust_store = Pki::valid(dir.path(), "stranger", KeyKind::Rsa).root();
                format!(
                    "verifier corp: certificate chain does not lead to a root certificate of trust store {}",
                    trust_store.display()
                )
            }
            SignedOutsideLeafValidity => {
                h[SIGNING_TIME] = json!("2021-06-01T00:00:00Z");
                "CN=release,O=Corp,ST=WA,C=US is not valid at the signing time 2021-06-01T00:00:00+00:00".into()
            }
            // Signed now (the default header) with a leaf that expired in
            // 2020: the leaf is named with its validity.
            ExpiredLeaf => {
                "certificate CN=release,O=Corp,ST=WA,C=US is not valid at the signing time".into()
            }
            IdentityMismatch => {
                identity = "x509.subject: C=US, ST=WA, O=Corp, CN=ci";
                "verifier corp: signing certificate subject CN=release,O=Corp,ST=WA,C=US is not a trusted identity".into()
            }
            OtherDigest => {
                body = payload(&f.manifest(&f.amd).desc());
                format!("signed payload names {}, not this image", f.amd)
            }
            TamperedHeader | MissingCrit | SignatureExpired | Cose => match case {
                MissingCrit => {
                    h[EXPIRY] = json!("2099-01-01T00:00:00Z");
                    "protected header io.cncf.notary.expiry is critical but not listed in crit"
                        .into()
                }
                SignatureExpired => {
                    h[EXPIRY] = json!("2021-01-01T00:00:00Z");
                    h["crit"] = json!([SCHEME, EXPIRY]);
                    "signature expired at 2021-01-01T00:00:00+00:00".into()
                }
                Cose => {
                    layer_type = "application/cose";
                    "COSE envelopes are not supported".into()
                }
                _ => "signature does not verify with the signing certificate's key".into(),
            },
        };
        let mut env = envelope(&pki, &h, &body);
        if matches!(case, TamperedHeader) {
            // Another signing time in the protected header after signing.
            let mut v: Value = serde_json::from_slice(&env).unwrap();
            let mut changed = header(&pki);
            changed[SIGNING_TIME] = json!("2026-01-01T00:00:00Z");
            v["protected"] = json!(b64url(&serde_json::to_vec(&changed).unwrap()));
            env = serde_json::to_vec(&v).unwrap();
        }
        push_signature(&src, &f, Form::Api, layer_type, &env);
        let text = policy("enforce", &trust_store, identity);
        let r = mirror(dir.path(), &src, &dst, &text, SyncOptions::default()).await;
        assert_refused(&r, &dst, "(notation signature): ");
        assert_refused(&r, &dst, &expected);
    }
}

#[tokio::test]
async fn warn_mode_copies_and_the_second_run_verifies_nothing() {
    let (src, dst, f) = setup("notation cache").await;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::valid(dir.path(), "corp", KeyKind::P256);
    let env = envelope(&pki, &header(&pki), &payload(&target(&f)));
    let (_, layer) = push_signature(&src, &f, Form::Api, JWS, &env);

    // Warn, with a trust store that does not hold the root: copied, said.
    let stranger = Pki::valid(dir.path(), "stranger", KeyKind::P256);
    let warn = policy("warn", &stranger.root(), IDENTITY);
    let plan = mirror(
        dir.path(),
        &src,
        &dst,
        &warn,
        SyncOptions {
            dry_run: true,
            ..SyncOptions::default()
        },
    )
    .await;
    let steps: Vec<String> = plan.plan[0].steps.iter().map(ToString::to_string).collect();
    assert!(
        steps.iter().any(|s| s.contains(
            "notation signature: rejected: verifier corp: certificate chain does not lead to a root"
        )),
        "{steps:#?}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.contains("not verified, copied anyway (warn)")),
        "{steps:#?}"
    );
    let r = mirror(dir.path(), &src, &dst, &warn, SyncOptions::default()).await;
    assert_copied(&r, &dst, &f);

    // Enforce with the right root: verified once, then cached.
    let enforce = policy("enforce", &pki.root(), IDENTITY);
    let full = SyncOptions {
        full: true,
        ..SyncOptions::default()
    };
    let reads = || src.count("GET", &format!("/blobs/{layer}"));
    let first = mirror(dir.path(), &src, &dst, &enforce, full.clone()).await;
    assert!(first.failures.is_empty(), "{:?}", first.failures);
    let after_first = reads();
    let second = mirror(dir.path(), &src, &dst, &enforce, full.clone()).await;
    assert!(second.failures.is_empty(), "{:?}", second.failures);
    assert_eq!(
        reads(),
        after_first,
        "the second run read the envelope again"
    );
    let plan = mirror(
        dir.path(),
        &src,
        &dst,
        &enforce,
        SyncOptions {
            dry_run: true,
            ..full
        },
    )
    .await;
    let reasons = super::plan_reasons(&plan);
    assert!(
        reasons.contains(&"notation signature: verified by corp (cached)"),
        "{reasons:#?}"
    );
}

#[tokio::test]
async fn a_bad_trust_store_or_identity_is_a_config_problem_naming_it() {
    let (src, dst, _) = setup("notation config").await;
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("roots");
    std::fs::create_dir(&empty).unwrap();
    let text = policy("enforce", &empty, "x509.subject: C=US, O=Corp");
    let path = crate::sync_jobs::write_config(dir.path(), &src, &dst, "", &text);
    let err = ocimirror::config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("jobs[0].policy.notation[0].trust_store"),
        "{err}"
    );
    assert!(err.contains(&empty.display().to_string()), "{err}");
    assert!(
        err.contains("jobs[0].policy.notation[0].identities"),
        "{err}"
    );
    assert!(err.contains("lacks ST"), "{err}");
}
