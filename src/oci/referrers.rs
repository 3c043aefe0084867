//! The referrers tag schema as pure functions: fallback tag names, cosign
//! legacy tags, and merging descriptors into a fallback index.
//!
//! References: distribution-spec §"Referrers Tag Schema" (truncation rule from
//! `main`), §"Pushing Manifests with Subject"; cosign `SIGNATURE_SPEC.md`.

use serde_json::{Map, Value, json};

use super::descriptor::Descriptor;
use super::digest::Digest;
use super::media_type as mt;

/// The suffixes of cosign's legacy attachment tags.
pub const COSIGN_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// The fallback tag of `subject`: algorithm cut to 32 characters, encoded part
/// to 64, characters not allowed in a tag replaced by `-`.
pub fn fallback_tag(subject: &Digest) -> String {
    let clean = |s: &str, max: usize| -> String {
        s.chars()
            .take(max)
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!(
        "{}-{}",
        clean(subject.algorithm().as_str(), 32),
        clean(subject.hex(), 64)
    )
}

/// True for tags of the form `sha256-<64 hex>` / `sha512-<64 hex>`: fallback
/// indexes, never user tags.
pub fn is_fallback_tag(tag: &str) -> bool {
    let Some((alg, hex)) = tag.split_once('-') else {
        return false;
    };
    matches!(alg, "sha256" | "sha512") && hex.len() == 64 && is_lower_hex(hex)
}

/// The cosign legacy tag for `subject` with `suffix` (`sig`, `att`, `sbom`).
pub fn cosign_tag(subject: &Digest, suffix: &str) -> String {
    format!(
        "{}-{}.{suffix}",
        subject.algorithm().as_str(),
        subject.hex()
    )
}

/// True for cosign legacy attachment tags (`sha256-<hex>.sig` etc.).
pub fn is_cosign_tag(tag: &str) -> bool {
    tag.rsplit_once('.').is_some_and(|(base, suffix)| {
        COSIGN_SUFFIXES.contains(&suffix)
            && base.split_once('-').is_some_and(|(alg, hex)| {
                (alg == "sha256" && hex.len() == 64 || alg == "sha512" && hex.len() == 128)
                    && is_lower_hex(hex)
            })
    })
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why an existing fallback tag could not be merged into.
#[derive(Debug, thiserror::Error)]
pub enum FallbackIndexError {
    /// The tag holds something other than an OCI index.
    #[error("fallback tag holds {0:?}, not an OCI image index")]
    NotAnIndex(String),
    /// The tag's index is not valid JSON.
    #[error("fallback index is not valid JSON: {0}")]
    InvalidJson(#[from] serde_json::Error),
}

/// An empty fallback index.
pub fn empty_index() -> Vec<u8> {
    index_bytes(Map::new(), Vec::new())
}

/// Merges `add` into the fallback index `existing` (its bytes and media type,
/// or `None` when the tag does not exist). Entries already present (by digest)
/// are not duplicated; entries written by others, and any field ocimirror does
/// not know, are kept. Returns the new bytes, or `None` when nothing changed.
pub fn merge_fallback_index(
    existing: Option<(&[u8], &str)>,
    add: &[Descriptor],
) -> Result<Option<Vec<u8>>, FallbackIndexError> {
    let (top, mut entries) = match existing {
        None => (Map::new(), Vec::new()),
        Some((bytes, media_type)) => {
            if mt::essence(media_type) != mt::OCI_INDEX {
                return Err(FallbackIndexError::NotAnIndex(media_type.to_string()));
            }
            let mut top: Map<String, Value> = serde_json::from_slice(bytes)?;
            if let Some(body_type) = top.get("mediaType").and_then(Value::as_str)
                && body_type != mt::OCI_INDEX
            {
                return Err(FallbackIndexError::NotAnIndex(body_type.to_string()));
            }
            let entries = match top.remove("manifests") {
                Some(Value::Array(entries)) => entries,
                None | Some(Value::Null) => Vec::new(),
                Some(_) => return Err(FallbackIndexError::NotAnIndex(media_type.to_string())),
            };
            (top, entries)
        }
    };
    let before = entries.len();
    for desc in add {
        let digest = desc.digest.to_string();
        let present = entries
            .iter()
            .any(|e| e.get("digest").and_then(Value::as_str) == Some(digest.as_str()));
        if !present {
            entries.push(serde_json::to_value(desc)?);
        }
    }
    if entries.len() == before && existing.is_some() {
        return Ok(None);
    }
    Ok(Some(index_bytes(top, entries)))
}

/// Removes `remove` from the fallback index, returning the new bytes or `None`
/// when it was not listed (distribution-spec §"Deleting Manifests").
pub fn remove_from_fallback_index(
    existing: &[u8],
    remove: &Digest,
) -> Result<Option<Vec<u8>>, FallbackIndexError> {
    let mut top: Map<String, Value> = serde_json::from_slice(existing)?;
    let Some(Value::Array(entries)) = top.remove("manifests") else {
        return Err(FallbackIndexError::NotAnIndex(
            "object without manifests".into(),
        ));
    };
    let digest = remove.to_string();
    let before = entries.len();
    let kept: Vec<Value> = entries
        .into_iter()
        .filter(|e| e.get("digest").and_then(Value::as_str) != Some(digest.as_str()))
        .collect();
    if kept.len() == before {
        return Ok(None);
    }
    Ok(Some(index_bytes(top, kept)))
}

fn index_bytes(mut top: Map<String, Value>, entries: Vec<Value>) -> Vec<u8> {
    top.insert("schemaVersion".into(), json!(2));
    top.insert("mediaType".into(), json!(mt::OCI_INDEX));
    // A fallback index never has a subject of its own.
    top.remove("subject");
    top.insert("manifests".into(), Value::Array(entries));
    serde_json::to_vec(&Value::Object(top)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;

    #[test]
    fn fallback_tag_follows_the_truncation_rule() {
        let d = Digest::sha256(b"x");
        assert_eq!(fallback_tag(&d), format!("sha256-{}", d.hex()));
        assert!(is_fallback_tag(&fallback_tag(&d)));
        let d512 = Digest::compute(Algorithm::Sha512, b"x");
        let tag = fallback_tag(&d512);
        assert_eq!(tag, format!("sha512-{}", &d512.hex()[..64]));
        assert!(tag.len() <= 128);
        assert!(is_fallback_tag(&tag));
        assert!(!is_fallback_tag("sha256-abc"));
        assert!(!is_fallback_tag("v1.0"));
        assert!(!is_fallback_tag(&format!("sha256-{}.sig", d.hex())));
    }

    #[test]
    fn cosign_tags() {
        let d = Digest::sha256(b"x");
        let t = cosign_tag(&d, "sig");
        assert_eq!(t, format!("sha256-{}.sig", d.hex()));
        assert!(is_cosign_tag(&t));
        assert!(!is_cosign_tag(&format!("sha256-{}.foo", d.hex())));
        assert!(!is_fallback_tag(&t));
    }

    fn desc(n: u8) -> Descriptor {
        let mut d = Descriptor::new(mt::OCI_MANIFEST, Digest::sha256(&[n]), 10 + n as u64);
        d.artifact_type = Some("application/example".into());
        d
    }

    #[test]
    fn merge_dedupes_and_keeps_foreign_entries() {
        let first = merge_fallback_index(None, &[desc(1)]).unwrap().unwrap();
        let v: Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(v["mediaType"], mt::OCI_INDEX);

        // Someone else's entry with a field we do not know survives.
        let mut foreign: Value = serde_json::from_slice(&first).unwrap();
        foreign["manifests"]
            .as_array_mut()
            .unwrap()
            .push(json!({"mediaType": mt::OCI_MANIFEST, "digest": Digest::sha256(b"f").to_string(), "size": 3, "x-extra": true}));
        let foreign = serde_json::to_vec(&foreign).unwrap();
        let merged = merge_fallback_index(Some((&foreign, mt::OCI_INDEX)), &[desc(1), desc(2)])
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&merged).unwrap();
        let entries = v["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1]["x-extra"], true);
        assert_eq!(entries[2]["artifactType"], "application/example");

        // Nothing new: nothing to write.
        assert!(
            merge_fallback_index(Some((&merged, mt::OCI_INDEX)), &[desc(2)])
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn merge_refuses_a_tag_that_is_not_an_index() {
        let err = merge_fallback_index(Some((b"{}", mt::OCI_MANIFEST)), &[desc(1)]).unwrap_err();
        assert!(matches!(err, FallbackIndexError::NotAnIndex(_)));
        let body = format!(
            r#"{{"mediaType":"{}","manifests":[]}}"#,
            mt::DOCKER_MANIFEST_LIST
        );
        assert!(merge_fallback_index(Some((body.as_bytes(), mt::OCI_INDEX)), &[]).is_err());
    }

    #[test]
    fn remove_entry() {
        let idx = merge_fallback_index(None, &[desc(1), desc(2)])
            .unwrap()
            .unwrap();
        let out = remove_from_fallback_index(&idx, &desc(1).digest)
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
        assert!(
            remove_from_fallback_index(&out, &desc(1).digest)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&empty_index()).unwrap()["manifests"],
            json!([])
        );
    }
}
