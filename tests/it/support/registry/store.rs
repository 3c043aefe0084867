//! In-memory storage and the protocol rules that do not depend on HTTP.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use bytes::Bytes;
use regex::Regex;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256, Sha512};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// distribution's `maxManifestBodySize`.
pub const MAX_MANIFEST: usize = 4 << 20;

/// One repository.
#[derive(Default)]
pub struct Repo {
    pub blobs: HashMap<String, Bytes>,
    /// digest -> (media type, exact bytes)
    pub manifests: HashMap<String, (String, Bytes)>,
    pub tags: BTreeMap<String, String>,
    /// subject digest -> referrer digests (whether or not the subject exists)
    pub referrers: HashMap<String, BTreeSet<String>>,
}

/// An open upload session.
pub struct Upload {
    pub repo: String,
    pub data: Vec<u8>,
}

/// The whole registry content.
#[derive(Default)]
pub struct Store {
    pub repos: BTreeMap<String, Repo>,
    pub uploads: HashMap<String, Upload>,
}

/// An OCI error: HTTP status, code, message, detail.
#[derive(Debug, Clone)]
pub struct OciError {
    pub status: u16,
    pub errors: Vec<(String, String, Value)>,
}

impl OciError {
    pub fn new(status: u16, code: &str, message: &str) -> OciError {
        OciError {
            status,
            errors: vec![(code.to_string(), message.to_string(), Value::Null)],
        }
    }

    pub fn with_detail(status: u16, code: &str, message: &str, detail: Value) -> OciError {
        OciError {
            status,
            errors: vec![(code.to_string(), message.to_string(), detail)],
        }
    }

    pub fn body(&self) -> String {
        let errors: Vec<Value> = self
            .errors
            .iter()
            .map(|(code, message, detail)| {
                let mut e = json!({"code": code, "message": message});
                if !detail.is_null() {
                    e["detail"] = detail.clone();
                }
                e
            })
            .collect();
        json!({ "errors": errors }).to_string()
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Digest of `bytes` with the algorithm of `like` (sha256/sha512), None for other algorithms.
pub fn digest_with_alg_of(like: &str, bytes: &[u8]) -> Option<String> {
    match like.split_once(':').map(|(a, _)| a) {
        Some("sha256") => Some(sha256_digest(bytes)),
        Some("sha512") => Some(format!("sha512:{}", hex::encode(Sha512::digest(bytes)))),
        _ => None,
    }
}

/// A reference that is meant as a digest (tags cannot contain ':').
pub fn is_digest_like(reference: &str) -> bool {
    reference.contains(':')
}

/// Strict digest grammar plus the registered-algorithm encodings.
pub fn valid_digest(d: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$").expect("static regex")
    });
    if !re.is_match(d) {
        return false;
    }
    let (alg, enc) = d.split_once(':').unwrap_or_default();
    let hex_of =
        |n: usize| enc.len() == n && enc.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match alg {
        "sha256" => hex_of(64),
        "sha512" => hex_of(128),
        _ => true,
    }
}

pub fn valid_tag(t: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").expect("static regex"))
        .is_match(t)
}

pub fn valid_name(n: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$",
        )
        .expect("static regex")
    })
    .is_match(n)
        && n.len() <= 255
}

fn is_image_type(mt: &str) -> bool {
    mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
}

fn is_index_type(mt: &str) -> bool {
    mt == OCI_INDEX || mt == DOCKER_LIST
}

pub fn known_manifest_type(mt: &str) -> bool {
    is_image_type(mt) || is_index_type(mt)
}

/// `subject.digest` of a manifest body, if any.
pub fn subject_of(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    v.get("subject")?
        .get("digest")?
        .as_str()
        .map(str::to_string)
}

/// Descriptor of a referrer as the referrers API lists it (spec §2.2).
pub fn referrer_descriptor(digest: &str, media_type: &str, bytes: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let mut d = Map::new();
    d.insert("mediaType".into(), json!(media_type));
    d.insert("digest".into(), json!(digest));
    d.insert("size".into(), json!(bytes.len()));
    let artifact_type = v
        .get("artifactType")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            if v.get("manifests").is_some() {
                None
            } else {
                v.get("config")?
                    .get("mediaType")?
                    .as_str()
                    .map(str::to_string)
            }
        });
    if let Some(at) = artifact_type {
        d.insert("artifactType".into(), json!(at));
    }
    if let Some(a) = v.get("annotations").filter(|a| a.is_object()) {
        d.insert("annotations".into(), a.clone());
    }
    Value::Object(d)
}

