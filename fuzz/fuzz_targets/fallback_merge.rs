//! Merging referrers into an existing fallback index (any bytes another
//! client left under the tag), then removing one: never panics; a merge
//! yields an OCI index listing every added digest once more than nothing,
//! is idempotent, and keeps every entry it found.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocimirror::oci::referrers::{merge_fallback_index, remove_from_fallback_index};
use ocimirror::oci::{Descriptor, Digest};
use serde_json::Value;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn digests(v: &Value) -> Vec<String> {
    v["manifests"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.get("digest").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fuzz_target!(|input: &[u8]| {
    // First byte: how many referrers to add (0..=3), named by the input.
    let Some((&n, existing)) = input.split_first() else {
        return;
    };
    let add: Vec<Descriptor> = (0..n % 4)
        .map(|i| Descriptor::new(OCI_MANIFEST, Digest::sha256(&[i, n]), u64::from(i)))
        .collect();
    let Ok(merged) = merge_fallback_index(Some((existing, OCI_INDEX)), &add) else {
        return;
    };
    let before: Value = serde_json::from_slice(existing).expect("merged from non-JSON");
    let Some(out) = merged else {
        // Nothing changed: every added digest was listed already.
        let listed = digests(&before);
        assert!(add.iter().all(|d| listed.contains(&d.digest.to_string())));
        return;
    };
    let v: Value = serde_json::from_slice(&out).expect("merge wrote invalid JSON");
    assert_eq!(v["mediaType"], OCI_INDEX);
    assert_eq!(v["schemaVersion"], 2);
    assert!(v.get("subject").is_none());
    let listed = digests(&v);
    for old in digests(&before) {
        assert!(listed.contains(&old), "{old} lost");
    }
    for d in &add {
        assert!(listed.contains(&d.digest.to_string()));
    }
    // Idempotent.
    assert!(matches!(
        merge_fallback_index(Some((&out, OCI_INDEX)), &add),
        Ok(None)
    ));
    if let Some(first) = add.first() {
        let removed = remove_from_fallback_index(&out, &first.digest)
            .expect("remove from a merged index")
            .expect("an added digest is listed");
        let v: Value = serde_json::from_slice(&removed).unwrap();
        assert!(!digests(&v).contains(&first.digest.to_string()));
    }
});
