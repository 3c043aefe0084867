//! `copy --cosign to-referrers|to-tags`: cosign attachments change form,
//! and what they sign still verifies on the target alone, checked without
//! cosign and without ocimirror code: signatures are made and verified with
//! Debian's `openssl` (ECDSA P-256 over SHA-256, as cosign signs), payloads
//! and manifests are read back through the test registry.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::support::cli::text;
use crate::support::fixtures::{OCI_CONFIG, OCI_MANIFEST, cosign_tag, fallback_tag, sha256};
use crate::support::registry::{Options, TestRegistry};

pub(crate) const REPO: &str = "team/app";
const SIMPLE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
const SPDX: &str = "text/spdx+json";
const SIGNATURE: &str = "dev.cosignproject.cosign/signature";
const IN_TOTO: &str = "application/vnd.in-toto+json";
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub(crate) async fn ocimirror(args: &[&str]) -> Output {
    crate::support::cli::ocimirror(Path::new("."), args).await
}

pub(crate) async fn registry(api: bool) -> TestRegistry {
    TestRegistry::start(Options {
        referrers_api: api,
        ..Options::default()
    })
    .await
}

/// An ECDSA P-256 key pair made by `openssl`, which also signs and verifies.
pub(crate) struct Key {
    dir: tempfile::TempDir,
    files: AtomicUsize,
}

impl Key {
    pub(crate) fn new() -> Key {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let pub_key = dir.path().join("pub.pem");
        run_openssl(
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
            ],
            &key,
        );
        let out = Command::new("openssl")
            .args(["ec", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&pub_key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        Key {
            dir,
            files: AtomicUsize::new(0),
        }
    }

    fn file(&self, bytes: &[u8]) -> std::path::PathBuf {
        let n = self.files.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.path().join(format!("data-{n}"));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Base64 of the DER signature over SHA-256 of `data` (cosign's form).
    fn sign(&self, data: &[u8]) -> String {
        let input = self.file(data);
        let sig = self.file(b"");
        let out = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(self.dir.path().join("key.pem"))
            .arg("-out")
            .arg(&sig)
            .arg(&input)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        B64.encode(std::fs::read(sig).unwrap())
    }

    /// Whether `signature` (base64 DER) verifies over `data` with the public key.
    fn verifies(&self, data: &[u8], signature: &str) -> bool {
        let Ok(der) = B64.decode(signature) else {
            return false;
        };
        let (input, sig) = (self.file(data), self.file(&der));
        Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(self.dir.path().join("pub.pem"))
            .arg("-signature")
            .arg(&sig)
            .arg(&input)
            .output()
            .unwrap()
            .status
            .success()
    }
}

fn run_openssl(args: &[&str], out: &Path) {
    let o = Command::new("openssl")
        .args(args)
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
}

/// DSSE's pre-authentication encoding: what an envelope's signature covers.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    v.extend_from_slice(payload);
    v
}

/// A layer of a cosign manifest: blob bytes, media type, annotations.
pub(crate) struct Layer {
    media_type: &'static str,
    bytes: Vec<u8>,
    annotations: BTreeMap<String, String>,
}

/// A descriptor as go-containerregistry writes it (field order
/// mediaType, size, digest, annotations; keys sorted).
fn ggcr_desc(media_type: &str, bytes: &[u8], annotations: &BTreeMap<String, String>) -> String {
    let mut s = format!(
        r#"{{"mediaType":"{media_type}","size":{},"digest":"{}""#,
        bytes.len(),
        sha256(bytes)
    );
    if !annotations.is_empty() {
        s.push_str(&format!(
            r#","annotations":{}"#,
            serde_json::to_string(annotations).unwrap()
        ));
    }
    s.push('}');
    s
}

/// Stores `layers` with cosign's config in `repo`, and returns the exact
/// manifest bytes cosign writes for them: the legacy form, or with
/// `subject` (`(media type, digest, size)`) the OCI 1.1 form.
pub(crate) fn cosign_manifest(
    reg: &TestRegistry,
    layers: &[Layer],
    config_type: &str,
    subject: Option<(&str, &str, usize)>,
) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(&l.bytes)).collect();
    let history = vec![json!({"created": ZERO_TIME}); layers.len()];
    let config = format!(
        r#"{{"architecture":"","created":"{ZERO_TIME}","history":{},"os":"","rootfs":{{"type":"layers","diff_ids":{}}},"config":{{}}}}"#,
        serde_json::to_string(&history).unwrap(),
        serde_json::to_string(&diff_ids).unwrap()
    );
    reg.put_blob(REPO, config.as_bytes());
    let mut descs = Vec::new();
    for l in layers {
        reg.put_blob(REPO, &l.bytes);
        descs.push(ggcr_desc(l.media_type, &l.bytes, &l.annotations));
    }
    let mut m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]"#,
        ggcr_desc(config_type, config.as_bytes(), &BTreeMap::new()),
        descs.join(",")
    );
    if let Some((mt, digest, size)) = subject {
        m.push_str(&format!(
            r#","subject":{{"mediaType":"{mt}","size":{size},"digest":"{digest}"}}"#
        ));
    }
    m.push('}');
    m.into_bytes()
}