/// Check a manifest PUT like distribution does (plus `mediaType` consistency). Returns the
/// parsed body on success.
pub fn validate_manifest(
    repo: Option<&Repo>,
    content_type: &str,
    bytes: &[u8],
) -> Result<Value, OciError> {
    let invalid = |msg: &str| OciError::new(400, "MANIFEST_INVALID", msg);
    if !known_manifest_type(content_type) {
        return Err(invalid(&format!(
            "unsupported manifest media type {content_type:?}"
        )));
    }
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(&format!("invalid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("manifest is not a JSON object"))?;
    if obj.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    if let Some(mt) = obj.get("mediaType") {
        if mt.as_str() != Some(content_type) {
            return Err(invalid("mediaType does not match Content-Type"));
        }
    } else if content_type.starts_with("application/vnd.docker.") {
        return Err(invalid("docker manifests must carry mediaType"));
    }
    let descriptor_digest = |d: &Value| -> Result<String, OciError> {
        let digest = d
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("descriptor without digest"))?;
        if !valid_digest(digest) {
            return Err(invalid(&format!("invalid descriptor digest {digest:?}")));
        }
        if d.get("mediaType").and_then(Value::as_str).is_none() {
            return Err(invalid("descriptor without mediaType"));
        }
        if d.get("size").and_then(Value::as_i64).is_none() {
            return Err(invalid("descriptor without size"));
        }
        Ok(digest.to_string())
    };
    let mut missing = Vec::new();
    if is_image_type(content_type) {
        if obj.contains_key("manifests") {
            return Err(invalid("image manifest with a manifests field"));
        }
        let config = obj.get("config").ok_or_else(|| invalid("missing config"))?;
        let layers = match obj.get("layers") {
            Some(Value::Array(l)) => l.as_slice(),
            None if content_type == OCI_MANIFEST => &[],
            _ => return Err(invalid("layers must be an array")),
        };
        for d in std::iter::once(config).chain(layers.iter()) {
            let digest = descriptor_digest(d)?;
            let foreign = d
                .get("urls")
                .and_then(Value::as_array)
                .is_some_and(|u| !u.is_empty());
            if !foreign && !repo.is_some_and(|r| r.blobs.contains_key(&digest)) {
                missing.push(digest);
            }
        }
    } else {
        if obj.contains_key("config") || obj.contains_key("layers") {
            return Err(invalid("index with config or layers"));
        }
        let children = obj
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("index without manifests array"))?;
        for d in children {
            let digest = descriptor_digest(d)?;
            if !repo.is_some_and(|r| r.manifests.contains_key(&digest)) {
                missing.push(digest);
            }
        }
    }
    if let Some(s) = obj.get("subject") {
        descriptor_digest(s)?;
    }
    if !missing.is_empty() {
        return Err(OciError {
            status: 400,
            errors: missing
                .into_iter()
                .map(|d| {
                    (
                        "MANIFEST_BLOB_UNKNOWN".to_string(),
                        "blob unknown to registry".to_string(),
                        json!({ "digest": d }),
                    )
                })
                .collect(),
        });
    }
    Ok(v)
}

impl Store {
    pub fn repo(&self, name: &str) -> Option<&Repo> {
        self.repos.get(name)
    }

    pub fn put_blob(&mut self, repo: &str, digest: &str, bytes: Bytes) {
        self.repos
            .entry(repo.to_string())
            .or_default()
            .blobs
            .insert(digest.to_string(), bytes);
    }

    /// Store a manifest (already validated) and maintain tags and the referrers index.
    pub fn put_manifest(
        &mut self,
        repo: &str,
        digest: &str,
        tag: Option<&str>,
        media_type: &str,
        bytes: Bytes,
    ) {
        let subject = subject_of(&bytes);
        let r = self.repos.entry(repo.to_string()).or_default();
        r.manifests
            .insert(digest.to_string(), (media_type.to_string(), bytes));
        if let Some(t) = tag {
            r.tags.insert(t.to_string(), digest.to_string());
        }
        if let Some(s) = subject {
            r.referrers.entry(s).or_default().insert(digest.to_string());
        }
    }

    /// Resolve a tag or digest to (digest, media type, bytes).
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<(String, String, Bytes)> {
        let r = self.repos.get(repo)?;
        let digest = if is_digest_like(reference) {
            reference.to_string()
        } else {
            r.tags.get(reference)?.clone()
        };
        let (mt, b) = r.manifests.get(&digest)?;
        Some((digest, mt.clone(), b.clone()))
    }

    pub fn blob(&self, repo: &str, digest: &str) -> Option<Bytes> {
        self.repos.get(repo)?.blobs.get(digest).cloned()
    }

    pub fn tags(&self, repo: &str) -> Vec<String> {
        self.repos
            .get(repo)
            .map(|r| r.tags.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn repositories(&self) -> Vec<String> {
        self.repos.keys().cloned().collect()
    }

    pub fn referrer_digests(&self, repo: &str, subject: &str) -> Vec<String> {
        self.repos
            .get(repo)
            .and_then(|r| r.referrers.get(subject))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Delete a manifest by digest (untags every tag pointing at it) or untag a tag.
    pub fn delete_manifest(&mut self, repo: &str, reference: &str) -> bool {
        let Some(r) = self.repos.get_mut(repo) else {
            return false;
        };
        if !is_digest_like(reference) {
            return r.tags.remove(reference).is_some();
        }
        let Some((_, bytes)) = r.manifests.remove(reference) else {
            return false;
        };
        r.tags.retain(|_, d| d != reference);
        if let Some(s) = subject_of(&bytes)
            && let Some(set) = r.referrers.get_mut(&s)
        {
            set.remove(reference);
            if set.is_empty() {
                r.referrers.remove(&s);
            }
        }
        true
    }

    pub fn delete_blob(&mut self, repo: &str, digest: &str) -> bool {
        self.repos
            .get_mut(repo)
            .is_some_and(|r| r.blobs.remove(digest).is_some())
    }
}
