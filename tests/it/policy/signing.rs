//! Keys, payloads and signature manifests for the policy tests, made with
//! Debian's `openssl` CLI and plain JSON: nothing here uses ocimirror's
//! verifier or its crypto crates.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::fixtures::{OCI_CONFIG, OCI_EMPTY, OCI_MANIFEST, cosign_tag, sha256};
use crate::support::registry::TestRegistry;
use crate::sync_jobs::REPO;

pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const COSIGN_SIG_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
pub const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const IN_TOTO: &str = "application/vnd.in-toto+json";

fn openssl(args: &[&str]) {
    openssl_at(None, args);
}

/// Runs the `openssl` CLI (in `dir`, if given); panics with its stderr on failure.
pub(super) fn openssl_at(dir: Option<&Path>, args: &[&str]) {
    let mut c = Command::new("openssl");
    if let Some(dir) = dir {
        c.current_dir(dir);
    }
    let out = c.args(args).output().expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The key types cosign signs with.
#[derive(Clone, Copy, Debug)]
pub enum KeyKind {
    P256,
    Ed25519,
    Rsa,
}

/// A private key in a temp dir, and its PEM public key beside it.
pub struct Signer {
    pub name: String,
    dir: PathBuf,
    kind: KeyKind,
}

impl Signer {
    pub fn new(dir: &Path, name: &str, kind: KeyKind) -> Signer {
        let key = dir.join(format!("{name}.key"));
        let key = key.to_str().unwrap();
        match kind {
            KeyKind::P256 => openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                key,
            ]),
            KeyKind::Ed25519 => openssl(&["genpkey", "-algorithm", "ed25519", "-out", key]),
            KeyKind::Rsa => openssl(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                key,
            ]),
        }
        let public = dir.join(format!("{name}.pub"));
        openssl(&[
            "pkey",
            "-in",
            key,
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        Signer {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            kind,
        }
    }

    pub fn public_key(&self) -> PathBuf {
        self.dir.join(format!("{}.pub", self.name))
    }

    /// `openssl dgst -sha256 -sign` (ECDSA: DER; RSA: PKCS#1 v1.5), or
    /// pure Ed25519 over the message.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let key = self.dir.join(format!("{}.key", self.name));
        let msg = self.dir.join("message");
        let sig = self.dir.join("signature");
        std::fs::write(&msg, message).unwrap();
        let (key, msg_s, sig_s) = (
            key.to_str().unwrap(),
            msg.to_str().unwrap(),
            sig.to_str().unwrap(),
        );
        match self.kind {
            KeyKind::P256 | KeyKind::Rsa => {
                openssl(&["dgst", "-sha256", "-sign", key, "-out", sig_s, msg_s])
            }
            KeyKind::Ed25519 => openssl(&[
                "pkeyutl", "-sign", "-rawin", "-inkey", key, "-in", msg_s, "-out", sig_s,
            ]),
        }
        std::fs::read(&sig).unwrap()
    }
}

/// A cosign simple-signing payload for `digest` with `optional` annotations.
pub fn payload(digest: &str, optional: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": "example.test/team/app"},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": optional
    }))
    .unwrap()
}

/// An in-toto statement with cosign's signature predicate about `digest`.
pub fn statement(digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "example.test/team/app", "digest": {"sha256": &digest[7..]}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {}
    }))
    .unwrap()
}

/// DSSE pre-authentication encoding of an in-toto payload.
pub fn pae(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {IN_TOTO} {} ", IN_TOTO.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

fn put_json(reg: &TestRegistry, reference: &str, v: Value) -> String {
    let bytes = serde_json::to_vec(&v).unwrap();
    reg.put_manifest(REPO, reference, OCI_MANIFEST, &bytes)
}

fn simple_layer(reg: &TestRegistry, payload: &[u8], sig: &[u8]) -> Value {
    json!({"mediaType": SIMPLE_SIGNING, "digest": reg.put_blob(REPO, payload), "size": payload.len(),
           "annotations": {"dev.cosignproject.cosign/signature": b64(sig)}})
}

/// cosign's legacy form: tag `sha256-<hex>.sig` of `image`, no subject.
/// Returns (manifest digest, payload layer digest).
pub fn legacy_sig(reg: &TestRegistry, image: &str, payload: &[u8], sig: &[u8]) -> (String, String) {
    let config = br#"{"architecture":"","config":{},"os":""}"#;
    let layer = simple_layer(reg, payload, sig);
    let layer_digest = layer["digest"].as_str().unwrap().to_string();
    let m = put_json(
        reg,
        &cosign_tag(image, "sig"),
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": OCI_CONFIG, "digest": reg.put_blob(REPO, config), "size": config.len()},
               "layers": [layer]}),
    );
    (m, layer_digest)
}

/// cosign's OCI 1.1 form: a referrer of `subject` (a descriptor).
pub fn referrer_sig(reg: &TestRegistry, subject: &Value, payload: &[u8], sig: &[u8]) -> String {
    let config = b"{}";
    let v = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": COSIGN_SIG_ARTIFACT,
           "config": {"mediaType": COSIGN_SIG_ARTIFACT, "digest": reg.put_blob(REPO, config), "size": 2},
           "layers": [simple_layer(reg, payload, sig)], "subject": subject});
    let bytes = serde_json::to_vec(&v).unwrap();
    reg.put_manifest(REPO, &sha256(&bytes), OCI_MANIFEST, &bytes)
}

/// cosign v3's form: a Sigstore bundle (DSSE envelope, key hint only) as
/// a referrer of `subject`.
pub fn bundle_sig(reg: &TestRegistry, subject: &Value, statement: &[u8], sig: &[u8]) -> String {
    let bundle = serde_json::to_vec(&json!({
        "mediaType": BUNDLE,
        "verificationMaterial": {"publicKey": {"hint": "release"}},
        "dsseEnvelope": {"payload": b64(statement), "payloadType": IN_TOTO,
                         "signatures": [{"sig": b64(sig), "keyid": ""}]}
    }))
    .unwrap();
    let v = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE,
           "config": {"mediaType": OCI_EMPTY, "digest": reg.put_blob(REPO, b"{}"), "size": 2},
           "layers": [{"mediaType": BUNDLE, "digest": reg.put_blob(REPO, &bundle), "size": bundle.len()}],
           "subject": subject,
           "annotations": {"dev.sigstore.bundle.content": "dsse-envelope",
                           "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1"}});
    let bytes = serde_json::to_vec(&v).unwrap();
    reg.put_manifest(REPO, &sha256(&bytes), OCI_MANIFEST, &bytes)
}