/// A simple-signing payload naming `image`, signed: one `.sig` layer.
pub(crate) fn signature_layer(key: &Key, image: &str, note: &str) -> Layer {
    let payload = json!({
        "critical": {
            "identity": {"docker-reference": format!("example.test/{REPO}")},
            "image": {"docker-manifest-digest": image},
            "type": "cosign container image signature"
        },
        "optional": {"note": note}
    });
    let bytes = serde_json::to_vec(&payload).unwrap();
    let sig = key.sign(&bytes);
    Layer {
        media_type: SIMPLE,
        bytes,
        annotations: BTreeMap::from([(SIGNATURE.to_string(), sig)]),
    }
}

/// A DSSE envelope of an in-toto statement about `image`: one `.att` layer.
fn attestation_layer(key: &Key, image: &str) -> Layer {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": format!("example.test/{REPO}"), "digest": {"sha256": &image[7..]}}],
        "predicate": {"builder": {"id": "https://example.test/ci"}}
    });
    let payload = serde_json::to_vec(&statement).unwrap();
    let sig = key.sign(&pae(IN_TOTO, &payload));
    let envelope = json!({
        "payloadType": IN_TOTO,
        "payload": B64.encode(&payload),
        "signatures": [{"keyid": "", "sig": sig}]
    });
    Layer {
        media_type: DSSE,
        bytes: serde_json::to_vec(&envelope).unwrap(),
        annotations: BTreeMap::from([(
            "predicateType".to_string(),
            "https://slsa.dev/provenance/v0.2".to_string(),
        )]),
    }
}

fn sbom_layer() -> Layer {
    Layer {
        media_type: SPDX,
        bytes: br#"{"spdxVersion":"SPDX-2.3","name":"team/app","packages":[]}"#.to_vec(),
        annotations: BTreeMap::new(),
    }
}

/// An image signed the legacy way: `.sig` with two signatures, `.att`,
/// `.sbom`; returns the image digest and the legacy manifests by suffix.
fn seed_legacy(reg: &TestRegistry, key: &Key) -> (String, BTreeMap<&'static str, String>) {
    let image = reg.seed_image(REPO, "v1", &[b"cosign conversion layer"]);
    let mut legacy = BTreeMap::new();
    let sets = [
        (
            "sig",
            vec![
                signature_layer(key, &image, "first"),
                signature_layer(key, &image, "second"),
            ],
        ),
        ("att", vec![attestation_layer(key, &image)]),
        ("sbom", vec![sbom_layer()]),
    ];
    for (suffix, layers) in sets {
        let bytes = cosign_manifest(reg, &layers, OCI_CONFIG, None);
        let tag = cosign_tag(&image, suffix);
        legacy.insert(suffix, reg.put_manifest(REPO, &tag, OCI_MANIFEST, &bytes));
    }
    (image, legacy)
}

pub(crate) fn manifest_json(reg: &TestRegistry, reference: &str) -> Value {
    let (_, bytes) = reg
        .manifest(REPO, reference)
        .unwrap_or_else(|| panic!("{reference} is not on the registry"));
    serde_json::from_slice(&bytes).unwrap()
}

/// Checks, on `reg` alone, every layer of the cosign manifest `m` of kind
/// `suffix`: signatures verify over their payload blobs with the public
/// key and the payloads name `image`; SBOM blobs are the ones signed for.
/// Returns the layers checked.
pub(crate) fn verify_on(
    reg: &TestRegistry,
    m: &Value,
    suffix: &str,
    image: &str,
    key: &Key,
) -> usize {
    let layers = m["layers"].as_array().unwrap();
    for layer in layers {
        let digest = layer["digest"].as_str().unwrap();
        let blob = reg
            .blob(REPO, digest)
            .unwrap_or_else(|| panic!("layer {digest} is not on the target"));
        match suffix {
            "sig" => {
                let sig = layer["annotations"][SIGNATURE].as_str().unwrap();
                assert!(key.verifies(&blob, sig), "signature over {digest} fails");
                let payload: Value = serde_json::from_slice(&blob).unwrap();
                assert_eq!(
                    payload["critical"]["image"]["docker-manifest-digest"],
                    image
                );
            }
            "att" => {
                let envelope: Value = serde_json::from_slice(&blob).unwrap();
                let payload = B64.decode(envelope["payload"].as_str().unwrap()).unwrap();
                let pt = envelope["payloadType"].as_str().unwrap();
                let sig = envelope["signatures"][0]["sig"].as_str().unwrap();
                assert!(
                    key.verifies(&pae(pt, &payload), sig),
                    "DSSE over {digest} fails"
                );
                let statement: Value = serde_json::from_slice(&payload).unwrap();
                assert_eq!(statement["subject"][0]["digest"]["sha256"], image[7..]);
            }
            _ => assert_eq!(blob, sbom_layer().bytes),
        }
    }
    layers.len()
}

/// The cosign kind of an OCI 1.1 referrer, from its config media type.
fn referrer_suffix(m: &Value) -> &'static str {
    match m["config"]["mediaType"].as_str().unwrap() {
        "application/vnd.dev.cosign.artifact.sig.v1+json" => "sig",
        "application/vnd.dev.cosign.artifact.att.v1+json" => "att",
        "application/vnd.dev.cosign.artifact.sbom.v1+json" => "sbom",
        other => panic!("not a cosign OCI 1.1 referrer: {other}"),
    }
}

pub(crate) fn cosign_tags(reg: &TestRegistry) -> Vec<String> {
    reg.tags(REPO)
        .into_iter()
        .filter(|t| t.ends_with(".sig") || t.ends_with(".att") || t.ends_with(".sbom"))
        .collect()
}

#[tokio::test]
async fn legacy_tags_become_referrers_that_verify_and_come_back_digest_exact() {
    let key = Key::new();
    let src = registry(true).await;
    let (image, legacy) = seed_legacy(&src, &key);
    let dst = registry(true).await;
    let from = format!("{}/{REPO}:v1", src.host());
    let to = format!("{}/{REPO}:v1", dst.host());

    // The plan says what will be converted, and from what.
    let out = ocimirror(&["copy", "--plan", "--cosign", "to-referrers", &from, &to]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for suffix in ["sig", "att", "sbom"] {
        let what = format!("converted cosign tag {}", cosign_tag(&image, suffix));
        assert!(stdout.contains(&what), "{what}: {}", text(&out));
    }
    assert!(dst.tags(REPO).is_empty(), "a plan wrote something");

    let out = ocimirror(&["copy", "--cosign", "to-referrers", &from, &to]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cosign converted: 3 to referrers, 0 to tags"),
        "{}",
        text(&out)
    );

    // On the target alone: three referrers of the image, no legacy tags,
    // every signature and attestation verifies and names the image.
    assert!(cosign_tags(&dst).is_empty(), "{:?}", dst.tags(REPO));
    let referrers = dst.referrers(REPO, &image);
    assert_eq!(referrers.len(), 3, "{referrers:?}");
    let mut checked = BTreeMap::new();
    for r in &referrers {
        let m = manifest_json(&dst, r);
        assert_eq!(m["subject"]["digest"], image.as_str());
        let suffix = referrer_suffix(&m);
        // The layers are the legacy manifest's, unchanged.
        let old = manifest_json(&src, &legacy[suffix]);
        assert_eq!(m["layers"], old["layers"]);
        checked.insert(suffix, verify_on(&dst, &m, suffix, &image, &key));
    }
    assert_eq!(
        checked,
        BTreeMap::from([("att", 1), ("sbom", 1), ("sig", 2)])
    );

    // A second run finds everything in place: nothing converted again.
    let out = ocimirror(&["copy", "--cosign", "to-referrers", &from, &to]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("cosign converted"),
        "{}",
        text(&out)
    );
    let out = ocimirror(&[
        "--output",
        "json",
        "copy",
        "--cosign",
        "to-referrers",
        &from,
        &to,
    ])
    .await;
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&doc["cosign_to_referrers"], &doc["manifests"]),
        (&json!(0), &json!(0)),
        "{doc}"
    );

    // And back: the legacy tags reappear with their original digests.
    let back = registry(true).await;
    let out = ocimirror(&[
        "--output",
        "json",
        "copy",
        "--cosign",
        "to-tags",
        &to,
        &format!("{}/{REPO}:v1", back.host()),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&doc["cosign_to_referrers"], &doc["cosign_to_tags"]),
        (&json!(0), &json!(3)),
        "{doc}"
    );
    for (suffix, digest) in &legacy {
        let (_, bytes) = back.manifest(REPO, &cosign_tag(&image, suffix)).unwrap();
        assert_eq!(&sha256(&bytes), digest, "{suffix}");
    }
    assert!(back.referrers(REPO, &image).is_empty());
}

#[tokio::test]
async fn a_target_without_the_referrers_api_gets_them_in_the_fallback_tag() {
    let key = Key::new();
    let src = registry(true).await;
    let (image, legacy) = seed_legacy(&src, &key);
    let dst = registry(false).await;
    let from = format!("{}/{REPO}:v1", src.host());
    let to = format!("{}/{REPO}:v1", dst.host());
    let out = ocimirror(&[
        "copy",
        "--cosign",
        "to-referrers",
        "--cosign-keep-original",
        &from,
        &to,
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));

    let index = manifest_json(&dst, &fallback_tag(&image));
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{index}");
    let mut layers = 0;
    for e in entries {
        let m = manifest_json(&dst, e["digest"].as_str().unwrap());
        let suffix = referrer_suffix(&m);
        assert_eq!(e["artifactType"], m["config"]["mediaType"]);
        assert_eq!(m["subject"]["digest"], image.as_str());
        layers += verify_on(&dst, &m, suffix, &image, &key);
    }
    assert_eq!(layers, 4);
    // Kept on request: the legacy tags, digest-exact, beside them.
    for (suffix, digest) in &legacy {
        let (_, bytes) = dst.manifest(REPO, &cosign_tag(&image, suffix)).unwrap();
        assert_eq!(&sha256(&bytes), digest, "{suffix}");
    }
}

#[tokio::test]
async fn referrers_of_one_subject_merge_into_one_legacy_tag_the_same_every_time() {
    let key = Key::new();
    let src = registry(true).await;
    let image = src.seed_image(REPO, "v1", &[b"two signers"]);
    let (_, image_bytes) = src.manifest(REPO, &image).unwrap();
    let subject = Some((OCI_MANIFEST, image.as_str(), image_bytes.len()));
    // Two cosign OCI 1.1 signatures made separately (two referrers).
    for note in ["alice", "bob"] {
        let layers = [signature_layer(&key, &image, note)];
        let bytes = cosign_manifest(
            &src,
            &layers,
            "application/vnd.dev.cosign.artifact.sig.v1+json",
            subject,
        );
        src.put_manifest(REPO, &sha256(&bytes), OCI_MANIFEST, &bytes);
    }
    assert_eq!(src.referrers(REPO, &image).len(), 2);

    let from = format!("{}/{REPO}:v1", src.host());
    let mut digests = Vec::new();
    for api in [true, false] {
        let dst = registry(api).await;
        let to = format!("{}/{REPO}:v1", dst.host());
        let out = ocimirror(&["copy", "--cosign", "to-tags", &from, &to]).await;
        assert!(out.status.success(), "{}", text(&out));
        let tag = cosign_tag(&image, "sig");
        let m = manifest_json(&dst, &tag);
        assert!(m.get("subject").is_none());
        assert_eq!(m["config"]["mediaType"], OCI_CONFIG);
        assert_eq!(verify_on(&dst, &m, "sig", &image, &key), 2);
        // The merged config (made, not copied) is there and lists the layers.
        let config = dst
            .blob(REPO, m["config"]["digest"].as_str().unwrap())
            .expect("merged config blob on the target");
        let config: Value = serde_json::from_slice(&config).unwrap();
        let layer_digests: Vec<&Value> = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| &l["digest"])
            .collect();
        let diff_ids: Vec<&Value> = config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(diff_ids, layer_digests);
        assert!(dst.referrers(REPO, &image).is_empty());
        digests.push(sha256(&dst.manifest(REPO, &tag).unwrap().1));
    }
    assert_eq!(digests[0], digests[1], "the merge is not deterministic");
}

/// A job converting on the way: the checkpoint remembers the conversion (a
/// second run skips the image and writes nothing), and a change of the
/// cosign options is not taken for "unchanged".
#[tokio::test]
async fn a_job_converts_once_and_a_new_cosign_setting_looks_again() {
    use crate::sync_jobs::{ok, run_once, write_config, writes};
    use ocimirror::sync::SyncOptions;

    let key = Key::new();
    let src = registry(true).await;
    let (image, _) = seed_legacy(&src, &key);
    let dst = registry(true).await;
    let dir = tempfile::tempdir().unwrap();
    let write = |extra: &str| {
        let path = write_config(dir.path(), &src, &dst, "", extra);
        ocimirror::config::load(&path).unwrap()
    };
    let config = write(r#"referrers = { cosign = "to-referrers" }"#);
    let first = ok(run_once(&config, &SyncOptions::default()).await);
    assert_eq!(first.counts.images_copied, 1, "{first:?}");
    assert_eq!(first.copy.cosign_to_referrers, 3, "{first:?}");
    assert_eq!(dst.referrers(REPO, &image).len(), 3);
    assert!(cosign_tags(&dst).is_empty());

    dst.clear_log();
    let second = ok(run_once(&config, &SyncOptions::default()).await);
    assert_eq!(second.counts.images_skipped, 1, "{second:?}");
    assert_eq!(second.copy.cosign_to_referrers, 0);
    assert!(writes(&dst).is_empty(), "{:?}", writes(&dst));

    // Keeping the originals now: the image is looked at again and the
    // legacy tags arrive; the referrers are there already.
    let config = write(r#"referrers = { cosign = "to-referrers", cosign_keep_original = true }"#);
    let third = ok(run_once(&config, &SyncOptions::default()).await);
    assert_eq!(third.counts.images_copied, 1, "{third:?}");
    assert_eq!(third.copy.cosign_to_referrers, 0);
    assert_eq!(cosign_tags(&dst).len(), 3);
}

/// A signed SBOM: the signature names the SBOM manifest's digest, which the
/// conversion changes, so the SBOM's original stays beside its referrer
/// form and the signature, now a referrer of that original, still holds.
#[tokio::test]
async fn a_signed_attachment_keeps_its_original_for_its_signature() {
    let key = Key::new();
    let src = registry(true).await;
    let image = src.seed_image(REPO, "v1", &[b"signed sbom"]);
    let sbom = cosign_manifest(&src, &[sbom_layer()], OCI_CONFIG, None);
    let sbom_digest = src.put_manifest(REPO, &cosign_tag(&image, "sbom"), OCI_MANIFEST, &sbom);
    let sig = cosign_manifest(
        &src,
        &[signature_layer(&key, &sbom_digest, "sbom")],
        OCI_CONFIG,
        None,
    );
    src.put_manifest(REPO, &cosign_tag(&sbom_digest, "sig"), OCI_MANIFEST, &sig);

    let dst = registry(true).await;
    let from = format!("{}/{REPO}:v1", src.host());
    let to = format!("{}/{REPO}:v1", dst.host());
    let out = ocimirror(&["copy", "--cosign", "to-referrers", &from, &to]).await;
    assert!(out.status.success(), "{}", text(&out));

    let image_referrers = dst.referrers(REPO, &image);
    assert_eq!(image_referrers.len(), 1, "{image_referrers:?}");
    assert_eq!(
        referrer_suffix(&manifest_json(&dst, &image_referrers[0])),
        "sbom"
    );
    // The original SBOM is still tagged: its signature names it.
    assert_eq!(cosign_tags(&dst), vec![cosign_tag(&image, "sbom")]);
    let sbom_referrers = dst.referrers(REPO, &sbom_digest);
    assert_eq!(sbom_referrers.len(), 1, "{sbom_referrers:?}");
    let m = manifest_json(&dst, &sbom_referrers[0]);
    assert_eq!(verify_on(&dst, &m, "sig", &sbom_digest, &key), 1);
}

/// A legacy manifest the conversion would lose something of (a field
/// go-containerregistry's manifest lacks) is copied as it is, and the copy
/// says which manifest could not be converted and why.
#[tokio::test]
async fn what_cannot_be_converted_is_copied_as_it_is_and_named() {
    let key = Key::new();
    let src = registry(true).await;
    let image = src.seed_image(REPO, "v1", &[b"odd signature"]);
    let layer = signature_layer(&key, &image, "odd");
    let good = cosign_manifest(&src, &[layer], OCI_CONFIG, None);
    let mut odd: Value = serde_json::from_slice(&good).unwrap();
    odd["artifactType"] = json!("application/x-odd");
    let odd = serde_json::to_vec(&odd).unwrap();
    let odd_digest = src.put_manifest(REPO, &cosign_tag(&image, "sig"), OCI_MANIFEST, &odd);

    let dst = registry(true).await;
    let from = format!("{}/{REPO}:v1", src.host());
    let to = format!("{}/{REPO}:v1", dst.host());
    let out = ocimirror(&["copy", "--cosign", "to-referrers", &from, &to]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("cosign_conversion"), "{all}");
    assert!(all.contains(&odd_digest), "{all}");
    assert!(all.contains("artifactType"), "{all}");
    // The rest went on: the image, and the signature in its original form.
    assert!(dst.manifest(REPO, "v1").is_some());
    let (_, bytes) = dst.manifest(REPO, &cosign_tag(&image, "sig")).unwrap();
    assert_eq!(sha256(&bytes), odd_digest);
    assert!(dst.referrers(REPO, &image).is_empty());
}

/// to-tags where the subject already has a legacy `.sbom` that is itself
/// signed: the tag moves to the merged manifest, and the legacy SBOM its
/// signature names still reaches the target, by digest.
#[tokio::test]
async fn a_replaced_legacy_tag_that_is_signed_still_arrives() {
    let key = Key::new();
    let src = registry(true).await;
    let image = src.seed_image(REPO, "v1", &[b"sbom in both forms"]);
    let (_, image_bytes) = src.manifest(REPO, &image).unwrap();
    let referrer = cosign_manifest(
        &src,
        &[sbom_layer()],
        "application/vnd.dev.cosign.artifact.sbom.v1+json",
        Some((OCI_MANIFEST, image.as_str(), image_bytes.len())),
    );
    src.put_manifest(REPO, &sha256(&referrer), OCI_MANIFEST, &referrer);
    let legacy = cosign_manifest(
        &src,
        &[Layer {
            bytes: br#"{"spdxVersion":"SPDX-2.3","name":"older"}"#.to_vec(),
            ..sbom_layer()
        }],
        OCI_CONFIG,
        None,
    );
    let legacy_digest = src.put_manifest(REPO, &cosign_tag(&image, "sbom"), OCI_MANIFEST, &legacy);
    let sig = cosign_manifest(
        &src,
        &[signature_layer(&key, &legacy_digest, "older sbom")],
        OCI_CONFIG,
        None,
    );
    src.put_manifest(REPO, &cosign_tag(&legacy_digest, "sig"), OCI_MANIFEST, &sig);

    let dst = registry(true).await;
    let from = format!("{}/{REPO}:v1", src.host());
    let to = format!("{}/{REPO}:v1", dst.host());
    let out = ocimirror(&["copy", "--cosign", "to-tags", &from, &to]).await;
    assert!(out.status.success(), "{}", text(&out));
    // One .sbom tag holding both SBOMs' layers.
    let merged = manifest_json(&dst, &cosign_tag(&image, "sbom"));
    assert_eq!(merged["layers"].as_array().unwrap().len(), 2, "{merged}");
    // The signed legacy SBOM is there, and its signature verifies.
    assert!(
        dst.manifest(REPO, &legacy_digest).is_some(),
        "legacy SBOM missing"
    );
    let m = manifest_json(&dst, &cosign_tag(&legacy_digest, "sig"));
    assert_eq!(verify_on(&dst, &m, "sig", &legacy_digest, &key), 1);
}
